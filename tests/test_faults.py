"""Faults and load: the benchmark loses nothing and says clearly what went wrong.

Concurrent jobs on a brand-new SQLite store, a training job killed with SIGKILL and rerun, an
unreachable tracking server, diverging training, and bad inputs (names, config, data files, a
full disk while checkpointing, out-of-range hyperparameters).
"""

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows_tf import experiment

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
EXPERIMENT = "faults"
TOY = {"n_train": 1024, "n_val": 256, "n_test": 256}
SMALL = {"num_layers": 2, "hidden_units": [16, 16]}


def child_env(tmp_path: Path) -> dict:
    """Environment of a job process: its own SQLite store and project root."""
    return dict(
        os.environ,
        TF_USE_LEGACY_KERAS="1",
        TF_CPP_MIN_LOG_LEVEL="3",
        FLOWBENCH_ROOT=str(tmp_path),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )


def client_for(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def runs_of(tmp_path: Path) -> list:
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp is not None, f"experiment {EXPERIMENT!r} missing from the store"
    return client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh embedded SQLite store under ``tmp_path`` for this process."""
    monkeypatch.setenv("FLOWBENCH_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.fixture
def toy_data(tmp_path):
    """A prepared ``two_moons`` folder: {train,val,test}.npy and meta.json."""
    from flows_tf import datasets

    out = tmp_path / "data" / "two_moons"
    datasets.prepare_dataset("two_moons", out, seed=0, **TOY)
    return out


def toy_job(seed=0, **training) -> experiment.Job:
    settings = {"batch_size": 128, "max_epochs": 2, "patience": 5, **training}
    return experiment.Job("two_moons", "realnvp", seed, "mle", "realnvp", dict(SMALL), settings)


# ----------------------------------------------------------------------------- load

CONCURRENT_JOB = r"""
import sys, time
from pathlib import Path
import mlflow  # noqa: F401  (imported before the barrier: the processes log at once)
from flows_tf import experiment, jobs, tracking

i, go, root, n_steps = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
init = sys.argv[5] == "init"
(root / f"ready{i}").touch()
while not go.exists():
    time.sleep(0.005)
if init:
    tracking.init_experiment("faults")
job = experiment.Job("two_moons", "maf", i, "mle", "maf", {"num_layers": 1})
with jobs.open_run(job, "faults", root / f"job{i}", rule="train") as run:
    for step in range(n_steps):
        run.log_metrics({"train_loss": 1.0 / (step + 1), "val_loglik": -float(step)}, step=step)
    run.flush()
    run.log_metrics({"test_loglik": -1.5}, step=n_steps, flush=True)
print(run.run_id)
"""


def run_concurrent_jobs(tmp_path: Path, n_jobs: int, n_steps: int, init: bool) -> set[str]:
    """Start ``n_jobs`` job processes that log at the same moment; return their run ids."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                PY,
                "-c",
                CONCURRENT_JOB,
                str(i),
                str(go),
                str(tmp_path),
                str(n_steps),
                "init" if init else "-",
            ],
            env=child_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n_jobs)
    ]
    deadline = time.monotonic() + 120  # every process imported mlflow and waits: go
    while len(list(tmp_path.glob("ready*"))) < n_jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=180) for p in procs]
    failed = [
        (i, err[-1500:])
        for i, (p, (_, err)) in enumerate(zip(procs, outputs, strict=True))
        if p.returncode != 0
    ]
    assert not failed, f"{len(failed)} of {n_jobs} jobs failed; first: {failed[0]}"
    return {out.strip().splitlines()[-1] for out, _ in outputs}


def check_all_runs_arrived(tmp_path: Path, run_ids: set[str], n_jobs: int, n_steps: int):
    assert len(run_ids) == n_jobs
    runs = runs_of(tmp_path)
    assert {r.info.run_id for r in runs} == run_ids
    assert all(r.info.status == "FINISHED" for r in runs)
    assert sorted(int(r.data.tags["seed"]) for r in runs) == list(range(n_jobs))
    client = client_for(tmp_path)
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == list(range(n_steps)), run.info.run_id
        assert run.data.metrics["test_loglik"] == -1.5


@pytest.mark.slow
def test_eight_concurrent_jobs_after_the_workflow_created_the_store(tmp_path, monkeypatch):
    from flows_tf import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking.init_experiment(EXPERIMENT)  # what the workflow's mlflow_init rule does once
    run_ids = run_concurrent_jobs(tmp_path, 8, 40, init=False)
    check_all_runs_arrived(tmp_path, run_ids, 8, 40)


@pytest.mark.slow
def test_eight_concurrent_jobs_each_creating_a_brand_new_store(tmp_path):
    assert not (tmp_path / "mlflow.db").exists()
    run_ids = run_concurrent_jobs(tmp_path, 8, 40, init=True)
    check_all_runs_arrived(tmp_path, run_ids, 8, 40)


# ------------------------------------------------------------------ kill and resume

# a single training job, long enough to be killed half-way: 20 steps per epoch x 300 epochs
ONE_LONG_JOB = """
experiment: faults
datasets: {eight_gaussians: {n_train: 1000, n_val: 200, n_test: 200}}
mle: {datasets: [eight_gaussians], flows: [maf],
      training: {batch_size: 50, learning_rate: 0.001, max_epochs: 300, patience: null,
                 checkpoint_every: 10}}
vi: {datasets: [], flows: []}
distill: {datasets: []}
"""
TOTAL_STEPS = 6000


def checkpoint_steps(model_dir: Path) -> list[int]:
    found = (model_dir / "checkpoints").glob("ckpt-*.index")
    return sorted(int(p.name.split("-")[1].split(".")[0]) for p in found)


def snakemake(tmp_path: Path, *args) -> list[str]:
    return [
        str(Path(PY).parent / "snakemake"),
        "results/tables/runs.csv",
        "--cores",
        "2",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "config" / "smoke.yaml"),
        str(tmp_path / "job.yaml"),
        *args,
    ]


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_incomplete_resumes(tmp_path):
    (tmp_path / "job.yaml").write_text(ONE_LONG_JOB)
    model_dir = tmp_path / "results" / "models" / "eight_gaussians" / "maf" / "seed0"
    env = child_env(tmp_path)
    # the whole run dies at once (node lost, OOM killer): Snakemake and the training process
    first = subprocess.Popen(
        snakemake(tmp_path),
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while max(checkpoint_steps(model_dir), default=0) == 0 and first.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written within 240 s"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    _, err = first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{err}"
    time.sleep(1)  # let the killed group's last process go
    killed_at = max(checkpoint_steps(model_dir))
    assert 0 < killed_at < TOTAL_STEPS
    assert not (model_dir / "train.json").exists()
    (stale,) = runs_of(tmp_path)
    assert stale.info.status == "RUNNING"  # SIGKILL cannot be handled: the rerun must fix it

    # what a user does after a hard kill: release Snakemake's lock, rerun the incomplete job
    unlock = subprocess.run(
        snakemake(tmp_path, "--unlock"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    second = subprocess.run(
        snakemake(tmp_path, "--rerun-incomplete"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert second.returncode == 0, second.stderr[-5000:]
    summary = json.loads((model_dir / "train.json").read_text())
    assert summary["resumed"] is True
    assert summary["steps"] == TOTAL_STEPS
    table = pd.read_csv(tmp_path / "results" / "tables" / "runs.csv")
    assert len(table) == 1 and np.isfinite(table["test_loglik"]).all()
    runs = runs_of(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    live = [r for r in runs if "flowbench.superseded_by" not in r.data.tags]
    assert [r.info.run_id for r in live] == list(table["mlflow_run_id"])
    assert live[0].info.status == "FINISHED"
    # no metric of an epoch trained before the kill is lost: what the killed process had
    # buffered but not sent comes from the checkpoint's history when the record is mirrored
    history = client_for(tmp_path).get_metric_history(live[0].info.run_id, "train_loss")
    assert sorted({m.step for m in history}) == list(range(20, TOTAL_STEPS + 1, 20))


# -------------------------------------------------------------- unreachable tracking


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_fails_before_training(tmp_path, toy_data, monkeypatch):
    from flows_tf import jobs, tracking, train

    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = []
    monkeypatch.setattr(train, "fit", lambda *a, **k: started.append(a))
    model_dir = tmp_path / "model"
    with pytest.raises(tracking.TrackingError, match=re.escape(uri)) as err:
        jobs.train_job(toy_job(), data_dir=toy_data, model_dir=model_dir, experiment=EXPERIMENT)
    assert "unreachable" in str(err.value)
    assert not started, "training started although the tracking server is unreachable"
    assert not (model_dir / "train.json").exists()


# ---------------------------------------------------------------------- divergence


@pytest.fixture(scope="module")
def moons():
    from flows_tf import datasets

    return (
        datasets.load_dataset("two_moons", "train", **TOY),
        datasets.load_dataset("two_moons", "val", **TOY),
    )


DIVERGE = {"learning_rate": 1000.0, "max_epochs": 10, "batch_size": 128, "patience": None}


@pytest.mark.parametrize("on_nonfinite", ["fail", "retry"])
def test_learning_rate_1000_is_a_clear_error_naming_the_step(moons, tmp_path, on_nonfinite):
    from flows_tf import train
    from flows_tf.flows import build_flow

    train.set_seeds(0)
    flow = build_flow("maf", (2,), **SMALL)
    settings = {**DIVERGE, "on_nonfinite": on_nonfinite, "max_retries": 2}
    with pytest.raises(train.TrainingDiverged, match=r"step \d+") as err:
        train.fit(
            flow, "mle", train=moons[0], val=moons[1], settings=settings, workdir=tmp_path, seed=0
        )
    if on_nonfinite == "retry":
        assert "after 2 retries" in str(err.value)


def test_learning_rate_1000_that_stays_finite_records_no_nan(moons, tmp_path):
    from flows_tf import train
    from flows_tf.flows import build_flow

    train.set_seeds(0)
    flow = build_flow("realnvp", (2,), **SMALL)
    try:
        result = train.fit(
            flow, "mle", train=moons[0], val=moons[1], settings=DIVERGE, workdir=tmp_path, seed=0
        )
    except train.TrainingDiverged as err:  # also acceptable: a clear error
        assert re.search(r"step \d+", str(err))
        return
    values = [row[k] for row in result.history for k in ("train_loss", "val_loglik")]
    assert values and all(np.isfinite(values)), result.history
    assert np.isfinite(result.best_score)


def test_diverged_job_ends_its_run_failed_and_writes_no_results(store, toy_data):
    from flows_tf import jobs, tracking, train

    tracking.init_experiment(EXPERIMENT)
    job = experiment.Job("two_moons", "maf", 0, "mle", "maf", dict(SMALL), dict(DIVERGE))
    model_dir = store / "model"
    with pytest.raises(train.TrainingDiverged, match=r"step \d+"):
        jobs.train_job(job, data_dir=toy_data, model_dir=model_dir, experiment=EXPERIMENT)
    (run,) = runs_of(store)
    assert run.info.status == "FAILED"
    assert not (model_dir / "train.json").exists()  # nothing for a table to read
    assert all(np.isfinite(v) for v in run.data.metrics.values())


# ---------------------------------------------------------------------- bad inputs


def test_unknown_flow_name_is_named():
    from flows_tf.flows import build_flow

    with pytest.raises((ValueError, KeyError), match="no_such_flow"):
        build_flow("no_such_flow", (2,))


def test_unknown_dataset_name_lists_the_known_ones():
    from flows_tf import datasets

    with pytest.raises(datasets.DataError, match="no_such_data") as err:
        datasets.load_dataset("no_such_data", "train")
    assert "two_moons" in str(err.value)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"learning_rat": 0.1}, "learning_rat"),
        ({"batch_size": "big"}, "batch_size"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_bad_training_setting_is_named(settings, named):
    from flows_tf import train

    with pytest.raises(ValueError, match=named):
        train.check_settings(settings)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"seeds": ["zero"]}, "seeds"),
        ({"mle_typo": {}}, "mle_typo"),
        ({"mle": {"datasets": ["two_moons"], "flows": ["maf"], "training": {"lr": 1}}}, "lr"),
    ],
)
def test_bad_config_fails_schema_validation_naming_the_key(override, named):
    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text()) | override
    with pytest.raises(WorkflowError, match=named):
        validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))


@pytest.mark.slow
def test_workflow_refuses_a_config_naming_an_unknown_flow(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mle:\n  datasets: [two_moons]\n  flows: [no_such_flow]\n")
    done = subprocess.run(
        [
            str(Path(PY).parent / "snakemake"),
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config" / "smoke.yaml"),
            str(bad),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(tmp_path),
    )
    assert done.returncode != 0
    assert "unknown flow 'no_such_flow'" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()  # refused before any job ran


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    path.write_bytes(b"this is not a numpy file" * 10)


def put_nan(path: Path) -> None:
    x = np.load(path)
    x[3, 1] = np.nan
    np.save(path, x)


def change_a_value(path: Path) -> None:
    x = np.load(path)
    x[0, 0] += 1.0
    np.save(path, x)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (truncate, "corrupt or truncated"),
        (garble, "corrupt or truncated"),
        (put_nan, "NaN"),
        (change_a_value, "content hash"),
    ],
)
def test_damaged_split_is_named_and_stops_the_job_before_it_starts(
    store, toy_data, damage, problem
):
    from flows_tf import datasets, jobs, tracking

    damage(toy_data / "train.npy")
    with pytest.raises(datasets.DataError, match=problem) as err:
        datasets.read_split(toy_data, "train")
    assert "two_moons" in str(err.value) and "train.npy" in str(err.value)

    # a rerun on damaged data keeps what an earlier run finished and opens no MLflow run
    tracking.init_experiment(EXPERIMENT)
    model_dir = store / "model"
    model_dir.mkdir()
    (model_dir / "train.json").write_text('{"earlier": "result"}')
    with pytest.raises(datasets.DataError, match=problem):
        jobs.train_job(toy_job(), data_dir=toy_data, model_dir=model_dir, experiment=EXPERIMENT)
    assert json.loads((model_dir / "train.json").read_text()) == {"earlier": "result"}
    assert runs_of(store) == []
    np.testing.assert_array_equal(datasets.read_split(toy_data, "val").shape, (256, 2))


def test_download_checksum_mismatch_keeps_nothing(tmp_path):
    from flows_tf.datasets import DataError, download

    source = tmp_path / "source.bin"
    source.write_bytes(b"some bytes that are not what the checksum says")
    dest = tmp_path / "raw" / "data.bin"
    with pytest.raises(DataError, match="checksum mismatch"):
        download(source.as_uri(), dest, sha256="0" * 64)
    assert not dest.exists()
    assert not list(dest.parent.glob("*")) if dest.parent.exists() else True


def test_full_disk_while_checkpointing_keeps_the_last_checkpoint(moons, tmp_path, monkeypatch):
    import tensorflow as tf

    from flows_tf import train
    from flows_tf.flows import build_flow

    settings = {
        "batch_size": 128,
        "max_epochs": 3,
        "patience": None,
        "eval_every": 4,
        "checkpoint_every": 4,
    }
    real_save = tf.train.CheckpointManager.save
    saved = []

    def save_until_disk_full(self, *args, **kwargs):
        number = kwargs.get("checkpoint_number")
        if number is None or number > 4:  # the disk fills up after step 4
            raise OSError(errno.ENOSPC, "No space left on device", self.directory)
        saved.append(number)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save_until_disk_full)
    train.set_seeds(0)
    with pytest.raises(OSError) as err:
        train.fit(
            build_flow("realnvp", (2,), **SMALL),
            "mle",
            train=moons[0],
            val=moons[1],
            settings=settings,
            workdir=tmp_path,
            seed=0,
        )
    assert err.value.errno == errno.ENOSPC
    assert saved[-1] == 4
    assert checkpoint_steps(tmp_path)[-1] == 4

    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)  # disk freed
    train.set_seeds(0)
    result = train.fit(
        build_flow("realnvp", (2,), **SMALL),
        "mle",
        train=moons[0],
        val=moons[1],
        settings=settings,
        workdir=tmp_path,
        seed=0,
    )
    assert result.resumed and result.resumed_from_step == 4
    assert result.steps == 24 and result.epochs == 3


FLOWS_WITH_LAYERS = ["planar", "radial", "nice", "realnvp", "glow", "maf", "iaf", "nsf"]


@pytest.mark.parametrize("name", FLOWS_WITH_LAYERS)
def test_zero_layers_is_an_error_naming_the_hyperparameter(name):
    from flows_tf.flows import build_flow

    with pytest.raises(ValueError, match="num_layers"):
        build_flow(name, (2,), num_layers=0)
