"""What publishing needs besides the rename, both done under the registry's lock by ``Registry.publish``.

- The next number: one past every number ever used. The folders on disk are not enough (a deleted newest
  version would give its number to the next build, and a replica pinned to that number would keep serving the
  old model under it), so each publish records its number in ``layout.LAST_VERSION_FILE``.
- Staging folders left by publishers killed before they could remove their own (SIGKILL, a lost node).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from registry import layout
from registry.errors import RegistryError
from registry.files import VERSION_RE, write_text_atomic

log = logging.getLogger("registry")

# Training writes into its staging folder from the moment it makes it and publishes at once, within minutes;
# other publishers (tests, copies) within seconds. A day without a change means its publisher is gone, on any
# host sharing the volume, unless the hosts' clocks disagree by a day.
ABANDONED_AFTER_S = 24 * 3600


def last_published(model_dir: Path) -> int:
    """The highest number ever published; 0 for a registry from before the mark existed (its folders and alias
    history still count, in ``next_version``)."""
    path = model_dir / layout.LAST_VERSION_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path} cannot be read ({exc}); it must hold the last version number published") from exc
    if not VERSION_RE.match(text):
        # Guessing could hand out a number already used: refuse to publish until someone fixes it.
        raise RegistryError(f"{path} must hold the last version number published, not {text[:20]!r}; fix it")
    return int(text)


def next_version(model_dir: Path, folders: Iterable[int], named: Iterable[int]) -> int:
    """One past the mark, every version folder and every version an alias names or once named."""
    return max([last_published(model_dir), *folders, *named]) + 1


def record(model_dir: Path, version: int) -> None:
    """Raise the mark before the version's folder appears, so no crash can leave a number in use but unrecorded."""
    write_text_atomic(model_dir / layout.LAST_VERSION_FILE, f"{version}\n")


def make_staging_dir(model_dir: Path) -> Path:
    """A new, private folder beside the versions (the same filesystem), so publishing it is one rename."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f"{layout.STAGING_PREFIX}{uuid.uuid4().hex}"
    path.mkdir()
    return path


def sweep_abandoned_staging(model_dir: Path, keep: Path, now: float | None = None) -> list[Path]:
    """Remove the staging folders in which nothing changed for ``ABANDONED_AFTER_S``; returns those removed.

    Age is that of the newest thing inside, not of the folder alone: a publisher still writing keeps its folder
    young however long ago it made it. A folder that cannot be removed is left: tidying never fails a publish.
    """
    now = time.time() if now is None else now
    removed = []
    for path in model_dir.iterdir():
        if not path.name.startswith(layout.STAGING_PREFIX) or path == keep or path.is_symlink() or not path.is_dir():
            continue
        idle_s = now - _last_change(path, now)
        if idle_s < ABANDONED_AFTER_S:
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.warning("removed abandoned staging folder %s (unchanged for %.0f h)", path, idle_s / 3600)
        removed.append(path)
    return removed


def _last_change(folder: Path, now: float) -> float:
    try:
        return max([folder.lstat().st_mtime, *(p.lstat().st_mtime for p in folder.rglob("*"))])
    except OSError:  # something vanished while we looked: its publisher is alive, or another sweep is at work
        return now
