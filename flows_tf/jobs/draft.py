"""The evaluation a training job makes of its own model, kept in the model folder until the
evaluate step publishes it: one process per model instead of two, the same numbers.

A training job ends by running :func:`~flows_tf.jobs.evaluation.evaluate_model` on the model
it has just saved, into ``model_dir/evaluation/`` (the metrics JSON and the per-example values),
with a fingerprint of everything that evaluation read:

    fingerprint = hash(the settings the measurement reads (MEASUREMENT_SETTINGS), threads,
                       train.json, the teacher's train.json, the data's meta.json (it holds
                       each split's sha256), flows_tf's source)

The evaluate step (:func:`flows_tf.jobs.evaluate_job`) publishes the draft when its own
fingerprint is the same, and evaluates afresh otherwise: after a change of the evaluation
settings, of the code, of the model or its teacher, or when the draft is missing because the
in-process evaluation failed. A failed draft never fails the training job (its model would be
lost); the evaluate step then meets the same error itself, under its own name.

The training job also mirrors the draft into its MLflow run, as the files it will be published
as (:func:`staged`), and marks it so (:func:`mark_mirrored`): the evaluate step that publishes
a draft mirrored for its metrics file leaves MLflow alone, and so never imports it (1.7 s of
the step's 1.8). A draft it cannot publish, or one mirrored for another file, it mirrors
itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flows_tf import experiment as _experiment
from flows_tf.datasets.io import file_digest
from flows_tf.jobs import record
from flows_tf.jobs.logs import say

__all__ = [
    "DRAFT_DIR",
    "fingerprint",
    "is_mirrored",
    "mark_mirrored",
    "publish",
    "staged",
    "write_draft",
]

DRAFT_DIR = "evaluation"  # inside the model folder
_METRICS, _FINGERPRINT, _MIRRORED = "metrics.json", "fingerprint.json", "mirrored.json"
_SOURCE = Path(__file__).resolve().parents[1]  # the flows_tf package


@functools.cache  # the sources a process runs do not change under it
def _source_hash() -> str:
    """sha256 over flows_tf's Python sources, in path order (read once per process)."""
    digest = hashlib.sha256()
    for path in sorted(_SOURCE.rglob("*.py")):
        digest.update(str(path.relative_to(_SOURCE)).encode() + path.read_bytes())
    return digest.hexdigest()


def fingerprint(
    *,
    model_dir: str | Path,
    data_dir: str | Path | None,
    teacher_dir: str | Path | None,
    evaluation: dict,
    threads: dict | None,
) -> str:
    """The hash of what an evaluation of ``model_dir`` reads (see the module docstring)."""
    meta = None if data_dir is None else file_digest(Path(data_dir) / "meta.json")
    teacher = None if teacher_dir is None else file_digest(Path(teacher_dir) / record.SUMMARY_FILE)
    return _experiment.stable_hash(
        {
            "evaluation": evaluation,
            "threads": dict(threads or {}),
            "model": file_digest(Path(model_dir) / record.SUMMARY_FILE),
            "teacher": teacher,
            "data": meta,
            "source": _source_hash(),
        }
    )


def _draft_dir(model_dir: str | Path) -> Path:
    return Path(model_dir) / DRAFT_DIR


def write_draft(
    evaluate: Callable[[Path], object], *, model_dir: str | Path, fingerprint_of: str
) -> bool:
    """Run ``evaluate(metrics_path)`` into the draft folder and seal it with ``fingerprint_of``;
    returns whether it did.

    An error is reported and swallowed (the evaluate step will evaluate afresh); an old draft
    is removed first, so that it can never be published.
    """
    folder = _draft_dir(model_dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        evaluate(folder / _METRICS)
    except Exception as err:  # noqa: BLE001  (the trained model must survive any of them)
        say(f"in-process evaluation failed, the evaluate step will redo it: {err!r}")
        shutil.rmtree(folder, ignore_errors=True)
        return False
    record.write_json(folder / _FINGERPRINT, {"fingerprint": fingerprint_of})
    return True


def publish(model_dir: str | Path, metrics_path: str | Path, fingerprint_of: str) -> dict | None:
    """Copy a draft with fingerprint ``fingerprint_of`` to ``metrics_path`` and the per-example
    file beside it; returns the metrics, or None when there is no such draft."""
    folder = _draft_dir(model_dir)
    try:
        sealed = json.loads((folder / _FINGERPRINT).read_text())["fingerprint"]
        metrics = json.loads((folder / _METRICS).read_text())
    except (OSError, ValueError, KeyError):
        return None
    if sealed != fingerprint_of:
        return None
    metrics_path = Path(metrics_path)
    loglik_path = record.per_example_path(metrics_path)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(record.per_example_path(folder / _METRICS), loglik_path)
    metrics["loglik_file"] = loglik_path.name
    record.write_json(metrics_path, metrics)
    return metrics


@contextmanager
def staged(model_dir: str | Path, metrics_path: str | Path, fingerprint_of: str) -> Iterator[Path]:
    """The draft published into a temporary folder under ``metrics_path``'s name (the files the
    evaluate step will publish, byte for byte), for the training job to mirror; raises
    ``FileNotFoundError`` when there is no such draft."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(metrics_path).name
        if publish(model_dir, path, fingerprint_of) is None:
            raise FileNotFoundError(f"no draft with fingerprint {fingerprint_of} in {model_dir}")
        yield path


def _mirror_mark(metrics_path: str | Path, fingerprint_of: str) -> dict:
    return {"fingerprint": fingerprint_of, "metrics_file": str(metrics_path)}


def mark_mirrored(model_dir: str | Path, metrics_path: str | Path, fingerprint_of: str) -> None:
    """Record that the draft ``fingerprint_of`` is in its MLflow run, published as
    ``metrics_path``."""
    mark = _mirror_mark(metrics_path, fingerprint_of)
    record.write_json(_draft_dir(model_dir) / _MIRRORED, mark)


def is_mirrored(model_dir: str | Path, metrics_path: str | Path, fingerprint_of: str) -> bool:
    """Whether :func:`mark_mirrored` recorded this draft for this metrics file."""
    try:
        mark = json.loads((_draft_dir(model_dir) / _MIRRORED).read_text())
    except (OSError, ValueError):
        return False
    return mark == _mirror_mark(metrics_path, fingerprint_of)
