"""What every benchmark results file records about its run: command, date, commit, load."""

import datetime
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def commit_of(root=ROOT):
    """The short hash of the checkout at ``root`` (empty outside a git checkout)."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root
    )
    return done.stdout.strip()


def run_meta(script, argv, started, load_before, **extra):
    """The run's record: the command that reproduces it, UTC date, commit, machine, the load
    average before and after, the wall time since ``started`` (``time.perf_counter()``), and
    ``extra`` (threads, versions)."""
    commit = commit_of()
    args = argv if argv is not None else sys.argv[1:]
    return {
        "command": f"TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/{script} " + " ".join(args),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "unknown",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        **extra,
        "load average before / after": f"{load_before} / {os.getloadavg()}",
        "wall time": f"{time.perf_counter() - started:.0f} s",
    }
