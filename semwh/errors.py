"""Exceptions raised by semwh.

The library raises these and never prints or exits; the CLI turns them into one red line on
stderr and exit code 1.
"""


class SemwhError(Exception):
    """Base class of every error semwh raises on purpose."""


class ConfigError(SemwhError):
    """A setting or option is missing or has an invalid value."""


class WarehouseError(SemwhError):
    """The warehouse folder or its registry database cannot be used."""


class SchemaMismatchError(WarehouseError):
    """The registry schema revision differs from the one this code expects."""


class WarehouseBusyError(WarehouseError):
    """Another process holds the registry database for writing."""


class VectorFileError(WarehouseError):
    """A registered vector file is missing or differs from its record in ``vector_files``."""


class DuplicateError(SemwhError):
    """A row would violate a uniqueness rule of the registry."""


class NotFoundError(SemwhError):
    """A named object (concept, space, model, query, ...) does not exist."""


class InputError(SemwhError):
    """An input file or value is malformed; the message names the file and line or key."""


class DegenerateInputError(SemwhError):
    """An analysis input is degenerate (constant rows, NaN/inf, too few concepts)."""


class ResourceError(SemwhError):
    """A job would not fit in the available memory or disk."""


class ReadOnlyError(SemwhError):
    """A statement tried to write through a read-only interface."""


class MissingDependencyError(SemwhError):
    """An optional package needed for this feature is not installed."""


class InvalidNameError(ConfigError, InputError):
    """A space, model or word-model name breaks the naming rule (:func:`semwh.names.check_name`)."""


class SandboxError(SemwhError):
    """User SQL asked for what its sandbox forbids (several statements, a file elsewhere)."""


class OutputError(SemwhError):
    """An output path cannot be used (inside the warehouse, a folder, an existing file)."""
