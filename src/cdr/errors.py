"""Exceptions a user can fix. The CLI prints them as one line; anything else is a bug.

Every message names the file, field or component it is about, so that a user can act on it
without reading a traceback.
"""

from __future__ import annotations


class CdrError(Exception):
    """Base of all user-fixable errors. ``hint`` is shown below the message by the CLI."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(CdrError):
    """A config file or override is malformed: wrong key, wrong type, value out of range."""


class UnknownComponentError(CdrError):
    """A component name that no built-in or plugin registers."""


class PluginError(CdrError):
    """A plugin entry point failed to import or does not provide a valid component."""


class CompositionError(CdrError):
    """A combination of components that cannot work together (said up front, with why)."""


class DataError(CdrError):
    """Input data is malformed, missing, or leaves nothing to train or evaluate on."""


class DatasetFormatError(DataError):
    """A raw data file does not have the expected format (names file, line and field)."""


class SplitError(DataError):
    """A split cannot be made as configured (e.g. it leaves no training users)."""


class ModelFileError(CdrError):
    """Model weights are missing offline; says which file and how to provide it."""


class RunError(CdrError):
    """A run directory is missing, incomplete or would be overwritten."""


class BundleError(CdrError):
    """A serving bundle is missing, tampered with or does not match its schema."""


class InputError(CdrError):
    """A request or CLI argument is malformed (a history file, a user id, ``k``)."""


class DivergenceError(RunError):
    """Training produced a non-finite loss; names the stage and step."""


class UnsafePathError(CdrError):
    """A name or path built from user input would leave its parent directory."""
