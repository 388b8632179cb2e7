"""Training fails cleanly: each failure a user can cause or meet ends in one line saying what happened and that
nothing was registered, a non-zero exit, no staging folder left, and the registry exactly as it was."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from registry import layout
from tests.helpers import ROOT, TINY_TRAINING, registry_state, run_training, training_env


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_clean_failure(out: subprocess.CompletedProcess[str] | tuple[int, str], before: dict, root: Path) -> str:
    """Non-zero exit, no traceback, one closing line that says nothing was registered, registry unchanged."""
    code, err = (out.returncode, out.stderr) if isinstance(out, subprocess.CompletedProcess) else out
    assert code != 0
    assert "Traceback" not in err, err[-3000:]
    line = last_line(err)
    assert line.endswith("nothing was registered"), err[-3000:]
    assert registry_state(root) == before
    assert not [p for p in root.rglob(f"{layout.STAGING_PREFIX}*")]
    return line


def test_a_corrupt_mnist_npz_is_one_line_and_exit_2(registry_copy: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "mnist.npz", x_train=np.array([{"pickled": "object"}], dtype=object))  # what a user tripped on
    before = registry_state(registry_copy)
    out = run_training("--registry", str(registry_copy), "--data", str(data), *TINY_TRAINING, "--model", "mlp")
    line = assert_clean_failure(out, before, registry_copy)
    assert out.returncode == 2
    reason = "it holds pickled Python objects, which are never loaded"
    assert line == f"error: {data / 'mnist.npz'} is not a readable mnist.npz ({reason}); nothing was registered"


def test_a_learning_rate_that_makes_the_loss_nan_is_one_line_saying_what_to_change(
    registry_copy: Path,
) -> None:
    """A step size far too large is a user's mistake, not a bug: it ran every epoch on NaN, then failed in the guards'
    calibration with a traceback that never said the training had diverged."""
    before = registry_state(registry_copy)
    rate = ("--optimizer", "sgd", "--learning-rate", "1e38", "--lr-schedule", "constant")
    out = run_training("--registry", str(registry_copy), *TINY_TRAINING, "--model", "mlp", *rate)
    line = assert_clean_failure(out, before, registry_copy)
    assert out.returncode == 1
    assert line == (
        "error: training diverged: the loss became nan in epoch 1; lower --learning-rate (or use the optimizer's "
        "default); nothing was registered"
    )


def test_features_too_large_for_the_guards_statistics_are_divergence_though_the_loss_is_a_number(
    registry_copy: Path,
) -> None:
    """Adam at 1e9 (a review's run): the loss, of clipped probabilities, stayed a number while the features grew past
    what their covariance holds; the run ended in a traceback from the guards' calibration."""
    before = registry_state(registry_copy)
    out = run_training("--registry", str(registry_copy), "--quick", "--model", "mlp", "--learning-rate", "1e9")
    line = assert_clean_failure(out, before, registry_copy)
    assert out.returncode == 1
    assert line.startswith("error: training diverged: the network's features grew too large for the guards' statistics")
    assert line.endswith("lower --learning-rate (or use the optimizer's default); nothing was registered")


def test_an_mnist_npz_that_is_no_archive_is_named_so(registry_copy: Path, tmp_path: Path) -> None:
    """A web page saved as mnist.npz was said to hold pickled Python objects."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "mnist.npz").write_text("<html>404 Not Found</html>")
    out = run_training("--registry", str(registry_copy), "--data", str(data), *TINY_TRAINING, "--model", "mlp")
    assert out.returncode == 2
    reason = "it is not a zip archive, as an .npz is (a web page saved under that name?)"
    assert (
        last_line(out.stderr)
        == f"error: {data / 'mnist.npz'} is not a readable mnist.npz ({reason}); nothing was registered"
    )


@pytest.fixture()
def read_only_registry(registry_copy: Path) -> Iterator[tuple[Path, dict]]:
    """The registry copy made unwritable: a read-only bind mount when tests run as root (root writes through any
    permission bits; a read-only volume is how a registry is unwritable in a container), else mode 0555."""
    before = registry_state(registry_copy)
    folders = [registry_copy, *(p for p in registry_copy.rglob("*") if p.is_dir())]
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(registry_copy), str(registry_copy)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(registry_copy)], check=True)
    else:
        for folder in folders:
            folder.chmod(0o555)
    try:
        yield registry_copy, before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(registry_copy)], check=True)
        for folder in folders:
            folder.chmod(0o755)


def test_an_unwritable_registry_fails_in_one_line_before_any_training(read_only_registry: tuple[Path, dict]) -> None:
    registry, before = read_only_registry
    started = time.monotonic()
    out = run_training("--registry", str(registry), *TINY_TRAINING)
    line = assert_clean_failure(out, before, registry)
    assert out.returncode == 1
    staging = re.escape(f"{registry / layout.MODEL_NAME}/{layout.STAGING_PREFIX}")
    assert re.fullmatch(f"error: (Read-only file system|Permission denied): {staging}[0-9a-f]+ during the registry "
                        "check; nothing was registered", line), line  # fmt: skip
    assert time.monotonic() - started < 30  # refused before TensorFlow is even imported, not after fitting


@pytest.fixture()
def full_disk_registry(registry_copy: Path, tmp_path: Path) -> Iterator[tuple[Path, dict]]:
    """The registry copy on a tmpfs with 64 KiB to spare: a new version cannot fit, an existing one stays."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full disk) needs root; `make test` runs as root")
    mount = tmp_path / "disk"
    mount.mkdir()
    used = sum(p.stat().st_size for p in registry_copy.rglob("*") if p.is_file())
    size_kib = used // 1024 + 64 + 4 * len(list(registry_copy.rglob("*")))  # data, spare room, a page a file
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)], check=True)
    try:
        shutil.copytree(registry_copy, mount / "registry")
        yield mount / "registry", registry_state(mount / "registry")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_leaves_no_staging_folder(full_disk_registry: tuple[Path, dict]) -> None:
    registry, before = full_disk_registry
    out = run_training("--registry", str(registry), *TINY_TRAINING, "--model", "mlp")
    line = assert_clean_failure(out, before, registry)
    assert out.returncode == 1
    assert line.startswith("error: No space left on device") and "during export" in line, line


class LiveRun:
    """`python -m training` whose output is read as it comes, to interrupt it at a chosen moment."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "training", *args],
            cwd=ROOT,
            env=training_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout = ""
        self.stderr = ""
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, "stderr"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: object, name: str) -> None:
        for chunk in iter(lambda: stream.readline(), ""):  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + chunk)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stdout:
            assert self.process.poll() is None, f"ended before {text!r}: {self.stdout[-2000:]}{self.stderr[-2000:]}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s"
            time.sleep(0.05)

    def interrupt(self, stop: signal.Signals = signal.SIGINT) -> tuple[int, str]:
        """Ctrl-C as a terminal sends it (or the SIGTERM of `docker stop`); returns the exit code and stderr."""
        self.process.send_signal(stop)
        code = self.process.wait(timeout=120)
        for reader in self._readers:
            reader.join(timeout=10)
        return code, self.stderr


def test_ctrl_c_during_fitting_is_one_line_and_exit_130(registry_copy: Path) -> None:
    before = registry_state(registry_copy)
    run = LiveRun("--registry", str(registry_copy), *TINY_TRAINING, "--model", "mlp", "--epochs", "30")
    run.wait_for("Epoch 2/")
    result = run.interrupt()
    assert result[0] == 130, result[1][-3000:]
    assert assert_clean_failure(result, before, registry_copy) == "interrupted during fit; nothing was registered"


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_stop_during_export_removes_the_half_written_version(
    registry_copy: Path, stop: signal.Signals, code: int
) -> None:
    """Ctrl-C, or the SIGTERM that Kubernetes (the training CronJob's deadline) and `docker stop` send."""
    before = registry_state(registry_copy)
    run = LiveRun("--registry", str(registry_copy), *TINY_TRAINING, "--model", "mlp")
    run.wait_for("[export]")
    staging = registry_copy / layout.MODEL_NAME
    deadline = time.monotonic() + 60
    # Interrupt once the export has written its first file into the staging folder.
    while not any(staging.glob(f"{layout.STAGING_PREFIX}*/{layout.KERAS_FILE}")) and time.monotonic() < deadline:
        time.sleep(0.02)
    result = run.interrupt(stop)
    assert result[0] == code, result[1][-3000:]
    assert assert_clean_failure(result, before, registry_copy) == "interrupted during export; nothing was registered"
