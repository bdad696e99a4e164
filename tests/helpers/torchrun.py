"""Launch ``python -m purenoise`` under torchrun with two CPU processes (gloo), as a user would."""
from __future__ import annotations

import os
import subprocess
import sys


def torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``torchrun --standalone --nproc_per_node=2 -m purenoise ARGS`` and capture its output.

    ``PYTHONFAULTHANDLER`` makes a process that crashes in native code (an abort, a segfault)
    print every thread's Python stack, so a rare crash says where it happened.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "purenoise", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def outcome(proc: subprocess.CompletedProcess, chars: int = 4000) -> str:
    """A failure message: the exit code, the start of stderr (a crash's first words) and the ends of both."""
    err, out = proc.stderr, proc.stdout
    head = err[:chars] + ("\n[...]\n" + err[-chars:] if len(err) > 2 * chars else err[chars:])
    return f"exit code {proc.returncode}\n--- stderr ---\n{head}\n--- stdout (end) ---\n{out[-chars:]}"
