"""Serial timing: a fresh process per data set, round-robin rounds, medians, paired speed-ups."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from flows_tf import experiment, modelio, runtime, timing, tracking

EXPERIMENT = "timing-test"


def _record(dataset, flow, seed, objective="mle", teacher=None, **extra):
    return {
        "job_key": f"{dataset}/{flow}/seed{seed}/{objective}",
        "dataset": dataset,
        "flow": flow,
        "seed": seed,
        "objective": objective,
        "teacher": teacher,
        "model_dir": f"models/{dataset}/{flow}/seed{seed}",
        **extra,
    }


def test_timing_rows_medians_and_paired_speedup_by_hand():
    records = [
        _record("moons", "maf", 0),
        _record("moons", experiment.STUDENT, 0, "distill", teacher="maf"),
    ]
    # seconds[model, (sample, log_prob), round]: the teacher is slow in round 2 (load drift),
    # and the student with it: the paired ratio stays 10
    seconds = np.array(
        [
            [[0.10, 0.30, 0.12], [0.01, 0.01, 0.02]],
            [[0.01, 0.03, 0.012], [0.5, 0.6, 0.7]],
        ]
    )
    rows = timing.timing_rows(records, seconds, n=500)
    teacher, student = rows
    assert teacher["sample_seconds_per_1k"] == pytest.approx(0.12 * 2)  # median x 1000 / n
    assert teacher["logprob_seconds_per_1k"] == pytest.approx(0.01 * 2)
    assert np.isnan(teacher["sampling_speedup"]) and teacher["teacher_job_key"] is None
    assert student["sampling_speedup"] == pytest.approx(10.0)
    assert student["teacher_job_key"] == "moons/maf/seed0/mle"
    assert student["timing_repeats"] == 3 and student["timing_batch_size"] == 500
    assert set(timing.TIMING_COLUMNS) == set(student)


def test_student_without_its_teacher_is_an_error():
    records = [_record("moons", experiment.STUDENT, 1, "distill", teacher="maf")]
    with pytest.raises(timing.TimingError, match="teacher moons/maf/seed1/mle is not timed"):
        timing.timing_rows(records, np.ones((1, 2, 1)), n=10)


def test_records_must_name_their_model(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"job_key": "a/b/seed0/mle", "dataset": "a"}))
    with pytest.raises(timing.TimingError, match=r"lacks \['model_dir', 'flow', 'seed'\]"):
        timing.read_records([path])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_hparams):
    """A MAF teacher and an IAF student on 2-D data, saved as the workflow saves them, each
    with a finished MLflow run and a metrics file."""
    runtime.configure(2)
    from flows_tf import train
    from flows_tf.flows import build_flow

    root = tmp_path_factory.mktemp("timing")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    tracking.init_experiment(EXPERIMENT)
    files = []
    for flow_name, builder, objective in (
        ("maf", "maf", "mle"),
        (experiment.STUDENT, "iaf", "distill"),
    ):
        job = experiment.Job("moons", flow_name, 0, objective, builder, teacher="maf")
        model_dir = root / "models" / "moons" / flow_name / "seed0"
        hparams = dict(small_hparams[builder])
        train.set_seeds(0)
        flow = build_flow(builder, [2], **hparams)
        modelio.save_flow(flow, model_dir / "model")
        (model_dir / "model_spec.json").write_text(
            json.dumps(modelio.make_spec(builder, [2], hparams))
        )
        with tracking.job_run(job.key, EXPERIMENT, model_dir, config_hash=job.config_hash) as run:
            pass
        (model_dir / "train.json").write_text(json.dumps({"steps": 7}))
        record = _record("moons", flow_name, 0, objective, teacher=job.teacher)
        record.update(model_dir=str(model_dir), mlflow_run_id=run.run_id)
        path = root / "metrics" / f"{flow_name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        files.append(path)
    yield {"root": root, "files": files}
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI")
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def test_run_timing_writes_table_conditions_and_mlflow(trained):
    root = trained["root"]
    threads = {"threads": 2, "intra_op_threads": 1, "inter_op_threads": 2}
    frame = timing.run_timing(
        trained["files"],
        root / "timing" / "timing.csv",
        root / "timing" / "conditions.json",
        n=64,
        repeats=3,
        threads=threads,
    )
    on_disk = pd.read_csv(root / "timing" / "timing.csv")
    assert list(on_disk["flow"]) == ["maf", experiment.STUDENT] and len(frame) == 2
    assert (on_disk["sample_seconds_per_1k"] > 0).all()
    assert (on_disk["logprob_seconds_per_1k"] > 0).all()
    student = on_disk.set_index("flow").loc[experiment.STUDENT]
    assert student["sampling_speedup"] > 0 and student["timing_repeats"] == 3
    conditions = json.loads((root / "timing" / "conditions.json").read_text())
    assert conditions["threads"] == threads and conditions["timing_batch_size"] == 64
    assert len(conditions["load_before"]) == 3 and len(conditions["load_after"]) == 3
    assert conditions["models"] == 2
    assert conditions["per_dataset"]["moons"]["models"] == 2
    moons = conditions["per_dataset"]["moons"]
    assert moons["pid"] != os.getpid()  # timed in a fresh process
    assert 0 < moons["load_seconds"] and 0 < moons["measure_seconds"]
    assert moons["load_seconds"] + moons["measure_seconds"] <= moons["wall_seconds"] + 0.02
    run = tracking.load_runs([student["mlflow_run_id"]])[0]
    assert run["status"] == "FINISHED"
    assert run["metrics"]["sampling_speedup"] == pytest.approx(student["sampling_speedup"])
    assert run["metrics"]["sample_seconds_per_1k"] == pytest.approx(
        student["sample_seconds_per_1k"]
    )
    assert run["tags"]["snakemake_rule_last"] == "time_models"


def _as_dataset(path, dataset, tmp_path):
    """A copy of a metrics file whose model belongs to ``dataset`` (same saved model)."""
    record = json.loads(path.read_text())
    old = record["dataset"]
    record.update(dataset=dataset, job_key=record["job_key"].replace(old, dataset, 1))
    out = tmp_path / f"{dataset}-{path.name}"
    out.write_text(json.dumps(record))
    return out


def test_each_data_set_is_timed_in_a_process_of_its_own(trained, tmp_path):
    files = [*trained["files"], *(_as_dataset(f, "moons2", tmp_path) for f in trained["files"])]
    threads = {"threads": 2, "intra_op_threads": 1, "inter_op_threads": 2}
    rows, conditions = timing.time_models(files, n=32, repeats=1, threads=threads)
    pids = {d: c["pid"] for d, c in conditions["per_dataset"].items()}
    assert set(pids) == {"moons", "moons2"} and len({*pids.values(), os.getpid()}) == 3
    assert [r["dataset"] for r in rows] == ["moons", "moons", "moons2", "moons2"]
    students = [r for r in rows if r["flow"] == experiment.STUDENT]
    assert [s["teacher_job_key"] for s in students] == [
        "moons/maf/seed0/mle",
        "moons2/maf/seed0/mle",
    ]
    assert all(s["sampling_speedup"] > 0 for s in students)


def test_a_failing_timing_process_names_its_data_set(tmp_path):
    record = _record("moons", "maf", 0, model_dir=str(tmp_path / "no-such-model"))
    path = tmp_path / "m.json"
    path.write_text(json.dumps(record))
    with pytest.raises(timing.TimingError, match=r"timing moons failed \(exit 1\)"):
        timing.time_models([path], n=8, repeats=1, threads={"threads": 1})


_SHARED_CASES = [
    *("gaussian", "planar", "radial", "nice", "realnvp", "glow", "maf", "iaf", "nsf"),
    ("maf", {"shift_side": "noise", "sequential": "by_degree", "data_affine": "diag"}),
    ("iaf", {"sequential": "by_degree_implicit", "data_affine": "diag"}),
]


@pytest.mark.parametrize(
    ("name", "extra"),
    [(c, {}) if isinstance(c, str) else c for c in _SHARED_CASES],
    ids=lambda c: c if isinstance(c, str) else "-".join(map(str, c.values())),
)
def test_seeds_of_one_spec_share_the_timed_functions_yet_each_runs_its_own_weights(
    name, extra, make_flow, small_hparams, tmp_path
):
    import tensorflow as tf

    hparams = {**small_hparams[name], **extra}
    spec = modelio.make_spec(name, [2], hparams)
    records, own = [], []
    for seed in (0, 1):
        flow = make_flow(name, perturb=0.3, seed=seed, dtype=tf.float32, **extra)
        model_dir = tmp_path / f"seed{seed}"
        modelio.save_flow(flow, model_dir / "model")
        (model_dir / "model_spec.json").write_text(json.dumps(spec))
        records.append({"model_dir": str(model_dir), "seed": seed})
        own.append(flow)
    fns, prepare = timing._load_models(records, n=16)
    assert len(fns) == len(prepare) == 4 and fns[:2] == fns[2:]  # one pair, traced once
    for i in (1, 0, 1):  # back and forth: each call runs the weights loaded last
        prepare[2 * i]()
        expected = own[i].sample(16, seed=[1, 2])
        np.testing.assert_allclose(fns[2 * i](), expected, rtol=1e-4, atol=1e-5)
        prepare[2 * i + 1]()
        x = own[i].sample(16, seed=[3, 4])
        np.testing.assert_allclose(fns[2 * i + 1](), own[i].log_prob(x), rtol=1e-4, atol=1e-4)
    assert not np.allclose(own[0].sample(16, seed=[1, 2]), own[1].sample(16, seed=[1, 2]))


def test_a_model_whose_variables_differ_from_its_specs_first_is_an_error(make_flow, tmp_path):
    import tensorflow as tf

    first = make_flow("maf", dtype=tf.float32)
    other = make_flow("maf", dtype=tf.float32, hidden_units=[4, 4])
    with pytest.raises(timing.TimingError, match="model 1: its variables are not those"):
        timing._weights_loader(1, other, None, first, {"model": 0})
