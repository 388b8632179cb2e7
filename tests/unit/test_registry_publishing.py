"""Publishing's bookkeeping: a version number is never handed out twice, and staging folders that killed
publishers left behind are cleared by a later publish without touching a live one."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from registry import Registry, RegistryError, layout
from registry.publishing import ABANDONED_AFTER_S
from tests.helpers import model_facts


def _publish(registry: Registry, payload: bytes = b"onnx-bytes") -> int:
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(payload)
    return registry.publish(staging, model_facts())


def _staging_folders(registry: Registry) -> set[Path]:
    return {p for p in registry.model_dir.iterdir() if p.name.startswith(layout.STAGING_PREFIX)}


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_deleting_the_newest_version_does_not_give_its_number_to_the_next_build(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.promote(_publish(registry, b"v1"))
    assert _publish(registry, b"v2") == 2  # --no-promote: no alias ever named it
    shutil.rmtree(registry.version_dir(2))
    # A replica pinned to 2 still serves the old build: the new one must not be "version 2" too.
    assert _publish(registry, b"v3") == 3
    assert registry.versions() == [1, 3]


def test_numbers_keep_counting_when_every_folder_and_alias_is_gone(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _publish(registry)
    _publish(registry)
    for version in registry.versions():
        shutil.rmtree(registry.version_dir(version))
    assert _publish(registry) == 3


def test_a_registry_from_before_the_mark_still_numbers_from_its_folders_and_history(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.promote(_publish(registry))
    _publish(registry)
    (registry.model_dir / layout.LAST_VERSION_FILE).unlink()
    assert _publish(registry) == 3
    shutil.rmtree(registry.version_dir(3))
    (registry.model_dir / layout.LAST_VERSION_FILE).unlink()
    assert _publish(registry) == 3  # without the mark only what is left counts: 2's folder


def test_a_mark_that_is_not_a_number_stops_publishing_rather_than_guessing(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _publish(registry)
    (registry.model_dir / layout.LAST_VERSION_FILE).write_text("seven\n")
    with pytest.raises(RegistryError, match=r"\.last_version must hold the last version number"):
        _publish(registry)
    assert registry.versions() == [1]


def test_a_publish_removes_staging_folders_abandoned_for_a_day_and_no_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(tmp_path)
    killed = registry.new_staging_dir()  # a run SIGKILLed during export, two days ago
    (killed / layout.SAVEDMODEL_DIR).mkdir()
    (killed / layout.SAVEDMODEL_DIR / "saved_model.pb").write_bytes(b"half")
    for path in (killed / layout.SAVEDMODEL_DIR / "saved_model.pb", killed / layout.SAVEDMODEL_DIR, killed):
        _age(path, 2 * ABANDONED_AFTER_S)
    live = registry.new_staging_dir()  # another publisher, exporting right now
    (live / layout.KERAS_FILE).write_bytes(b"fresh")
    slow = registry.new_staging_dir()  # made long ago, but still being written deep inside
    (slow / layout.SAVEDMODEL_DIR).mkdir()
    (slow / layout.SAVEDMODEL_DIR / "saved_model.pb").write_bytes(b"being written")
    _age(slow / layout.SAVEDMODEL_DIR, 2 * ABANDONED_AFTER_S)
    _age(slow, 2 * ABANDONED_AFTER_S)
    with caplog.at_level(logging.WARNING, logger="registry"):
        assert _publish(registry) == 1
    assert _staging_folders(registry) == {live, slow}
    assert (live / layout.KERAS_FILE).read_bytes() == b"fresh"
    assert f"removed abandoned staging folder {killed}" in caplog.text


def test_a_staging_folder_younger_than_the_limit_is_kept(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    recent = registry.new_staging_dir()
    _age(recent, ABANDONED_AFTER_S - 3600)  # a long run, quiet for 23 hours: not provably dead
    _publish(registry)
    assert _staging_folders(registry) == {recent}
