"""Model registry: the on-disk contract shared by training and the service."""

from registry.errors import (
    AliasError,
    AliasMoved,
    CorruptVersion,
    InvalidVersion,
    RegistryError,
    VersionNotFound,
)
from registry.files import file_sha256, parse_version
from registry.store import Registry, VersionInfo

__all__ = [
    "AliasError",
    "AliasMoved",
    "CorruptVersion",
    "InvalidVersion",
    "Registry",
    "RegistryError",
    "VersionInfo",
    "VersionNotFound",
    "file_sha256",
    "parse_version",
]
