"""Logging to one open run: tags, params, batched metrics, artifacts, data set and model."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from flows_tf.tracking import store

__all__ = ["RunLogger", "flatten"]

_BATCH = 500  # metrics per log_batch call (MLflow accepts up to 1000)
_FLUSH_SECONDS = 10.0


def flatten(obj: object, prefix: str = "") -> dict[str, str]:
    """Nested dicts to ``{"a.b": value}`` with values as strings (MLflow params).

    Example:
        >>> flatten({"hparams": {"num_layers": 5}, "seed": 0})
        {'hparams.num_layers': '5', 'seed': '0'}
    """
    out = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    out[prefix.rstrip(".")] = json.dumps(obj) if isinstance(obj, list | tuple) else str(obj)
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RunLogger:
    """Logs to one open run; metrics are buffered and sent with ``MlflowClient.log_batch``.

    Every call is synchronous (even with ``MLFLOW_ENABLE_ASYNC_LOGGING``): once it returns the
    store holds the values, so a finished job may end its process at once.
    """

    def __init__(self, run_id: str, resumed: bool = False):
        self.run_id = run_id
        self.resumed = resumed
        self._client = store.client()
        self._buffer = []
        self._last_flush = time.monotonic()

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(
            self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True
        )

    def log_params(self, params: dict) -> None:
        """Flattened params; on a resumed run only the ones not logged yet (params are
        immutable in MLflow)."""
        from mlflow.entities import Param

        flat = flatten(params)
        have = self._client.get_run(self.run_id).data.params
        items = [Param(k, v[:6000]) for k, v in flat.items() if k not in have]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i : i + 100], synchronous=True)

    def log_metrics(self, metrics: dict, step: int = 0, flush: bool = False) -> None:
        """Buffer finite numeric metrics at ``step``; sent every 500 values or 10 s."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if _is_number(value) and math.isfinite(value):
                self._buffer.append(Metric(key, float(value), now, int(step)))
        stale = time.monotonic() - self._last_flush > _FLUSH_SECONDS
        if flush or len(self._buffer) >= _BATCH or stale:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:_BATCH], self._buffer[_BATCH:]
            self._client.log_batch(self.run_id, metrics=chunk, synchronous=True)
        self._last_flush = time.monotonic()

    def log_missing(self, rows: list[dict], step_key: str = "step") -> int:
        """Log the values of ``rows`` (one dict of metrics per step) the run lacks at their step.

        A record kept elsewhere (a checkpoint's history) may hold values a killed process had
        buffered but never sent; mirroring it fills those gaps without duplicating the values
        the store already has. Returns how many values were sent.
        """
        self.flush()
        keys = sorted({k for row in rows for k in row} - {step_key})
        history = self._client.get_metric_history
        have = {k: {m.step for m in history(self.run_id, k)} for k in keys}
        sent = 0
        for row in rows:
            step = int(row[step_key])
            missing = {
                k: v
                for k, v in row.items()
                if k in have and step not in have[k] and _is_number(v) and math.isfinite(v)
            }
            sent += len(missing)
            self.log_metrics(missing, step)
        self.flush()
        return sent

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file or a folder's files (nothing when ``path`` does not exist)."""
        path = Path(path)
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.exists():
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dataset(self, meta: dict, context: str = "train", source: str | None = None) -> None:
        """The data set as a run input, identified by the content hash in its ``meta.json``."""
        from mlflow.data.http_dataset_source import HTTPDatasetSource  # noqa: I001
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        digest = meta.get("content_hash")
        if digest is None and isinstance(meta.get("sha256"), str):
            digest = meta["sha256"]
        digest = str(digest)[:36] if digest else None
        src = HTTPDatasetSource(url=source or f"flowbench://{meta.get('name', 'data')}")
        ds = MetaDataset(src, name=str(meta.get("name", "data")), digest=digest)
        entity = ds._to_mlflow_entity()
        self._client.log_inputs(
            self.run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", context)])]
        )

    def log_model(self, checkpoint: str | Path, spec_file: str | Path) -> None:
        """A saved flow (``checkpoint``: the folder :func:`flows_tf.modelio.save_flow` wrote;
        ``spec_file``: its spec as JSON) as an MLflow pyfunc at ``runs:/<run_id>/model``; see
        :class:`flows_tf.tracking.model.FlowModel`."""
        import tempfile

        from flows_tf.tracking.model import save_pyfunc

        with tempfile.TemporaryDirectory() as tmp:
            save_pyfunc(Path(tmp) / "model", checkpoint, spec_file)
            self._client.log_artifacts(self.run_id, str(Path(tmp) / "model"), "model")
