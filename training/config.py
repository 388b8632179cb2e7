"""Training flags: one dataclass, parsed from the command line, saved into the version."""

from __future__ import annotations

import argparse
import importlib.util
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from training.architectures import ARCHITECTURES

# Keras's own default rate for each optimiser, used when --learning-rate is not given (training/optim.py maps
# the names to Keras classes). Plain data here so flags are checked before TensorFlow is imported.
OPTIMIZERS = {"adam": 1e-3, "sgd": 1e-2, "rmsprop": 1e-3}
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")
LR_SCHEDULES = ("cosine", "constant", "step")
MAX_WAIT_S = 3600  # the longest --download-timeout: an hour


@dataclass(frozen=True)
class TrainConfig:
    registry: str = "models"
    data: str | None = None
    model: str = "cnn"
    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    lr_schedule: str = "cosine"
    early_stopping: int | None = None  # patience in epochs, on validation loss
    label_smoothing: float = 0.0
    ema: bool = False  # keep an exponential moving average of the weights instead of the last step's
    tensorboard: str | None = None
    seed: int = 0
    augment: bool = True
    restroke: float = 0.5  # share of the training digits added again, redrawn with one round brush
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
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: --quick sets other defaults when spelled out, and --qui would have run a full model
        # recorded as quick.
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        # One line and exit code 2, never a traceback.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _whole(text: str, rule: str) -> int:
    """``int(text)``, or argparse's one-line refusal in ``rule``'s words (it named the parsing function, as in
    "invalid _positive_int value: '2.5'")."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{rule}, got {text}") from None


def _positive_int(text: str) -> int:
    value = _whole(text, "must be a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def seed(text: str) -> int:
    """A seed numpy, TensorFlow and Python's random all take: 0 .. 2**32 - 1."""
    value = _whole(text, f"must be an integer in 0..{2**32 - 1}")
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..{2**32 - 1}, got {text}")
    return value


def _real(text: str, rule: str) -> float:
    """``float(text)``, or argparse's one-line refusal in ``rule``'s words (as ``_whole``)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{rule}, got {text}") from None


def _positive_float(text: str) -> float:
    value = _real(text, "must be a positive number")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _seconds(text: str) -> float:
    """A wait in seconds: positive, at most MAX_WAIT_S (a clock cannot hold a deadline 10^12 s away)."""
    value = _real(text, f"must be a number of seconds above 0 and at most {MAX_WAIT_S}")
    if not 0 < value <= MAX_WAIT_S:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most {MAX_WAIT_S}, got {text}")
    return value


def _below_one(text: str) -> float:
    value = _real(text, "must be at least 0 and below 1")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _real(text, "must be between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def path(text: str) -> str:
    """A file or folder name: never empty (a script's unset variable, ``--data "$DIR"``, is no folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = _Parser(
        prog="python -m training",
        description="Train, evaluate, export (SavedModel + ONNX), verify and register an MNIST model version. "
        "Manage versions with `python -m training registry list | promote N | rollback`; compare optimisers "
        "with `python -m training compare`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--registry", type=path, default=d.registry, help="registry root; versions go to <registry>/mnist/<N>/"
    )
    p.add_argument("--data", type=path, default=d.data, help="folder with mnist.npz or the four MNIST IDX files")
    _add_recipe_flags(p, d)
    p.add_argument("--seed", type=seed, default=d.seed, help="seed for splits, initialisation and augmentation")
    # On/off pairs: --help then reads "--augment, --no-augment ... (default: True)", not "--no-augment (default:
    # True)", which looked like augmentation being off.
    onoff = argparse.BooleanOptionalAction
    p.add_argument("--augment", action=onoff, default=True, help="shift/rotate/zoom the training digits")
    p.add_argument(
        "--restroke",
        type=_fraction,
        default=d.restroke,
        help="share of the training digits added again, redrawn as a drawing app draws them (one round brush along "
        "the pen's path), so drawn digits read like written ones; 0: none",
    )
    p.add_argument(
        "--outlier-exposure",
        action=onoff,
        default=True,
        help="synthetic non-digits teach the model to be unsure on them (off: train on digits only)",
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
        type=path,
        default=d.ood_data,
        help="folder of non-digit IDX images (Fashion-MNIST) for the not_a_digit refusal rate; skipped if absent",
    )
    p.add_argument("--promote", action=onoff, default=True, help="make the new version production (off: only register)")
    p.add_argument("--download-timeout", type=_seconds, default=d.download_timeout, help="seconds before going offline")
    p.add_argument(
        "--tensorboard",
        type=path,
        metavar="DIR",
        default=d.tensorboard,
        help="write TensorBoard logs (loss, accuracy, learning rate per epoch) to DIR; view: tensorboard --logdir DIR",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK['epochs']} epochs on {QUICK['limit']} images, small evaluation, an accuracy floor "
        f"of {100 * QUICK['accuracy_floor']:.0f} %% (for tests); flags given explicitly still win",
    )
    return p


def _add_recipe_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The network and how it is optimised: the seed's knobs."""
    models = "; ".join(f"{a.name}: {a.summary}" for a in ARCHITECTURES.values())
    p.add_argument("--model", choices=list(ARCHITECTURES), default=d.model, help=f"network to train ({models})")
    p.add_argument("--epochs", type=_positive_int, default=d.epochs, help="training epochs (at most)")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size, help="training batch size")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default=d.optimizer, help="Keras optimiser")
    rates = ", ".join(f"{name} {rate:g}" for name, rate in OPTIMIZERS.items())
    p.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=None,
        help=f"initial learning rate; %(default)s: Keras's default for the optimiser ({rates})",
    )
    p.add_argument("--momentum", type=_below_one, default=d.momentum, help="momentum of sgd or rmsprop")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd with --momentum > 0)")
    p.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=d.lr_schedule,
        help="cosine: decay to 5 %% over the epochs; constant; step: x0.1 at half and at three quarters",
    )
    p.add_argument(
        "--early-stopping",
        type=_positive_int,
        metavar="PATIENCE",
        default=d.early_stopping,
        help="stop after PATIENCE epochs without a lower validation loss and keep the best epoch's weights",
    )
    p.add_argument(
        "--label-smoothing", type=_below_one, default=d.label_smoothing, help="share of each digit target spread evenly"
    )
    p.add_argument(
        "--ema",
        action="store_true",
        help="keep the exponential moving average of the weights (momentum 0.99, the last ~100 steps) instead of "
        "the last step's; needs a run of thousands of steps, not --quick",
    )


# --quick's values, used where the flag is not given explicitly.
# Its floor is twice what guessing gets: a rate too large to learn anything (adam at 10: 10 % right) made a version
# no better than a die production of an empty registry, while the loss stayed a number.
QUICK = {"epochs": 8, "limit": 2000, "robustness_samples": 200, "parity_samples": 200, "accuracy_floor": 0.2}


def _combination_error(args: argparse.Namespace) -> str | None:
    """Flags that are valid alone but make no sense together."""
    if args.nesterov and args.optimizer != "sgd":
        return f"--nesterov is SGD's Nesterov momentum; it does not apply to --optimizer {args.optimizer}"
    if args.nesterov and args.momentum == 0:
        return "--nesterov needs a momentum: add --momentum, e.g. --momentum 0.9"
    if args.momentum and args.optimizer not in MOMENTUM_OPTIMIZERS:
        return f"--momentum applies to {' and '.join(MOMENTUM_OPTIMIZERS)}, not to --optimizer {args.optimizer}"
    if args.ema and args.early_stopping:
        # Keras restores the best epoch's own weights after fit has put the average in: the average never stays.
        return "--ema and --early-stopping: the best epoch's weights replace the average when fit ends; choose one"
    if args.adversarial and args.adversarial_epsilon == 0:
        return "--adversarial with --adversarial-epsilon 0 attacks nothing: give a radius above 0 (default 0.1)"
    if args.adversarial and (args.early_stopping or args.tensorboard):
        return "--early-stopping and --tensorboard need Keras fit; the --adversarial loop supports neither"
    if args.tensorboard is not None and Path(args.tensorboard).exists() and not Path(args.tensorboard).is_dir():
        return f"--tensorboard {args.tensorboard}: exists and is not a folder"
    if args.tensorboard is not None and importlib.util.find_spec("tensorboard") is None:
        return "--tensorboard needs the tensorboard package (in the train extra): pip install tensorboard"
    if args.data is not None and not Path(args.data).is_dir():
        return f"--data {args.data}: " + (
            "a file; give the folder that holds mnist.npz" if Path(args.data).exists() else "no such folder"
        )
    return None


def parse_config(argv: list[str]) -> TrainConfig:
    parser = build_parser()
    if "--quick" in argv:
        # A smoke model may become production of an empty registry if it reads digits, never over a better one.
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    problem = _combination_error(args)
    if problem:
        parser.error(problem)
    if args.learning_rate is None:
        args.learning_rate = OPTIMIZERS[args.optimizer]
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
