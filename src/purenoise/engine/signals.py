"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (a scheduler's pre-emption).

The training process only notes the signal; the loop checks it after every step, saves a
resumable checkpoint at that exact position and ends with :class:`TrainingInterrupted`. A
second Ctrl-C stops at once. DataLoader workers ignore the first signal (it reaches them too when
sent to the whole process group) so the main process can finish its step and save.
"""
from __future__ import annotations

import signal
from types import TracebackType

from purenoise.errors import PureNoiseError

__all__ = ["StopSignals", "TrainingInterrupted", "leave_stop_signals_to_main"]

_WORKER_GRACE_S = 60


class TrainingInterrupted(PureNoiseError):
    """SIGINT/SIGTERM arrived; a resumable checkpoint of the current position was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """Within the block, SIGINT and SIGTERM set :attr:`received` instead of stopping the process."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.received = signum

    def __enter__(self) -> StopSignals:
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old.clear()


def leave_stop_signals_to_main(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: SIGINT and SIGTERM no longer end the worker at once.

    A signal sent to a whole process group (Ctrl-C in a terminal, SLURM's scancel) would kill
    the workers too, and the main process would fail on its next batch, or in the middle of
    saving, instead of saving a resumable checkpoint. The main process stops after its current
    step and shuts its workers down; a worker still alive a minute after the signal (a stuck one
    that the DataLoader tried to terminate) ends itself with SIGALRM.
    """

    def stop_later(signum, frame):
        signal.alarm(_WORKER_GRACE_S)

    signal.signal(signal.SIGINT, stop_later)
    signal.signal(signal.SIGTERM, stop_later)
