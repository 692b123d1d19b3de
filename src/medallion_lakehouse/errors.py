"""Named errors. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class MedallionError(Exception):
    """Base class: an error the CLI reports as a one-line message (no traceback)."""

    exit_code: int = 1


class ConfigError(MedallionError):
    """The configuration (medallion.toml, MEDALLION_* variables, flags) is invalid."""

    exit_code = 2


class MissingDependencyError(MedallionError):
    """An optional extra (spark, notebooks, ...) is not installed."""

    exit_code = 2


class EngineUnavailableError(MedallionError):
    """The compute engine cannot start (no Java, unreachable Spark master, ...)."""

    exit_code = 2


class TableNotFoundError(MedallionError):
    """A table name is unknown, or the table has not been written yet."""

    exit_code = 2


class LockHeldError(MedallionError):
    """Another run holds the lake's writer lock."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class LockLostError(MedallionError):
    """The writer lease on an object store was lost while held (not renewed, or replaced)."""

    exit_code = 75  # EX_TEMPFAIL: nothing more was committed; rerun when the lake is free


class LockUnsupportedError(MedallionError):
    """The lake's object store ignores conditional writes, so no lease can exclude writers."""

    exit_code = 2


class QualityGateError(MedallionError):
    """A `fail` data-quality rule tripped; nothing was committed by the failing step."""

    exit_code = 3


class AuditError(MedallionError):
    """Conservation or another lake invariant does not hold."""

    exit_code = 1
