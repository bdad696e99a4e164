"""Helpers shared by test modules: a time limit for a block, and running the CLI to an expected error."""
from __future__ import annotations

import signal
from contextlib import contextmanager

from purenoise.cli import main


@contextmanager
def deadline(seconds: int):
    """Raise TimeoutError in the main thread if the block runs longer than ``seconds`` (a hang fails)."""
    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def cli_error(capsys, *argv: str, seconds: int = 60) -> str:
    """Run the CLI, expect exit code 2 and one clean message (no traceback); return the message."""
    capsys.readouterr()
    with deadline(seconds):
        code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("purenoise: error: ") and err.count("purenoise: error:") == 1
    assert "Traceback" not in err
    return err
