"""MLflow bookkeeping for flowbench: one run per job, resumed or superseded on reruns.

The only module that imports :mod:`mlflow` (lazily, so importing this module is cheap). The
tracking URI is ``MLFLOW_TRACKING_URI`` when set (e.g. an ``mlflow server`` with a PostgreSQL
backend), else the embedded store ``sqlite:///<project root>/mlflow.db`` with artifacts in
``<project root>/mlartifacts``.

Life of a run: the training job opens it (:func:`job_run`), tags it (``job_key``, config hash,
git commit, dataset/flow/seed/objective, Snakemake rule), logs the flattened job config as
params, per-epoch metrics in batches, the data set as an input with its content hash, the
checkpoint and the model as a pyfunc; the evaluation job reopens it (:func:`reopen_run`) to add
test metrics. The run id is stored in ``<model_dir>/mlflow_run.json``: a rerun of a killed job
with the same config and data resumes that run; any other rerun starts a new run and tags the
earlier ones ``flowbench.superseded_by``. An exception or SIGTERM/SIGINT ends the run FAILED.

Example:
    >>> with job_run(job, "flowbench-default", model_dir, rule="train") as run:  # doctest: +SKIP
    ...     run.log_metrics({"train_loss": 1.2}, step=100)
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import math
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

__all__ = [
    "TrackingError",
    "RunLogger",
    "FlowModel",  # noqa: F822  (made on first use by __getattr__)
    "project_root",
    "tracking_uri",
    "check_reachable",
    "init_experiment",
    "describe_experiment",
    "runs_view_state",
    "runs_view_url",
    "experiment_id",
    "job_run",
    "reopen_run",
    "active_runs",
    "log_summary_artifacts",
    "load_runs",
    "flatten",
    "git_commit",
    "RUN_FILE",
]

RUN_FILE = "mlflow_run.json"
SUPERSEDED_TAG = "flowbench.superseded_by"
TAG_PREFIX = "flowbench."
_BATCH = 500  # metrics per log_batch call (MLflow accepts up to 1000)


class TrackingError(RuntimeError):
    """The tracking store is unreachable or does not hold what the workflow expects."""


def _mlflow():
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    import mlflow

    return mlflow


def _client():
    """One client per tracking URI and process (a SQLite client checks the schema on creation)."""
    uri = tracking_uri()
    if uri not in _CLIENTS:
        _mlflow()
        from mlflow.tracking import MlflowClient

        with _store_lock(uri):
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)  # creates / migrates the schema now
        _CLIENTS[uri] = client
    return _CLIENTS[uri]


@contextlib.contextmanager
def _store_lock(uri: str):
    """An exclusive file lock beside an embedded SQLite store (no-op for a server).

    Several processes creating a brand-new store at once race on its schema migrations
    ("table ... already exists"); serialising creation makes that safe.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri[len("sqlite:///") :]).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_CLIENTS: dict = {}


def project_root() -> Path:
    """``FLOWBENCH_ROOT`` if set, else the nearest ancestor of the cwd holding a ``Snakefile``
    and ``config/``, else the checkout this package lives in."""
    if os.environ.get("FLOWBENCH_ROOT"):
        return Path(os.environ["FLOWBENCH_ROOT"]).resolve()
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if (d / "Snakefile").is_file() and (d / "config").is_dir():
            return d
    return Path(__file__).resolve().parent.parent


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or ``sqlite:///<project root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside the embedded store; a server decides for itself."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None


def check_reachable(uri: str | None = None, timeout: float = 5.0) -> str:
    """Fail fast, naming the URI, when an HTTP tracking server does not answer."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
                if resp.status >= 400:
                    raise TrackingError(f"MLflow server {uri} answered HTTP {resp.status}")
        except (urllib.error.URLError, OSError) as err:
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({err}); start it or unset "
                "MLFLOW_TRACKING_URI to use the embedded SQLite store"
            ) from err
    elif uri.startswith("sqlite:///"):
        parent = Path(uri[len("sqlite:///") :]).parent
        if not parent.is_dir():
            raise TrackingError(f"MLflow store {uri}: directory {parent} does not exist")
    return uri


def init_experiment(name: str) -> str:
    """Create the store (schema migrations) and the experiment once; returns its id.

    Run this before jobs fan out: a fresh SQLite store hit by many processes at once fails.
    An existing experiment is restored if deleted; both get :func:`describe_experiment`.
    """
    uri = check_reachable()
    client = _client()
    with _store_lock(uri):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            exp_id = exp.experiment_id
        else:
            location = _artifact_location(uri)
            if location:
                Path(location[len("file://") :]).mkdir(parents=True, exist_ok=True)
            exp_id = client.create_experiment(name, artifact_location=location)
        describe_experiment(exp_id, client)
        return exp_id


# --------------------------------------------------------------------------------------------
# How the MLflow UI presents an experiment: a training experiment, a saved runs view, a note

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
GRID_TAGS = ("dataset", "flow", "objective", "seed")
KEY_METRICS = (
    "test_loglik",
    "test_loglik_se",
    "bits_per_dim",
    "kl_to_target",
    "kl_to_teacher",
    "sample_seconds_per_1k",
)
# saved views of the runs table: key -> (name shown in the UI's Views menu, tags grouped on)
RUNS_VIEWS = {
    "flowbench-runs": ("flowbench: every run", ()),
    "flowbench-mean-over-seeds": ("flowbench: mean over seeds", ("dataset", "flow")),
}
# column widths in pixels: the grid keys and metrics fit a 1600-pixel-wide window
_COLUMN_WIDTHS = {"dataset": 115, "flow": 90, "objective": 75, "seed": 50}
_METRIC_WIDTH = 92
LIVE_JOB_RUNS = f"tags.job_key IS NOT NULL AND tags.`{SUPERSEDED_TAG}` IS NULL"
_NOTE_MARKER = "<!-- written by flows_tf.tracking.describe_experiment -->"


def runs_view_state(group_by=()) -> dict:
    """The runs-table state of a saved view: live job runs, the grid tags then the key metrics
    as columns, sorted by data set. Grouped on the ``group_by`` tags, a group's row shows the
    mean of its runs (the per-run standard errors are left out: their mean is not an SE)."""
    metrics = [m for m in KEY_METRICS if not (group_by and m.endswith("_se"))]
    widths = {f"tags.`{t}`": _COLUMN_WIDTHS[t] for t in GRID_TAGS}
    widths |= {f"metrics.`{m}`": _METRIC_WIDTH for m in metrics}
    state = {
        "searchFilter": LIVE_JOB_RUNS,
        "orderByKey": "tags.`dataset`",
        "orderByAsc": True,
        "selectedColumns": list(widths),
        "columnOrder": ["attributes.`Run Name`", *widths],
        "columnWidths": widths,
    }
    if group_by:
        keys = [{"mode": "tag", "groupByData": tag} for tag in group_by]
        state["groupBy"] = {"aggregateFunction": "average", "groupByKeys": keys}
    return state


def runs_view_url(exp_id: str, view: str = "flowbench-runs") -> str:
    """The UI route (after ``#``) of a saved runs view, as a model-training experiment.

    MLflow 3.17's UI picks GenAI or model-training pages from its workflow-type switch (the URL's
    ``workflowType``, else the browser's last choice, GenAI by default) and reads
    ``mlflow.experimentKind`` only where that switch is off, so the route carries both.
    """
    if view not in RUNS_VIEWS:
        raise ValueError(f"unknown runs view {view!r}; known: {sorted(RUNS_VIEWS)}")
    return f"/experiments/{exp_id}/runs?viewStateShareKey={view}&workflowType=machine_learning"


def _figure_links(client, exp_id: str) -> list[str]:
    """Markdown links to the figures of the experiment's summary run (none before it exists)."""
    found = client.search_runs([exp_id], f"tags.`{SUMMARY_TAG}` = 'true'", max_results=1)
    if not found:
        return []
    run_id = found[0].info.run_id
    files = [a.path for a in client.list_artifacts(run_id, "figures") if not a.is_dir]
    base = f"#/experiments/{exp_id}/runs/{run_id}/artifacts"
    return [f"[{Path(f).name}]({base}/{f})" for f in sorted(files)]


def _note(exp_id: str, figures: list[str]) -> str:
    views = "; ".join(
        f"[{name}](#{runs_view_url(exp_id, key)})" for key, (name, _) in RUNS_VIEWS.items()
    )
    figures_line = (
        "Figures (summary run): " + ", ".join(figures)
        if figures
        else "Figures: logged to the summary run by the report rules (not yet)."
    )
    return "\n\n".join(
        [
            "flowbench: one run per (dataset, flow, seed, objective) job, tagged with its "
            "`job_key`, config hash and git commit. Log-likelihoods in nats per example.",
            f"Runs views (grid tags {', '.join(GRID_TAGS)} and {', '.join(KEY_METRICS)}, "
            f"superseded runs hidden): {views}.",
            figures_line,
            _NOTE_MARKER,
        ]
    )


def describe_experiment(exp_id: str, client=None) -> None:
    """Make the MLflow UI open ``exp_id`` as a model-training experiment, ready to compare.

    Sets ``mlflow.experimentKind`` to ``custom_model_development`` when missing, the saved
    runs views of :data:`RUNS_VIEWS` (experiment tags ``mlflow.sharedViewState.<key>``, listed
    in the UI's Views menu) and a description linking those views and the summary run's
    figures. A description someone else wrote is kept.
    """
    client = client or _client()
    tags = client.get_experiment(exp_id).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    now = int(time.time() * 1000)
    for key, (name, group_by) in RUNS_VIEWS.items():
        envelope = {"name": name, "createdAt": now, "updatedAt": now}
        envelope["state"] = json.dumps(runs_view_state(group_by))
        client.set_experiment_tag(exp_id, VIEW_TAG_PREFIX + key, json.dumps(envelope))
    if not tags.get(NOTE_TAG) or _NOTE_MARKER in tags[NOTE_TAG]:
        client.set_experiment_tag(exp_id, NOTE_TAG, _note(exp_id, _figure_links(client, exp_id)))


def experiment_id(name: str) -> str:
    """The id of an existing experiment; a clear error if the init step has not run."""
    check_reachable()
    exp = _client().get_experiment_by_name(name)
    if exp is None:
        raise TrackingError(
            f"MLflow experiment {name!r} does not exist in {tracking_uri()}; "
            "create it first (`flows-tf init-mlflow` or the mlflow_init rule)"
        )
    return exp.experiment_id


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


def flatten(obj, prefix: str = "") -> dict[str, str]:
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


class RunLogger:
    """Logs to one open run; metrics are buffered and sent with ``MlflowClient.log_batch``.

    Every call is synchronous (even with ``MLFLOW_ENABLE_ASYNC_LOGGING``): once it returns the
    store holds the values, so a finished job may end its process at once.
    """

    def __init__(self, run_id: str, resumed: bool = False):
        self.run_id = run_id
        self.resumed = resumed
        self._client = _client()
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
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self._buffer.append(Metric(key, float(value), now, int(step)))
        if flush or len(self._buffer) >= _BATCH or time.monotonic() - self._last_flush > 10:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:_BATCH], self._buffer[_BATCH:]
            self._client.log_batch(self.run_id, metrics=chunk, synchronous=True)
        self._last_flush = time.monotonic()

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
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

    def log_model(self, model_dir, spec: dict) -> None:
        """The trained flow (``<model_dir>/model`` checkpoint) as an MLflow pyfunc at
        ``runs:/<run_id>/model``; see :class:`FlowModel`."""
        import tempfile

        mlflow = _mlflow()
        model_dir = Path(model_dir)
        spec_path = model_dir / "model_spec.json"
        spec_path.write_text(json.dumps(spec, indent=1, default=str))
        package = Path(__file__).resolve().parent
        quiet = logging.getLogger("mlflow.pyfunc")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the python_model is ours: no pickling advice needed
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # no input example: signature given
            mlflow.pyfunc.save_model(
                path=str(Path(tmp) / "model"),
                python_model=__getattr__("FlowModel")(),
                signature=_signature(spec),
                artifacts={"checkpoint": str(model_dir / "model"), "spec": str(spec_path)},
                code_paths=[str(package)],
                pip_requirements=_requirements(),
            )
            self._client.log_artifacts(self.run_id, str(Path(tmp) / "model"), "model")
        quiet.setLevel(level)


def _signature(spec: dict):
    """Input: float32 rows (N, D); params select ``log_prob`` (default) or ``sample``."""
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    dim = int(np.prod(spec["event_shape"]))
    params = ParamSchema(
        [
            ParamSpec("method", "string", "log_prob"),
            ParamSpec("n", "long", 100),
            ParamSpec("seed", "long", 0),
        ]
    )
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, dim))]), params=params
    )


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("tensorflow", "tensorflow-probability", "tf-keras", "numpy", "pandas"):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pass
    return out


@contextlib.contextmanager
def _ending(run_id: str):
    """End the run FINISHED on success, FAILED on exception or SIGTERM/SIGINT."""
    client = _client()

    def _raise(signum, _frame):
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


def _tags(job, rule: str | None, data_hash: str | None, extra: dict | None) -> dict:
    tags = {
        "job_key": job.key,
        "config_hash": job.config_hash,
        "git_commit": git_commit(),
        "mlflow.source.git.commit": git_commit().split("+")[0],
        "dataset": job.dataset,
        "flow": job.flow,
        "builder": job.builder,
        "seed": job.seed,
        "objective": job.objective,
        "snakemake_rule": rule or "",
        "data_hash": data_hash or "",
        "mlflow.runName": job.key.replace("/", "-"),
    }
    if job.teacher:
        tags["teacher"] = job.teacher
    tags.update(extra or {})
    return {key: str(value) for key, value in tags.items()}  # a tracking server takes strings only


def _read_run_file(model_dir: Path) -> dict | None:
    path = Path(model_dir) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def job_run(
    job,
    experiment: str,
    model_dir,
    *,
    rule: str | None = None,
    data_hash: str | None = None,
    tags: dict | None = None,
    resume: bool = True,
):
    """Open the job's run (resumed or new), yield a :class:`RunLogger`, end it properly.

    Args:
        job: a :class:`flows_tf.experiment.Job`.
        experiment: MLflow experiment name (must exist: :func:`init_experiment`).
        model_dir: the job's model folder; ``mlflow_run.json`` there holds the run id.
        rule: the Snakemake rule, recorded as a tag.
        data_hash: content hash of the training data; a change forbids resuming.
        tags: extra tags.
        resume: reuse an unfinished run of the same job, config and data.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    exp_id = experiment_id(experiment)
    client = _client()
    uri = tracking_uri()
    stored = _read_run_file(model_dir)
    run_id = None
    if (
        resume
        and stored
        and stored.get("tracking_uri") == uri
        and all(
            stored.get(k) == v
            for k, v in (
                ("job_key", job.key),
                ("config_hash", job.config_hash),
                ("data_hash", data_hash),
                ("experiment_id", exp_id),
            )
        )
    ):
        with contextlib.suppress(Exception):
            if client.get_run(stored["run_id"]).info.status != "FINISHED":
                run_id = stored["run_id"]
    resumed = run_id is not None
    if resumed:
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(exp_id, tags=_tags(job, rule, data_hash, tags)).info.run_id
        _supersede(client, exp_id, job.key, run_id)
        (model_dir / RUN_FILE).write_text(
            json.dumps(
                {
                    "run_id": run_id,
                    "experiment_id": exp_id,
                    "tracking_uri": uri,
                    "job_key": job.key,
                    "config_hash": job.config_hash,
                    "data_hash": data_hash,
                },
                indent=1,
            )
        )
    logger = RunLogger(run_id, resumed=resumed)
    if resumed:
        logger.set_tags({"resumed": "true", "snakemake_rule": rule or ""})
    with _ending(run_id):
        try:
            yield logger
        finally:
            logger.flush()


@contextlib.contextmanager
def reopen_run(run_id: str, *, rule: str | None = None):
    """Reopen a finished run (e.g. to add evaluation metrics); ends it as :func:`job_run`."""
    check_reachable()
    client = _client()
    client.update_run(run_id, status="RUNNING")
    logger = RunLogger(run_id)
    if rule:
        logger.set_tags({"snakemake_rule_last": rule})
    with _ending(run_id):
        try:
            yield logger
        finally:
            logger.flush()


def _supersede(client, exp_id: str, job_key: str, new_run_id: str) -> None:
    """Tag every other live run of ``job_key``; end any left RUNNING as FAILED."""
    for run in active_runs(exp_id, job_key=job_key, client=client):
        if run.info.run_id == new_run_id:
            continue
        client.set_tag(run.info.run_id, SUPERSEDED_TAG, new_run_id)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "FAILED")


def active_runs(exp_id: str, job_key: str | None = None, client=None) -> list:
    """Runs of an experiment not superseded by a rerun (optionally of one job)."""
    client = client or _client()
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
    client = _client()
    out = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except Exception as err:  # MlflowException: RESOURCE_DOES_NOT_EXIST
            raise TrackingError(f"MLflow run {run_id} not found in {tracking_uri()}") from err
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


SUMMARY_TAG = "flowbench.summary"


def log_summary_artifacts(paths, experiment: str, artifact_path: str = "figures") -> str:
    """Log tables and figures to the experiment's one summary run (made on first use).

    The run is tagged ``flowbench.summary`` so the MLflow UI shows the figures beside the job
    runs; regenerating the figures replaces the files of the same summary run.
    """
    client = _client()
    exp_id = experiment_id(experiment)
    found = client.search_runs([exp_id], f"tags.`{SUMMARY_TAG}` = 'true'", max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        tags = {SUMMARY_TAG: "true", "mlflow.runName": "summary", "git_commit": git_commit()}
        run_id = client.create_run(exp_id, tags=tags).info.run_id
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path)
    client.set_terminated(run_id, "FINISHED")
    describe_experiment(exp_id, client)  # the description links the figures
    return run_id


class _FlowModelMethods:
    """Methods of :class:`FlowModel` (the class itself is made on first use, so that
    importing this module does not import mlflow)."""

    def load_context(self, context):
        from flows_tf.modelio import load_flow

        self.spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.flow = load_flow(self.spec, Path(context.artifacts["checkpoint"]))

    def log_prob(self, x):
        """``log p(x)`` in nats, shape (N,), for x of shape (N, D)."""
        import numpy as np

        return self.flow.log_prob(np.asarray(x, dtype=np.float32)).numpy()

    def sample(self, n: int, seed: int = 0):
        """``n`` samples, shape (n, D)."""
        return self.flow.sample(int(n), seed=int(seed)).numpy()

    def predict(self, context, model_input, params=None):
        params = params or {}
        if params.get("method") == "sample":
            return self.sample(int(params.get("n", 100)), int(params.get("seed", 0)))
        return self.log_prob(model_input)


_FLOW_MODEL_DOC = """A trained flow as an MLflow pyfunc: ``predict(x)`` gives ``log p(x)`` per row.

    ``predict(x, params={"method": "sample", "n": 100, "seed": 0})`` draws samples instead;
    ``mlflow.pyfunc.load_model(uri).unwrap_python_model()`` exposes :meth:`log_prob` and
    :meth:`sample`. Loading needs TensorFlow, TFP and the bundled ``flows_tf`` code, not the
    workflow.
    """


def __getattr__(name):
    if name == "FlowModel":
        from mlflow.pyfunc import PythonModel

        attrs = {"__module__": __name__, "__qualname__": "FlowModel", "__doc__": _FLOW_MODEL_DOC}
        cls = type("FlowModel", (_FlowModelMethods, PythonModel), attrs)
        globals()["FlowModel"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
