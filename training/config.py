"""Training flags: one dataclass, parsed from the command line, saved into the version."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

MODELS = ("cnn", "mlp")  # training.models imports TensorFlow; keep --help fast


@dataclass(frozen=True)
class TrainConfig:
    registry: str = "models"
    data: str | None = None
    model: str = "cnn"
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    augment: bool = True
    outlier_exposure: bool = True
    adversarial: str | None = None
    adversarial_epsilon: float = 0.1
    limit: int | None = None
    robustness_samples: int = 1000
    parity_samples: int = 1000
    accuracy_floor: float = 0.97
    target_false_rejection: float = 0.01
    ood_data: str | None = "/usr/share/datasets/fashion-mnist"
    promote: bool = True
    download_timeout: float = 15.0
    quick: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line and exit code 2, never a traceback.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = _Parser(
        prog="python -m training",
        description="Train, evaluate, export (SavedModel + ONNX), verify and register an MNIST model version. "
        "Manage versions with `python -m training registry list | promote N | rollback`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--registry", default=d.registry, help="registry root; versions go to <registry>/mnist/<N>/")
    p.add_argument("--data", default=d.data, help="folder with mnist.npz or the four MNIST IDX files")
    p.add_argument("--model", choices=MODELS, default=d.model, help="network to train")
    p.add_argument("--epochs", type=_positive_int, default=d.epochs, help="training epochs")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size, help="training batch size")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam learning rate (cosine decay)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for splits, initialisation and augmentation")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="turn off shift/rotate/zoom")
    p.add_argument(
        "--no-outlier-exposure",
        dest="outlier_exposure",
        action="store_false",
        help="train on digits only (by default synthetic non-digits teach the model to be unsure on them)",
    )
    p.add_argument(
        "--adversarial",
        nargs="?",
        const="fgsm",
        choices=["fgsm", "pgd"],
        default=d.adversarial,
        help="adversarial training (half clean, half attacked batches); bare flag means fgsm",
    )
    p.add_argument("--adversarial-epsilon", type=_fraction, default=d.adversarial_epsilon, help="attack radius")
    p.add_argument("--limit", type=_positive_int, default=d.limit, help="use at most N training images")
    p.add_argument("--robustness-samples", type=_positive_int, default=d.robustness_samples, help="FGSM eval images")
    p.add_argument("--parity-samples", type=_positive_int, default=d.parity_samples, help="runtime parity images")
    p.add_argument("--accuracy-floor", type=_fraction, default=d.accuracy_floor, help="promotion floor")
    p.add_argument(
        "--target-false-rejection",
        type=_fraction,
        default=d.target_false_rejection,
        help="share of held-out digits the guards may refuse when calibrated",
    )
    p.add_argument(
        "--ood-data",
        default=d.ood_data,
        help="folder of non-digit IDX images (Fashion-MNIST) for the not_a_digit refusal rate; skipped if absent",
    )
    p.add_argument("--no-promote", dest="promote", action="store_false", help="register without promoting")
    p.add_argument("--download-timeout", type=float, default=d.download_timeout, help="seconds before going offline")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 8 epochs on 2000 images, small evaluation, no accuracy floor (for tests)",
    )
    return p


def parse_config(argv: list[str]) -> TrainConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data is not None and not Path(args.data).is_dir():
        parser.error(f"--data {args.data}: no such folder")
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    if values["quick"]:
        values.update(epochs=8, limit=values["limit"] or 2000, robustness_samples=200, parity_samples=200)
        # A smoke model may become production of an empty registry, never over a better one.
        values["accuracy_floor"] = 0.0
    return TrainConfig(**values)
