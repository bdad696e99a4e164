"""Files written from the ground floor: atomically, with errors that say what to do. Torch-free.

Every file purenoise writes (checkpoints, metrics, eval.json, reports, figures, the statistics
cache) goes through :func:`atomic_write`: the bytes go to a temporary file in the target folder,
which is flushed, fsynced and renamed over the target, and the folder is fsynced. A crash, a kill
or a power cut at any moment leaves either the previous file or the new one, never a torn one.
The new file gets the mode ``open()`` would give it (``0o666`` less the umask).
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from purenoise.errors import OutputError, PureNoiseError

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json"]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before threads start.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is exhausted: free some space",
    errno.EROFS: "the file system is read-only: choose another output folder",
    errno.EACCES: "permission denied: make the folder writable or choose another output folder",
    errno.EPERM: "permission denied: make the folder writable or choose another output folder",
}


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Raises:
        OutputError: The file cannot be written (disk full, read-only, no rights). The message
            names the file and what to do; the previous version of the file is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # mkstemp creates the file readable by its owner only; give it the mode open() would
        # (some network file systems refuse chmod: the file is still written then).
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)
        except OSError:
            pass
        with os.fdopen(fd, "wb") as f:
            view = memoryview(data)
            # Chunked writes keep a kill mid-write a realistic possibility (and test of atomicity).
            for i in range(0, len(view), 1 << 24):
                f.write(view[i : i + (1 << 24)])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError) and not isinstance(e, PureNoiseError):
            advice = _ADVICE.get(e.errno, "check that the folder exists and is writable")
            error = OutputError(
                f"cannot write {path} ({e.strerror or e}); {advice}. Nothing was replaced: the "
                f"previous {path.name}, if any, is intact"
            )
            error.errno = e.errno
            raise error from e
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2, default: Any = None) -> Path:
    """Write ``obj`` as JSON (no NaN or infinity) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False, default=default) + "\n")
