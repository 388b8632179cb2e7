"""The docs against the code: the settings and error-code tables of docs/api.md, the README's size, relative links."""

from __future__ import annotations

import asyncio
import json
import re
from http import HTTPStatus
from pathlib import Path

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

from service import errors as svc
from service.api.errors import REGISTRY_ERRORS, _on_http_error, describe
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
README_LIMIT_BYTES = 12_000
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def table(path: Path, header: list[str]) -> dict[str, list[str]]:
    """The markdown table whose header row is ``header``: first cell (backticks stripped) -> the other cells."""
    rows: dict[str, list[str]] = {}
    inside = False
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]] if line.startswith("|") else None
        if cells is None:
            if inside:
                break
            continue
        if cells == header:
            inside = True
        elif inside and not set(cells[0]) <= set("-: "):
            rows[cells[0].strip("`")] = cells[1:]
    assert inside, f"{path.name} has no table headed {header}"
    return rows


def assert_same_names(documented: dict[str, list[str]], real: dict[str, object], what: str) -> None:
    missing, stale = sorted(real.keys() - documented.keys()), sorted(documented.keys() - real.keys())
    assert not missing and not stale, f"docs/api.md {what}: no row for {missing}; rows for nothing: {stale}"


def documented_default(value: object) -> str:
    if value is None:
        return "unset"
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_settings_table_matches_the_settings_object() -> None:
    rows = table(API_DOC, ["Variable", "Default", "Meaning"])
    fields = {f"MNIST_{name.upper()}": field.default for name, field in Settings.model_fields.items()}
    assert_same_names(rows, fields, "settings table")
    for name, default in fields.items():
        shown = rows[name][0].split("`")[1] if "`" in rows[name][0] else rows[name][0]
        assert shown == documented_default(default), f"{name}: docs say {shown}, code says {default}"


def answered_codes() -> dict[str, int]:
    """Every code the API can answer with, and its status."""
    domain = [c for c in vars(svc).values() if isinstance(c, type) and issubclass(c, svc.ServiceError)]
    codes = {}
    for cls in [*domain, *REGISTRY_ERRORS, RuntimeError]:  # STATUS_BY_ERROR decides inside describe()
        status, code, _, _ = describe(cls("x"))
        codes[code] = status
    for status in HTTPStatus:  # the HTTP layer's own codes (routing, framing); unnamed ones answer http_<status>
        if status >= 400:
            request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""})
            answer = asyncio.run(_on_http_error(request, HTTPException(status)))
            code = json.loads(answer.body)["error"]["code"]
            if code != f"http_{status.value}":
                codes[code] = answer.status_code
    return codes


def test_error_code_table_matches_the_code() -> None:
    rows = table(API_DOC, ["Code", "Status", "Meaning / what to do"])
    codes = answered_codes()
    assert_same_names(rows, codes, "error-code table")
    wrong = {code: (row[0], codes[code]) for code, row in rows.items() if int(row[0]) != codes[code]}
    assert not wrong, f"docs/api.md error-code table: (documented, real) status differs for {wrong}"


def test_readme_stays_a_front_door() -> None:
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_LIMIT_BYTES, f"README.md is {size} bytes; move reference material to docs/"


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(doc: Path) -> None:
    targets = [t.split("#")[0] for t in LINK.findall(doc.read_text(encoding="utf-8"))]
    relative = [t for t in targets if t and not re.match(r"[a-z]+:", t)]
    missing = [t for t in relative if not (doc.parent / t).exists()]
    assert not missing, f"{doc.name} links to files that do not exist: {missing}"
