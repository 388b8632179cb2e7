"""A version is loaded only when its folder is exactly what its metadata.json lists: what each refusal says.

An operator reads these messages when a model will not load, so each names the version and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from registry import (
    CorruptVersion,
    InvalidVersion,
    Registry,
    VersionNotFound,
    layout,
)
from registry.files import checksums, file_sha256
from tests.helpers import model_facts


def published(root: Path, extra_files: int = 0) -> tuple[Registry, Path]:
    """A registry holding version 1: model.onnx, a SavedModel file and ``extra_files`` more."""
    registry = Registry(root)
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(b"onnx-bytes")
    (staging / layout.SAVEDMODEL_DIR).mkdir()
    (staging / layout.SAVEDMODEL_DIR / "saved_model.pb").write_bytes(b"pb")
    for i in range(extra_files):
        (staging / f"extra{i}.bin").write_bytes(b"%d" % i)
    version = registry.publish(staging, model_facts())
    return registry, registry.version_dir(version)


def refusal(registry: Registry, version: int | str = 1) -> str:
    with pytest.raises(CorruptVersion) as info:
        registry.verify(version)
    return str(info.value)


def edit_metadata(folder: Path, **changes: object) -> None:
    path = folder / layout.METADATA_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_an_intact_version_verifies_by_number_or_by_its_decimal_string(tmp_path: Path) -> None:
    registry, _ = published(tmp_path)
    assert registry.verify(1)["version"] == 1
    assert registry.verify("1")["version"] == 1
    assert registry.model_metadata("1").files == registry.verify(1)["files"]


def test_an_unknown_version_is_named(tmp_path: Path) -> None:
    registry, _ = published(tmp_path)
    with pytest.raises(VersionNotFound) as info:
        registry.verify(7)
    assert str(info.value) == "model version 7 does not exist"


def test_a_folder_copied_under_another_number_is_refused(tmp_path: Path) -> None:
    registry, folder = published(tmp_path)
    shutil.copytree(folder, folder.parent / "2")
    assert refusal(registry, 2) == "version 2: metadata does not describe this version"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", "version 1: metadata does not describe this version"),
        (b"{not json", "version 1: metadata.json is not valid JSON"),
        (b"\xff\xfe{}", "version 1: metadata.json is not valid JSON"),
    ],
    ids=["a-list", "not-json", "not-utf8"],
)
def test_unreadable_metadata_is_refused_by_name(tmp_path: Path, content: bytes, message: str) -> None:
    registry, folder = published(tmp_path)
    (folder / layout.METADATA_FILE).write_bytes(content)
    assert refusal(registry) == message


def test_a_version_without_metadata_is_refused(tmp_path: Path) -> None:
    registry, folder = published(tmp_path)
    (folder / layout.METADATA_FILE).unlink()
    assert refusal(registry) == "version 1 has no metadata.json"


def test_metadata_that_cannot_be_read_is_refused_by_name(tmp_path: Path) -> None:
    registry, folder = published(tmp_path)
    (folder / layout.METADATA_FILE).unlink()
    (folder / layout.METADATA_FILE).mkdir()
    assert refusal(registry) == "version 1: metadata.json cannot be read (Is a directory)"


def test_metadata_listing_no_checksums_is_refused(tmp_path: Path) -> None:
    registry, folder = published(tmp_path)
    edit_metadata(folder, files={})
    assert refusal(registry) == "version 1: metadata lists no file checksums"


def test_every_kind_of_damage_is_named_in_one_message(tmp_path: Path) -> None:
    registry, folder = published(tmp_path)
    (folder / layout.ONNX_FILE).write_bytes(b"tampered")
    (folder / layout.SAVEDMODEL_DIR / "saved_model.pb").unlink()
    (folder / "notes.txt").write_text("?")
    assert refusal(registry) == (
        "version 1 failed verification: missing ['model.savedmodel/saved_model.pb']; "
        "checksum mismatch ['model.onnx']; unlisted ['notes.txt']"
    )


def test_a_long_list_of_missing_and_unlisted_files_names_the_first_three(tmp_path: Path) -> None:
    registry, folder = published(tmp_path, extra_files=5)
    for i in range(5):
        (folder / f"extra{i}.bin").rename(folder / f"moved{i}.bin")
    assert refusal(registry) == (
        "version 1 failed verification: missing ['extra0.bin', 'extra1.bin', 'extra2.bin']; "
        "unlisted ['moved0.bin', 'moved1.bin', 'moved2.bin']"
    )


def test_a_long_list_of_changed_files_names_the_first_three(tmp_path: Path) -> None:
    registry, folder = published(tmp_path, extra_files=5)
    for i in range(5):
        (folder / f"extra{i}.bin").write_bytes(b"changed")
    assert refusal(registry) == (
        "version 1 failed verification: checksum mismatch ['extra0.bin', 'extra1.bin', 'extra2.bin']"
    )


def test_a_symbolic_link_in_a_version_is_refused(tmp_path: Path) -> None:
    registry, folder = published(tmp_path)
    (folder / "link.onnx").symlink_to(folder / layout.ONNX_FILE)
    assert refusal(registry) == "link.onnx is a symbolic link; versions hold plain files only"


def test_checksums_cover_every_file_but_the_metadata_and_match_sha256(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    big = bytes(range(256)) * 5000  # over the 1 MiB read size: hashed in chunks
    (tmp_path / "sub" / "big.bin").write_bytes(big)
    (tmp_path / layout.METADATA_FILE).write_text("{}")
    assert checksums(tmp_path) == {"sub/big.bin": hashlib.sha256(big).hexdigest()}
    assert file_sha256(tmp_path / "sub" / "big.bin") == hashlib.sha256(big).hexdigest()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (True, "version must be a positive integer in 1..999999999, got True"),
        (0, "version must be an integer in 1..999999999, got 0"),
        (10**9, "version must be an integer in 1..999999999, got 1000000000"),
        ("7" * 60, f"version must be a positive integer in 1..999999999, got {'7' * 40!r}"),
        ("9999999999", "version must be a positive integer in 1..999999999, got '9999999999'"),  # it said no more
    ],
    ids=["bool", "zero", "past-the-largest", "long-string", "past-the-largest-as-text"],
)
def test_a_bad_version_number_is_named_in_the_refusal(tmp_path: Path, bad: object, message: str) -> None:
    registry, _ = published(tmp_path)
    with pytest.raises(InvalidVersion) as info:
        registry.verify(bad)
    assert str(info.value) == message
