"""Errors that purenoise raises for bad input.

Every problem a user can fix (a config key, a data path, a class count) raises a subclass of
:class:`PureNoiseError` whose message names the file, key or value at fault and what to do about
it. The CLI turns these into a one-paragraph message and exit code 2 instead of a traceback.
They also derive from the built-in exception a Python user would expect (``ValueError``,
``FileNotFoundError``), so library callers can catch either.
"""
from __future__ import annotations

import re

__all__ = ["PureNoiseError", "ConfigError", "DataError", "DataNotFoundError", "ModelError", "OutputError",
           "first_lines"]

# What torch's DataLoader makes of an exception raised in a worker process: it re-creates the
# exception from one string holding the worker's whole traceback.
_WORKER_MESSAGE = re.compile(r"^Caught \w+ in (?P<where>DataLoader worker process \d+)\.\nOriginal Traceback", re.S)


class PureNoiseError(Exception):
    """Base class of the errors a user can fix; the CLI reports them without a traceback.

    When a DataLoader worker raises one (a corrupt image read lazily), torch re-raises it in the
    main process as ``type(error)(text of the worker's traceback)``; the constructor keeps only
    the original message, so the user still sees one clear paragraph.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_strip_worker_traceback(args[0], type(self)),)
        super().__init__(*args)


def _strip_worker_traceback(message: str, cls: type) -> str:
    match = _WORKER_MESSAGE.match(message)
    if match is None:
        return message
    # The traceback ends with "module.Class: original message" (which may span several lines).
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    start = message.rfind(marker)
    if start < 0:
        return message
    return f"{message[start + len(marker):].rstrip()} (in {match['where']})"


class ConfigError(PureNoiseError, ValueError):
    """A configuration key, type or value is invalid."""


class DataError(PureNoiseError, ValueError):
    """Data on disk is malformed: a bad line in a split file, a corrupt image, a bad label."""


class DataNotFoundError(PureNoiseError, FileNotFoundError):
    """Dataset files are missing; the message says where they were expected and how to get them."""


class ModelError(PureNoiseError, ValueError):
    """A model name, checkpoint or layer conversion does not fit what was asked."""


class OutputError(PureNoiseError, OSError):
    """A run file (checkpoint, metrics, report) cannot be written: disk full, read-only, no rights.

    The message names the file and what to do; ``errno`` is the operating system's error number.
    The write was atomic, so the previous version of the file is intact.
    """


def first_lines(lines: list[str], limit: int = 10) -> str:
    """The first ``limit`` lines of a list of problems, and how many more there are.

    A message about many bad files names enough of them to act on without flooding the terminal.
    """
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more
