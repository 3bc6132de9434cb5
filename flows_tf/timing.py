"""Serial timing: each data set's models in a fresh process, sampling and log_prob, interleaved.

The benchmark's timings are one measurement of their own, taken after every evaluation, with
nothing else on the CPU (the workflow's ``time_models`` step claims all cores). The data sets
are timed one after another, each in a new Python process (``python -m flows_tf.timing``) that
holds only that data set's models, so that a data set's timings do not depend on which other
data sets the grid holds. A student and its teacher share a data set, hence a process. In each:

1. every model of the data set is loaded (from the ``model_dir`` its metrics JSON names); the
   models of one spec (a variant's seeds: the same graph, other weights) share two compiled
   functions, ``sample(n)`` with a fixed seed and ``log_prob`` of ``n`` rows, traced once, and
   each model's weights are assigned to them, untimed, before its calls, which draw its samples
   and evaluate ``n`` of its own;
2. each (shared) function is traced and then called for about 0.2 s untimed, once (warm-up;
   see :func:`flows_tf.evaluate.interleaved_times`);
3. ``repeats`` rounds measure every function once, models in a fixed round-robin order, so
   that a drift of machine load hits all models alike; each measurement is an untimed call and
   then a timed burst of calls of about 50 ms (one call for longer ones), seconds per call, so
   that a short call is not timed cold right after another model's
   (:func:`flows_tf.evaluate.interleaved_times`);
4. per model, the median over rounds gives ``sample_seconds_per_1k`` and
   ``logprob_seconds_per_1k`` (seconds per 1,000 rows); a distilled student's
   ``sampling_speedup`` is the median over rounds of ``teacher seconds / student seconds``, both
   from the same round.

``os.getloadavg()`` before and after (overall and per data set, with each process's pid and
its seconds loading the models and measuring them: tracing, warm-up and rounds), the
thread settings, ``n`` and ``repeats`` are written beside the table (:func:`conditions`).
TensorFlow is imported only by :func:`conditions` and in the timing processes.

Example:
    >>> threads = runtime.configure(2)  # doctest: +SKIP
    >>> run_timing(metrics_files, "results/timing/timing.csv", "results/timing/conditions.json",
    ...            n=1000, repeats=5, threads=threads)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "TIMING_METRICS",
    "TIMING_COLUMNS",
    "TimingError",
    "run_timing",
    "read_records",
    "time_models",
    "timing_rows",
    "write_timing",
    "time_in_fresh_process",
    "mirror_to_mlflow",
    "conditions",
]

TIMING_METRICS = ["sample_seconds_per_1k", "logprob_seconds_per_1k", "sampling_speedup"]
TIMING_COLUMNS = [
    "job_key", "dataset", "flow", "seed", "objective", "teacher_job_key", *TIMING_METRICS,
    "timing_batch_size", "timing_repeats", "mlflow_run_id", "model_dir",
]  # fmt: skip


class TimingError(RuntimeError):
    """A model to time is missing, or a student's teacher is not among the timed models."""


def read_records(metrics_files: Iterable[str | Path]) -> list[dict]:
    """The metrics JSON of each model to time (``job_key``, ``model_dir``, ``mlflow_run_id``...).

    Raises:
        TimingError: a file that is missing or not JSON, or that lacks a key it needs.
    """
    records = []
    for path in metrics_files:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise TimingError(f"metrics file {path} is missing or not JSON: {err}") from err
        missing = [
            k for k in ("job_key", "model_dir", "dataset", "flow", "seed") if k not in record
        ]
        if missing:
            raise TimingError(f"metrics file {path} lacks {missing}")
        records.append(record)
    return records


def _teacher_key(record: dict) -> str | None:
    """The job key of a student's teacher: same data set and seed, the teacher's flow."""
    if record.get("objective") != "distill":
        return None
    if not record.get("teacher"):
        raise TimingError(f"student {record['job_key']} names no teacher in its metrics file")
    return f"{record['dataset']}/{record['teacher']}/seed{int(record['seed'])}/mle"


def _load_models(records: list[dict], n: int) -> tuple[list[Callable], list[Callable]]:
    """The timed functions of ``records``, ``sample(n)`` and ``log_prob`` of ``n`` of the
    model's own samples for each, and for each function what loads its model's weights.

    Models of one ``model_spec.json`` share the two functions of the first of them (the same
    objects), so that a variant's graph is traced and warmed up once rather than once per seed.
    """
    import tensorflow as tf

    from flows_tf import modelio

    shared: dict[str, tuple] = {}  # spec -> (flow, sample, log_prob, what it holds)
    fns, prepare = [], []
    for i, record in enumerate(records):
        model_dir = Path(record["model_dir"])
        spec = json.loads((model_dir / "model_spec.json").read_text())
        flow = modelio.load_flow(spec, model_dir / "model")
        x = tf.constant(flow.sample(n, seed=[3, 4]))
        key = json.dumps(spec, sort_keys=True)
        if key not in shared:
            holds = {"model": i, "x": x}
            shared[key] = (flow, *_timed_functions(flow, n, holds), holds)
        host, sample, log_prob_of_rows, holds = shared[key]
        load = _weights_loader(i, flow, x, host, holds)
        fns += [sample, log_prob_of_rows]
        prepare += [load, load]
    return fns, prepare


def _timed_functions(flow: tf.Module, n: int, holds: dict) -> tuple[Callable, Callable]:
    """``flow``'s compiled ``sample(n)`` (fixed seed) and ``log_prob`` of the rows
    ``holds["x"]`` (the samples of the model whose weights ``flow`` holds)."""
    from flows_tf import evaluate

    log_prob = evaluate.compiled_log_prob(flow)
    return evaluate.compiled_sampler(flow, n), lambda: log_prob(holds["x"])


def _weights_loader(
    i: int, flow: tf.Module, x: tf.Tensor, host: tf.Module, holds: dict
) -> Callable[[], None]:
    """``load()`` puts model ``i``'s weights (``flow``'s) into ``host``'s variables, unless
    ``holds["model"] == i`` already, and makes ``x`` (its own samples) the rows to evaluate."""
    from flows_tf import modelio

    values = [v.numpy() for v in flow.variables]
    targets = host.variables
    if [tuple(v.shape) for v in targets] != [v.shape for v in values]:
        raise TimingError(f"model {i}: its variables are not those of its spec's first model")

    def load() -> None:
        if holds["model"] != i:
            modelio.assign_weights(host, values)
            holds.update(model=i, x=x)

    return load


def time_models(
    metrics_files: Iterable[str | Path], *, n: int, repeats: int, threads: dict
) -> tuple[list, dict]:
    """Time every model named by ``metrics_files`` serially (see the module docstring).

    Args:
        metrics_files: metrics JSON paths, one per trained model.
        n: rows per timed call (samples drawn, densities evaluated).
        repeats: rounds (the median over them is reported).
        threads: what :func:`flows_tf.runtime.configure` returned; every timing process
            configures the same thread pools.

    Returns:
        ``(rows, conditions)``: one dict per model (:data:`TIMING_COLUMNS`) and the measurement
        conditions (:func:`conditions`), with ``per_dataset`` those of each process.

    Raises:
        TimingError: a metrics file or a model that cannot be read, or a timing process failed.
    """
    if n < 1 or repeats < 1:
        raise ValueError(f"time_models: n and repeats must be >= 1, got n={n}, repeats={repeats}")
    records = read_records(metrics_files)
    by_dataset: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_dataset.setdefault(record["dataset"], []).append(i)
    load_before = os.getloadavg()
    start = time.perf_counter()
    seconds = np.empty((len(records), 2, repeats))
    per_dataset = {}
    for dataset, index in by_dataset.items():
        result = time_in_fresh_process([records[i] for i in index], n, repeats, threads)
        seconds[index] = np.asarray(result.pop("seconds"))
        per_dataset[dataset] = result
        load = f"load {result['load_before']} -> {result['load_after']}"
        split = f"loading {result['load_seconds']:.1f} s, measuring {result['measure_seconds']:.1f}"
        print(f"timed {dataset}: {result['models']} models in {result['wall_seconds']:.1f} s "
              f"({split} s; pid {result['pid']}, {load})", flush=True)  # fmt: skip
    after = {"load_after": os.getloadavg(), "seconds": time.perf_counter() - start}
    rows = timing_rows(records, seconds, n)
    conds = conditions(threads, n, repeats, load_before, **after, models=len(rows))
    return rows, {**conds, "per_dataset": per_dataset}


def time_in_fresh_process(records: list[dict], n: int, repeats: int, threads: dict) -> dict:
    """Run :func:`_time_here` on ``records`` in a new Python process; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="flowbench-timing-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        payload = {"records": records, "n": n, "repeats": repeats, "threads": threads}
        request.write_text(json.dumps(payload))
        command = [sys.executable, "-m", "flows_tf.timing", str(request), str(result)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not result.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            dataset = records[0]["dataset"]
            raise TimingError(f"timing {dataset} failed (exit {done.returncode}):\n{tail}")
        return json.loads(result.read_text())


def _time_here(records: list[dict], n: int, repeats: int) -> dict:
    """Load ``records`` into this process and time them; seconds ``(models, 2, repeats)``."""
    import tensorflow as tf

    from flows_tf import evaluate

    tf.get_logger().setLevel("ERROR")  # one tf.function per model is intended, not retracing
    load_before = os.getloadavg()
    start = time.perf_counter()
    fns, prepare = _load_models(records, n)
    loaded = time.perf_counter()
    seconds = evaluate.interleaved_times(fns, repeats, prepare=prepare)
    seconds = seconds.reshape(len(records), 2, repeats)
    end = time.perf_counter()
    return {
        "seconds": seconds.tolist(),
        "models": len(records),
        "pid": os.getpid(),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "wall_seconds": round(end - start, 2),
        "load_seconds": round(loaded - start, 2),  # the models loaded, their test rows drawn
        "measure_seconds": round(end - loaded, 2),  # tracing, warm-up and the timed rounds
    }


def _main(request_path: str, result_path: str) -> None:
    """A timing process: configure the thread pools as asked, time, write the result JSON."""
    from flows_tf import runtime

    request = json.loads(Path(request_path).read_text())
    threads = request["threads"]
    runtime.configure(
        int(threads["threads"]),
        intra_op=threads.get("intra_op_threads"),
        inter_op=threads.get("inter_op_threads"),
    )
    result = _time_here(request["records"], int(request["n"]), int(request["repeats"]))
    Path(result_path).write_text(json.dumps(result))
    runtime.exit_now()


def timing_rows(records: list[dict], seconds: np.ndarray, n: int) -> list[dict]:
    """Rows of the timing table from per-round seconds, shape ``(models, 2, repeats)``
    (``[:, 0]`` sampling, ``[:, 1]`` log_prob), in the order of ``records``.

    Raises:
        TimingError: a student whose teacher is not among ``records``.
    """
    index = {r["job_key"]: i for i, r in enumerate(records)}
    per_1k = 1000.0 / n
    rows = []
    for i, record in enumerate(records):
        teacher = _teacher_key(record)
        speedup = float("nan")
        if teacher is not None:
            if teacher not in index:
                raise TimingError(f"student {record['job_key']}: teacher {teacher} is not timed")
            speedup = float(np.median(seconds[index[teacher], 0] / seconds[i, 0]))
        rows.append(
            {
                "job_key": record["job_key"],
                "dataset": record["dataset"],
                "flow": record["flow"],
                "seed": int(record["seed"]),
                "objective": record.get("objective"),
                "teacher_job_key": teacher,
                "sample_seconds_per_1k": float(np.median(seconds[i, 0])) * per_1k,
                "logprob_seconds_per_1k": float(np.median(seconds[i, 1])) * per_1k,
                "sampling_speedup": speedup,
                "timing_batch_size": n,
                "timing_repeats": seconds.shape[-1],
                "mlflow_run_id": record.get("mlflow_run_id"),
                "model_dir": record["model_dir"],
            }
        )
    return rows


def conditions(threads: dict, n: int, repeats: int, load_before: Sequence[float], **extra) -> dict:
    """What the measurement ran under: load averages (1, 5, 15 min), threads, sizes, machine."""
    import tensorflow as tf

    out = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "tensorflow": tf.__version__,
        "threads": dict(threads),
        "timing_batch_size": int(n),
        "timing_repeats": int(repeats),
        "load_before": [round(v, 2) for v in load_before],
    }
    for key, value in extra.items():
        out[key] = [round(v, 2) for v in value] if key.startswith("load") else value
    return out


def write_timing(
    rows: list[dict], conds: dict, csv_path: str | Path, json_path: str | Path
) -> pd.DataFrame:
    """Write the timing table (one row per model) and the JSON of its conditions."""
    frame = pd.DataFrame(rows)
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False)
    Path(json_path).write_text(json.dumps(conds, indent=1, sort_keys=True) + "\n")
    return frame


def mirror_to_mlflow(rows: list[dict], conds: dict, *, rule: str = "time_models") -> None:
    """Add each model's timing to its MLflow run (metrics at the run's last step, plus tags)."""
    from flows_tf import tracking

    tags = {
        "timing_load_before": conds["load_before"],
        "timing_load_after": conds.get("load_after"),
        "timing_threads": json.dumps(conds["threads"], sort_keys=True),
    }
    for row in rows:
        if not row.get("mlflow_run_id"):
            raise TimingError(f"{row['job_key']}: its metrics file names no mlflow_run_id")
        summary = json.loads((Path(row["model_dir"]) / "train.json").read_text())
        metrics = {k: row[k] for k in (*TIMING_METRICS, "timing_batch_size", "timing_repeats")}
        with tracking.reopen_run(row["mlflow_run_id"], rule=rule) as run:
            run.log_metrics(metrics, step=int(summary.get("steps", 0)), flush=True)
            run.set_tags(tags)


def run_timing(
    metrics_files: Iterable[str | Path],
    csv_path: str | Path,
    json_path: str | Path,
    *,
    n: int,
    repeats: int,
    threads: dict,
    mirror: bool = True,
) -> pd.DataFrame:
    """The workflow's ``time_models`` step: :func:`time_models`, :func:`write_timing`, then
    (``mirror``) :func:`mirror_to_mlflow`; returns the timing table."""
    rows, conds = time_models(metrics_files, n=n, repeats=repeats, threads=threads)
    frame = write_timing(rows, conds, csv_path, json_path)
    load = f"{conds['load_before']} -> {conds['load_after']}"
    print(f"timed {len(rows)} models in {conds['seconds']:.1f} s; load {load}", flush=True)
    if mirror:
        mirror_to_mlflow(rows, conds)
    return frame


if __name__ == "__main__":
    _main(*sys.argv[1:3])
