"""MLflow bookkeeping for flowbench: a job's run record mirrored into one MLflow run per job.

The only package that imports :mod:`mlflow` (lazily: importing it is cheap), and it knows
nothing of jobs: a run is identified by plain data (a job key, a config hash, a data hash) and
described by the caller's tags, params, metrics and files. :mod:`flows_tf.jobs` builds that
data from a job and decides what of its record files to mirror.

Modules, one job each:

- :mod:`.store`: the tracking URI (``MLFLOW_TRACKING_URI``, else
  ``sqlite:///<project root>/mlflow.db`` with artifacts in ``<project root>/mlartifacts``),
  the cached client, the lock around a new SQLite store, reachability;
- :mod:`.experiments`: the experiment created once and presented by the UI (saved runs views,
  description);
- :mod:`.runs`: a job's run opened (:func:`job_run`: new, or resumed after a kill) and ended,
  reopened (:func:`reopen_run`), superseded by a rerun, queried (:func:`active_runs`,
  :func:`load_runs`);
- :mod:`.logger`: :class:`RunLogger`, what a job logs to its open run;
- :mod:`.model`: the trained flow as an MLflow pyfunc model;
- :mod:`.summary`: the summary run holding the report's tables and figures;
- :mod:`.tags`: the tag names flowbench writes and the git commit.

Life of a run: the training job opens it (``job_key``, config hash, git commit, the job's own
tags, the Snakemake rule), logs params, metrics while it trains, the data set as an input and,
once the record files are written, the final metrics, the history (filling the gaps a killed
attempt left), the summary file, the model and the job's own evaluation (the test metrics);
an evaluate step that evaluates afresh reopens it to add its metrics. An exception or
SIGTERM/SIGINT ends the run FAILED.

Example:
    >>> with job_run("two_moons/maf/seed0/mle", "flowbench-default", model_dir,
    ...              config_hash="1f2e", rule="train") as run:  # doctest: +SKIP
    ...     run.log_metrics({"train_loss": 1.2}, step=100)
"""

from flows_tf.tracking import experiments
from flows_tf.tracking.experiments import *  # noqa: F403 (its __all__, re-exported below)
from flows_tf.tracking.logger import RunLogger, flatten
from flows_tf.tracking.runs import RUN_FILE, active_runs, job_run, load_runs, reopen_run
from flows_tf.tracking.store import TrackingError, check_reachable, project_root, tracking_uri
from flows_tf.tracking.summary import log_summary_artifacts
from flows_tf.tracking.tags import SUMMARY_TAG, SUPERSEDED_TAG, TAG_PREFIX, git_commit

__all__ = [
    *experiments.__all__,
    "RUN_FILE",
    "SUMMARY_TAG",
    "SUPERSEDED_TAG",
    "TAG_PREFIX",
    "RunLogger",
    "TrackingError",
    "active_runs",
    "check_reachable",
    "flatten",
    "git_commit",
    "job_run",
    "load_runs",
    "log_summary_artifacts",
    "project_root",
    "reopen_run",
    "tracking_uri",
]
