"""One job end to end in-process: files, metrics fields, MLflow run, digits in pixel space; the
same science without a tracking store, number for number."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows_tf import experiment, jobs, runtime, tracking

CONFIG = {
    "experiment": "jobs-test",
    "seeds": [0],
    "datasets": {"digits": {}},
    "flows": {"gaussian": {}, "planar": {"num_layers": 2}},
    "mle": {
        "datasets": ["digits"],
        "flows": ["gaussian"],
        "training": {"batch_size": 256, "max_epochs": 2, "patience": 2},
    },
    "vi": {
        "datasets": ["u2"],
        "flows": ["planar"],
        "training": {"batch_size": 32, "steps": 20, "eval_every": 10},
    },
}
EVALUATION = {"n_samples": 50, "vi_samples": 200, "timing_n": 50, "timing_repeats": 1, "grid_n": 10}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("jobs")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    tracking.init_experiment(CONFIG["experiment"])
    from flows_tf import datasets

    datasets.prepare_dataset("digits", root / "data" / "digits")
    yield root
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI")
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def _run(job, root):
    threads = runtime.configure(2)
    model_dir = root / "models" / job.dataset / job.flow
    data_dir = None if job.objective == "vi" else root / "data" / job.dataset
    summary = jobs.train_job(
        job,
        data_dir=data_dir,
        model_dir=model_dir,
        experiment=CONFIG["experiment"],
        threads=threads,
        evaluation=EVALUATION,
    )
    metrics_path = root / "metrics" / f"{job.dataset}-{job.flow}.json"
    metrics = jobs.evaluate_job(
        job,
        data_dir=data_dir,
        model_dir=model_dir,
        metrics_path=metrics_path,
        threads=threads,
        evaluation=EVALUATION,
    )
    return model_dir, summary, metrics, json.loads(metrics_path.read_text())


def test_mle_job_on_digits_writes_files_and_pixel_space_metrics(workdir):
    job = experiment.make_job(CONFIG, "digits", "gaussian", 0)
    model_dir, summary, metrics, on_disk = _run(job, workdir)
    history = pd.read_csv(model_dir / "history.csv")
    assert list(history.columns[:4]) == ["step", "epoch", "train_loss", "val_loglik"]
    assert len(history) == summary["epochs"] >= 1
    assert np.load(model_dir / "samples.npy").shape == (50, 64)
    assert not (model_dir / "density_grid.npz").exists()  # 64-D
    for key in (
        "dataset",
        "flow",
        "seed",
        "objective",
        "n_params",
        "test_loglik",
        "test_loglik_se",
        "train_seconds",
        "n_test",
        "loglik_file",
        "mlflow_run_id",
        "bits_per_dim",
        "model_dir",
    ):
        assert key in on_disk, key
    assert np.isfinite(on_disk["bits_per_dim"]) and on_disk["bits_per_dim"] > 0
    # images report log-likelihoods in pixel space: bits/dim is the same number in other units
    assert on_disk["bits_per_dim"] == pytest.approx(-on_disk["test_loglik"] / (64 * np.log(2)))
    assert on_disk["test_loglik_model"] != pytest.approx(on_disk["test_loglik"])
    assert on_disk["n_params"] == 64 + 64 * 65 // 2  # mean + Cholesky factor
    # per-example test values beside the metrics file, in the same (pixel) space
    per_example = np.load(jobs.per_example_path(workdir / "metrics" / "digits-gaussian.json"))
    assert per_example.dtype == np.float64 and len(per_example) == on_disk["n_test"]
    assert per_example.mean() == pytest.approx(on_disk["test_loglik"])
    assert "sample_seconds_per_1k" not in on_disk  # timing is the serial step's, not this job's
    assert on_disk["elbo"] is None  # not a VI job: null, not a made-up number
    # the pools in effect are recorded (TF may already run with others earlier in this process)
    import tensorflow as tf

    in_effect = tf.config.threading.get_intra_op_parallelism_threads()
    assert on_disk["threads"]["intra_op_threads"] == in_effect
    run = tracking.load_runs([on_disk["mlflow_run_id"]])[0]
    assert run["status"] == "FINISHED" and run["tags"]["job_key"] == job.key
    assert run["tags"]["config_hash"] == job.config_hash and run["tags"]["flow"] == "gaussian"
    assert run["tags"]["snakemake_rule_last"] == "evaluate"
    assert run["metrics"]["steps"] == summary["steps"] == on_disk["steps"]
    assert run["metrics"]["test_loglik"] == pytest.approx(metrics["test_loglik"])
    assert run["params"]["objective"] == "mle"


@pytest.fixture(scope="module")
def vi_job(workdir):
    job = experiment.make_job(CONFIG, "u2", "planar", 0)
    return job, _run(job, workdir)


def test_vi_job_has_vi_metrics_and_density_grid(vi_job):
    job, (model_dir, summary, metrics, on_disk) = vi_job
    assert job.objective == "vi"
    grid = np.load(model_dir / "density_grid.npz")
    assert grid["logp"].shape == (10, 10) and np.all(np.isfinite(grid["logp"]))
    assert on_disk["kl_to_target"] >= -0.05 and 0 < on_disk["ess"] <= 1
    assert on_disk["test_loglik"] is None
    run = tracking.load_runs([on_disk["mlflow_run_id"]])[0]
    last = jobs.read_history(model_dir / "history.csv")[-1]
    assert last["step"] == summary["steps"] and run["metrics"]["train_loss"] == last["train_loss"]
    assert run["metrics"]["kl_to_target"] == on_disk["kl_to_target"]


def test_science_needs_no_tracking_store_and_gives_the_same_numbers(vi_job, tmp_path, monkeypatch):
    def no_store():
        raise AssertionError("the science used the tracking store")

    monkeypatch.setattr(tracking.store, "client", no_store)
    job, (tracked_dir, tracked_summary, _, tracked_metrics) = vi_job
    model_dir, metrics_path = tmp_path / "model", tmp_path / "metrics.json"
    inputs = jobs.load_train_inputs(job, None)
    summary = jobs.train_model(job, inputs, model_dir, evaluation=EVALUATION)
    metrics = jobs.evaluate_model(
        job, data_dir=None, model_dir=model_dir, metrics_path=metrics_path, evaluation=EVALUATION
    )
    assert summary["mlflow_run_id"] is None and metrics["mlflow_run_id"] is None
    assert json.loads((model_dir / "train.json").read_text())["steps"] == summary["steps"]
    for name in ("history.csv", "model_spec.json"):
        assert (model_dir / name).read_text() == (tracked_dir / name).read_text(), name
    assert np.array_equal(np.load(model_dir / "samples.npy"), np.load(tracked_dir / "samples.npy"))
    grid, tracked_grid = (np.load(d / "density_grid.npz") for d in (model_dir, tracked_dir))
    assert all(np.array_equal(grid[k], tracked_grid[k]) for k in ("xs", "ys", "logp"))
    on_disk = json.loads(metrics_path.read_text())
    for key in ("elbo", "kl_to_target", "kl_to_target_se", "ess", "n_params", "steps"):
        assert on_disk[key] == tracked_metrics[key], key
    assert summary["final_loss"] == tracked_summary["final_loss"]


def _same_files(a, b):
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
    assert np.array_equal(np.load(a / "samples.npy"), np.load(b / "samples.npy"))  # same weights


def test_a_variants_seeds_in_one_process_train_as_their_own_jobs(
    vi_job, workdir, tmp_path, monkeypatch
):
    from flows_tf.train import loop

    job, (alone_dir, alone_summary, _, _) = vi_job  # seed 0, a job of its own
    compiled = []
    block_step = loop._block_step
    monkeypatch.setattr(loop, "_block_step", lambda *a: compiled.append(a) or block_step(*a))
    variant = [experiment.make_job(CONFIG, "u2", "planar", s) for s in (0, 1)]
    dirs = [workdir / "variant" / f"seed{s}" for s in (0, 1)]
    common = {"experiment": CONFIG["experiment"], "evaluation": EVALUATION}
    summaries = jobs.train_variant(
        variant, data_dir=None, model_dirs=dirs, teacher_dirs=[None, None], **common
    )
    assert len(compiled) == 1  # the seeds shared one block of steps
    _same_files(dirs[0], alone_dir)
    seed1_alone = tmp_path / "seed1"
    jobs.train_model(variant[1], jobs.load_train_inputs(variant[1], None), seed1_alone,
                     evaluation=EVALUATION)  # fmt: skip
    _same_files(dirs[1], seed1_alone)
    assert summaries[0]["final_loss"] == alone_summary["final_loss"]
    assert len({s["mlflow_run_id"] for s in summaries}) == 2  # a run each
    assert all((d / "evaluation" / "metrics.json").is_file() for d in dirs)  # each evaluated
    paths = [workdir / "variant" / f"metrics{s}.json" for s in (0, 1)]
    published = jobs.evaluate_variant(variant, data_dir=None, model_dirs=dirs, metrics_paths=paths,
                                      teacher_dirs=[None, None], evaluation=EVALUATION)  # fmt: skip
    assert [m["seed"] for m in published] == [0, 1]
    assert [json.loads(p.read_text())["mlflow_run_id"] for p in paths] == [
        s["mlflow_run_id"] for s in summaries
    ]


def test_a_failing_seed_stops_neither_the_next_nor_the_error(workdir, monkeypatch):
    variant = [experiment.make_job(CONFIG, "u2", "planar", s) for s in (3, 4)]
    dirs = [workdir / "failing" / f"seed{s}" for s in (3, 4)]
    train_job = jobs.train_job

    def seed3_fails(job, **kwargs):
        if job.seed == 3:
            raise ValueError("seed 3 is broken")
        return train_job(job, **kwargs)

    monkeypatch.setattr(jobs, "train_job", seed3_fails)
    with pytest.raises(RuntimeError, match=r"1 of 2 seeds failed: u2/planar/seed3/vi: .*broken"):
        jobs.train_variant(variant, data_dir=None, model_dirs=dirs, teacher_dirs=[None, None],
                           experiment=CONFIG["experiment"], evaluation=EVALUATION)  # fmt: skip
    assert (dirs[1] / "train.json").is_file() and not dirs[0].exists()


def test_variants_of_a_data_set_train_in_one_process_as_their_own_jobs(
    vi_job, workdir, monkeypatch
):
    job, (alone_dir, _, _, _) = vi_job  # u2/planar seed 0, a job of its own
    variants = [[experiment.make_job(CONFIG, "u2", f, 0)] for f in ("gaussian", "planar")]
    dirs = [[workdir / "together" / f / "seed0"] for f in ("gaussian", "planar")]
    train_variant = jobs.train_variant

    def first_fails(variant, **kwargs):
        if variant[0].flow == "gaussian":
            raise ValueError("the gaussian variant is broken")
        return train_variant(variant, **kwargs)

    monkeypatch.setattr(jobs, "train_variant", first_fails)
    with pytest.raises(RuntimeError, match=r"1 of 2 variants failed: u2/gaussian: .*broken"):
        jobs.train_variants(variants, data_dir=None, model_dirs=dirs, teacher_dirs=[[None]] * 2,
                            experiment=CONFIG["experiment"], evaluation=EVALUATION)  # fmt: skip
    _same_files(dirs[1][0], alone_dir)  # the next variant trained, to the weights of its own job


def _evaluate_again(job, root, **changes):
    """evaluate_job on the model of ``_run`` into a new metrics file, with changed settings."""
    data_dir = None if job.objective == "vi" else root / "data" / job.dataset
    path = root / "metrics" / f"{job.dataset}-{job.flow}-again.json"
    args = {
        "data_dir": data_dir,
        "model_dir": root / "models" / job.dataset / job.flow,
        "metrics_path": path,
        "threads": runtime.configure(2),
        "evaluation": EVALUATION,
    }
    return jobs.evaluate_job(job, **{**args, **changes})


def test_the_evaluate_step_publishes_the_training_jobs_own_evaluation(workdir, monkeypatch):
    job = experiment.make_job(CONFIG, "digits", "gaussian", 0)
    model_dir, _, _, published = _run(job, workdir)
    fresh_path = workdir / "metrics" / "fresh.json"
    jobs.evaluate_model(
        job, data_dir=workdir / "data" / "digits", model_dir=model_dir,
        metrics_path=fresh_path, threads=runtime.configure(2), evaluation=EVALUATION,
    )  # fmt: skip
    fresh = json.loads(fresh_path.read_text())
    assert {**published, "loglik_file": "fresh.loglik.npy"} == fresh
    per_example = np.load(jobs.per_example_path(workdir / "metrics" / "digits-gaussian.json"))
    assert np.array_equal(per_example, np.load(jobs.per_example_path(fresh_path)))

    def evaluated(*args, **kwargs):
        raise RuntimeError("evaluated afresh")

    monkeypatch.setattr(jobs, "evaluate_model", evaluated)
    assert _evaluate_again(job, workdir)["test_loglik"] == published["test_loglik"]
    # the evaluate rule gets the settings without the timing ones: the same measurement
    timing_only = {k: v for k, v in EVALUATION.items() if not k.startswith("timing")}
    again = _evaluate_again(job, workdir, evaluation=timing_only)
    assert again == {**published, "loglik_file": "digits-gaussian-again.loglik.npy"}
    with pytest.raises(RuntimeError, match="evaluated afresh"):  # other settings: not the draft
        _evaluate_again(job, workdir, evaluation={**EVALUATION, "batch_size": 100})


def test_a_mirrored_evaluation_is_published_without_mlflow(workdir, monkeypatch):
    job = experiment.make_job(CONFIG, "digits", "gaussian", 1)
    model_dir, data_dir = workdir / "models" / "mirrored", workdir / "data" / "digits"
    metrics_path = workdir / "metrics" / "mirrored" / "seed1.json"
    args = {"data_dir": data_dir, "model_dir": model_dir, "evaluation": EVALUATION}
    args["threads"] = runtime.configure(2)
    summary = jobs.train_job(
        job, experiment=CONFIG["experiment"], metrics_path=metrics_path, **args
    )  # fmt: skip
    run = tracking.load_runs([summary["mlflow_run_id"]])[0]  # mirrored by the training job
    assert run["tags"]["metrics_file"] == str(metrics_path)
    assert run["tags"]["snakemake_rule"] == "train" and "snakemake_rule_last" not in run["tags"]

    def no_mlflow(*args, **kwargs):
        raise AssertionError("the evaluate step used MLflow")

    monkeypatch.setattr(tracking.store, "client", no_mlflow)
    monkeypatch.setattr(jobs, "mirror_evaluation", no_mlflow)
    monkeypatch.setattr(jobs, "evaluate_model", no_mlflow)
    published = jobs.evaluate_job(job, metrics_path=metrics_path, **args)
    assert run["metrics"]["test_loglik"] == published["test_loglik"]
    assert run["metrics"]["steps"] == published["steps"] == summary["steps"]
    monkeypatch.undo()
    client = tracking.store.client()
    for path in (metrics_path, jobs.per_example_path(metrics_path)):  # the published files
        logged = client.download_artifacts(run["run_id"], path.name, str(workdir / "dl"))
        assert Path(logged).read_bytes() == path.read_bytes(), path.name
    # published under another name, the record names another file: the step mirrors it itself
    elsewhere = workdir / "metrics" / "elsewhere" / "seed1.json"
    mirrored = []
    monkeypatch.setattr(jobs, "mirror_evaluation", lambda path, rule: mirrored.append(path))
    assert jobs.evaluate_job(job, metrics_path=elsewhere, **args) == {**published}
    assert mirrored == [elsewhere]


def test_a_failed_in_process_evaluation_keeps_the_model_and_is_redone(workdir, monkeypatch):
    job = experiment.make_job(CONFIG, "digits", "gaussian", 0)
    evaluate_model = jobs.evaluate_model
    monkeypatch.setattr(jobs, "evaluate_model", lambda *a, **k: 1 / 0)
    threads = runtime.configure(2)
    model_dir = workdir / "models" / "failed"
    summary = jobs.train_job(
        job, data_dir=workdir / "data" / "digits", model_dir=model_dir,
        experiment=CONFIG["experiment"], threads=threads, evaluation=EVALUATION,
    )  # fmt: skip
    assert (model_dir / "train.json").exists() and summary["steps"] >= 1
    assert not (model_dir / jobs.draft.DRAFT_DIR).exists()
    monkeypatch.setattr(jobs, "evaluate_model", evaluate_model)
    metrics = _evaluate_again(job, workdir, model_dir=model_dir)
    assert np.isfinite(metrics["test_loglik"])


def test_science_modules_do_not_import_tracking():
    import ast
    from pathlib import Path

    for name in ("training", "evaluation", "draft", "record", "logs"):
        path = Path(jobs.__file__).parent / f"{name}.py"
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        assert not {m for m in imported if "tracking" in m or "mlflow" in m}, name


def test_run_tags_of_a_student_name_its_teacher():
    config = {**CONFIG, "distill": {"datasets": ["digits"], "teacher": "gaussian"}}
    job = experiment.make_job(config, "digits", experiment.STUDENT, 0)
    tags = jobs.run_tags(job)
    assert tags["teacher"] == "gaussian" and tags["objective"] == "distill"
    assert jobs.job_params(job, {"threads": 2})["job_key"] == job.key


def test_cli_lists_the_jobs_of_a_config(capsys, tmp_path):
    from flows_tf import cli

    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump(CONFIG))
    assert cli.main(["list", "--config", str(path)]) == 0
    assert capsys.readouterr().out.split() == [j.key for j in experiment.jobs(CONFIG)]
    path.write_text(yaml.safe_dump({**CONFIG, "sedes": [0]}))
    with pytest.raises(SystemExit, match="'sedes' was unexpected"):
        cli.main(["list", "--config", str(path)])
