"""The experiment's summary run: the tables and figures of the report, beside the job runs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flows_tf.tracking import store
from flows_tf.tracking.experiments import describe_experiment, experiment_id
from flows_tf.tracking.tags import SUMMARY_TAG, git_commit

__all__ = ["log_summary_artifacts"]


def log_summary_artifacts(
    paths: Iterable[str | Path], experiment: str, artifact_path: str = "figures"
) -> str:
    """Log tables and figures to the experiment's one summary run (made on first use).

    The run is tagged ``flowbench.summary`` so the MLflow UI shows the figures beside the job
    runs; regenerating the figures replaces the files of the same summary run.
    """
    client = store.client()
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
