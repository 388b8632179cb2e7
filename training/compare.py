"""`python -m training compare`: the seed's MLP under four optimisers and the default CNN, side by side.

Every run uses the same split, seed and recipe as `python -m training` (augmentation, outlier exposure, the
cosine schedule, each optimiser's Keras learning rate) for a few epochs; a table goes to stdout and a Markdown
report with learning curves to ``reports/``. Nothing is registered unless ``--register`` is given, and then
every run becomes a version without being promoted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.report import Recipe
from training.config import TrainConfig, _Parser, _positive_int, parse_config, path, seed
from training.data import Splits
from training.failures import Stages, explain
from training.registry_cli import check_writable

if TYPE_CHECKING:
    from training.train import Fitted

# (label, flags): the seed's optimisers on its MLP, then the default network with the default optimiser.
RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mlp + adam", ("--model", "mlp", "--optimizer", "adam")),
    ("mlp + sgd", ("--model", "mlp", "--optimizer", "sgd")),
    ("mlp + sgd nesterov", ("--model", "mlp", "--optimizer", "sgd", "--momentum", "0.9", "--nesterov")),
    ("mlp + rmsprop", ("--model", "mlp", "--optimizer", "rmsprop")),
    ("cnn + adam", ("--model", "cnn", "--optimizer", "adam")),
)
REPORT_NAME = "compare.md"
CURVES_NAME = "compare_curves.png"


@dataclass(frozen=True)
class RunResult:
    label: str
    config: TrainConfig
    test_loss: float
    test_accuracy: float
    epochs_run: int
    seconds: float
    us_per_image: float
    history: dict[str, list[float]]
    version: int | None = None


DEFAULT_EPOCHS = 10


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m training compare",
        description="Train the seed's MLP with adam, sgd, sgd + Nesterov and rmsprop, and the default CNN with adam, "
        "on the same split and seed; print a table and write a Markdown report with learning curves.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--epochs", type=_positive_int, default=None, help="epochs of each run (default: 10, or --quick's)")
    p.add_argument("--seed", type=seed, default=0, help="one seed for the split and every run")
    p.add_argument("--data", type=path, default=None, help="folder with mnist.npz or the four MNIST IDX files")
    p.add_argument("--limit", type=_positive_int, default=None, help="use at most N training images")
    p.add_argument("--out", type=path, default="reports", help="folder for compare.md and compare_curves.png")
    p.add_argument("--register", action="store_true", help="also register every run as a version (never promoted)")
    p.add_argument("--quick", action="store_true", help="every run with the training CLI's --quick (for tests)")
    p.add_argument("--registry", type=path, default="models", help="registry root for --register")
    return p


def configs(args: argparse.Namespace) -> list[tuple[str, TrainConfig]]:
    """Each run's config, parsed like the training CLI's flags so the same checks apply."""
    epochs = args.epochs or (None if args.quick else DEFAULT_EPOCHS)  # --quick's own unless given
    common = ["--seed", str(args.seed), "--registry", args.registry, "--no-promote"]
    common += ["--epochs", str(epochs)] if epochs else []
    common += ["--data", args.data] if args.data else []
    common += ["--limit", str(args.limit)] if args.limit else []
    common += ["--quick"] if args.quick else []
    return [(label, parse_config([*common, *flags])) for label, flags in RUNS]


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runs = configs(args)  # every run's flags are checked before TensorFlow is imported
    out = Path(args.out)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    stages = Stages()
    stages.catch_interrupts()
    registered: list[int] = []
    try:
        stages.current = "the report folder check"
        out.mkdir(parents=True, exist_ok=True)
        if args.register:
            stages.current = "the registry check"
            check_writable(args.registry, None)  # in a second, not after the first run's fit
        results, data = _run_all(runs, registered if args.register else None, stages)
        _plot(results, out / CURVES_NAME)
        (out / REPORT_NAME).write_text(
            report(results, data, shlex.join(["python", "-m", "training", "compare", *argv]))
        )
    except BaseException as exc:  # Ctrl-C included
        if isinstance(exc, SystemExit):
            raise
        outcome = explain(exc, stages)
        earlier = ", ".join(str(v) for v in registered)
        line = outcome.line + (f" (earlier runs registered versions {earlier})" if earlier else "")
        print(line, file=sys.stderr)
        return outcome.exit_code
    print("\n" + markdown_table(results))
    print(f"\nreport: {out / REPORT_NAME}, learning curves: {out / CURVES_NAME}")
    return 0


def _run_all(
    runs: list[tuple[str, TrainConfig]], registered: list[int] | None, stages: Stages
) -> tuple[list[RunResult], dict[str, Any]]:
    """Fit and score every run on one split; with ``registered`` (a list) also register each, noting its number."""
    import keras

    from training import pipeline
    from training.data import load_splits

    first = runs[0][1]
    stages.enter("data")
    splits = load_splits(
        Path(first.data) if first.data else None, seed=first.seed, download_timeout_s=first.download_timeout
    )
    run_splits = splits.limited(first.limit)  # every run's --limit is the compare's own
    data = {"source": run_splits.source, "sizes": run_splits.sizes(), "sha256": run_splits.sha256()}
    results = []
    for i, (label, config) in enumerate(runs, start=1):
        stages.enter("fit", f"run {i} of {len(runs)}: {label}")
        keras.utils.clear_session()  # a fresh graph and the same layer names for every run
        result, fitted = _one_run(label, config, run_splits)
        if registered is not None:
            stages.enter("registration", label)
            version = pipeline.finish(config, run_splits, fitted, stages)["version"]
            registered.append(version)
            result = replace(result, version=version)
            stages.registered = None  # the next run's failure must not claim this version as its own
        results.append(result)
        print(
            f"  {label}: {result.epochs_run} epochs in {result.seconds:.1f} s, test loss {result.test_loss:.4f}, "
            f"accuracy {100 * result.test_accuracy:.2f} %, {result.us_per_image:.1f} µs/image",
            flush=True,
        )
    return results, data


def _one_run(label: str, config: TrainConfig, splits: Splits) -> tuple[RunResult, Fitted]:
    """Fit, score on the test digits, and time the ONNX export on one CPU thread like every version's card."""
    from training import evaluate, export
    from training.train import fit, served_input, version_preprocessing

    fitted = fit(splits, config, verbose=0)
    x_test = served_input(splits.x_test, version_preprocessing(config))
    probs, _ = evaluate.predict(fitted.model, x_test)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "model.onnx"
        export.export_onnx(fitted.model, onnx)
        latency = export.onnx_latency_us(onnx, x_test[:64])["batch_64"]
    result = RunResult(
        label=label,
        config=config,
        test_loss=evaluate.cross_entropy(probs, splits.y_test),
        test_accuracy=float((probs.argmax(1) == splits.y_test).mean()),
        epochs_run=len(fitted.history["loss"]),
        seconds=fitted.seconds,
        us_per_image=latency,
        history=fitted.history,
    )
    return result, fitted


def markdown_table(results: list[RunResult]) -> str:
    registered = any(r.version is not None for r in results)
    head = "| run | recipe | test loss | test accuracy | epochs | seconds | µs / image (batch 64) |"
    rows = [head + (" version |" if registered else ""), "|---" * (7 + registered) + "|"]
    for r in results:
        recipe = Recipe.from_config(r.config.to_dict()).summary()
        row = (
            f"| {r.label} | {recipe} | {r.test_loss:.4f} | {100 * r.test_accuracy:.2f} % | {r.epochs_run} | "
            f"{r.seconds:.1f} | {r.us_per_image:.1f} |"
        )
        rows.append(row + (f" {r.version} |" if registered else ""))
    return "\n".join(rows)


def report(results: list[RunResult], data: dict[str, Any], command: str) -> str:
    sizes = data["sizes"]
    return "\n".join(
        [
            "# Optimiser and network comparison",
            "",
            f"- Made {datetime.now(UTC).isoformat(timespec='seconds')} by `{command}`",
            f"- Data: `{data['source']}`, train {sizes['train']}, validation {sizes['validation']}, "
            f"test {sizes['test']} (sha256 `{data['sha256'][:16]}…`); the same split and seed for every run",
            "- Every run: augmentation, outlier exposure, the optimiser's Keras learning rate with a cosine decay. "
            "Test loss: mean cross-entropy of the true digit; the training loss also holds the synthetic "
            "non-digits' flat-target term, so it sits above the validation loss. "
            "µs / image: onnxruntime, one CPU thread, batch 64.",
            "",
            markdown_table(results),
            "",
            f"![learning curves]({CURVES_NAME})",
            "",
        ]
    )


def _plot(results: list[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        epochs = range(1, len(r.history["loss"]) + 1)
        (line,) = loss_ax.plot(epochs, r.history["val_loss"], label=r.label)
        loss_ax.plot(epochs, r.history["loss"], linestyle=":", color=line.get_color())
        acc_ax.plot(epochs, r.history["val_accuracy"], label=r.label, color=line.get_color())
    loss_ax.set_title("loss (solid: validation, dotted: training)")
    acc_ax.set_title("validation accuracy")
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    acc_ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
