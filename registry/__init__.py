"""Model registry: the on-disk contract shared by training and the service."""

from registry.errors import (
    AliasError,
    AliasMoved,
    CorruptVersion,
    FileNotPublished,
    InvalidMetadata,
    InvalidVersion,
    RegistryError,
    RegistryReadOnly,
    VersionNotFound,
)
from registry.files import file_sha256, parse_version
from registry.metadata import InputSpec, ModelMetadata, Preprocessing, TensorSpec
from registry.report import VersionInfo
from registry.store import Registry

__all__ = [
    "AliasError",
    "AliasMoved",
    "CorruptVersion",
    "FileNotPublished",
    "InputSpec",
    "InvalidMetadata",
    "InvalidVersion",
    "ModelMetadata",
    "Preprocessing",
    "Registry",
    "RegistryError",
    "RegistryReadOnly",
    "TensorSpec",
    "VersionInfo",
    "VersionNotFound",
    "file_sha256",
    "parse_version",
]
