"""The files a job reads and writes: its data folder's splits, its record (summary, history,
model spec, metrics, per-example values) and trained models. No TensorFlow at import."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows_tf import modelio, paths

if TYPE_CHECKING:
    import numpy as np
    from tensorflow_probability import distributions as tfd

    from flows_tf.experiment import Job

__all__ = [
    "HISTORY_COLUMNS",
    "SPEC_FILE",
    "SUMMARY_FILE",
    "load_model",
    "load_splits",
    "load_teacher",
    "per_example_path",
    "read_history",
    "read_spec",
    "read_summary",
    "save_per_example",
    "write_history",
    "write_json",
    "write_spec",
]

HISTORY_COLUMNS = ("step", "epoch", "train_loss", "val_loglik")
SPEC_FILE = "model_spec.json"
SUMMARY_FILE = "train.json"


def load_splits(
    job: Job, data_dir: str | Path | None, splits: tuple[str, ...]
) -> tuple[dict | None, dict]:
    """``(meta, {split: array})`` of a prepared data folder; ``(None, {})`` for an energy
    target, which has no data."""
    from flows_tf import datasets

    if not job.on_data:
        return None, {}
    data_dir = Path(data_dir)
    meta = datasets.read_meta(data_dir)
    return meta, {s: datasets.read_split(data_dir, s) for s in splits}


def write_history(path: Path, history: list[dict]) -> None:
    """``history.csv``: :data:`HISTORY_COLUMNS` first, then any other keys, empty when absent."""
    extra = sorted({k for row in history for k in row} - set(HISTORY_COLUMNS))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*HISTORY_COLUMNS, *extra], restval="")
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in (*HISTORY_COLUMNS, *extra)})


def _cell(text: str) -> float | str | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def read_history(path: str | Path) -> list[dict]:
    """The rows of a ``history.csv``: numbers as floats (``step`` an int), empty cells None."""
    with open(path, newline="") as fh:
        rows = [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    for row in rows:
        row["step"] = int(row["step"])
    return rows


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str):  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, obj: dict) -> None:
    """Sorted, indented JSON with NaN and infinities as null, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_json_safe(obj), indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def write_spec(model_dir: Path, spec: dict) -> Path:
    """``model_spec.json``: what :func:`flows_tf.modelio.load_flow` rebuilds the flow from."""
    path = Path(model_dir) / SPEC_FILE
    path.write_text(json.dumps(spec, indent=1, default=str))
    return path


def read_spec(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / SPEC_FILE).read_text())


def read_summary(model_dir: Path, job: Job) -> dict:
    """``train.json`` of ``job`` (a ValueError when it belongs to another job)."""
    summary = json.loads((Path(model_dir) / SUMMARY_FILE).read_text())
    if summary.get("job_key") != job.key:
        raise ValueError(
            f"{model_dir}/{SUMMARY_FILE} belongs to {summary.get('job_key')!r}, not {job.key!r}"
        )
    return summary


def load_model(model_dir: str | Path) -> tfd.TransformedDistribution:
    """The trained flow of a model folder (``model_spec.json`` and ``model/``)."""
    return modelio.load_flow(read_spec(model_dir), Path(model_dir) / "model")


def load_teacher(teacher_dir: str | Path | None) -> tfd.TransformedDistribution:
    """The trained teacher of a student; inside :func:`flows_tf.traces.reuse_traces` its spec's
    host holding its weights, so that a variant's seeds share the teacher's traces."""
    if teacher_dir is None:
        raise ValueError("a distillation job needs the teacher's model directory")
    from flows_tf import traces

    return traces.host(load_model(teacher_dir), read_spec(teacher_dir))


def per_example_path(metrics_path: str | Path) -> Path:
    """``.../seed{seed}.loglik.npy`` beside ``.../seed{seed}.json``: per-example test values."""
    return Path(paths.per_example(metrics_path))


def save_per_example(path: Path, values: np.ndarray) -> None:
    import numpy as np

    np.save(path, np.asarray(values, np.float64))
