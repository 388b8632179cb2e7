"""The registry contract: atomic publish, verification, aliases and rollback, the metadata schema."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from pathlib import Path

import pytest

from registry import (
    AliasError,
    AliasMoved,
    CorruptVersion,
    InvalidMetadata,
    InvalidVersion,
    ModelMetadata,
    Preprocessing,
    Registry,
    VersionNotFound,
    layout,
    parse_version,
)
from registry.metadata import UNRECORDED_SOFTENING
from registry.report import Evaluation, Recipe
from tests.helpers import model_facts, promoted_versions


def _publish(registry: Registry, payload: bytes = b"onnx-bytes", accuracy: float = 0.9) -> int:
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(payload)
    (staging / layout.SAVEDMODEL_DIR).mkdir()
    (staging / layout.SAVEDMODEL_DIR / "saved_model.pb").write_bytes(b"pb")
    return registry.publish(staging, model_facts(accuracy))


def test_publish_numbers_versions_and_records_every_checksum(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert _publish(registry) == 1
    assert _publish(registry) == 2
    meta = registry.verify(2)
    assert set(meta["files"]) == {layout.ONNX_FILE, f"{layout.SAVEDMODEL_DIR}/saved_model.pb", "config.pbtxt"}
    assert meta["version"] == 2
    assert registry.versions() == [1, 2]
    assert not [p for p in registry.model_dir.iterdir() if p.name.startswith(layout.STAGING_PREFIX)]


def test_concurrent_publishers_get_distinct_complete_versions(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(_publish(registry, f"model-{i}".encode()))) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 9))
    for version in results:
        registry.verify(version)


def test_publish_refuses_a_version_without_onnx(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    staging = registry.new_staging_dir()
    (staging / "notes.txt").write_text("x")
    with pytest.raises(CorruptVersion, match=r"model\.onnx"):
        registry.publish(staging, model_facts())
    assert registry.versions() == []


@pytest.mark.parametrize("damage", ["change", "delete", "add"])
def test_verify_refuses_changed_missing_or_unlisted_files(tmp_path: Path, damage: str) -> None:
    registry = Registry(tmp_path)
    version = _publish(registry)
    folder = registry.version_dir(version)
    if damage == "change":
        (folder / layout.ONNX_FILE).write_bytes(b"tampered")
    elif damage == "delete":
        (folder / layout.SAVEDMODEL_DIR / "saved_model.pb").unlink()
    else:
        (folder / "extra.bin").write_bytes(b"?")
    with pytest.raises(CorruptVersion):
        registry.verify(version)


@pytest.mark.parametrize(
    "bad", ["../1", "1/../../etc", "-1", "0", "01", "1.0", "abc", "", "1000000000", True, 0, 1_000_000_000]
)
def test_only_positive_integer_versions_are_accepted(tmp_path: Path, bad: object) -> None:
    registry = Registry(tmp_path)
    _publish(registry)
    with pytest.raises(InvalidVersion):
        registry.version_dir(bad)  # type: ignore[arg-type]


def test_the_largest_version_id_a_folder_can_have_is_a_version_id() -> None:
    # As a number and as a folder name alike: 1..999999999 (an admin body's 1000000000 is invalid, not missing).
    assert parse_version(999_999_999) == parse_version("999999999") == 999_999_999


def test_resolve_prefers_production_then_newest(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(VersionNotFound, match="make train"):
        registry.resolve()
    _publish(registry)
    _publish(registry)
    assert registry.resolve() == 2
    registry.promote(1)
    assert registry.resolve() == 1
    assert registry.resolve("production") == 1
    with pytest.raises(VersionNotFound):
        registry.resolve(7)


def test_production_is_followed_even_to_a_version_that_is_gone(tmp_path: Path) -> None:
    """The newest stands in only while production is unset, never for a promoted version whose folder went."""
    registry = Registry(tmp_path)
    _publish(registry)
    _publish(registry)
    registry.promote(1)
    shutil.rmtree(registry.version_dir(1))
    assert registry.resolve() == 1
    with pytest.raises(VersionNotFound, match="model version 1 does not exist"):
        registry.verify(registry.resolve())


def test_an_aliases_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _publish(registry)
    (registry.model_dir / layout.ALIASES_FILE).mkdir()
    with pytest.raises(AliasError, match=r"aliases.json cannot be read \(Is a directory\); fix or delete it"):
        registry.resolve()


def test_aliases_are_written_atomically_and_readable_by_others(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    _publish(registry)
    registry.promote(1, layout.STAGING)
    path = registry.model_dir / layout.ALIASES_FILE
    assert json.loads(path.read_text())["aliases"] == {"staging": 1}
    assert path.stat().st_mode & 0o044 == 0o044
    assert not [p for p in registry.model_dir.iterdir() if p.name.startswith(".aliases.json.")]


def test_promote_refuses_unknown_alias_and_corrupt_version(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = _publish(registry)
    with pytest.raises(AliasError):
        registry.promote(version, "canary")
    (registry.version_dir(version) / layout.ONNX_FILE).write_bytes(b"bad")
    with pytest.raises(CorruptVersion):
        registry.promote(version)


def test_rollback_walks_back_through_promotions(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for _ in range(3):
        registry.promote(_publish(registry))
    assert registry.aliases()["production"] == 3
    assert registry.rollback() == 2
    assert registry.rollback() == 1
    with pytest.raises(AliasError, match="no earlier version"):
        registry.rollback()
    assert registry.aliases()["production"] == 1


def test_a_rollback_to_a_checked_target_refuses_another(tmp_path: Path) -> None:
    """What the admin route load-checked is where the alias goes, or nowhere."""
    registry = Registry(tmp_path)
    for _ in range(3):
        registry.promote(_publish(registry))
    with pytest.raises(AliasMoved, match="a rollback now goes to 2, not 1"):
        registry.rollback(expected=1)
    assert registry.aliases()["production"] == 3
    assert registry.rollback(expected=2) == 2


def test_a_promotion_repeated_is_undone_by_one_rollback(tmp_path: Path) -> None:
    """A retried promote recorded twice made later rollbacks land on a version already rolled back."""
    registry = Registry(tmp_path)
    first, second, third, fourth = (_publish(registry) for _ in range(4))
    registry.promote(first)
    registry.promote(second)
    registry.promote(third)
    registry.promote(third)  # a retry
    assert registry.rollback() == second
    registry.promote(fourth)
    assert registry.rollback() == second  # not third, which was rolled back
    assert registry.rollback() == first


def test_rollback_without_production_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AliasError, match="not set"):
        Registry(tmp_path).rollback()


def test_a_deleted_version_number_is_never_reused(tmp_path: Path) -> None:
    import shutil

    registry = Registry(tmp_path)
    registry.promote(_publish(registry))
    registry.promote(_publish(registry))
    shutil.rmtree(registry.version_dir(2))  # production still names 2
    assert _publish(registry) == 3  # a new, unpromoted build must not become "version 2"


def test_promote_as_compare_and_set(tmp_path: Path) -> None:
    from registry import AliasMoved

    registry = Registry(tmp_path)
    first, second, third = _publish(registry), _publish(registry), _publish(registry)
    registry.promote(first, expected=None)
    registry.promote(second, expected=first)
    with pytest.raises(AliasMoved):
        registry.promote(third, expected=first)  # decided against v1, but v2 is production now
    assert registry.aliases()["production"] == second


@pytest.mark.parametrize("content", ['["production", 1]', '{"aliases": {"production": "x"}}', '{"aliases": []}'])
def test_malformed_aliases_file_is_an_alias_error(tmp_path: Path, content: str) -> None:
    registry = Registry(tmp_path)
    _publish(registry)
    (registry.model_dir / layout.ALIASES_FILE).write_text(content)
    with pytest.raises(AliasError):
        registry.aliases()


def test_rollback_refuses_a_corrupt_target(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.promote(_publish(registry))
    registry.promote(_publish(registry))
    (registry.version_dir(1) / layout.ONNX_FILE).write_bytes(b"tampered")
    with pytest.raises(CorruptVersion):
        registry.rollback()
    assert registry.aliases()["production"] == 2


# ---- the metadata schema ---------------------------------------------------------------------------


def test_metadata_round_trips_through_the_schema(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = _publish(registry)
    read = registry.model_metadata(version)
    assert read.version == version and set(read.files) == set(registry.verify(version)["files"])
    assert read.preprocessing == Preprocessing(
        pixel_scale=1 / 255, canvas=28, digit_box=20, ink="bright", centre="mass"
    )
    assert read.input.image_shape == (28, 28, 1) and read.labels == tuple(range(10))
    assert read.metrics == {"test_accuracy": 0.9} and read.training_config == {"model": "cnn"}
    assert ModelMetadata.from_dict(read.to_dict()) == read
    assert registry.metadata(version) == read.to_dict()


def test_a_version_written_before_the_softening_was_recorded_is_softened_as_its_pictures_were() -> None:
    doc = dict(model_facts().to_dict(), version=1, files={layout.ONNX_FILE: "0" * 64})
    assert ModelMetadata.from_dict(_with(doc, "preprocessing.softening", 0)).preprocessing.softening == 0.0
    older = ModelMetadata.from_dict(_with(doc, "preprocessing.softening", ...))
    assert older.preprocessing.softening == UNRECORDED_SOFTENING == 0.7
    assert older.to_dict()["preprocessing"]["softening"] == 0.7  # written back, it says so


def test_fields_the_schema_does_not_name_are_kept(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    doc = dict(model_facts().to_dict(), notes={"by": "hand"}, git_commit=None)
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(b"onnx")
    version = registry.publish(staging, doc)
    assert registry.model_metadata(version).extra == {"notes": {"by": "hand"}}
    assert registry.metadata(version)["notes"] == {"by": "hand"}


def _with(doc: dict, path: str, value: object) -> dict:
    """A copy of ``doc`` with the dotted ``path`` set to ``value`` (deleted when value is ...)."""
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("preprocessing.canvas", ..., "preprocessing.canvas is missing"),
        ("preprocessing.digit_box", ..., "preprocessing.digit_box is missing"),
        ("preprocessing.pixel_scale", 0, "preprocessing.pixel_scale must be a positive finite number, got 0"),
        ("preprocessing.canvas", "28", "preprocessing.canvas must be a positive integer, got '28'"),
        ("preprocessing.canvas", 32, "preprocessing.canvas must be the input's side 28, got 32"),
        ("preprocessing.digit_box", 40, r"preprocessing.digit_box must be in 1..28 \(the canvas\), got 40"),
        ("preprocessing.ink", "dark", "preprocessing.ink must be 'bright', got 'dark'"),
        ("preprocessing.softening", -0.5, "preprocessing.softening must be a number from 0 to 3, got -0.5"),
        ("preprocessing.softening", 40, "preprocessing.softening must be a number from 0 to 3, got 40"),
        ("preprocessing.softening", "0.7", "preprocessing.softening must be a number from 0 to 3, got '0.7'"),
        ("input.name", ..., "input.name is missing"),
        ("input.shape", [None, 32, 32, 1], r"input.shape must be \[null, 28, 28, 1\]"),
        ("outputs.features", ..., "outputs.features is missing"),
        ("labels", [], "labels must be a non-empty list of integers"),
        ("labels", [0, 1, 2], "labels has 3 entries but outputs.probabilities.shape ends in 10"),
        ("version", "1", "version must be a positive integer"),
        ("schema_version", 99, "schema_version 99 is newer than this code reads"),
        ("metrics", [1], "metrics must be a JSON object"),
        ("training_config.momentum", "0.9", r"training_config.momentum must be a number in \[0, 1\), got '0.9'"),
        ("training_config.nesterov", "yes", "training_config.nesterov must be true or false"),
        ("training_config.early_stopping", 0, "training_config.early_stopping must be a positive integer"),
        ("training_config.optimizer", "", "training_config.optimizer must be a non-empty string"),
        ("metrics.test_loss", -1.0, r"metrics.test_loss must be a number in \[0, inf\)"),
        ("metrics.test_accuracy", 1.5, r"metrics.test_accuracy must be a number in \[0, 1\]"),
        ("metrics.scored_as_served", "yes", "metrics.scored_as_served must be true or false"),
    ],
)
def test_a_bad_metadata_field_is_refused_by_name(path: str, value: object, message: str) -> None:
    doc = dict(model_facts().to_dict(), version=1, files={layout.ONNX_FILE: "0" * 64})
    ModelMetadata.from_dict(doc)  # the unchanged document is fine
    with pytest.raises(InvalidMetadata, match=f"^metadata.json: {message}"):
        ModelMetadata.from_dict(_with(doc, path, value))


def test_a_version_with_bad_metadata_is_refused_on_read_and_listed_without_facts(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = _publish(registry)
    path = registry.version_dir(version) / layout.METADATA_FILE
    path.write_text(json.dumps(_with(json.loads(path.read_text()), "preprocessing.digit_box", ...)))
    with pytest.raises(InvalidMetadata, match=r"preprocessing\.digit_box is missing"):
        registry.model_metadata(version)
    with pytest.raises(CorruptVersion):
        registry.verify(version)
    (row,) = registry.describe()
    assert row.version == version and row.model == "?" and row.test_accuracy is None


def test_publish_refuses_metadata_the_schema_refuses(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(b"onnx")
    with pytest.raises(InvalidMetadata, match="preprocessing is missing"):
        registry.publish(staging, {k: v for k, v in model_facts().to_dict().items() if k != "preprocessing"})
    assert registry.versions() == []


def test_a_version_from_before_the_recipe_fields_reads_as_what_trained_it() -> None:
    """Versions registered before the optimiser flags were all Adam with a cosine decay and had no test loss."""
    facts = model_facts()
    assert facts.training_config == {"model": "cnn"} and "test_loss" not in facts.metrics
    assert facts.recipe == Recipe(model="cnn", optimizer="adam", lr_schedule="cosine")
    assert facts.recipe.summary() == "cnn, adam, cosine learning rate"
    assert facts.evaluation == Evaluation(test_accuracy=0.9, test_loss=None)


def test_the_recipe_is_read_typed_from_the_training_config() -> None:
    config = {"model": "mlp", "optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True,
              "lr_schedule": "constant", "early_stopping": 3, "label_smoothing": 0.1, "epochs": 5, "batch_size": 128,
              "seed": 4}  # fmt: skip
    recipe = dataclasses.replace(model_facts(), training_config=config).recipe
    assert (recipe.optimizer, recipe.momentum, recipe.nesterov, recipe.early_stopping) == ("sgd", 0.9, True, 3)
    assert recipe.summary() == (
        "mlp, sgd lr 0.01 momentum 0.9 (Nesterov), constant learning rate, 5 epochs of batch 128, "
        "early stopping after 3 without a lower validation loss, label smoothing 0.1"
    )
    averaged = dataclasses.replace(model_facts(), training_config={**config, "ema": True}).recipe
    assert averaged.ema and averaged.summary().endswith("label smoothing 0.1, moving average of the weights")


def test_the_registry_list_keeps_its_columns_whatever_the_model_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import registry_cli

    registry = Registry(tmp_path)
    for model in ("mlp", "cnn_bn"):
        staging = registry.new_staging_dir()
        (staging / layout.ONNX_FILE).write_bytes(model.encode())
        served = {"test_accuracy": 0.99, "scored_as_served": True}
        registry.publish(staging, dataclasses.replace(model_facts(), training_config={"model": model}, metrics=served))
    registry.promote(2)
    assert registry_cli.main(["--registry", str(tmp_path), "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    # The folder may also follow the command, as people type it; the same list either way.
    assert registry_cli.main(["list", "--registry", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [header, *rows]
    assert [line.index("%") for line in rows] == [header.index("accuracy") + len("accuracy") - 1] * 2
    assert rows[1].split()[:2] == ["2", "cnn_bn"] and rows[1].endswith("production")
    # The served version's folder deleted: the list showed no production at all, while replicas still serve it.
    shutil.rmtree(registry.version_dir(2))
    assert registry_cli.main(["--registry", str(tmp_path), "list"]) == 0
    *_, last = capsys.readouterr().out.splitlines()
    assert last == "production -> 2, which is not in the registry: promote a version that is"


def test_the_registry_list_shows_the_versions_when_the_aliases_file_is_broken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What an operator repairing the file needs to see; it said only that the file was broken."""
    from training import registry_cli

    registry = promoted_versions(tmp_path, [b"onnx"])
    (registry.model_dir / layout.ALIASES_FILE).write_text("{not json")
    assert registry_cli.main(["--registry", str(tmp_path), "list"]) == 1
    out, err = capsys.readouterr()
    header, row, *_ = out.splitlines()  # the note on accuracies scored unsoftened may follow
    assert header.split()[0] == "version"
    assert row.split()[0] == "1" and row.endswith("?")
    assert err.startswith("error: ") and "aliases.json is not valid JSON; fix or delete it" in err


def test_the_registry_list_marks_an_accuracy_scored_on_unsoftened_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Versions trained before training scored digits as served recorded a lower accuracy than they serve: the list
    marks them, so 98.2 % beside a newer 99.0 % is not read as a point better."""
    from training import registry_cli

    registry = Registry(tmp_path)
    for metrics in ({"test_accuracy": 0.982}, {"test_accuracy": 0.99, "scored_as_served": True}):
        staging = registry.new_staging_dir()
        (staging / layout.ONNX_FILE).write_bytes(b"onnx")
        registry.publish(staging, dataclasses.replace(model_facts(), metrics=metrics))
    assert registry_cli.main(["--registry", str(tmp_path), "list"]) == 0
    _, old, new, note = capsys.readouterr().out.splitlines()
    assert "98.20%*" in old and "99.00% " in new and "*" not in new
    assert note == registry_cli.UNSOFTENED_NOTE and note.startswith("* scored on the test digits unsoftened")
