"""Longest first: the priority of each training job of a grid, from the seconds it took before.

Among the jobs that are ready, Snakemake starts those of highest priority. On few cores a run
ends soonest when the longest jobs start first (longest-processing-time-first scheduling), so
that the short ones fill the cores at the end instead of one long job running alone. A
teacher's priority is its chain's length: its own seconds plus its longest student's, which
can only start after it.

A variant's expected seconds (its training job's wall seconds, all seeds) come from the first
table that has it: this folder's own record of an earlier run (Snakemake's ``benchmark:`` file
``benchmarks/train/{dataset}/{flow}.tsv``), then the committed table of a default run
(``workflow/job_seconds.tsv``, written by ``benchmarks/overhead.py --job-seconds``). A variant in
neither gets the longest known seconds, so that an unknown (possibly long) job is not left to
the end. Priorities change only the order of jobs, never what a job computes.

Example:
    >>> train_priorities([("d", "maf", None), ("d", "iaf_student", "maf"), ("d", "nice", None)],
    ...                  {("d", "maf"): 30.0, ("d", "iaf_student"): 500.0, ("d", "nice"): 20.0})
    {('d', 'maf'): 530, ('d', 'iaf_student'): 500, ('d', 'nice'): 20}
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "JOB_SECONDS",
    "TRAIN_BENCHMARKS",
    "read_job_seconds",
    "read_benchmarks",
    "train_priorities",
]

# relative to the project root, the workflow's working directory
TRAIN_BENCHMARKS = "benchmarks/train"  # Snakemake's benchmark files of the training jobs
JOB_SECONDS = "workflow/job_seconds.tsv"  # a default run's training job seconds

Variant = tuple[str, str]


def read_job_seconds(path: str | Path) -> dict[Variant, float]:
    """``{(dataset, flow): seconds}`` of a table with columns ``dataset``, ``flow``,
    ``seconds`` (tab-separated); empty when the file does not exist.

    Raises:
        ValueError: the table lacks one of the three columns.
    """
    path = Path(path)
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        missing = [c for c in ("dataset", "flow", "seconds") if c not in (rows.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column {missing} (needs dataset, flow, seconds)")
        return {(r["dataset"], r["flow"]): float(r["seconds"]) for r in rows}


def read_benchmarks(folder: str | Path) -> dict[Variant, float]:
    """``{(dataset, flow): seconds}`` from Snakemake's benchmark files of the training jobs
    under ``folder`` (``{dataset}/{flow}.tsv``, the wall seconds ``s`` of their last line)."""
    seconds = {}
    for tsv in sorted(Path(folder).glob("*/*.tsv")):
        with tsv.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows and rows[-1].get("s"):
            seconds[(tsv.parent.name, tsv.stem)] = float(rows[-1]["s"])
    return seconds


def train_priorities(
    variants: Iterable[tuple[str, str, str | None]], *tables: Mapping[Variant, float]
) -> dict[Variant, int]:
    """Each ``(dataset, flow)``'s priority, its expected seconds rounded (a teacher's: plus its
    longest student's). ``variants`` are ``(dataset, flow, teacher flow or None)``; ``tables``
    are searched in order; a variant in none gets the longest seconds known (1 if none is)."""
    variants = list(dict.fromkeys(variants))
    known = [t[(d, f)] for d, f, _ in variants for t in tables if (d, f) in t]
    default = max(known, default=1.0)

    def seconds(variant: Variant) -> float:
        return next((t[variant] for t in tables if variant in t), default)

    chain = {(d, f): seconds((d, f)) for d, f, _ in variants}
    for d, f, teacher in variants:
        if teacher is not None and (d, teacher) in chain:
            students = seconds((d, f)) + seconds((d, teacher))
            chain[(d, teacher)] = max(chain[(d, teacher)], students)
    return {v: round(s) for v, s in chain.items()}
