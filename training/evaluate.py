"""Evaluation written into the version: accuracy, calibration, robustness, guards, plots."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from digits.guards import (
    Guards,
    mahalanobis_scores,
    median_filter,
    reconstruction_errors,
    reduce_bit_depth,
    squeeze_scores,
)
from training.attacks import fgsm_numpy
from training.data import DataError, read_idx

FGSM_EPSILONS = (0.05, 0.1, 0.2)
BIT_DEPTH = 1
MEDIAN_SIZE = 2
PCA_COMPONENTS = 40


def predict(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, features = model.predict(x, batch_size=512, verbose=0)
    return np.asarray(probs), np.asarray(features)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the true digits: the seed's "Test loss". Plain, without label smoothing, so runs
    with and without smoothing compare; clipped at 1e-7 like the training loss."""
    true_p = probs[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(true_p, 1e-7, 1.0)).mean())


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    pred = probs.argmax(axis=1)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    per_class = [float(confusion[c, c] / max(1, confusion[c].sum())) for c in range(10)]
    return {
        "test_accuracy": float((pred == labels).mean()),
        "test_loss": cross_entropy(probs, labels),
        "per_class_accuracy": per_class,
        "ece": expected_calibration_error(probs, labels),
        "confusion_matrix": confusion.tolist(),
    }


def fgsm_robustness(classifier: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Adversarial copies of x for each epsilon (accuracy is computed by the caller)."""
    return {str(eps): fgsm_numpy(classifier, x, y, eps) for eps in FGSM_EPSILONS}


def calibrate_guards(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    target_false_rejection: float,
) -> dict[str, Any]:
    """Fit the Mahalanobis statistics on training features; set thresholds on held-out digits.

    The false-rejection budget is split between the two detectors (and the
    confidence floor), so together they refuse about ``target`` of real digits.
    """
    _, feats = predict(model, x_train)
    means = np.stack([feats[y_train == c].mean(axis=0) for c in range(10)])
    centred = feats - means[y_train]
    cov = centred.T @ centred / len(feats) + 1e-3 * np.eye(feats.shape[1])
    precision = np.linalg.inv(cov)

    flat = x_train.reshape(len(x_train), -1)
    pca_mean = flat.mean(axis=0)
    _, _, vt = np.linalg.svd(flat - pca_mean, full_matrices=False)
    components = vt[:PCA_COMPONENTS]

    # Four signals share the budget: Mahalanobis, PCA error, confidence, squeezing.
    share = target_false_rejection / 4.0
    probs_val, feats_val = predict(model, x_val)
    ood_val = mahalanobis_scores(feats_val, means, precision)
    recon_val = reconstruction_errors(x_val, pca_mean, components)
    views = np.concatenate([reduce_bit_depth(x_val, BIT_DEPTH), median_filter(x_val, MEDIAN_SIZE)])
    probs_views, _ = predict(model, views)
    n = len(x_val)
    squeeze_val = squeeze_scores(probs_val, probs_views[:n], probs_views[n:])
    spec = {
        "ood": {
            "method": "mahalanobis",
            "class_means": means.tolist(),
            "precision": precision.tolist(),
            "threshold": float(np.quantile(ood_val, 1.0 - share)),
            "pca_mean": pca_mean.tolist(),
            "pca_components": components.tolist(),
            "pca_threshold": float(np.quantile(recon_val, 1.0 - share)),
            "min_confidence": float(min(0.5, np.quantile(probs_val.max(axis=1), share))),
        },
        "adversarial": {
            "method": "feature_squeezing",
            "bit_depth": BIT_DEPTH,
            "median_size": MEDIAN_SIZE,
            "threshold": float(np.quantile(squeeze_val, 1.0 - share)),
        },
    }
    refused = refusals(Guards(spec), model, x_val)
    spec["calibration"] = {
        "target_false_rejection": target_false_rejection,
        "validation_false_rejection": float(np.mean([r is not None for r in refused])),
        "validation_images": int(n),
    }
    return spec


def refusals(guards: Guards, model: keras.Model, x: np.ndarray) -> list[str | None]:
    probs, feats = predict(model, guards.expand(x))
    _, verdicts = guards.judge(x, probs, feats)
    return [v.refusal for v in verdicts]


def refusal_rate(guards: Guards, model: keras.Model, x: np.ndarray) -> float:
    return float(np.mean([r is not None for r in refusals(guards, model, x)]))


def fashion_images(folder: Path | None) -> np.ndarray | None:
    """1,000 clothing images, uint8 [N, 28, 28], when a Fashion-MNIST copy is at hand (dataset-fashion-mnist)."""
    if folder is None or not folder.is_dir():
        return None
    try:
        return read_idx(next(folder.glob("t10k-images-idx3-ubyte*")))[:1000]
    except (StopIteration, OSError, DataError):
        return None


def plot_confusion(confusion: list[list[int]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    matrix = np.asarray(confusion)
    ax.imshow(matrix, cmap="Blues")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_title("Confusion matrix (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in ("loss", "val_loss"):
        if key in history:
            left.plot(history[key], label=key)
    for key in ("accuracy", "val_accuracy"):
        if key in history:
            right.plot(history[key], label=key)
    left.set_title("loss")
    right.set_title("accuracy")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
