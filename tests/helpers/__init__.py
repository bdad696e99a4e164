"""Code the test modules share; test modules import from here, never from one another.

This module: a time limit for a block, and running the CLI to an expected error. The submodules:
:mod:`tests.helpers.writers` (small datasets in their real on-disk formats),
:mod:`tests.helpers.run_folders` (run folders as the trainer writes them),
:mod:`tests.helpers.references` (independent reference implementations to compare against) and
:mod:`tests.helpers.darbn` (models and checks the DAR-BN tests share).
"""
from __future__ import annotations

import signal
from contextlib import contextmanager


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
    from purenoise.cli import main  # here, so that importing a helper submodule does not load the CLI

    capsys.readouterr()
    with deadline(seconds):
        code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("purenoise: error: ") and err.count("purenoise: error:") == 1
    assert "Traceback" not in err
    return err
