"""The registry contract: where a model version lives and what is in it.

    models/
      mnist/
        aliases.json             {"aliases": {"production": 3}, "history": [...]}
        config.pbtxt             Triton's model config, serving the production version (registry/triton.py)
        .lock                    flock target for publish/promote
        .last_version            highest version number ever published: numbers are never reused
        1/
          model.onnx             input "image" [N,28,28,1] float32 0..1 (1 = ink)
          model.savedmodel/      same signature, TensorFlow SavedModel
          model.keras            native Keras file, for fine-tuning only
          guards.json            OOD / adversarial statistics and thresholds
          config.pbtxt           NVIDIA Triton's config of this version (registry/triton.py)
          metadata.json          facts below + sha256 of every other file
          MODEL_CARD.md, *.png   human-readable evaluation

The file names are the ones NVIDIA Triton expects, so a version folder can be
served by Triton as-is. This module has no TensorFlow and no FastAPI import:
training writes through it and the service reads through it.
"""

from __future__ import annotations

MODEL_NAME = "mnist"

ONNX_FILE = "model.onnx"
SAVEDMODEL_DIR = "model.savedmodel"
KERAS_FILE = "model.keras"
GUARDS_FILE = "guards.json"
METADATA_FILE = "metadata.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
ALIASES_FILE = "aliases.json"
LOCK_FILE = ".lock"
LAST_VERSION_FILE = ".last_version"
STAGING_PREFIX = ".staging-"

# One fixed signature for every runtime (ONNX, SavedModel, Keras).
INPUT_NAME = "image"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_FEATURES = "features"
IMAGE_SIDE = 28
NUM_CLASSES = 10

PRODUCTION = "production"
STAGING = "staging"
KNOWN_ALIASES = (PRODUCTION, STAGING)

METADATA_SCHEMA_VERSION = 1
