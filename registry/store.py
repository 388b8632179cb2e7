"""Reading and writing the registry layout described in ``registry.layout``.

Publishing is atomic: a version is built in a staging folder beside the
versions and renamed into place under an exclusive lock, so a reader sees a
complete folder or none, and two concurrent publishers get two numbers.
Every metadata.json read or written goes through ``registry.metadata.ModelMetadata``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry import aliases as alias_file
from registry import layout, publishing, triton
from registry.errors import AliasError, AliasMoved, CorruptVersion, FileNotPublished, VersionNotFound
from registry.files import (
    VERSION_RE,
    checksums,
    file_sha256,
    locked,
    parse_version,
    write_json_atomic,
    write_text_atomic,
)
from registry.metadata import ModelMetadata
from registry.report import VersionInfo


class Registry:
    """One model's versions and aliases under ``<root>/mnist``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.model_dir = self.root / layout.MODEL_NAME

    # ---- versions -------------------------------------------------------
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
        return next(reversed(self.versions()), None)

    def version_dir(self, version: int | str) -> Path:
        number = parse_version(version)
        path = self.model_dir / str(number)
        if not path.is_dir():
            raise VersionNotFound(f"model version {number} does not exist")
        return path

    def metadata(self, version: int | str) -> dict[str, Any]:
        """The version's metadata.json as JSON (for display), checked against the schema."""
        return self._read_metadata(version)[0]

    def verify(self, version: int | str) -> dict[str, Any]:
        """``metadata`` after checking every file against its sha256."""
        return self._verified(version)[0]

    def model_metadata(self, version: int | str) -> ModelMetadata:
        """The verified version's facts, typed: what loading a version reads."""
        return self._verified(version)[1]

    def _read_metadata(self, version: int | str) -> tuple[dict[str, Any], ModelMetadata]:
        path = self.version_dir(version) / layout.METADATA_FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise CorruptVersion(f"version {version} has no {layout.METADATA_FILE}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptVersion(f"version {version}: {layout.METADATA_FILE} is not valid JSON") from exc
        except OSError as exc:  # a folder in its place, no permission to read it
            raise CorruptVersion(f"version {version}: {layout.METADATA_FILE} cannot be read ({exc.strerror})") from exc
        if not isinstance(doc, dict) or doc.get("version") != parse_version(version):
            raise CorruptVersion(f"version {version}: metadata does not describe this version")
        return doc, ModelMetadata.from_dict(doc)

    def _verified(self, version: int | str) -> tuple[dict[str, Any], ModelMetadata]:
        """A missing, changed or unlisted file refuses the version: an ambiguous folder is never guessed at."""
        folder = self.version_dir(version)
        doc, facts = self._read_metadata(version)
        expected = facts.files
        if not expected:
            raise CorruptVersion(f"version {version}: metadata lists no file checksums")
        actual = checksums(folder)
        missing = sorted(set(expected) - set(actual))
        unlisted = sorted(set(actual) - set(expected))
        changed = sorted(name for name in expected if name in actual and actual[name] != expected[name])
        if missing or unlisted or changed:
            found = (("missing", missing), ("checksum mismatch", changed), ("unlisted", unlisted))
            parts = [f"{label} {names[:3]}" for label, names in found if names]
            raise CorruptVersion(f"version {version} failed verification: {'; '.join(parts)}")
        return doc, facts

    def read_json_file(self, version: int | str, name: str) -> Any:
        """Read a JSON artifact (e.g. guards.json) of a version."""
        path = self.version_dir(version) / name
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptVersion(f"version {version}: cannot read {name}") from exc

    def read_published(self, version: int | str, name: str) -> bytes:
        """A top-level file published with the version (the model card, a plot), checked against its sha256.

        Only a name that metadata.json lists is read, so no path is built from anything else; a file changed
        since publishing is refused as the version's verification would refuse it. Cheaper than ``verify``:
        the one file is hashed, not the whole version.
        """
        folder = self.version_dir(version)
        expected = self._read_metadata(version)[1].files.get(name)
        if expected is None or "/" in name or name in (".", ".."):
            raise FileNotPublished(f"version {version} has no published file {name[:60]!r}")
        try:
            data = (folder / name).read_bytes()
        except OSError as exc:
            raise CorruptVersion(f"version {version} failed verification: missing ['{name}']") from exc
        if hashlib.sha256(data).hexdigest() != expected:
            raise CorruptVersion(f"version {version} failed verification: checksum mismatch ['{name}']")
        return data

    def describe(self, aliases: dict[str, int] | None = None) -> list[VersionInfo]:
        """A row per version; ``aliases`` in place of the file's (the CLI lists versions when that file is broken)."""
        by_version: dict[int, list[str]] = {}
        for alias, version in (self.aliases() if aliases is None else aliases).items():
            by_version.setdefault(version, []).append(alias)
        rows = []
        for version in self.versions():
            try:
                facts: ModelMetadata | None = self._read_metadata(version)[1]
            except CorruptVersion:
                facts = None
            rows.append(
                VersionInfo(
                    version=version,
                    created=(facts and facts.created) or "?",
                    model=str(facts.training_config.get("model", "?")) if facts else "?",
                    test_accuracy=facts.metrics.get("test_accuracy") if facts else None,
                    aliases=sorted(by_version.get(version, [])),
                    scored_as_served=facts.evaluation.scored_as_served if facts else False,
                )
            )
        return rows

    # ---- aliases --------------------------------------------------------
    def _alias_state(self) -> dict[str, Any]:
        return alias_file.read_state(self.model_dir / layout.ALIASES_FILE)

    def aliases(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._alias_state()["aliases"].items()}

    def history(self) -> list[dict[str, Any]]:
        return list(self._alias_state()["history"])

    def resolve(self, ref: int | str | None = None) -> int:
        """A version number from an alias, a number, or None (production, else newest)."""
        if ref is None:
            production = self.aliases().get(layout.PRODUCTION)
            if production is not None:
                # Even when its folder is gone: loading it then fails by name, and a running service keeps
                # what it serves, rather than quietly taking a version nobody promoted.
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

    def change_token(self) -> tuple[int, int]:
        """Cheap fingerprint of aliases.json for pollers (mtime and size)."""
        try:
            st = (self.model_dir / layout.ALIASES_FILE).stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

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
        version (None: unset), else AliasMoved, so a decision taken against an
        old champion is never applied over a newer one.
        """
        if alias not in layout.KNOWN_ALIASES:
            raise AliasError(f"unknown alias {alias!r}; use one of {list(layout.KNOWN_ALIASES)}")
        number = parse_version(version)
        self.verify(number)
        with locked(self.model_dir):
            state = self._alias_state()
            current = state["aliases"].get(alias)
            if expected is not ... and current != expected:
                raise AliasMoved(f"alias {alias!r} moved to {current} since the decision (expected {expected})")
            alias_file.point(state, alias, number, reason)
            write_json_atomic(self.model_dir / layout.ALIASES_FILE, state)
            if alias == layout.PRODUCTION:
                self._write_triton_config(number)

    def rollback_target(self, alias: str = layout.PRODUCTION, state: dict[str, Any] | None = None) -> int:
        """The version ``rollback(alias)`` would point the alias at now; AliasError when there is none."""
        state = self._alias_state() if state is None else state
        return alias_file.previous_version(state, alias, lambda v: (self.model_dir / str(v)).is_dir())

    def rollback(self, alias: str = layout.PRODUCTION, *, expected: int | None = None) -> int:
        """Point the alias back at the version it had before its current one.

        ``expected``: the target the caller checked (``rollback_target``); another one now (a rollback or promotion
        landed meanwhile) raises AliasMoved, so an alias never moves to a version nobody checked."""
        with locked(self.model_dir):
            state = self._alias_state()
            target = self.rollback_target(alias, state)
            if expected is not None and target != expected:
                raise AliasMoved(f"alias {alias!r} changed meanwhile: a rollback now goes to {target}, not {expected}")
            self.verify(target)
            alias_file.point(state, alias, target, f"rollback from {state['aliases'][alias]}", rollback=True)
            write_json_atomic(self.model_dir / layout.ALIASES_FILE, state)
            if alias == layout.PRODUCTION:
                self._write_triton_config(target)
        return target

    def _write_triton_config(self, version: int) -> None:
        """``mnist/config.pbtxt``: Triton serves the production version, as the service does (registry.triton)."""
        facts = self._read_metadata(version)[1]
        write_text_atomic(self.model_dir / triton.CONFIG_FILE, triton.config_text(facts, serve_version=version))

    # ---- publishing -----------------------------------------------------
    def new_staging_dir(self) -> Path:
        """A private folder on the registry's filesystem, so publishing is one rename."""
        return publishing.make_staging_dir(self.model_dir)

    def publish(
        self,
        staging: Path,
        metadata: ModelMetadata | dict[str, Any],
        finalize: Callable[[int, Path], None] | None = None,
    ) -> int:
        """Number the staging folder, checksum it, write its metadata.json and rename it into place.

        ``metadata`` goes through the schema: a ModelMetadata, or a document (a copied version's, say)
        that ``ModelMetadata.from_dict`` accepts once the number and checksums are in. ``finalize(version,
        folder)`` may write files that need the number (the model card) before the checksums are taken.
        """
        staging = Path(staging)
        if staging.parent.resolve() != self.model_dir.resolve():
            raise CorruptVersion("staging folder must come from Registry.new_staging_dir()")
        doc = metadata.to_dict() if isinstance(metadata, ModelMetadata) else dict(metadata)
        doc.setdefault("schema_version", layout.METADATA_SCHEMA_VERSION)
        doc.setdefault("name", layout.MODEL_NAME)
        with locked(self.model_dir):
            publishing.sweep_abandoned_staging(self.model_dir, keep=staging)
            # Never reuse a number, even a deleted version's: a stale alias or a replica pinned to it must not
            # silently get a new build under an old number.
            named = alias_file.named_versions(self._alias_state())
            version = publishing.next_version(self.model_dir, self.versions(), named)
            if finalize is not None:
                finalize(version, staging)
            files = checksums(staging)
            if layout.ONNX_FILE not in files:
                raise CorruptVersion(f"refusing to publish a version without {layout.ONNX_FILE}")
            doc.update(version=version, files=files)
            # Triton's view of this version, from the checked facts, checksummed like every other file.
            config = staging / triton.CONFIG_FILE
            write_text_atomic(config, triton.config_text(ModelMetadata.from_dict(doc)))
            doc["files"] = {**files, triton.CONFIG_FILE: file_sha256(config)}
            write_json_atomic(staging / layout.METADATA_FILE, ModelMetadata.from_dict(doc).to_dict())
            publishing.record(self.model_dir, version)
            os.rename(staging, self.model_dir / str(version))
        return version

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)
