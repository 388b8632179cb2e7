"""Reading and writing the registry layout described in ``registry.layout``.

Publishing is atomic: a version is built in a staging folder beside the
versions and renamed into place under an exclusive lock, so a reader sees a
complete folder or none, and two concurrent publishers get two numbers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registry import layout
from registry.errors import AliasError, AliasMoved, CorruptVersion, VersionNotFound
from registry.files import VERSION_RE, checksums, parse_version, write_json_atomic


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created: str
    model: str
    test_accuracy: float | None
    aliases: list[str] = field(default_factory=list)


class Registry:
    """One model's versions and aliases under ``<root>/mnist``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.model_dir = self.root / layout.MODEL_NAME

    # ---- reading -------------------------------------------------------
    def versions(self) -> list[int]:
        if not self.model_dir.is_dir():
            return []
        found = [
            int(p.name)
            for p in self.model_dir.iterdir()
            if p.is_dir() and not p.is_symlink() and VERSION_RE.match(p.name)
        ]
        return sorted(found)

    def latest(self) -> int | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def version_dir(self, version: int | str) -> Path:
        number = parse_version(version)
        path = self.model_dir / str(number)
        if not path.is_dir():
            raise VersionNotFound(f"model version {number} does not exist")
        return path

    def metadata(self, version: int | str) -> dict[str, Any]:
        path = self.version_dir(version) / layout.METADATA_FILE
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise CorruptVersion(f"version {version} has no {layout.METADATA_FILE}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptVersion(f"version {version}: {layout.METADATA_FILE} is not valid JSON") from exc
        if not isinstance(meta, dict) or meta.get("version") != parse_version(version):
            raise CorruptVersion(f"version {version}: metadata does not describe this version")
        return meta

    def verify(self, version: int | str) -> dict[str, Any]:
        """Return the metadata after checking every file against its sha256.

        A version with a missing, changed or unlisted file is refused: an
        ambiguous folder is never guessed at.
        """
        folder = self.version_dir(version)
        meta = self.metadata(version)
        expected = meta.get("files")
        if not isinstance(expected, dict) or not expected:
            raise CorruptVersion(f"version {version}: metadata lists no file checksums")
        actual = checksums(folder)
        missing = sorted(set(expected) - set(actual))
        unlisted = sorted(set(actual) - set(expected))
        changed = sorted(name for name in expected if name in actual and actual[name] != expected[name])
        if missing or unlisted or changed:
            parts = []
            if missing:
                parts.append(f"missing {missing[:3]}")
            if changed:
                parts.append(f"checksum mismatch {changed[:3]}")
            if unlisted:
                parts.append(f"unlisted {unlisted[:3]}")
            raise CorruptVersion(f"version {version} failed verification: {'; '.join(parts)}")
        return meta

    def read_json_file(self, version: int | str, name: str) -> Any:
        """Read a JSON artifact (e.g. guards.json) of a version."""
        path = self.version_dir(version) / name
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptVersion(f"version {version}: cannot read {name}") from exc

    def _alias_state(self) -> dict[str, Any]:
        path = self.model_dir / layout.ALIASES_FILE
        if not path.exists():
            return {"aliases": {}, "history": []}
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AliasError(f"{path} is not valid JSON; fix or delete it") from exc
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

    def aliases(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._alias_state()["aliases"].items()}

    def history(self) -> list[dict[str, Any]]:
        return list(self._alias_state()["history"])

    def resolve(self, ref: int | str | None = None) -> int:
        """A version number from an alias, a number, or None (production, else newest)."""
        if ref is None:
            production = self.aliases().get(layout.PRODUCTION)
            if production is not None and (self.model_dir / str(production)).is_dir():
                return production
            latest = self.latest()
            if latest is None:
                raise VersionNotFound(f"no model version in {self.model_dir}; run `make train`")
            return latest
        if isinstance(ref, str) and ref in layout.KNOWN_ALIASES:
            target = self.aliases().get(ref)
            if target is None:
                raise VersionNotFound(f"alias {ref!r} is not set")
            return target
        number = parse_version(ref)
        self.version_dir(number)
        return number

    def describe(self) -> list[VersionInfo]:
        by_version: dict[int, list[str]] = {}
        for alias, version in self.aliases().items():
            by_version.setdefault(version, []).append(alias)
        rows = []
        for version in self.versions():
            try:
                meta = self.metadata(version)
            except CorruptVersion:
                meta = {}
            rows.append(
                VersionInfo(
                    version=version,
                    created=str(meta.get("created", "?")),
                    model=str(meta.get("training_config", {}).get("model", "?")),
                    test_accuracy=meta.get("metrics", {}).get("test_accuracy"),
                    aliases=sorted(by_version.get(version, [])),
                )
            )
        return rows

    def change_token(self) -> tuple[int, int]:
        """Cheap fingerprint of aliases.json for pollers (mtime and size)."""
        try:
            st = (self.model_dir / layout.ALIASES_FILE).stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    # ---- writing -------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        with (self.model_dir / layout.LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def new_staging_dir(self) -> Path:
        """A private folder on the registry's filesystem, so publishing is one rename."""
        self.model_dir.mkdir(parents=True, exist_ok=True)
        path = self.model_dir / f"{layout.STAGING_PREFIX}{uuid.uuid4().hex}"
        path.mkdir()
        return path

    def publish(
        self,
        staging: Path,
        metadata: dict[str, Any],
        finalize: Callable[[int, Path], None] | None = None,
    ) -> int:
        """Number the staging folder, checksum it and rename it into place.

        ``finalize(version, folder)`` may write files that need the number
        (the model card) before the checksums are taken.
        """
        staging = Path(staging)
        if staging.parent.resolve() != self.model_dir.resolve():
            raise CorruptVersion("staging folder must come from Registry.new_staging_dir()")
        with self._locked():
            # Never reuse a number an alias or its history has named, even if that folder
            # was deleted: a stale alias must not silently point at a new, unpromoted build.
            state = self._alias_state()
            named = [*state["aliases"].values(), *(h["version"] for h in state["history"])]
            version = max([*self.versions(), *named], default=0) + 1
            if finalize is not None:
                finalize(version, staging)
            files = checksums(staging)
            if layout.ONNX_FILE not in files:
                raise CorruptVersion(f"refusing to publish a version without {layout.ONNX_FILE}")
            meta = dict(metadata, version=version, files=files)
            meta.setdefault("schema_version", layout.METADATA_SCHEMA_VERSION)
            meta.setdefault("name", layout.MODEL_NAME)
            write_json_atomic(staging / layout.METADATA_FILE, meta)
            os.rename(staging, self.model_dir / str(version))
        return version

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def promote(
        self,
        version: int | str,
        alias: str = layout.PRODUCTION,
        reason: str = "",
        *,
        expected: int | object | None = ...,
    ) -> None:
        """Point ``alias`` at ``version``.

        ``expected`` makes it a compare-and-set: the alias must still name that
        version (None: unset), else AliasError, so a decision taken against an
        old champion is never applied over a newer one.
        """
        if alias not in layout.KNOWN_ALIASES:
            raise AliasError(f"unknown alias {alias!r}; use one of {list(layout.KNOWN_ALIASES)}")
        number = parse_version(version)
        self.verify(number)
        with self._locked():
            state = self._alias_state()
            current = state["aliases"].get(alias)
            if expected is not ... and current != expected:
                raise AliasMoved(f"alias {alias!r} moved to {current} since the decision (expected {expected})")
            state["aliases"][alias] = number
            state["history"].append(
                {
                    "alias": alias,
                    "version": number,
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "reason": reason,
                }
            )
            write_json_atomic(self.model_dir / layout.ALIASES_FILE, state)

    def rollback(self, alias: str = layout.PRODUCTION) -> int:
        """Point the alias back at the version it had before its current one."""
        with self._locked():
            state = self._alias_state()
            current = state["aliases"].get(alias)
            if current is None:
                raise AliasError(f"alias {alias!r} is not set; nothing to roll back")
            # Replay the history as a stack: a promotion pushes, a rollback pops.
            stack: list[int] = []
            for entry in state["history"]:
                if entry.get("alias") != alias:
                    continue
                if entry.get("rollback") and stack:
                    stack.pop()
                else:
                    stack.append(int(entry["version"]))
            previous = [v for v in stack[:-1] if v != current and (self.model_dir / str(v)).is_dir()]
            if not previous:
                raise AliasError(f"alias {alias!r} has no earlier version to roll back to")
            target = int(previous[-1])
            self.verify(target)
            state["aliases"][alias] = target
            state["history"].append(
                {
                    "alias": alias,
                    "version": target,
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "reason": f"rollback from {current}",
                    "rollback": True,
                }
            )
            write_json_atomic(self.model_dir / layout.ALIASES_FILE, state)
        return target
