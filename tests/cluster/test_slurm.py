"""The SLURM profile on a real single-node cluster: a trivial workflow, then the benchmark.

The benchmark runs the smoke config cut down to one maximum-likelihood job (status polling
makes every SLURM job cost seconds), with the workflow unchanged: each rule is one sbatch job.
"""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PROFILE = REPO / "workflow" / "profiles" / "slurm"

# the smoke config, restricted to one data set x one flow (6 SLURM jobs in a chain)
ONE_JOB = """
experiment: flowbench-slurm
mle: {datasets: [eight_gaussians], flows: [maf],
      training: {batch_size: 250, learning_rate: 0.01, max_epochs: 1, patience: 1}}
vi: {datasets: [], flows: []}
distill: {datasets: []}
"""


def snakemake_on_slurm(cluster, workdir: Path, *args, timeout=900):
    """Snakemake through the project's SLURM profile, from ``workdir``; the finished process."""
    env = dict(
        os.environ,
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        TF_USE_LEGACY_KERAS="1",
        FLOWBENCH_ROOT=str(workdir),
    )
    env.pop("MLFLOW_TRACKING_URI", None)  # the embedded store in workdir
    cmd = [
        str(VENV_BIN / "snakemake"),
        "--profile",
        str(PROFILE),
        "--workflow-profile",
        "none",
        "--directory",
        str(workdir),
        "--default-resources",
        f"slurm_partition={cluster.partition}",
        "runtime=30",
        "mem_mb=1000",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-logdir",
        str(workdir / "slurm-logs"),
        "--slurm-keep-successful-logs",
        *args,
    ]
    return subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )


def slurm_job_logs(workdir: Path) -> list[Path]:
    return sorted((workdir / "slurm-logs").rglob("*.log"))


def test_trivial_workflow_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent("""
        rule all:
            input: expand("out/{i}.txt", i=range(2))
        localrules: all
        rule make:
            output: "out/{i}.txt"
            threads: 1
            shell: "echo job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION > {output}"
    """)
    )
    done = snakemake_on_slurm(slurm_cluster, tmp_path, "--snakefile", str(tmp_path / "Snakefile"))
    assert done.returncode == 0, done.stderr[-4000:]
    job_ids = set()
    for i in range(2):
        text = (tmp_path / "out" / f"{i}.txt").read_text()
        job_id = text.split()[0].removeprefix("job=")
        assert job_id.isdigit(), text  # ran inside a SLURM allocation
        assert f"partition={slurm_cluster.partition}" in text
        job_ids.add(job_id)
    assert len(job_ids) == 2
    assert len(slurm_job_logs(tmp_path)) == 2


def test_smoke_benchmark_through_the_slurm_profile(slurm_cluster, tmp_path):
    override = tmp_path / "one_job.yaml"
    override.write_text(ONE_JOB)
    done = snakemake_on_slurm(
        slurm_cluster,
        tmp_path,
        "results/tables/runs.csv",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config" / "smoke.yaml"),
        str(override),
    )
    assert done.returncode == 0, done.stderr[-6000:]

    # every rule ran as its own SLURM job
    logs = slurm_job_logs(tmp_path)  # slurm-logs/rule_<rule>/[<wildcards>/]<jobid>.log
    rules = {p.relative_to(tmp_path / "slurm-logs").parts[0].removeprefix("rule_") for p in logs}
    assert len(logs) == 6
    chain = {"mlflow_init", "prepare_data", "train", "evaluate", "time_models", "build_tables"}
    assert rules == chain, rules

    import pandas as pd

    runs = pd.read_csv(tmp_path / "results" / "tables" / "runs.csv")
    assert len(runs) == 1
    row = runs.iloc[0]
    assert (row["dataset"], row["flow"], row["objective"]) == ("eight_gaussians", "maf", "mle")
    assert math.isfinite(row["test_loglik"])
    metrics = json.loads(
        (tmp_path / "results" / "metrics" / "eight_gaussians" / "maf" / "seed0.json").read_text()
    )
    assert metrics["mlflow_run_id"] == row["mlflow_run_id"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(row["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["job_key"] == "eight_gaussians/maf/seed0/mle"
