"""The aliases file (``aliases.json``): which version each alias names, and how it came to.

``{"aliases": {"production": 3}, "history": [{"alias", "version", "at", "reason", "rollback"?}, ...]}``.
Plain functions on that state; ``Registry`` reads and rewrites the file under its lock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registry.errors import AliasError


def read_state(path: Path) -> dict[str, Any]:
    """The file's state (empty when there is none); AliasError when it is not what it should be."""
    if not path.exists():
        return {"aliases": {}, "history": []}
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AliasError(f"{path} is not valid JSON; fix or delete it") from exc
    except OSError as exc:  # a folder in its place, no permission to read it
        raise AliasError(f"{path} cannot be read ({exc.strerror}); fix or delete it") from exc
    if not isinstance(state, dict):
        raise AliasError(f"{path} must hold a JSON object; fix or delete it")
    state.setdefault("aliases", {})
    state.setdefault("history", [])
    aliases, history = state["aliases"], state["history"]
    valid = (
        isinstance(aliases, dict)
        and isinstance(history, list)
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in aliases.values())
        and all(isinstance(h, dict) and isinstance(h.get("version"), int) for h in history)
    )
    if not valid:
        raise AliasError(f"{path}: aliases must map names to positive integer versions; fix or delete it")
    return state


def named_versions(state: dict[str, Any]) -> list[int]:
    """Every version an alias names or once named: numbers a new version must never reuse."""
    return [*state["aliases"].values(), *(h["version"] for h in state["history"])]


def point(state: dict[str, Any], alias: str, version: int, reason: str, *, rollback: bool = False) -> None:
    """Point ``alias`` at ``version`` in ``state`` and record it in the history."""
    state["aliases"][alias] = version
    entry: dict[str, Any] = {
        "alias": alias,
        "version": version,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason,
    }
    if rollback:
        entry["rollback"] = True
    state["history"].append(entry)


def previous_version(state: dict[str, Any], alias: str, exists: Callable[[int], bool]) -> int:
    """The version ``alias`` had before its current one (still on disk); AliasError when there is none."""
    current = state["aliases"].get(alias)
    if current is None:
        raise AliasError(f"alias {alias!r} is not set; nothing to roll back")
    previous = [v for v in earlier_versions(state["history"], alias) if v != current and exists(v)]
    if not previous:
        raise AliasError(f"alias {alias!r} has no earlier version to roll back to")
    return previous[0]


def earlier_versions(history: list[dict[str, Any]], alias: str) -> list[int]:
    """The versions rollbacks would take ``alias`` back to, newest first: its history replayed as a stack, below
    its current version. A promotion pushes, a rollback pops; promoting the version already there (a retried call)
    moves nothing, so it pushes nothing: one rollback must undo one move."""
    stack: list[int] = []
    for entry in history:
        if entry.get("alias") != alias:
            continue
        if entry.get("rollback") and stack:
            stack.pop()
        elif not stack or stack[-1] != int(entry["version"]):
            stack.append(int(entry["version"]))
    return stack[-2::-1]
