"""The life of a job's run: opened (new or resumed), ended, reopened, superseded, queried.

A run is identified by plain data: the job key (the ``job_key`` tag), the config hash and the
hash of the data it saw; the caller adds its own descriptive tags. The run id is stored in
``<model_dir>/mlflow_run.json``: a rerun of a killed job with the same identity resumes that
run; any other rerun starts a new run and tags the earlier ones ``flowbench.superseded_by``. An
exception or SIGTERM/SIGINT ends the run FAILED.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from flows_tf.tracking import store
from flows_tf.tracking.experiments import experiment_id
from flows_tf.tracking.logger import RunLogger
from flows_tf.tracking.store import TrackingError, check_reachable
from flows_tf.tracking.tags import SUPERSEDED_TAG, provenance_tags

if TYPE_CHECKING:
    from types import FrameType

    from mlflow.tracking import MlflowClient

__all__ = ["RUN_FILE", "active_runs", "job_run", "load_runs", "reopen_run"]

RUN_FILE = "mlflow_run.json"


@contextlib.contextmanager
def _ending(run_id: str) -> Iterator[None]:
    """End the run FINISHED on success, FAILED on exception or SIGTERM/SIGINT."""
    client = store.client()

    def _raise(signum: int, _frame: FrameType | None) -> NoReturn:
        raise SystemExit(128 + signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not in the main thread
            previous[sig] = signal.signal(sig, _raise)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    else:
        client.set_terminated(run_id, "FINISHED")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _logging_to(
    run_id: str, resumed: bool = False, tags: dict | None = None
) -> Iterator[RunLogger]:
    """A :class:`RunLogger` of ``run_id``, flushed and the run ended when the block exits."""
    logger = RunLogger(run_id, resumed=resumed)
    if tags:
        logger.set_tags(tags)
    with _ending(run_id):
        try:
            yield logger
        finally:
            logger.flush()


def _new_run_tags(identity: dict, rule: str | None, tags: dict | None) -> dict:
    out = {
        "job_key": identity["job_key"],
        "config_hash": identity["config_hash"],
        **provenance_tags(),
        "snakemake_rule": rule or "",
        "data_hash": identity["data_hash"] or "",
        "mlflow.runName": identity["job_key"].replace("/", "-"),
        **(tags or {}),
    }
    return {key: str(value) for key, value in out.items()}  # a tracking server takes strings only


def _resumable(model_dir: Path, identity: dict) -> str | None:
    """The run id in ``mlflow_run.json`` if it has this identity and is not FINISHED."""
    try:
        stored = json.loads((model_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if any(stored.get(k) != v for k, v in identity.items()):
        return None
    with contextlib.suppress(Exception):
        if store.client().get_run(stored["run_id"]).info.status != "FINISHED":
            return stored["run_id"]
    return None


def _start_new(model_dir: Path, identity: dict, tags: dict) -> str:
    """Create the run, supersede the job's other live runs, write ``mlflow_run.json``."""
    client = store.client()
    exp_id = identity["experiment_id"]
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    _supersede(client, exp_id, identity["job_key"], run_id)
    record = {"run_id": run_id, **identity}
    order = ("run_id", "experiment_id", "tracking_uri", "job_key", "config_hash", "data_hash")
    (model_dir / RUN_FILE).write_text(json.dumps({k: record[k] for k in order}, indent=1))
    return run_id


@contextlib.contextmanager
def job_run(
    job_key: str,
    experiment: str,
    model_dir: str | Path,
    *,
    config_hash: str,
    data_hash: str | None = None,
    rule: str | None = None,
    tags: dict | None = None,
    resume: bool = True,
) -> Iterator[RunLogger]:
    """Open the job's run (resumed or new), yield a :class:`RunLogger`, end it properly.

    Args:
        job_key: the job's deterministic identity (the ``job_key`` tag), e.g.
            ``"two_moons/maf/seed0/mle"``.
        experiment: MLflow experiment name (must exist: :func:`init_experiment`).
        model_dir: the job's model folder; ``mlflow_run.json`` there holds the run id.
        config_hash: hash of everything that defines the job's result; a change forbids
            resuming.
        data_hash: content hash of the training data; a change forbids resuming.
        rule: the Snakemake rule, recorded as a tag.
        tags: the caller's tags of a new run (e.g. dataset, flow, seed); values become strings.
        resume: reuse an unfinished run of the same job, config and data.

    Example:
        >>> with job_run("a/maf/seed0/mle", "x", "m", config_hash="h") as run:  # doctest: +SKIP
        ...     run.log_metrics({"train_loss": 1.2}, step=100)
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    identity = {
        "experiment_id": experiment_id(experiment),
        "tracking_uri": store.tracking_uri(),
        "job_key": job_key,
        "config_hash": config_hash,
        "data_hash": data_hash,
    }
    run_id = _resumable(model_dir, identity) if resume else None
    if run_id is not None:
        store.client().update_run(run_id, status="RUNNING")
        with _logging_to(run_id, True, {"resumed": "true", "snakemake_rule": rule or ""}) as run:
            yield run
        return
    run_id = _start_new(model_dir, identity, _new_run_tags(identity, rule, tags))
    with _logging_to(run_id) as run:
        yield run


@contextlib.contextmanager
def reopen_run(run_id: str, *, rule: str | None = None) -> Iterator[RunLogger]:
    """Reopen a finished run (e.g. to add evaluation metrics); ends it as :func:`job_run`."""
    check_reachable()
    store.client().update_run(run_id, status="RUNNING")
    with _logging_to(run_id, tags={"snakemake_rule_last": rule} if rule else None) as run:
        yield run


def _supersede(client: MlflowClient, exp_id: str, job_key: str, new_run_id: str) -> None:
    """Tag every other live run of ``job_key``; end any left RUNNING as FAILED."""
    for run in active_runs(exp_id, job_key=job_key, client=client):
        if run.info.run_id == new_run_id:
            continue
        client.set_tag(run.info.run_id, SUPERSEDED_TAG, new_run_id)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "FAILED")


def active_runs(
    exp_id: str, job_key: str | None = None, client: MlflowClient | None = None
) -> list:
    """Runs of an experiment not superseded by a rerun (optionally of one job)."""
    client = client or store.client()
    filt = f"tags.job_key = '{job_key}'" if job_key else ""
    out, token = [], None
    while True:
        page = client.search_runs([exp_id], filt, max_results=1000, page_token=token)
        out += [r for r in page if SUPERSEDED_TAG not in r.data.tags]
        token = page.token
        if not token:
            return out


def load_runs(run_ids: list[str]) -> list[dict]:
    """``{run_id, status, tags, params, metrics}`` of each run, in order; a missing run is an
    error naming it."""
    client = store.client()
    out = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except Exception as err:  # MlflowException: RESOURCE_DOES_NOT_EXIST
            raise TrackingError(f"MLflow run {run_id} not found in {store.tracking_uri()}") from err
        out.append(
            {
                "run_id": run_id,
                "status": run.info.status,
                "tags": dict(run.data.tags),
                "params": dict(run.data.params),
                "metrics": dict(run.data.metrics),
            }
        )
    return out
