"""MLflow bookkeeping: one run per job, resume vs supersede, failure status, batching, pyfunc.

Tracking knows nothing of jobs: a run is opened from plain data (a job key, a config hash, tags).
"""

import json
import os
import signal
import socket
import time

import pytest

from flows_tf import tracking

EXPERIMENT = "tracking-test"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh SQLite store with the experiment created once (schema creation takes seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    exp_id = tracking.init_experiment(EXPERIMENT)
    yield {"root": root, "experiment_id": exp_id}
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI")
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def _key(seed: int) -> str:
    return f"two_moons/maf/seed{seed}/mle"


def _open(seed, model_dir, **kw):
    """The run of job ``seed`` as flows_tf.jobs opens it: its key, config hash and tags."""
    tags = {"dataset": "two_moons", "flow": "maf", "seed": seed, "objective": "mle"}
    kw = {"config_hash": f"config-{seed}", "tags": tags, **kw}
    return tracking.job_run(_key(seed), EXPERIMENT, model_dir, **kw)


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.tracking_uri())


def test_flatten_nested_config():
    flat = tracking.flatten({"hparams": {"num_layers": 5, "hidden_units": [8, 8]}, "seed": 0})
    assert flat == {"hparams.num_layers": "5", "hparams.hidden_units": "[8, 8]", "seed": "0"}


def test_default_uri_is_sqlite_in_project_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("FLOWBENCH_ROOT", str(tmp_path))
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking.store.artifact_location(tracking.tracking_uri()) == (
        (tmp_path / "mlartifacts").as_uri()
    )


def test_unreachable_server_fails_fast_naming_uri(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    with pytest.raises(tracking.TrackingError, match=uri):
        tracking.init_experiment("x")
    assert time.monotonic() - start < 10


def test_init_is_idempotent(store):
    assert tracking.init_experiment(EXPERIMENT) == store["experiment_id"]
    assert tracking.experiment_id(EXPERIMENT) == store["experiment_id"]
    with pytest.raises(tracking.TrackingError, match="does not exist"):
        tracking.experiment_id("never-created")


def test_run_has_tags_params_and_batched_metrics(store, tmp_path, monkeypatch):
    calls = []
    from mlflow.tracking import MlflowClient

    original = MlflowClient.log_batch

    def counting(self, run_id, metrics=(), params=(), tags=(), **kw):
        calls.append(len(metrics))
        return original(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", counting)
    params = {"hparams": {"num_layers": 2, "hidden_units": [8]}, "seed": 11}
    with _open(11, tmp_path, rule="train", data_hash="abc") as run:
        run.log_params({**params, "threads": {"intra_op_threads": 1}})
        for step in range(300):
            run.log_metrics({"train_loss": 1.0 / (step + 1), "val_loglik": -float(step)}, step)
    run_id = run.run_id
    r = _client().get_run(run_id)
    assert r.info.status == "FINISHED"
    tags = r.data.tags
    assert tags["job_key"] == "two_moons/maf/seed11/mle"
    assert (
        tags["config_hash"] == "config-11" and tags["mlflow.runName"] == "two_moons-maf-seed11-mle"
    )
    assert tags["dataset"] == "two_moons" and tags["seed"] == "11" and tags["objective"] == "mle"
    assert tags["snakemake_rule"] == "train" and tags["data_hash"] == "abc"
    assert tags["git_commit"]
    assert r.data.params["hparams.num_layers"] == "2"
    assert r.data.params["threads.intra_op_threads"] == "1"
    history = _client().get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == list(range(300))
    metric_calls = [n for n in calls if n]
    assert sum(metric_calls) == 600 and len(metric_calls) <= 3  # batched, not per value
    stored = json.loads((tmp_path / tracking.RUN_FILE).read_text())
    assert stored["run_id"] == run_id and stored["job_key"] == _key(11)


def test_exception_marks_failed_and_rerun_resumes_same_run(store, tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with _open(12, tmp_path, data_hash="h") as run:
            raise RuntimeError("boom")
    first = run.run_id
    assert _client().get_run(first).info.status == "FAILED"
    with _open(12, tmp_path, data_hash="h") as run2:
        assert run2.resumed
    assert run2.run_id == first
    assert _client().get_run(first).info.status == "FINISHED"
    assert len(tracking.active_runs(store["experiment_id"], _key(12))) == 1


def test_failed_run_with_another_config_is_not_resumed(store, tmp_path):
    with pytest.raises(RuntimeError):
        with _open(17, tmp_path, data_hash="h") as failed:
            raise RuntimeError
    with _open(17, tmp_path, data_hash="h", config_hash="changed") as rerun:
        assert not rerun.resumed
    assert _client().get_run(failed.run_id).data.tags[tracking.SUPERSEDED_TAG] == rerun.run_id
    assert json.loads((tmp_path / tracking.RUN_FILE).read_text())["config_hash"] == "changed"


def test_sigterm_marks_failed(store, tmp_path):
    with pytest.raises(SystemExit):
        with _open(13, tmp_path) as run:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    assert _client().get_run(run.run_id).info.status == "FAILED"


def test_rerun_after_finish_or_data_change_supersedes(store, tmp_path):
    with _open(14, tmp_path, data_hash="v1") as first:
        pass
    with _open(14, tmp_path, data_hash="v1") as second:
        assert not second.resumed
    assert second.run_id != first.run_id
    old = _client().get_run(first.run_id).data.tags
    assert old[tracking.SUPERSEDED_TAG] == second.run_id
    # a failed run with different data is not resumed either
    with pytest.raises(ValueError):
        with _open(14, tmp_path, data_hash="v1") as third:
            raise ValueError
    with _open(14, tmp_path, data_hash="v2") as fourth:
        assert not fourth.resumed
    live = tracking.active_runs(store["experiment_id"], _key(14))
    assert [r.info.run_id for r in live] == [fourth.run_id]
    assert _client().get_run(third.run_id).data.tags[tracking.SUPERSEDED_TAG] == fourth.run_id


def test_log_missing_fills_gaps_without_duplicates(store, tmp_path):
    rows = [
        {"step": s, "train_loss": 1.0 / s, "val_loglik": None if s == 20 else -s}
        for s in (10, 20, 30)
    ]
    with _open(18, tmp_path) as run:
        run.log_metrics({"train_loss": 1.0 / 10, "val_loglik": -10.0}, step=10)  # sent
        assert run.log_missing(rows) == 3  # train_loss at 20 and 30, val_loglik at 30
        assert run.log_missing(rows) == 0
    for key, steps in (("train_loss", [10, 20, 30]), ("val_loglik", [10, 30])):
        history = _client().get_metric_history(run.run_id, key)
        assert sorted(m.step for m in history) == steps, key


def test_import_is_cheap_and_knows_no_jobs():
    import ast
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, flows_tf.tracking; print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    for path in Path(tracking.__file__).parent.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        for name in ("flows_tf.experiment", "flows_tf.jobs", "flows_tf.train"):
            assert not {m for m in imported if m.startswith(name)}, f"{path.name} imports {name}"


def test_reopen_run_adds_metrics(store, tmp_path):
    with _open(15, tmp_path) as run:
        pass
    with tracking.reopen_run(run.run_id, rule="evaluate") as again:
        again.log_metrics({"test_loglik": -1.5}, step=3)
    r = _client().get_run(run.run_id)
    assert r.info.status == "FINISHED" and r.data.metrics["test_loglik"] == -1.5
    with pytest.raises(tracking.TrackingError, match="not found"):
        tracking.load_runs(["0" * 32])


def test_pyfunc_model_loads_and_gives_log_prob_and_samples(store, tmp_path):
    import mlflow
    import numpy as np

    from flows_tf import modelio
    from flows_tf.flows import build_flow

    flow = build_flow("maf", (2,), num_layers=1, hidden_units=[4])
    modelio.save_flow(flow, tmp_path / "model")
    spec = modelio.make_spec("maf", (2,), {"num_layers": 1, "hidden_units": [4]})
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with _open(16, tmp_path) as run:
        run.log_model(tmp_path / "model", tmp_path / "spec.json")
    model = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), flow.log_prob(x).numpy(), rtol=1e-5)
    samples = model.predict(x, params={"method": "sample", "n": 7, "seed": 1})
    assert samples.shape == (7, 2) and np.all(np.isfinite(samples))
    inner = model.unwrap_python_model()
    np.testing.assert_allclose(inner.log_prob(x), flow.log_prob(x).numpy(), rtol=1e-5)
