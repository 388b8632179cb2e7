"""The guards' decision at its calibrated thresholds: a score equal to a threshold is answered, one past it is
refused, any one detector is enough, and a non-digit is never called adversarial. Built on a hand-made
guards.json whose scores are exact binary fractions, so "equal" means equal."""

from __future__ import annotations

import numpy as np
import pytest

from digits.guards import NOT_A_DIGIT, REFUSALS, SUSPECTED_ADVERSARIAL, Guards, reconstruction_errors

K = 4  # feature width
PIXELS = 28 * 28
PCA_RANK = 3


def spec(**ood: object) -> dict:
    components = np.eye(PCA_RANK, PIXELS)  # the first three pixels span the "digit" subspace
    base = {
        "class_means": np.zeros((2, K)).tolist(),
        "precision": np.eye(K).tolist(),
        "threshold": 1.0,
        "pca_mean": np.zeros(PIXELS).tolist(),
        "pca_components": components.tolist(),
        "pca_threshold": 0.25,
        "min_confidence": 0.5,
    }
    return {"ood": {**base, **ood}, "adversarial": {"bit_depth": 1, "median_size": 2, "threshold": 0.5}}


def decide(
    guards: Guards, *, feature: float = 0.0, off_subspace: float = 0.0, top: float = 0.75, squeezed: float = 0.0
) -> str | None:
    """The refusal for one input whose Mahalanobis score is feature², reconstruction error off_subspace²,
    top probability ``top`` and squeeze score 2 x ``squeezed``."""
    image = np.zeros((1, 28, 28, 1), dtype=np.float32)
    image[0, 0, 0, 0] = 1.0  # on the subspace: no reconstruction error
    image[0, 0, PCA_RANK, 0] = off_subspace
    p = np.array([top] + [(1 - top) / 9] * 9)
    p_bits = p + np.array([squeezed, -squeezed] + [0.0] * 8)
    probs = np.stack([p, p_bits, p])
    features = np.zeros((3, K))
    features[0, 0] = feature
    _, codes, _ = guards.refusal_codes(image, probs, features)
    return REFUSALS[int(codes[0])]


@pytest.fixture()
def guards() -> Guards:  # built per test: every test then counts as a test of Guards.__init__
    return Guards(spec())


def test_an_ordinary_digit_is_answered(guards: Guards) -> None:
    assert decide(guards) is None


@pytest.mark.parametrize(
    ("at", "past"),
    [
        ({"feature": 1.0}, {"feature": 1.25}),  # Mahalanobis 1.0 vs 1.5625, threshold 1.0
        ({"off_subspace": 0.5}, {"off_subspace": 0.625}),  # reconstruction 0.25 vs 0.390625, threshold 0.25
        ({"top": 0.5}, {"top": 0.4375}),  # confidence floor 0.5
    ],
    ids=["mahalanobis", "reconstruction", "confidence"],
)
def test_each_detector_alone_refuses_past_its_threshold_only(guards: Guards, at: dict, past: dict) -> None:
    assert decide(guards, **at) is None
    assert decide(guards, **past) == NOT_A_DIGIT


def test_squeezing_refuses_past_its_threshold_only(guards: Guards) -> None:
    assert decide(guards, squeezed=0.25) is None  # L1 distance 0.5, threshold 0.5
    assert decide(guards, squeezed=0.375) == SUSPECTED_ADVERSARIAL


def test_a_non_digit_is_not_called_adversarial(guards: Guards) -> None:
    assert decide(guards, feature=2.0, squeezed=0.375) == NOT_A_DIGIT


def test_an_image_on_the_digit_subspace_has_no_reconstruction_error() -> None:
    image = np.zeros((1, 28, 28, 1), dtype=np.float32)
    image[0, 0, :PCA_RANK, 0] = [0.25, 0.5, 0.75]
    assert reconstruction_errors(image, np.zeros(PIXELS), np.eye(PCA_RANK, PIXELS)).tolist() == [0.0]


def test_the_squeezed_views_follow_the_spec() -> None:
    image = np.zeros((1, 28, 28, 1), dtype=np.float32)
    image[0, 10, 10, 0] = 0.75  # one bright pixel: 1 bit rounds it up, a 2x2 median removes it
    image[0, 20, 20, 0] = 0.25  # a faint one: 1 bit rounds it away
    rows = Guards(spec()).expand(image)
    assert rows.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(rows[0], image[0])
    assert rows[1, 10, 10, 0] == 1.0 and rows[1, 20, 20, 0] == 0.0
    assert rows[2].max() == 0.0


@pytest.mark.parametrize(
    ("ood", "message"),
    [
        ({"precision": np.eye(K + 1).tolist()}, "do not match"),
        ({"class_means": np.zeros(K).tolist()}, "do not match"),
        ({"pca_components": (np.eye(PCA_RANK, PIXELS) * 1.01).tolist()}, "orthonormal"),
    ],
    ids=["precision-size", "means-not-2d", "components-1pc-long"],
)
def test_a_guards_file_that_does_not_fit_is_refused(ood: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Guards(spec(**ood))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("ood", "threshold"),
        ("ood", "pca_threshold"),
        ("ood", "min_confidence"),
        ("adversarial", "threshold"),
        ("ood", "class_means"),
        ("ood", "precision"),
        ("ood", "pca_mean"),
        ("ood", "pca_components"),
    ],
)
def test_a_guards_file_with_a_non_finite_number_is_refused(section: str, key: str, value: float) -> None:
    """json.dumps writes NaN, and a NaN threshold would answer every input: noise included, silently."""
    guards = spec()
    figure = np.asarray(guards[section][key], dtype=np.float64)
    figure.flat[0] = value
    guards[section][key] = figure.tolist()
    with pytest.raises(ValueError, match=rf"{section}\.{key} must hold finite numbers only"):
        Guards(guards)


def test_every_non_finite_figure_is_named_in_one_refusal() -> None:
    guards = spec()
    guards["ood"]["threshold"] = guards["adversarial"]["threshold"] = float("nan")
    with pytest.raises(ValueError, match=r"^guards.json: ood.threshold, adversarial.threshold must hold finite"):
        Guards(guards)


def test_components_orthonormal_to_float32_rounding_are_accepted() -> None:
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(PIXELS, PCA_RANK)))
    nearly = q.T + 2e-5  # what a float32 PCA saved to JSON looks like, give or take
    Guards(spec(pca_components=nearly.tolist()))
