"""File-level helpers of the registry: checksums, atomic JSON writes, the lock, version ids."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from registry import layout
from registry.errors import CorruptVersion, InvalidVersion, RegistryReadOnly

VERSION_RE = re.compile(r"^[1-9][0-9]{0,8}$")
MAX_VERSION = 999_999_999  # what VERSION_RE admits as a folder name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_state(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file under ``folder`` by name, size and mtime, a cheap token of what it holds for pollers (a version
    is a dozen files); empty when it cannot be read."""
    try:
        found = [(p, p.stat()) for p in folder.rglob("*")]
    except OSError:
        return ()
    return tuple(sorted((str(p.relative_to(folder)), st.st_size, st.st_mtime_ns) for p, st in found))


def parse_version(value: int | str) -> int:
    """Accept only positive integers (as int or decimal string); never a path."""
    if isinstance(value, bool):
        raise InvalidVersion(f"version must be a positive integer in 1..{MAX_VERSION}, got {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= MAX_VERSION:
            raise InvalidVersion(f"version must be an integer in 1..{MAX_VERSION}, got {value}")
        return value
    if isinstance(value, str) and VERSION_RE.match(value):
        return int(value)
    # A decimal past the largest ('9999999999') too: the range says why it is refused.
    raise InvalidVersion(f"version must be a positive integer in 1..{MAX_VERSION}, got {str(value)[:40]!r}")


def checksums(folder: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise CorruptVersion(f"{rel} is a symbolic link; versions hold plain files only")
        if path.is_file() and rel != layout.METADATA_FILE:
            sums[rel] = file_sha256(path)
    return sums


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; registry files must be readable by a non-root server.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# Why a write is refused when the registry is mounted read-only (Kubernetes) or belongs to another user.
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the folder's exclusive flock (``layout.LOCK_FILE``): publishers and promoters take turns.

    Every change to the registry takes the lock first, so a registry that cannot be written is refused here,
    as RegistryReadOnly naming the path, before anything was changed.
    """
    lock = folder / layout.LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")
    except OSError as exc:
        if exc.errno in READ_ONLY_ERRNOS:
            raise _read_only(exc, lock) from exc
        raise
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        except OSError as exc:  # a lock anyone may write, in a folder only its owner may (aliases.json's rewrite)
            if exc.errno in READ_ONLY_ERRNOS:
                raise _read_only(exc, lock) from exc
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_only(exc: OSError, lock: Path) -> RegistryReadOnly:
    """What a write the filesystem refused says: the path and the system's reason."""
    reason = exc.strerror or "not writable"
    return RegistryReadOnly(
        f"the registry is read-only here: cannot write {exc.filename or lock} ({reason}); "
        "promote, roll back or publish where it is mounted writable"
    )
