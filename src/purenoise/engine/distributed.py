"""Multi-process training with torchrun: process groups, devices, and one report per failure.

``torchrun --nproc_per_node=N -m purenoise train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; :func:`init_distributed` joins the group (NCCL on GPUs, gloo on CPUs). Only rank
0 writes files. When a run fails, :func:`report_once` prints the first process's error and no
other, and :func:`peer_failed` tells a process that only lost contact with the one that failed. The synchronized BatchNorm layers (``sync_bn: true``) are part of DAR-BN's
package (:func:`purenoise.darbn.convert_sync_darbn`).
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from purenoise.errors import ConfigError

__all__ = ["DistEnv", "init_distributed", "resolve_device", "any_rank", "cleanup", "report_once", "peer_failed",
           "exit_process"]

# Messages of the errors a process gets in its next collective when another process died.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` means this process's local GPU."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(pref)
    except RuntimeError:
        raise ConfigError(f"config key 'device' is {pref!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {pref!r} was asked for but CUDA is not available here; use device: cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(device_pref: str = "auto", timeout_s: float = 1800) -> DistEnv:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                **({"device_id": device} if device.type == "cuda" else {}))
    return DistEnv(rank, world, local_rank, device)


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True when ``flag`` is true on any process (a collective: every rank must call it)."""
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _report_marker() -> Path | None:
    """The file whose creation claims the report under torchrun (None outside torchrun).

    torchrun gives each launch attempt its own folder: the parent of the workers'
    ``TORCHELASTIC_ERROR_FILE`` folders.
    """
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if _env_world_size() <= 1 or not error_file:
        return None
    return Path(error_file).parent.parent / "purenoise-error-reported"


def _first_to_report() -> bool:
    """Whether this process is the first of its launch to fail (always True outside torchrun)."""
    marker = _report_marker()
    if marker is None:
        return True
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError:
        return True
    os.write(fd, str(_env_rank()).encode())
    os.close(fd)
    return True


def report_once(message: str, *, collective: bool = False) -> bool:
    """Print ``message`` to stderr once per run; return whether this process printed it.

    Every rank meets the same bad config or data during set-up, and when one rank fails during
    training the others fail in their next collective: the first failure is the root cause, and
    one message is enough. Under torchrun the first rank to create a marker file in the launch's
    folder reports; outside torchrun every process reports (duplicates are better than silence).
    The error is printed rather than recorded with torchrun's ``@record``, whose summary would
    repeat it. ``{prefix}`` in ``message`` becomes ``"[rank N] "`` when there are several ranks.

    Args:
        message: The text, with an optional ``{prefix}`` placeholder.
        collective: Every rank raised this error together (they agreed on it through an
            all-reduce), so rank 0, which is alive and wrote any checkpoint, reports it.
    """
    if not ((_env_rank() == 0) if collective else _first_to_report()):
        return False
    prefix = f"[rank {_env_rank()}] " if _env_world_size() > 1 else ""
    print(message.replace("{prefix}", prefix), file=sys.stderr, flush=True)
    return True


def peer_failed(error: BaseException) -> bool:
    """Whether ``error`` follows another process's failure (under torchrun).

    Either another rank has already reported its error, or ``error`` is what a collective raises
    when the process at the other end has died.
    """
    if _env_world_size() <= 1:
        return False
    marker = _report_marker()
    if marker is not None and marker.exists():
        return True
    if not isinstance(error, RuntimeError):
        return False
    if isinstance(error, getattr(dist, "DistNetworkError", ())):
        return True
    return any(s in str(error) for s in _PEER_GONE)


def exit_process(code: int) -> None:
    """End the process with ``code``; under torchrun without the interpreter's finalization.

    Once DDP has used the gloo backend, torch keeps it and its worker threads alive past
    ``destroy_process_group``. A C++ thread that takes the GIL while the interpreter finalizes is
    ended inside a C++ frame, which aborts the process ("terminate called without an active
    exception"). A process that torchrun started therefore flushes its output and leaves through
    ``os._exit``; nothing is lost, since every file a run writes is closed and renamed into place
    before training returns. A single process exits normally (``atexit`` handlers run).
    """
    if _env_world_size() > 1:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing left to save
                pass
        os._exit(code)
    sys.exit(code)
