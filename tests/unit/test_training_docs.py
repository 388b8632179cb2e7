"""docs/training.md against the training code: the architectures table and the optimiser flags table."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.test_docs import table
from training.architectures import ARCHITECTURES
from training.config import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def test_the_models_table_lists_every_registered_architecture() -> None:
    rows = table(DOC, ["`--model`", "network"])
    assert list(rows) == list(ARCHITECTURES), "docs/training.md models table and training/architectures.py differ"
    for name, arch in ARCHITECTURES.items():
        count = re.search(r"[\d,]+ parameters", arch.summary)
        assert count is None or count.group(0) in rows[name][0], f"{name}: the docs give another parameter count"


def test_the_optimiser_table_documents_every_recipe_flag_with_its_default() -> None:
    rows = table(DOC, ["flag", "default", "what it does"])
    documented = {flag.strip("`") for cell in rows for flag in cell.split(", ")}
    recipe = ("--optimizer", "--learning-rate", "--momentum", "--nesterov", "--lr-schedule", "--early-stopping")
    recipe += ("--label-smoothing", "--epochs", "--batch-size", "--tensorboard")
    assert set(recipe) <= documented
    defaults = {a.option_strings[0]: a.default for a in build_parser()._actions if a.option_strings}
    for flag in ("--optimizer", "--lr-schedule", "--momentum", "--label-smoothing"):
        default = defaults[flag]
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        assert rows[flag][0] == f"`{shown}`", f"docs/training.md says {rows[flag][0]} for {flag}, the code {shown}"
