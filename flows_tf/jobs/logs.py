"""Where a job's output goes: a log file for everything it prints, and timestamped lines."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

__all__ = ["log_to", "say"]


@contextlib.contextmanager
def log_to(path: str | Path | None) -> Iterator[None]:
    """Send stdout and stderr, TensorFlow's C++ logs and a failure's traceback to ``path``."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", buffering=1) as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                try:
                    yield
                except BaseException:
                    traceback.print_exc(file=fh)
                    raise
        finally:
            fh.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def say(line: str) -> None:
    """Print ``[HH:MM:SS] line`` at once."""
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)
