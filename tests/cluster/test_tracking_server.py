"""MLflow tracking server backed by PostgreSQL: runs logged over HTTP all arrive.

First a few runs logged by plain MLflow, then the benchmark (the smoke config cut down to one
job per objective) with ``MLFLOW_TRACKING_URI`` pointing at the server.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

LOG_RUNS = """
import sys
import mlflow
mlflow.set_experiment("server-check")
for i in range(int(sys.argv[1])):
    with mlflow.start_run(run_name=f"run{i}"):
        mlflow.log_params({"i": i})
        mlflow.log_metrics({"loss": 1.0 / (i + 1)}, step=0)
"""

# the smoke config, one job per objective: mle (teacher), vi, distill (student)
ONE_PER_OBJECTIVE = """
experiment: flowbench-server
mle: {datasets: [eight_gaussians], flows: [maf],
      training: {batch_size: 250, learning_rate: 0.01, max_epochs: 1, patience: 1}}
vi: {datasets: [u1], flows: [planar_k2],
     training: {batch_size: 64, learning_rate: 0.01, steps: 10, anneal_steps: 5, eval_every: 5}}
distill: {datasets: [eight_gaussians], teacher: maf, student: iaf,
          training: {batch_size: 64, learning_rate: 0.01, steps: 10, eval_every: 5}}
"""
JOB_KEYS = {
    "eight_gaussians/maf/seed0/mle",
    "u1/planar_k2/seed0/vi",
    "eight_gaussians/iaf_student/seed0/distill",
}


def test_runs_logged_over_http_reach_postgres(mlflow_server, postgres_server):
    from mlflow.tracking import MlflowClient

    env = dict(os.environ, MLFLOW_TRACKING_URI=mlflow_server)
    done = subprocess.run(
        [sys.executable, "-c", LOG_RUNS, "3"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("server-check")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["run0", "run1", "run2"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.metrics["loss"] for r in runs) == [1 / 3, 1 / 2, 1.0]
    # the server keeps them in PostgreSQL, not in a file beside it
    direct = MlflowClient(tracking_uri=postgres_server)
    assert len(direct.search_runs([experiment.experiment_id])) == 3


def test_smoke_benchmark_logs_every_run_to_the_server(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    override = tmp_path / "one_per_objective.yaml"
    override.write_text(ONE_PER_OBJECTIVE)
    env = dict(
        os.environ,
        TF_USE_LEGACY_KERAS="1",
        FLOWBENCH_ROOT=str(tmp_path),
        MLFLOW_TRACKING_URI=mlflow_server,
    )
    done = subprocess.run(
        [
            str(VENV_BIN / "snakemake"),
            "results/tables/runs.csv",
            "--cores",
            "2",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config" / "smoke.yaml"),
            str(override),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-6000:]

    metrics = [
        json.loads(p.read_text()) for p in (tmp_path / "results" / "metrics").rglob("*.json")
    ]
    assert {m["job_key"] for m in metrics} == JOB_KEYS
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("flowbench-server")
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    assert {m["mlflow_run_id"] for m in metrics} == set(runs)  # every run arrived, no others
    for m in metrics:
        run = runs[m["mlflow_run_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["job_key"] == m["job_key"]
        assert "train_seconds" in run.data.metrics and "sample_seconds_per_1k" in run.data.metrics
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the embedded store
    table = (tmp_path / "results" / "tables" / "runs.csv").read_text().splitlines()
    assert len(table) == 1 + len(JOB_KEYS)
