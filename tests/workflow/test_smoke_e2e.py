"""The smoke config end to end in a copy of the project, with MLflow in a temporary store."""

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fingerprint import fingerprint
from snakerun import run_in, run_snakemake

from flows_tf import experiment, tracking

pytestmark = pytest.mark.slow

RUN = (
    "--cores",
    "2",
    "--configfile",
    "config/smoke.yaml",
    "--workflow-profile",
    "workflow/profiles/default",
)
# start-up dominates the tiny smoke jobs: one thread each lets two run side by side
THREADS = ("--set-threads", "train=1", "evaluate=1")


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _runs(uri, name):
    client = _client(uri)
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], max_results=1000)


REFERENCE = Path(__file__).parent / "reference" / "smoke_fingerprint.json"


def assert_same_as_reference(now: dict) -> None:
    """The smoke grid computes what the recorded reference computed (fingerprint.py).

    On the CPU model the reference was recorded on, weights, samples, per-example values and
    every metric must be bit-identical; on another CPU model float32 kernels may round
    differently (and early stopping may fire one evaluation apart), so only the real-valued
    metrics are compared, to 5 % (or 0.05).
    """
    reference = json.loads(REFERENCE.read_text())
    assert set(now["jobs"]) == set(reference["jobs"])
    if now["machine"] == reference["machine"]:
        for key, job in reference["jobs"].items():
            assert now["jobs"][key] == job, key
        return
    for key, job in reference["jobs"].items():
        for part in ("train", "metrics"):
            for name, value in job[part].items():
                if isinstance(value, float):
                    got = now["jobs"][key][part].get(name)
                    assert got == pytest.approx(value, rel=0.05, abs=0.05, nan_ok=True), (key, name)


def test_smoke_end_to_end(project, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri}
    config = yaml.safe_load((project / "config/smoke.yaml").read_text())
    jobs = experiment.jobs(config)
    keys = {j.key for j in jobs}

    run_snakemake(project, *RUN, *THREADS, env=env)

    loglik = (project / "results/tables/loglik.md").read_text()
    for flow in config["mle"]["flows"]:
        assert f"| {flow} |" in loglik
    table = pd.read_csv(project / "results/tables/runs.csv")
    assert len(table) == len(jobs) and set(table["dataset"] + "/" + table["flow"]) == {
        f"{j.dataset}/{j.flow}" for j in jobs
    }

    assert_same_as_reference(fingerprint(project / "results"))
    # each training job evaluated its own model, and the evaluate step published that
    # evaluation (flows_tf.jobs.draft; tests/test_jobs.py: bit for bit a separate evaluation)
    logs = "".join(p.read_text() for p in (project / "logs/evaluate").rglob("*.log"))
    assert logs.count("published the evaluation the training job made") == len(jobs)

    runs = _runs(uri, config["experiment"])
    summary = [r for r in runs if r.data.tags.get(tracking.SUMMARY_TAG) == "true"]
    runs = [r for r in runs if r not in summary]
    assert len(summary) == 1  # the figures, logged once to the summary run
    logged = {a.path for a in _client(uri).list_artifacts(summary[0].info.run_id, "figures")}
    assert "figures/loglik_vs_time.png" in logged
    assert sorted(r.data.tags["job_key"] for r in runs) == sorted(keys)  # each exactly once
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert set(table["mlflow_run_id"]) == {r.info.run_id for r in runs}
    metrics = json.loads((project / "results/metrics/eight_gaussians/maf/seed0.json").read_text())
    assert metrics["mlflow_run_id"] in set(table["mlflow_run_id"])
    # TensorFlow's thread pools follow the rule's threads (set with --set-threads above)
    assert metrics["train_threads"]["threads"] == metrics["threads"]["threads"] == 1
    assert (project / "results/models/eight_gaussians/maf/seed0/density_grid.npz").is_file()
    # train_jobs: grouped: the teacher and the student alone, the other flows in one job, the
    # energy targets' in one
    assert (project / "benchmarks/train/eight_gaussians/maf.tsv").is_file()
    assert (project / "benchmarks/train/eight_gaussians.tsv").is_file()
    assert (project / "benchmarks/train/targets.tsv").is_file()
    assert not (project / "benchmarks/train/eight_gaussians/gaussian.tsv").exists()

    # a second invocation has nothing to do
    again = run_snakemake(project, *RUN, "-n", env=env)
    assert "Nothing to be done" in again.stdout

    # changing one job's input reruns only what depends on it (Snakemake compares checksums of
    # small inputs, so the content must change, not only the mtime)
    with open(project / "results/models/eight_gaussians/gaussian/seed0/train.json", "a") as fh:
        fh.write("\n")
    plan = run_snakemake(project, *RUN, "-n", env=env).stdout
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", plan[plan.index("Job stats") :], re.M))
    assert stats["evaluate"] == "1" and stats["build_tables"] == "1"
    assert not {"train", "train_data", "prepare_data", "mlflow_init"} & set(stats)
    assert "output: results/metrics/eight_gaussians/gaussian/seed0.json" in plan

    report = run_snakemake(project, *RUN, "--report", "report.html", env=env)
    assert (project / "report.html").stat().st_size > 0, report.stdout[-2000:]

    # rerunning a training job (here eight_gaussians' grouped flows) supersedes its runs; tables
    # still hold one row per model
    old = table.set_index("flow").loc["gaussian", "mlflow_run_id"]
    grouped = set(config["mle"]["flows"]) - {config["distill"]["teacher"]}
    run_snakemake(
        project,
        *RUN,
        *THREADS,
        "--forcerun",
        "results/models/eight_gaussians/gaussian/seed0/train.json",
        env=env,
    )
    table = pd.read_csv(project / "results/tables/runs.csv")
    assert len(table) == len(jobs)
    loglik_after_forcerun = (project / "results/tables/loglik.md").read_text()
    new = table.set_index("flow").loc["gaussian", "mlflow_run_id"]
    assert new != old
    runs = _runs(uri, config["experiment"])
    live = [
        r
        for r in runs
        if "flowbench.superseded_by" not in r.data.tags and tracking.SUMMARY_TAG not in r.data.tags
    ]
    assert sorted(r.data.tags["job_key"] for r in live) == sorted(keys)
    superseded = {
        r.info.run_id: r.data.tags["flowbench.superseded_by"]
        for r in runs
        if "flowbench.superseded_by" in r.data.tags
    }
    assert superseded[old] == new and len(superseded) == len(grouped)
    assert "Nothing to be done" in run_snakemake(project, *RUN, "-n", env=env).stdout

    # `./flowbench figures` redraws every table and figure from the recorded runs, training nothing
    venv = Path(sys.prefix)
    if not (venv / ".flowbench-installed").is_file():
        pytest.skip("not running in the environment ./flowbench made (no stamp in sys.prefix)")
    (project / ".venv").symlink_to(venv)  # same pyproject and lock: the stamp matches
    outputs = [*(project / "results/figures").glob("*.png"), project / "results/tables/loglik.md"]
    before = {path: path.stat().st_mtime_ns for path in outputs}
    redraw = run_in(
        project,
        ["./flowbench", "figures", "--configfile", "config/smoke.yaml"],
        env=env,
        check=False,
        timeout=600,
    )
    assert redraw.returncode == 0, redraw.stdout[-4000:]
    assert "creating the environment" not in redraw.stdout
    assert not re.search(r"rule (train|evaluate|prepare_data):", redraw.stdout)
    assert len(pd.read_csv(project / "results/tables/runs.csv")) == len(jobs)
    assert (project / "results/tables/loglik.md").read_text() == loglik_after_forcerun
    assert {"loglik_vs_time.png", "distillation.png", "vi_grid.png"} <= {p.name for p in outputs}
    assert all(path.stat().st_mtime_ns > before[path] for path in outputs)  # redrawn, up to date
