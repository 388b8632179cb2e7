"""MODEL_CARD.md: the version's figures for a human reader."""

from __future__ import annotations

from typing import Any

from registry import ModelMetadata


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _comparison(meta: ModelMetadata) -> list[str]:
    m = meta.metrics
    ref = m.get("compared_with")
    if not ref:
        return []
    eps = list(m["fgsm"])

    def row(name: str, training: str | None, clean: float, fgsm: dict[str, float]) -> str:
        return (
            f"| {name} | {training or 'plain'} | {_pct(clean)} | " + " | ".join(_pct(fgsm.get(e)) for e in eps) + " |"
        )

    return [
        f"### Compared with production version {ref['version']} on the same digits",
        "",
        "| model | training | clean accuracy | " + " | ".join(f"FGSM eps {e}" for e in eps) + " |",
        "|---|---|---|" + "---|" * len(eps),
        row("this version", meta.training_config.get("adversarial"), m["test_accuracy"], m["fgsm"]),
        row(f"production v{ref['version']}", ref.get("adversarial"), ref["test_accuracy"], ref["fgsm"]),
        "",
    ]


def render(meta: ModelMetadata, version: int | str) -> str:
    """The card of one version, from the metadata it is published with."""
    lines = [
        f"# MNIST model card: version {version}",
        "",
        *_about(meta),
        *_accuracy(meta),
        *_robustness(meta),
        *_comparison(meta),
        *_guards(meta),
        *_speed_and_parity(meta.metrics),
        "## Promotion",
        "",
        f"The gate's verdict at registration: {meta.promotion.get('reason', 'n/a')}. Whether this version serves is "
        "the registry's `production` alias (`GET /models`, `python -m training registry list`).",
        "",
    ]
    return "\n".join(lines)


def _about(meta: ModelMetadata) -> list[str]:
    cfg, data, prep = meta.training_config, meta.data, meta.preprocessing
    shape = ",".join("N" if d is None else str(d) for d in meta.input.shape)
    outputs = ", ".join(
        f"`{spec.name}` [{','.join('N' if d is None else str(d) for d in spec.shape or ())}]"
        for spec in meta.outputs.values()
    )
    return [
        f"- Network: `{cfg['model']}`, {meta.parameters or '?'} parameters; adversarial training: {_adversarial(cfg)}",
        f"- Trained: {meta.created} from commit `{meta.git_commit or 'unknown'}`; seed {cfg['seed']}, "
        f"augmentation {'on' if cfg['augment'] else 'off'}{_redrawn(cfg.get('restroke') or 0.0)}; "
        f"outlier exposure {'off' if cfg.get('outlier_exposure') is False else 'on'}"
        f"{'; a --quick smoke run' if cfg.get('quick') else ''}",
        f"- Recipe: {meta.recipe.summary()}{_epochs_run(meta)}",
        f"- Data: `{data['source']}` — train {data['sizes']['train']}, validation {data['sizes']['validation']}, "
        f"test {data['sizes']['test']} (sha256 `{data['sha256'][:16]}…`)",
        f"- Input: `{meta.input.name}` {meta.input.dtype} [{shape}], pixel/{round(1 / prep.pixel_scale, 6):g}, "
        f"0 = background, 1 = ink; pictures are cropped to the ink, scaled to {prep.digit_box} px and centred "
        f"by mass on {prep.canvas}×{prep.canvas}; {_softening(prep.softening)}. Outputs: {outputs}.",
        "",
    ]


def _adversarial(cfg: dict[str, Any]) -> str:
    kind = cfg.get("adversarial")
    if not kind:
        return "none"
    return f"{kind}, epsilon {cfg['adversarial_epsilon']:g}" if "adversarial_epsilon" in cfg else kind


def _redrawn(share: float) -> str:
    return f"; {share:.0%} of the training digits added again redrawn with one round brush" if share else ""


def _softening(sigma: float) -> str:
    """What the service does to an input before this version sees it (augmentation off: nothing)."""
    if sigma <= 0:
        return "the service passes inputs unsoftened, as this version was trained without augmentation"
    return (
        f"the service softens every input by a Gaussian of {sigma:g} px first, as the augmentation blurs the "
        "training digits; the scores below are on test digits softened so, as the service presents them"
    )


def _epochs_run(meta: ModelMetadata) -> str:
    run, best = meta.training.get("epochs_run"), meta.training.get("best_epoch")
    if run is None or (run == meta.recipe.epochs and best is None):
        return ""
    return f"; ran {run} epochs" + (f", kept the weights of epoch {best}" if best else "")


def _accuracy(meta: ModelMetadata) -> list[str]:
    m, scores = meta.metrics, meta.evaluation
    loss = "not recorded" if scores.test_loss is None else f"{scores.test_loss:.4f}"
    return [
        "## Accuracy",
        "",
        f"Test loss (mean cross-entropy of the true digit) {loss}, test accuracy **{_pct(scores.test_accuracy)}**, "
        f"expected calibration error {m['ece']:.4f}.",
        "",
        "| digit | " + " | ".join(str(d) for d in range(10)) + " |",
        "|---|" + "---|" * 10,
        "| accuracy | " + " | ".join(_per_digit(m)) + " |",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "![training curves](training_curves.png)",
        "",
    ]


def _per_digit(m: dict[str, Any]) -> list[str]:
    """Each digit's accuracy; n/a for a digit the test digits do not hold (it read 0.0, as if every one were wrong)."""
    counts = [sum(row) for row in m["confusion_matrix"]] if "confusion_matrix" in m else [1] * 10
    return [f"{100 * a:.1f}" if n else "n/a" for a, n in zip(m["per_class_accuracy"], counts, strict=True)]


def _robustness(meta: ModelMetadata) -> list[str]:
    m = meta.metrics
    caught = m.get("guards", {}).get("fgsm_refused", {})
    return [
        "## Robustness (FGSM, L-infinity, on held-out digits)",
        "",
        "| epsilon | accuracy | refused by the adversarial/OOD guards |",
        "|---|---|---|",
        *(f"| {eps} | {_pct(acc)} | {_pct(caught.get(eps))} |" for eps, acc in m["fgsm"].items()),
        "",
        f"Measured on {m.get('robustness_images', '?')} held-out digits. No certified robustness is claimed.",
        "",
    ]


def _guards(meta: ModelMetadata) -> list[str]:
    g = meta.metrics.get("guards", {})
    return [
        "## Input guards (calibrated on validation digits)",
        "",
        f"- Real test digits refused: {_pct(g.get('test_digits_refused'))} "
        f"(target {_pct(meta.guards_calibration['target_false_rejection'])})",
        f"- Random-noise images refused: {_pct(g.get('noise_refused'))}",
        f"- Non-digit images ({_ood_source(meta.training_config)}) refused: {_pct(g.get('fashion_refused'))}",
        "- Blank canvases: refused before the model (`no_digit`)",
        "",
    ]


def _ood_source(cfg: dict[str, Any]) -> str:
    folder = cfg.get("ood_data")
    return f"the first 1,000 test images of `{folder}`" if folder else "none given: `--ood-data`"


def _speed_and_parity(m: dict[str, Any]) -> list[str]:
    parity = m["parity"]
    return [
        "## Speed (onnxruntime, CPU, one thread)",
        "",
        f"- {m['latency_us_per_image']['batch_1']} µs per image at batch 1, "
        f"{m['latency_us_per_image']['batch_64']} µs per image at batch 64",
        "",
        "## Runtime parity",
        "",
        f"Keras, SavedModel and ONNX agree on {parity['images']} digits: max abs difference "
        f"{max(parity['max_abs_diff_savedmodel'], parity['max_abs_diff_onnx']):.2e}, "
        f"{parity['argmax_mismatches']} argmax mismatches.",
        "",
    ]
