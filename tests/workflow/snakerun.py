"""Helpers for workflow tests: a throw-away copy of the project and a Snakemake runner."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def project_files() -> list[str]:
    """Tracked and not-ignored files of the checkout (what a clean clone would hold)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [f for f in out.splitlines() if f and (ROOT / f).is_file()]


def copy_project(dest: Path) -> Path:
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return dest


def run_in(project: Path, argv, *, env=None, check=True, timeout=900):
    """Run ``argv`` in ``project`` with the test environment plus ``env``; returns the
    CompletedProcess (stdout and stderr merged)."""
    full_env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(env or {}),
    }
    proc = subprocess.run(
        list(argv),
        cwd=project,
        env=full_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed:\n{proc.stdout[-6000:]}")
    return proc


def run_snakemake(project: Path, *args, env=None, check=True, timeout=900):
    """Run Snakemake in ``project``; returns the CompletedProcess (stdout and stderr merged)."""
    return run_in(project, [*SNAKEMAKE, *args], env=env, check=check, timeout=timeout)
