"""A version's model card as an HTML page: MODEL_CARD.md with its plots, a robustness chart, the registry's versions.

Everything here comes from the registry, which training (or whoever can write the folder) fills: it is shown
as text, never run as markup. markdown-it-py renders the card with raw HTML off (a ``<script>`` in the card
shows as text) and keeps only the link schemes it deems safe (no ``javascript:``); an image is shown only
when it names a plot published with the version, served by ``GET /models/{version}/files/{name}``. Whatever
else from the registry goes into the page (versions, aliases, dates, figures) passes through
``html.escape`` or ``float``. The page's Content-Security-Policy (``routes_pages``) is the second line:
even markup that slipped through could run no script. Plain functions, no HTTP.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from html import escape
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from registry import ModelMetadata, VersionInfo

# A plot the card may show: a plain PNG file name at the top of the version folder.
PLOT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.png")
# CommonMark with tables (the card's accuracy and robustness tables); "html": False escapes raw HTML.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def plot_url(version: int, name: str) -> str:
    return f"/models/{version}/files/{name}"


def _show_only_published_plots(tokens: Sequence[Token], version: int, published: Collection[str]) -> None:
    """Point each image at the version's plot route, or turn it into its alt text when it names anything
    else (another site, another folder, a file the version was not published with)."""
    for token in tokens:
        for child in token.children or ():
            if child.type != "image":
                continue
            src = str(child.attrGet("src") or "")
            if src in published and PLOT_NAME.fullmatch(src):
                child.attrSet("src", plot_url(version, src))
                child.attrSet("loading", "lazy")
            else:
                alt = "".join(c.content for c in child.children or ())
                child.type, child.tag, child.attrs, child.children = "text", "", {}, None
                child.content = f"[image not shown: {alt or 'unnamed'}]"


def card_html(markdown: str, version: int, published: Collection[str]) -> str:
    """MODEL_CARD.md as an HTML fragment; raw HTML in it is escaped, not rendered."""
    tokens = _MARKDOWN.parse(markdown)
    _show_only_published_plots(tokens, version, published)
    return str(_MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {}))


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else the registry may hold."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def robustness_svg(metrics: Mapping[str, Any]) -> str:
    """FGSM accuracy and the guards' refusals per epsilon as a bar chart (inline SVG, no style attributes: the
    page's CSP allows none; colours come from card.css by class). Empty when the metrics hold no figures."""
    fgsm = metrics.get("fgsm")
    guards = metrics.get("guards")
    refused = (guards.get("fgsm_refused") if isinstance(guards, Mapping) else None) or {}
    if not isinstance(fgsm, Mapping) or not isinstance(refused, Mapping):
        return ""
    rows: list[tuple[str, float | None, float | None]] = []
    clean = _number(metrics.get("test_accuracy"))
    if clean is not None:
        rows.append(("0 (clean)", clean, None))
    for eps, accuracy in list(fgsm.items())[:8]:
        rows.append((str(eps)[:12], _number(accuracy), _number(refused.get(eps))))
    if not any(acc is not None for _, acc, _ in rows):
        return ""
    group, bar, left, top, height = 90, 32, 40, 10, 160
    width = left + group * len(rows) + 10
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {top + height + 40}" role="img" aria-labelledby="robustness-title">',
        '<title id="robustness-title">Accuracy and share refused by the guards under FGSM attack, per epsilon</title>',
    ]
    for tick in (0, 50, 100):
        y = top + height * (1 - tick / 100)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}%</text>')
    for i, (label, accuracy, share) in enumerate(rows):
        x = left + i * group + 10
        for j, (value, cls) in enumerate(((accuracy, "accuracy"), (share, "refused"))):
            if value is None:
                continue
            clipped = min(max(value, 0.0), 1.0)
            h = height * clipped
            y = top + height - h
            parts.append(
                f'<rect class="{cls}" x="{x + j * (bar + 4)}" y="{y:.1f}" width="{bar}" height="{h:.1f}">'
                f"<title>{cls} at epsilon {escape(label)}: {100 * clipped:.1f} %</title></rect>"
            )
        parts.append(
            f'<text class="label" x="{x + bar + 2}" y="{top + height + 18}" text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<text class="label" x="{left + (width - left) / 2:.0f}" y="{top + height + 36}" text-anchor="middle">'
        "FGSM epsilon (L-infinity)</text></svg>"
    )
    legend = (
        '<p class="legend"><span class="key accuracy"></span> accuracy '
        '<span class="key refused"></span> refused by the adversarial/OOD guards</p>'
    )
    return "".join(parts) + legend


def versions_table(rows: Sequence[VersionInfo], served: int | None) -> str:
    """The registry's versions and their aliases, each linked to its card."""
    lines = [
        "<table><thead><tr><th scope=col>version</th><th scope=col>aliases</th><th scope=col>network</th>"
        "<th scope=col>test accuracy</th><th scope=col>created</th></tr></thead><tbody>"
    ]
    for row in rows:
        accuracy = _number(row.test_accuracy)
        shown = "n/a" if accuracy is None else f"{100 * accuracy:.2f} %"
        if accuracy is not None and row.accuracy_unsoftened:  # "n/a" needs no mark
            shown += " (on unsoftened digits)"  # recorded before training scored digits as served
        aliases = [*row.aliases, *(["served here"] if row.version == served else [])]
        lines.append(
            f'<tr><td><a href="/models/{int(row.version)}/card">{int(row.version)}</a></td>'
            f"<td>{escape(', '.join(aliases)) or '–'}</td><td>{escape(str(row.model))}</td>"
            f"<td>{shown}</td><td>{escape(str(row.created))}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "".join(lines)


def page(
    version: int,
    facts: ModelMetadata,
    markdown: str | None,
    versions: Sequence[VersionInfo],
    served: int | None,
) -> str:
    """The whole card page of ``version``; ``markdown`` is None when the version was published without a card."""
    card = (
        card_html(markdown, version, facts.files)
        if markdown is not None
        else f"<h1>Model version {version}</h1><p>This version was published without a model card.</p>"
    )
    chart = robustness_svg(facts.metrics)
    status = f"This service serves version {served} now." if served is not None else "No version is served yet."
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Model card: version {version} · MNIST digit service</title>
<link rel="icon" href="/ui/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/card.css">
</head>
<body>
<nav aria-label="Site"><a href="/">Draw a digit</a> <a href="/docs">API documentation</a></nav>
<main>
<p class="served">{escape(status)}</p>
<article class="card">
{card}
</article>
{f'<section aria-labelledby="robustness"><h2 id="robustness">Robustness chart</h2>{chart}</section>' if chart else ""}
<section aria-labelledby="versions"><h2 id="versions">Versions in the registry</h2>
{versions_table(versions, served)}
</section>
</main>
</body>
</html>
"""
