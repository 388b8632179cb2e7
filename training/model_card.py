"""MODEL_CARD.md: the version's figures for a human reader."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _comparison(meta: dict[str, Any]) -> list[str]:
    ref = meta["metrics"].get("compared_with")
    if not ref:
        return []
    m = meta["metrics"]
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
        row("this version", meta["training_config"].get("adversarial"), m["test_accuracy"], m["fgsm"]),
        row(f"production v{ref['version']}", ref.get("adversarial"), ref["test_accuracy"], ref["fgsm"]),
        "",
    ]


def render(meta: dict[str, Any], version: int | str) -> str:
    m = meta["metrics"]
    cfg = meta["training_config"]
    data = meta["data"]
    g = m.get("guards", {})
    lines = [
        f"# MNIST model card: version {version}",
        "",
        f"- Network: `{cfg['model']}`, {meta.get('parameters', '?')} parameters; "
        f"adversarial training: {cfg.get('adversarial') or 'none'}",
        f"- Trained: {meta['created']} from commit `{meta.get('git_commit') or 'unknown'}`; "
        f"{cfg['epochs']} epochs, seed {cfg['seed']}, augmentation {'on' if cfg['augment'] else 'off'}",
        f"- Data: `{data['source']}` — train {data['sizes']['train']}, validation {data['sizes']['validation']}, "
        f"test {data['sizes']['test']} (sha256 `{data['sha256'][:16]}…`)",
        "- Input: `image` float32 [N,28,28,1], pixel/255, 0 = background, 1 = ink. "
        "Outputs: `probabilities` [N,10], `features` [N,K].",
        "",
        "## Accuracy",
        "",
        f"Test accuracy **{_pct(m['test_accuracy'])}**, expected calibration error {m['ece']:.4f}.",
        "",
        "| digit | " + " | ".join(str(d) for d in range(10)) + " |",
        "|---|" + "---|" * 10,
        "| accuracy | " + " | ".join(f"{100 * a:.1f}" for a in m["per_class_accuracy"]) + " |",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "![training curves](training_curves.png)",
        "",
        "## Robustness (FGSM, L-infinity, on held-out digits)",
        "",
        "| epsilon | accuracy | refused by the adversarial/OOD guards |",
        "|---|---|---|",
    ]
    for eps, acc in m["fgsm"].items():
        caught = g.get("fgsm_refused", {}).get(eps)
        lines.append(f"| {eps} | {_pct(acc)} | {_pct(caught)} |")
    lines += [
        "",
        f"Measured on {m.get('robustness_images', '?')} held-out digits. No certified robustness is claimed.",
        "",
        *_comparison(meta),
        "## Input guards (calibrated on validation digits)",
        "",
        f"- Real test digits refused: {_pct(g.get('test_digits_refused'))} "
        f"(target {_pct(meta['guards_calibration']['target_false_rejection'])})",
        f"- Random-noise images refused: {_pct(g.get('noise_refused'))}",
        f"- Clothing images (Fashion-MNIST test, 1,000) refused: {_pct(g.get('fashion_refused'))}",
        "- Blank canvases: refused before the model (`no_digit`)",
        "",
        "## Speed (onnxruntime, CPU, one thread)",
        "",
        f"- {m['latency_us_per_image']['batch_1']} µs per image at batch 1, "
        f"{m['latency_us_per_image']['batch_64']} µs per image at batch 64",
        "",
        "## Runtime parity",
        "",
        f"Keras, SavedModel and ONNX agree on {m['parity']['images']} digits: max abs difference "
        f"{max(m['parity']['max_abs_diff_savedmodel'], m['parity']['max_abs_diff_onnx']):.2e}, "
        f"{m['parity']['argmax_mismatches']} argmax mismatches.",
        "",
        "## Promotion",
        "",
        f"{meta.get('promotion', {}).get('reason', 'n/a')}",
        "",
    ]
    return "\n".join(lines)
