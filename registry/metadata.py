"""The typed schema of a version's ``metadata.json``: what training writes and everyone reads.

One schema both ways. Training builds a ``ModelMetadata`` and hands it to ``Registry.publish``,
which adds the version number and the checksums and writes ``to_dict()`` once ``from_dict`` has
accepted it; every reader parses the file with ``ModelMetadata.from_dict``, which refuses a missing
or bad field with an ``InvalidMetadata`` naming it (``metadata.json: preprocessing.canvas is missing``).
Dataclasses and plain checks: the registry depends on numpy only.

The facts the service acts on (input, outputs, preprocessing, labels, identity) are typed and checked
against the one signature of ``registry.layout``; the report sections (metrics, training config, data, ...)
stay JSON objects as written (``registry.report`` types their recipe and test scores), as do unnamed fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry import layout
from registry.errors import InvalidMetadata
from registry.json_fields import Fields, Shape, is_int
from registry.report import Evaluation, Recipe, check_report

INK_BRIGHT = "bright"  # 0 is background, full scale is ink: MNIST's polarity, the only one the service makes
CENTRE_MASS = "mass"  # the digit's centre of mass on the canvas centre, as MNIST placed its digits
# The softening of a version written before ``preprocessing.softening`` was: its pictures were softened this much, and
# its training digits blurred about as much by their augmentation.
UNRECORDED_SOFTENING = 0.7
MAX_SOFTENING = 3.0  # a sigma past this blurs a 28x28 digit into a blob: a mistake, not a recipe
REPORT_SECTIONS = ("training_config", "data", "metrics", "guards_calibration", "training", "promotion")
_OPTIONAL_SCALARS = ("created", "git_commit", "parameters")
_NAMED = {
    "schema_version", "name", "version", "files", "input", "outputs", "preprocessing", "labels",
    "library_versions", *REPORT_SECTIONS, *_OPTIONAL_SCALARS,
}  # fmt: skip


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Shape | None = None  # outputs may leave it out; the backends read it from the graph


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: Shape  # [None, IMAGE_SIDE, IMAGE_SIDE, 1]
    dtype: str = "float32"
    layout: str = "NHWC"

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One image's shape, without the batch dimension: (28, 28, 1)."""
        return tuple(int(d) for d in self.shape[1:] if d is not None)


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes the model's input; the service applies exactly this."""

    pixel_scale: float  # model input = pixel (0..255) * pixel_scale
    canvas: int  # side of the image the model takes, px (the input's height and width)
    digit_box: int  # the digit's longer side is scaled to this many px before it is centred
    ink: str = INK_BRIGHT
    centre: str = CENTRE_MASS
    # Every input is blurred by a Gaussian of this sigma (px) before the model, as training's digits were by their
    # augmentation (digits.softening); 0: taken as it is.
    softening: float = UNRECORDED_SOFTENING


@dataclass(frozen=True)
class ModelMetadata:
    input: InputSpec
    outputs: dict[str, TensorSpec]  # by role: layout.OUTPUT_PROBABILITIES, layout.OUTPUT_FEATURES
    preprocessing: Preprocessing
    labels: tuple[int, ...]  # the digit each probability stands for, in output order
    created: str | None = None  # UTC ISO 8601
    git_commit: str | None = None
    parameters: int | None = None
    training_config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    guards_calibration: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    promotion: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # fields this schema does not name, as written
    # Set by Registry.publish; a metadata.json always has them.
    version: int | None = None
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, metadata.json excluded
    name: str = layout.MODEL_NAME
    schema_version: int = layout.METADATA_SCHEMA_VERSION

    @classmethod
    def from_dict(cls, doc: object) -> ModelMetadata:
        """Parse a metadata.json document; InvalidMetadata names the first missing or bad field."""
        top = Fields(doc, "")
        schema = top.integer("schema_version")
        if schema > layout.METADATA_SCHEMA_VERSION:
            raise InvalidMetadata(
                f"metadata.json: schema_version {schema} is newer than this code reads "
                f"({layout.METADATA_SCHEMA_VERSION}); update the service"
            )
        facts = cls(
            input=_input(top.object("input")),
            outputs=_outputs(top.object("outputs")),
            preprocessing=_preprocessing(top.object("preprocessing")),
            labels=_labels(top),
            created=top.text("created", optional=True),
            git_commit=top.text("git_commit", optional=True),
            parameters=top.integer("parameters", optional=True),
            **{section: top.section(section) for section in (*REPORT_SECTIONS, "library_versions")},
            extra={key: value for key, value in top.obj.items() if key not in _NAMED},
            version=top.integer("version"),
            files=_files(top),
            name=top.text("name", choices=(layout.MODEL_NAME,)),
            schema_version=schema,
        )
        _check_consistent(facts)
        check_report(facts.training_config, facts.metrics)
        return facts

    @property
    def recipe(self) -> Recipe:  # how it was trained; older versions get what they were trained with
        return Recipe.from_config(self.training_config)

    @property
    def evaluation(self) -> Evaluation:
        return Evaluation.from_metrics(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``from_dict(to_dict())`` gives the same facts back)."""
        doc: dict[str, Any] = dict(self.extra)
        doc.update(
            schema_version=self.schema_version,
            name=self.name,
            input={
                "name": self.input.name,
                "shape": list(self.input.shape),
                "dtype": self.input.dtype,
                "layout": self.input.layout,
            },
            outputs={role: _tensor_dict(spec) for role, spec in self.outputs.items()},
            preprocessing={
                "pixel_scale": self.preprocessing.pixel_scale,
                "ink": self.preprocessing.ink,
                "canvas": self.preprocessing.canvas,
                "digit_box": self.preprocessing.digit_box,
                "centre": self.preprocessing.centre,
                "softening": self.preprocessing.softening,
            },
            labels=list(self.labels),
            library_versions=dict(self.library_versions),
            **{section: getattr(self, section) for section in REPORT_SECTIONS},
        )
        doc.update({key: getattr(self, key) for key in _OPTIONAL_SCALARS if getattr(self, key) is not None})
        if self.version is not None:
            doc.update(version=self.version, files=dict(self.files))
        return doc


def _tensor_dict(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name} if spec.shape is None else {"name": spec.name, "shape": list(spec.shape)}


def _input(fields: Fields) -> InputSpec:
    return InputSpec(
        name=fields.text("name"),
        shape=fields.shape("shape"),
        dtype=fields.text("dtype", choices=("float32",)),
        layout=fields.text("layout", choices=("NHWC",)),
    )


def _outputs(fields: Fields) -> dict[str, TensorSpec]:
    specs = {}
    for role in (layout.OUTPUT_PROBABILITIES, layout.OUTPUT_FEATURES):
        spec = fields.object(role)
        specs[role] = TensorSpec(spec.text("name"), spec.shape("shape", optional=True))
    return specs


def _preprocessing(fields: Fields) -> Preprocessing:
    return Preprocessing(
        pixel_scale=fields.positive_number("pixel_scale"),
        canvas=fields.integer("canvas"),
        digit_box=fields.integer("digit_box"),
        ink=fields.text("ink", choices=(INK_BRIGHT,)),
        centre=fields.text("centre", choices=(CENTRE_MASS,)),
        softening=fields.number("softening", 0.0, MAX_SOFTENING, default=UNRECORDED_SOFTENING),
    )


def _labels(top: Fields) -> tuple[int, ...]:
    labels = top.value("labels")
    if not isinstance(labels, list) or not labels or not all(is_int(label) for label in labels):
        raise top.bad("labels", "a non-empty list of integers")
    if len(set(labels)) != len(labels):
        raise top.bad("labels", "a list without repeats")
    return tuple(labels)


def _files(top: Fields) -> dict[str, str]:
    files = top.value("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise top.bad("files", "an object of relative path -> sha256")
    return dict(files)


def _check_consistent(facts: ModelMetadata) -> None:
    """The facts must fit each other and the one signature the service serves (``registry.layout``)."""
    side = layout.IMAGE_SIDE
    if facts.input.shape != (None, side, side, 1):
        shown = list(facts.input.shape)
        raise InvalidMetadata(f"metadata.json: input.shape must be [null, {side}, {side}, 1], got {shown}")
    prep = facts.preprocessing
    if prep.canvas != side:
        raise InvalidMetadata(f"metadata.json: preprocessing.canvas must be the input's side {side}, got {prep.canvas}")
    if not 0 < prep.digit_box <= prep.canvas:
        raise InvalidMetadata(
            f"metadata.json: preprocessing.digit_box must be in 1..{prep.canvas} (the canvas), got {prep.digit_box}"
        )
    probabilities = facts.outputs[layout.OUTPUT_PROBABILITIES].shape
    if probabilities is not None and probabilities[-1] != len(facts.labels):
        raise InvalidMetadata(
            f"metadata.json: labels has {len(facts.labels)} entries but outputs.probabilities.shape "
            f"ends in {probabilities[-1]}"
        )
