"""Errors that purenoise raises for bad input.

Every problem a user can fix (a config key, a data path, a class count) raises a subclass of
:class:`PureNoiseError` whose message names the file, key or value at fault and what to do about
it. The CLI turns these into a one-paragraph message and exit code 2 instead of a traceback.
They also derive from the built-in exception a Python user would expect (``ValueError``,
``FileNotFoundError``), so library callers can catch either.
"""
from __future__ import annotations

__all__ = ["PureNoiseError", "ConfigError", "DataError", "DataNotFoundError", "ModelError"]


class PureNoiseError(Exception):
    """Base class of the errors a user can fix; the CLI reports them without a traceback."""


class ConfigError(PureNoiseError, ValueError):
    """A configuration key, type or value is invalid."""


class DataError(PureNoiseError, ValueError):
    """Data on disk is malformed: a bad line in a split file, a corrupt image, a bad label."""


class DataNotFoundError(PureNoiseError, FileNotFoundError):
    """Dataset files are missing; the message says where they were expected and how to get them."""


class ModelError(PureNoiseError, ValueError):
    """A model name, checkpoint or layer conversion does not fit what was asked."""
