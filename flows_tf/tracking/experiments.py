"""The experiment: created once, found by name, and shown by the MLflow UI ready to compare.

:func:`init_experiment` runs before jobs fan out; :func:`describe_experiment` makes the UI open
the experiment as a model-training experiment with saved runs views (:data:`RUNS_VIEWS`) and a
description linking them and the summary run's figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flows_tf.tracking import store
from flows_tf.tracking.store import TrackingError, check_reachable
from flows_tf.tracking.tags import SUMMARY_TAG, SUPERSEDED_TAG

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = [
    "EXPERIMENT_KIND_TAG",
    "GRID_TAGS",
    "KEY_METRICS",
    "LIVE_JOB_RUNS",
    "NOTE_TAG",
    "RUNS_VIEWS",
    "TRAINING_KIND",
    "VIEW_TAG_PREFIX",
    "describe_experiment",
    "experiment_id",
    "init_experiment",
    "runs_view_state",
    "runs_view_url",
]

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


def init_experiment(name: str) -> str:
    """Create the store (schema migrations) and the experiment once; returns its id.

    Run this before jobs fan out: a fresh SQLite store hit by many processes at once fails.
    An existing experiment is restored if deleted; both get :func:`describe_experiment`.
    """
    uri = check_reachable()
    client = store.client()
    with store.store_lock(uri):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            exp_id = exp.experiment_id
        else:
            location = store.artifact_location(uri)
            if location:
                Path(location[len("file://") :]).mkdir(parents=True, exist_ok=True)
            exp_id = client.create_experiment(name, artifact_location=location)
        describe_experiment(exp_id, client)
        return exp_id


def experiment_id(name: str) -> str:
    """The id of an existing experiment; a clear error if the init step has not run."""
    check_reachable()
    exp = store.client().get_experiment_by_name(name)
    if exp is None:
        raise TrackingError(
            f"MLflow experiment {name!r} does not exist in {store.tracking_uri()}; "
            "create it first (`flows-tf init-mlflow` or the mlflow_init rule)"
        )
    return exp.experiment_id


def runs_view_state(group_by: Sequence[str] = ()) -> dict:
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


def _figure_links(client: MlflowClient, exp_id: str) -> list[str]:
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


def describe_experiment(exp_id: str, client: MlflowClient | None = None) -> None:
    """Make the MLflow UI open ``exp_id`` as a model-training experiment, ready to compare.

    Sets ``mlflow.experimentKind`` to ``custom_model_development`` when missing, the saved
    runs views of :data:`RUNS_VIEWS` (experiment tags ``mlflow.sharedViewState.<key>``, listed
    in the UI's Views menu) and a description linking those views and the summary run's
    figures. A description someone else wrote is kept.
    """
    client = client or store.client()
    tags = client.get_experiment(exp_id).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    now = int(time.time() * 1000)
    for key, (name, group_by) in RUNS_VIEWS.items():
        envelope = {"name": name, "createdAt": now, "updatedAt": now}
        envelope["state"] = json.dumps(runs_view_state(group_by))
        client.set_experiment_tag(exp_id, VIEW_TAG_PREFIX + key, json.dumps(envelope))
    if not tags.get(NOTE_TAG) or _NOTE_MARKER in tags[NOTE_TAG]:
        note = _note(exp_id, _figure_links(client, exp_id))
        client.set_experiment_tag(exp_id, NOTE_TAG, note)
