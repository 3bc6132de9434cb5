"""The names of the tags flowbench writes (shared with tables, tests and the UI views) and the
code's provenance recorded with every run."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from flows_tf.tracking.store import project_root

__all__ = ["SUMMARY_TAG", "SUPERSEDED_TAG", "TAG_PREFIX", "git_commit", "provenance_tags"]

TAG_PREFIX = "flowbench."
SUPERSEDED_TAG = TAG_PREFIX + "superseded_by"  # on a job run: the run id of its rerun
SUMMARY_TAG = TAG_PREFIX + "summary"  # "true" on the experiment's one summary run


@functools.lru_cache(maxsize=8)
def git_commit(root: Path | None = None) -> str:
    """``<sha>`` of the checkout (``+dirty`` when tracked files changed), or ``unknown``."""
    root = root or project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance_tags() -> dict[str, str]:
    """``git_commit`` (with ``+dirty``) and MLflow's own ``mlflow.source.git.commit``."""
    commit = git_commit()
    return {"git_commit": commit, "mlflow.source.git.commit": commit.split("+")[0]}
