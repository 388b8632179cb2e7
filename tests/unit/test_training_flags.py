"""The training flags (checked before TensorFlow is imported), the architectures' one list, and the one line
every failed run ends with."""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from registry import CorruptVersion
from training import architectures
from training.config import OPTIMIZERS, QUICK, build_parser, parse_config
from training.data import DataError
from training.failures import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, ParityError, Stages, explain


def test_the_seed_recipe_flags_land_in_the_config() -> None:
    recipe = "--model mlp --optimizer sgd --momentum 0.9 --nesterov --epochs 5 --batch-size 128 --lr-schedule constant"
    config = parse_config([*recipe.split(), "--early-stopping", "3", "--label-smoothing", "0.1"])
    assert (config.model, config.optimizer, config.momentum, config.nesterov) == ("mlp", "sgd", 0.9, True)
    assert (config.epochs, config.batch_size, config.lr_schedule) == (5, 128, "constant")
    assert (config.early_stopping, config.label_smoothing) == (3, 0.1)
    assert config.to_dict()["optimizer"] == "sgd"


def test_the_on_off_flags_are_on_by_default_and_help_shows_both_forms() -> None:
    """--help said "--no-augment ... (default: True)", which reads as augmentation being off."""
    on, off = parse_config([]), parse_config(["--no-augment", "--no-outlier-exposure", "--no-promote"])
    assert (on.augment, on.outlier_exposure, on.promote) == (True, True, True)
    assert (off.augment, off.outlier_exposure, off.promote) == (False, False, False)
    text = " ".join(build_parser().format_help().split())
    for flag in ("augment", "outlier-exposure", "promote"):
        assert f"--{flag}, --no-{flag}" in text


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_an_unset_learning_rate_is_the_optimisers_keras_default(optimizer: str) -> None:
    assert parse_config(["--optimizer", optimizer]).learning_rate == OPTIMIZERS[optimizer]
    assert parse_config(["--optimizer", optimizer, "--learning-rate", "0.05"]).learning_rate == 0.05


def test_defaults_are_the_recipe_versions_were_trained_with_before_the_flags() -> None:
    config = parse_config([])
    assert (config.optimizer, config.learning_rate, config.lr_schedule) == ("adam", 1e-3, "cosine")
    assert (config.early_stopping, config.label_smoothing, config.momentum, config.nesterov) == (None, 0.0, 0.0, False)
    assert config.ema is False and parse_config(["--ema"]).ema is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nesterov", "--optimizer", "adam", "--momentum", "0.9"], "does not apply to --optimizer adam"),
        (["--nesterov", "--optimizer", "sgd"], "--nesterov needs a momentum"),
        (["--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to sgd and rmsprop"),
        (["--learning-rate", "-0.1"], "must be a positive number, got -0.1"),
        (["--learning-rate", "nan"], "must be a positive number"),
        (["--momentum", "1.5", "--optimizer", "sgd"], "at least 0 and below 1"),
        (["--label-smoothing", "1"], "at least 0 and below 1"),
        (["--early-stopping", "0"], "positive integer"),
        (["--seed", "-1"], r"must be an integer in 0..4294967295, got -1"),  # numpy's seeds are unsigned 32-bit
        (["--seed", "4294967296"], r"must be an integer in 0..4294967295"),
        (["--lr-schedule", "exponential"], "invalid choice"),
        (["--optimizer", "adagrad"], "invalid choice"),
        (["--adversarial", "--early-stopping", "3"], "--adversarial loop supports neither"),
        (["--epochs", "2.5"], r"argument --epochs: must be a positive integer, got 2.5"),  # was "invalid _positive_int"
        (["--seed", "x"], r"argument --seed: must be an integer in 0..4294967295, got x"),
        (["--adversarial", "--adversarial-epsilon", "0"], "attacks nothing"),  # the card said "adversarial training"
        (["--model", "resnet"], "invalid choice"),
        (
            ["--learning-rate", "abc"],
            "argument --learning-rate: must be a positive number, got abc",
        ),  # not the type's name
        (["--momentum", "x", "--optimizer", "sgd"], "argument --momentum: must be at least 0 and below 1, got x"),
        # A script's unset variable (--data "$DIR") is no folder: it ran offline, or published into the working folder.
        (["--registry", ""], "argument --registry: must not be empty"),
        (["--data", " "], "argument --data: must not be empty"),
        (["--tensorboard", ""], "argument --tensorboard: must not be empty"),
        (["--ood-data", ""], "argument --ood-data: must not be empty"),
        (["--download-timeout", "1e12"], "above 0 and at most 3600, got 1e12"),  # a traceback from the clock before
    ],
)
def test_nonsense_gives_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.count("\n") == 1 and err.startswith("python -m training: error:") and message in err


def test_a_tensorboard_path_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "logs").write_text("")
    with pytest.raises(SystemExit):
        parse_config(["--tensorboard", str(tmp_path / "logs")])
    assert "exists and is not a folder" in capsys.readouterr().err


def test_quick_mode_keeps_flags_given_explicitly() -> None:
    quick = parse_config(["--quick"])
    assert (quick.epochs, quick.limit, quick.accuracy_floor) == (QUICK["epochs"], QUICK["limit"], 0.2)
    tiny = parse_config(["--quick", "--epochs", "1", "--limit", "300", "--accuracy-floor", "0.5"])
    assert (tiny.epochs, tiny.limit, tiny.accuracy_floor) == (1, 300, 0.5)


def test_model_choices_and_help_come_from_the_one_list_of_architectures() -> None:
    action = next(a for a in build_parser()._actions if "--model" in a.option_strings)
    assert list(action.choices) == list(architectures.ARCHITECTURES)
    assert {"cnn", "mlp", "cnn_bn"} <= set(architectures.ARCHITECTURES)
    for arch in architectures.ARCHITECTURES.values():
        assert arch.summary in (action.help or "")


def test_an_architecture_name_is_registered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(architectures, "ARCHITECTURES", dict(architectures.ARCHITECTURES))
    with pytest.raises(ValueError, match="registered twice"):
        architectures.architecture("mlp", "again")(lambda inputs: inputs)


def _stages(current: str, registered: int | None = None) -> Stages:
    stages = Stages()
    stages.current, stages.registered = current, registered
    return stages


@pytest.mark.parametrize(
    ("exc", "stage", "code", "words"),
    [
        (KeyboardInterrupt(), "fit", EXIT_INTERRUPTED, "interrupted during fit; nothing was registered"),
        (KeyboardInterrupt(), "export", EXIT_INTERRUPTED, "interrupted during export; nothing was registered"),
        (DataError("/d/mnist.npz is not a readable mnist.npz (x)"), "data", EXIT_BAD_INPUT, "/d/mnist.npz is not"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/m/mnist/.staging-1/model.onnx"),
            "export",
            EXIT_FAILED,
            "No space left on device: /m/mnist/.staging-1/model.onnx (free some space and run again) during export",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "/m/mnist"), "the registry check", EXIT_FAILED,
         "Permission denied: /m/mnist during the registry check"),
        (RuntimeError("write failed: No space left on device"), "export", EXIT_FAILED, "No space left on device"),
        (CorruptVersion("refusing to publish"), "registration", EXIT_FAILED, "registry refused the version"),
        (ParityError("runtimes disagree on 200 test digits"), "export", EXIT_FAILED, "export parity check failed"),
    ],
)  # fmt: skip
def test_every_known_failure_is_one_line_saying_nothing_was_registered(
    exc: BaseException, stage: str, code: int, words: str
) -> None:
    outcome = explain(exc, _stages(stage))
    assert outcome.expected and outcome.exit_code == code
    assert words in outcome.line and outcome.line.endswith("nothing was registered") and "\n" not in outcome.line


def test_a_failure_after_publishing_says_the_version_exists() -> None:
    outcome = explain(KeyboardInterrupt(), _stages("promotion", registered=7))
    assert outcome.line == "interrupted during promotion; version 7 was registered but not promoted"


def test_an_unexpected_error_is_still_one_closing_line_but_marked_as_a_bug() -> None:
    outcome = explain(ZeroDivisionError("division by zero"), _stages("evaluation"))
    assert not outcome.expected and outcome.exit_code == EXIT_FAILED
    assert outcome.line == "error: ZeroDivisionError during evaluation: division by zero; nothing was registered"


def test_an_error_that_follows_a_ctrl_c_still_ends_as_interrupted() -> None:
    stages = _stages("export")
    stages.interrupted = True  # what the Ctrl-C handler records before raising
    outcome = explain(RuntimeError("Function raised an unexpected exception"), stages)
    assert (outcome.exit_code, outcome.expected) == (EXIT_INTERRUPTED, True)
    assert outcome.line == "interrupted during export; nothing was registered"


class _InterruptedWhileCollected:
    """An object whose ``__del__`` is running when Ctrl-C arrives, as TensorFlow's resources often are."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here, inside __del__, where Python ignores what it raises


# pytest turns what reaches sys.unraisablehook into this warning: here an error, so a Ctrl-C printed with its
# traceback ("Exception ignored in ...") fails the test.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_by_a_finaliser_still_stops_the_run_before_the_next_stage_without_a_traceback() -> None:
    stages = _stages("export")
    previous, previous_hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    try:
        stages.catch_interrupts()
        _InterruptedWhileCollected()  # collected at once: the KeyboardInterrupt is "ignored" in __del__
        with pytest.raises(KeyboardInterrupt):
            stages.enter("registration")
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
    assert explain(KeyboardInterrupt(), stages).line == "interrupted during export; nothing was registered"


def test_a_sigterm_ends_the_run_as_ctrl_c_does_with_its_own_exit_code() -> None:
    """What Kubernetes sends at the training job's deadline, and `docker stop`: the same clean end as Ctrl-C."""
    stages = _stages("export")
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    previous_hook = sys.unraisablehook
    try:
        stages.catch_interrupts()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        sys.unraisablehook = previous_hook
    outcome = explain(KeyboardInterrupt(), stages)
    assert (outcome.line, outcome.exit_code) == ("interrupted during export; nothing was registered", 143)


def test_a_sigterm_after_the_version_is_registered_does_not_fail_the_run() -> None:
    """The summary is printed and TensorFlow still tears down for a second or two: a SIGTERM then (a Job's
    deadline) gave exit 143 with no line, for a version that was registered and promoted."""
    stages = _stages("registration", registered=3)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    previous_hook = sys.unraisablehook
    try:
        stages.catch_interrupts()
        stages.finished()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # a handler still in place would raise here
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        sys.unraisablehook = previous_hook
    assert not stages.interrupted


def test_compare_quick_runs_take_quick_epochs_unless_told() -> None:
    """`compare --quick` says it uses the training CLI's --quick, and passed its own 10 epochs over it."""
    from training.compare import build_parser, configs

    def epochs(*argv: str) -> set[int]:
        return {config.epochs for _, config in configs(build_parser().parse_args(list(argv)))}

    assert epochs("--quick") == {QUICK["epochs"]}
    assert epochs() == {10} and epochs("--quick", "--epochs", "2") == {2}
