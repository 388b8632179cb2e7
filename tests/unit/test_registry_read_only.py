"""A registry mounted read-only (the replicas' Kubernetes mount): promote and rollback change nothing and say so,
in the registry, the `python -m training registry` command and the admin API."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry import RegistryReadOnly, layout
from tests.helpers import model_facts, promoted_versions
from tests.unit.api_fakes import FakeManager
from training import registry_cli

TOKEN = "read-only-admin-token-0123"


@pytest.fixture()
def read_only(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to remount read-only: opening the lock for writing then fails as the kernel says (EROFS). Tests
    run as root, whom chmod stops from nothing, so the kernel's answer is played here."""
    real_open = Path.open

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.name == layout.LOCK_FILE and mode != "r":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_open(self, mode, *args, **kwargs)

    return lambda: monkeypatch.setattr(Path, "open", open_)


def test_promote_and_rollback_on_a_read_only_registry_are_refused_by_name(
    tmp_path: Path, read_only: Callable[[], None]
) -> None:
    registry = promoted_versions(tmp_path, [b"v1", b"v2"])
    read_only()
    before = (registry.model_dir / layout.ALIASES_FILE).read_bytes()
    lock = registry.model_dir / layout.LOCK_FILE
    with pytest.raises(RegistryReadOnly, match=rf"read-only here: cannot write {lock} \(Read-only file system\)"):
        registry.promote(1)
    with pytest.raises(RegistryReadOnly, match="read-only"):
        registry.rollback()
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(b"v3")
    with pytest.raises(RegistryReadOnly, match="read-only"):
        registry.publish(staging, model_facts())
    assert (registry.model_dir / layout.ALIASES_FILE).read_bytes() == before
    assert registry.versions() == [1, 2]


def test_a_writable_lock_in_a_folder_that_is_not_is_read_only_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .lock anyone may write, in a folder only its owner may: the lock opens, the aliases' rewrite does not.
    That was a PermissionError traceback from the command and a 500 from the admin API."""
    registry = promoted_versions(tmp_path, [b"v1", b"v2"])
    before = (registry.model_dir / layout.ALIASES_FILE).read_bytes()

    def refused(path: Path, text: str) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path.parent / ".aliases.json.tmp"))

    monkeypatch.setattr("registry.files.write_text_atomic", refused)  # what write_json_atomic writes with
    with pytest.raises(RegistryReadOnly, match=r"cannot write .*\.aliases\.json\.tmp \(Permission denied\)"):
        registry.promote(1)
    assert (registry.model_dir / layout.ALIASES_FILE).read_bytes() == before


@pytest.mark.parametrize("command", [["promote", "1"], ["rollback"]])
def test_the_registry_command_says_read_only_in_one_line(
    tmp_path: Path, read_only: Callable[[], None], capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    registry = promoted_versions(tmp_path, [b"v1", b"v2"])
    read_only()
    assert registry_cli.main(["--registry", str(tmp_path), *command]) == 1
    out, err = capsys.readouterr()
    lock = registry.model_dir / layout.LOCK_FILE
    assert out == "" and err.splitlines() == [
        f"error: the registry is read-only here: cannot write {lock} (Read-only file system); "
        "promote, roll back or publish where it is mounted writable"
    ]
    assert registry.aliases()["production"] == 2


@pytest.mark.parametrize(("path", "body"), [("/admin/promote", {"version": 1}), ("/admin/rollback", None)])
def test_the_admin_api_answers_registry_read_only(
    make_client: Any, tmp_path: Path, read_only: Callable[[], None], path: str, body: dict[str, Any] | None
) -> None:
    registry = promoted_versions(tmp_path / "models", [b"v1", b"v2"])
    read_only()
    manager = FakeManager(registry=registry)
    client = make_client(manager=manager, admin_token=TOKEN)
    answer = client.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "registry_read_only"
    assert error["message"].startswith("the registry is read-only here: cannot write ")
    assert "Read-only file system" in error["message"]
    assert registry.aliases()["production"] == 2 and manager.reloads == []
