"""Registry errors. Plain exceptions: the service maps them to HTTP in one place."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class for everything the registry refuses."""


class VersionNotFound(RegistryError):
    """The version (or the alias it came from) does not exist."""


class FileNotPublished(RegistryError):
    """A version holds no published file of that name (one its metadata.json lists)."""


class InvalidVersion(RegistryError):
    """A version id that is not a positive integer; no path is ever built from it."""


class CorruptVersion(RegistryError):
    """A version folder is incomplete, ambiguous, or fails its checksums."""


class AliasError(RegistryError):
    """An alias is unknown, or a rollback has nothing to go back to."""


class AliasMoved(AliasError):
    """A compare-and-set promotion found the alias changed since the decision."""


class RegistryReadOnly(RegistryError):
    """The registry cannot be written here (a read-only mount, no permission): promote or publish where it is
    mounted writable. The message names the path and the system's reason."""


class InvalidMetadata(CorruptVersion):
    """metadata.json misses a field or holds a bad one; the message names the field."""
