"""Tables: numbers from the metrics files, cells computed by hand, paired bold, strict seeds."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from flows_tf import experiment, tables, tracking

EXPERIMENT = "tables-test"
SEEDS = [0, 1, 2]
# per-example test log-likelihoods l[s, i]: 3 seeds x 4 test examples, chosen so that every
# number of the cell can be worked out on paper (see test_loglik_cell_by_hand)
L_A = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0]])
PER_EXAMPLE = {
    ("moons", "a"): L_A,
    ("moons", "b"): L_A.copy(),  # an exact tie with a: both bold
    ("moons", "c"): L_A - np.array([1.0, 1.0, 1.0, 1.2]),  # clearly worse: not bold
    ("moons", "d"): L_A - np.array([0.5, -0.5, 0.6, -0.4]),  # worse by noise only: bold
    ("rings", "a"): L_A - 10.0,
    ("rings", "c"): L_A + 1.0,
}


def _mle_rows():
    return [
        {
            "dataset": d,
            "flow": f,
            "seed": s,
            "objective": "mle",
            "job_key": f"{d}/{f}/seed{s}/mle",
            "mlflow_run_id": f"run-{d}-{f}-{s}",
            "test_loglik": float(values[s].mean()),
            "n_params": 10,
            "train_seconds": 1.0,
        }
        for (d, f), values in PER_EXAMPLE.items()
        for s in SEEDS
    ]


def _per_example():
    return {f"{d}/{f}/seed{s}/mle": v[s] for (d, f), v in PER_EXAMPLE.items() for s in SEEDS}


def _runs():
    return pd.DataFrame(_mle_rows())


def test_loglik_cell_by_hand():
    cell = tables.loglik_cell(L_A)
    # m_s = 2.5, 3.5, 4.5; lbar_i = 2, 3, 4, 5; std(lbar) = sqrt(5/3); std(m_s) = 1
    assert cell["mean"] == pytest.approx(3.5)
    assert cell["se_test"] == pytest.approx(math.sqrt(5 / 3) / 2)
    assert cell["se_seed"] == pytest.approx(1 / math.sqrt(3))
    assert cell["two_se"] == pytest.approx(math.sqrt(3))  # 2 sqrt(5/12 + 1/3)
    assert (cell["n_seeds"], cell["n_test"]) == (3, 4)
    # the old cell, 2 sqrt(sum se_s^2) / S with se_s = std_i l[s, i] / sqrt(N), was 0.745
    old = 2 * math.sqrt(sum((row.std(ddof=1) / 2) ** 2 for row in L_A)) / 3
    assert old == pytest.approx(2 * math.sqrt(1.25) / 3)
    assert abs(cell["two_se"] - old) > 0.9


def test_one_seed_has_no_seed_term():
    cell = tables.loglik_cell(L_A[:1])
    assert math.isnan(cell["se_seed"])  # unknown, not zero
    assert cell["two_se"] == pytest.approx(2 * np.std([1, 2, 3, 4], ddof=1) / 2)


def test_loglik_table_bold_best_and_not_significantly_worse():
    table = tables.loglik_table(_runs(), _per_example(), SEEDS).set_index(["dataset", "flow"])
    assert list(table.columns) == tables.LOGLIK_COLUMNS[2:]
    assert table.loc[("moons", "a"), "two_se"] == pytest.approx(math.sqrt(3))
    # a and b tie exactly: both bold; c is worse on every example: not bold
    assert table.loc[("moons", "a"), "bold"] and table.loc[("moons", "b"), "bold"]
    assert not table.loc[("moons", "c"), "bold"]
    # c: d_i = (1, 1, 1, 1.2), t = 1.05 / (0.1 / 2) = 21 on 3 degrees of freedom
    from scipy import stats

    assert table.loc[("moons", "c"), "p_vs_best"] == pytest.approx(stats.t.sf(21.0, 3))
    # d: d_i = (0.5, -0.5, 0.6, -0.4), mean 0.05, far below t(0.95, 3) = 2.35: bold
    d = np.array([0.5, -0.5, 0.6, -0.4])
    t = d.mean() / (d.std(ddof=1) / 2)
    assert t < 2.35 and table.loc[("moons", "d"), "bold"]
    assert table.loc[("moons", "d"), "p_vs_best"] == pytest.approx(stats.t.sf(t, 3))
    # rings: c is best, a (10 nats worse everywhere) is not bold
    assert table.loc[("rings", "c"), "bold"] and not table.loc[("rings", "a"), "bold"]
    assert math.isnan(table.loc[("rings", "c"), "p_vs_best"])


def test_missing_seed_fails_naming_the_cell_and_the_seed():
    runs = _runs()
    runs = runs[~((runs["flow"] == "d") & (runs["seed"] == 1))]
    with pytest.raises(tables.TableError, match=r"\(moons, d\).*missing \[1\]"):
        tables.loglik_table(runs, _per_example(), SEEDS)
    tables.loglik_table(runs, _per_example())  # without a config to check, the cell has 2


def test_non_finite_seed_fails_naming_the_run():
    runs = _runs()
    runs.loc[3, "test_loglik"] = float("nan")
    key = runs.loc[3, "job_key"]
    with pytest.raises(tables.TableError, match=f"run {key} .*test_loglik = nan"):
        tables.loglik_table(runs, _per_example(), SEEDS)


def test_students_take_part_like_any_flow():
    runs = _runs()
    student = {**_mle_rows()[0], "flow": experiment.STUDENT, "objective": "distill"}
    per_example = _per_example()
    for s in SEEDS:
        key = f"moons/{experiment.STUDENT}/seed{s}/distill"
        runs.loc[len(runs)] = {**student, "seed": s, "job_key": key, "test_loglik": 3.5}
        per_example[key] = L_A[1] + (s - 1) * 0.01  # ties a on average
    table = tables.loglik_table(runs, per_example, SEEDS).set_index(["dataset", "flow"])
    assert table.loc[("moons", experiment.STUDENT), "bold"]


def _vi_runs(kl, se):
    return pd.DataFrame(
        [
            {
                "dataset": d,
                "flow": f,
                "seed": s,
                "objective": "vi",
                "job_key": f"{d}/{f}/seed{s}/vi",
                "mlflow_run_id": f"r{s}",
                "kl_to_target": kl[(d, f)][s],
                "kl_to_target_se": se[(d, f)][s],
            }
            for (d, f) in kl
            for s in range(len(kl[(d, f)]))
        ]
    )


LOG_Z = {"u1": {"log_z": 1.0, "log_z_box": 0.9}, "u2": {"log_z": 2.0, "log_z_box": 2.0}}


def test_vi_cell_by_hand_and_z_test_bold():
    kl = {("u1", "iaf"): [0.1, 0.2, 0.3], ("u1", "flat"): [0.25] * 3, ("u1", "far"): [0.9] * 3}
    se = {("u1", "iaf"): [0.01, 0.02, 0.02], ("u1", "flat"): [0.01] * 3, ("u1", "far"): [0.01] * 3}
    table = tables.vi_table(_vi_runs(kl, se), SEEDS, log_z=LOG_Z).set_index(["dataset", "flow"])
    iaf = table.loc[("u1", "iaf")]
    # SE^2 = mean(se^2)/S + var(KL)/S = (9e-4 / 3) / 3 + 0.01 / 3
    assert iaf["mean"] == pytest.approx(0.2)
    assert iaf["se_mc"] == pytest.approx(math.sqrt(1e-4))
    assert iaf["se_seed"] == pytest.approx(0.1 / math.sqrt(3))
    assert iaf["two_se"] == pytest.approx(2 * math.sqrt(1e-4 + 0.01 / 3))
    # flat: z = 0.05 / sqrt(SE_iaf^2 + 1e-4 / 3) = 0.85 < 1.645: not significantly worse
    z = 0.05 / math.sqrt(1e-4 + 0.01 / 3 + 1e-4 / 3)
    assert table.loc[("u1", "flat"), "p_vs_best"] == pytest.approx(0.5 * math.erfc(z / 2**0.5))
    assert iaf["bold"] and table.loc[("u1", "flat"), "bold"]
    assert not table.loc[("u1", "far"), "bold"]
    assert table.loc[("u1", "far"), "log_z"] == 1.0 and iaf["log_z_box"] == 0.9


def test_vi_table_needs_every_seed_and_a_monte_carlo_error():
    kl, se = {("u1", "iaf"): [0.1, 0.2]}, {("u1", "iaf"): [0.01, 0.01]}
    with pytest.raises(tables.TableError, match=r"\(u1, iaf\).*missing \[2\]"):
        tables.vi_table(_vi_runs(kl, se), SEEDS, log_z=LOG_Z)
    se = {("u1", "iaf"): [0.01, None]}
    with pytest.raises(tables.TableError, match="u1/iaf/seed1/vi .*kl_to_target_se"):
        tables.vi_table(_vi_runs(kl, se), log_z=LOG_Z)


def test_markdown_and_latex_show_bold_seeds_and_the_rule():
    table = tables.loglik_table(_runs(), _per_example(), SEEDS)
    note = tables.table_note(table, "loglik")
    assert "Seeds per cell: 3." in note and "paired t-test" in note
    md = tables.to_markdown(table, "loglik", note)
    lines = md.strip().splitlines()
    assert lines[0] == "| flow | moons | rings |"
    a = next(line for line in lines if line.startswith("| a "))
    assert "**3.50 ± 1.73**" in a and "-6.50 ± 1.73 |" in a and "**-6.50" not in a
    assert lines[-1] == note
    tex = tables.to_latex(table, "loglik", note)
    assert r"\textbf{3.50 $\pm$ 1.73}" in tex and tex.count(r"\textbf") == 4
    assert tex.startswith(r"\begin{tabular}{lrr}") and r"\multicolumn{3}" in tex


def test_note_names_unequal_seed_counts_and_marks_single_seeds():
    runs = _runs()
    runs = runs[~((runs["dataset"] == "rings") & (runs["flow"] == "c") & (runs["seed"] > 0))]
    table = tables.loglik_table(runs, _per_example())
    note = tables.table_note(table, "loglik")
    assert "Seeds per cell: 3 (c on rings: 1)" in note and tables.DAGGER in note
    assert f"**3.50 ± 1.29{tables.DAGGER}**" in tables.to_markdown(table, "loglik")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One finished MLflow run, metrics JSON and per-example file per job of PER_EXAMPLE, and
    two VI jobs; MLflow holds stale numbers that must not reach a table."""
    root = tmp_path_factory.mktemp("tables")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    tracking.init_experiment(EXPERIMENT)
    files, timing = [], []
    jobs = [(d, f, s, "mle") for (d, f) in PER_EXAMPLE for s in SEEDS]
    jobs += [("u1", "iaf", s, "vi") for s in SEEDS]
    for dataset, flow, seed, objective in jobs:
        job = experiment.Job(dataset, flow, seed, objective, flow)
        model_dir = root / "models" / dataset / flow / f"seed{seed}"
        with tracking.job_run(job.key, EXPERIMENT, model_dir, config_hash=job.config_hash) as run:
            run.log_metrics({"test_loglik": 99.0, "n_params": 1}, step=1, flush=True)
        path = root / "metrics" / dataset / flow / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        values = PER_EXAMPLE[(dataset, flow)][seed] if objective == "mle" else np.zeros(0)
        np.save(path.with_name(f"seed{seed}.loglik.npy"), values)
        record = {
            "dataset": dataset,
            "flow": flow,
            "seed": seed,
            "objective": objective,
            "job_key": job.key,
            "mlflow_run_id": run.run_id,
            "model_dir": str(model_dir),
            "loglik_file": f"seed{seed}.loglik.npy",
            "n_params": 10 + seed,
            "train_seconds": 2.0 + seed,
            "test_loglik": float(values.mean()) if objective == "mle" else None,
            "kl_to_target": 0.1 + 0.01 * seed if objective == "vi" else None,
            "kl_to_target_se": 0.01 if objective == "vi" else None,
        }
        path.write_text(json.dumps(record))
        files.append(path)
        timing.append(
            {
                "job_key": job.key,
                "mlflow_run_id": run.run_id,
                "sample_seconds_per_1k": 0.01 * (1 + seed),
                "logprob_seconds_per_1k": 0.02,
                "sampling_speedup": float("nan"),
            }
        )
    yield {"root": root, "files": files, "timing": pd.DataFrame(timing)}
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI")
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def test_runs_frame_takes_numbers_from_the_metrics_files(store):
    runs = tables.runs_frame(store["files"], expected=len(store["files"]), timing=store["timing"])
    assert len(runs) == len(store["files"])
    assert set(tables.COLUMNS) <= set(runs.columns)
    mle = runs[runs["objective"] == "mle"]
    assert not (mle["test_loglik"] == 99.0).any()  # the stale MLflow metric never wins
    expected = {
        f"{d}/{f}/seed{s}/mle": v[s].mean() for (d, f), v in PER_EXAMPLE.items() for s in SEEDS
    }
    assert mle.set_index("job_key")["test_loglik"].to_dict() == pytest.approx(expected)
    assert (runs["n_params"] == 10 + runs["seed"]).all()
    assert runs.set_index("job_key").loc["u1/iaf/seed2/vi", "sample_seconds_per_1k"] == 0.03


def test_runs_frame_rejects_missing_or_stale_timing(store):
    with pytest.raises(tables.TableError, match=r"untimed jobs \['moons/a/seed0/mle'\]"):
        tables.runs_frame(store["files"], timing=store["timing"].iloc[1:])
    stale = store["timing"].copy()
    stale.loc[0, "mlflow_run_id"] = "0" * 32
    with pytest.raises(tables.TableError, match="other MLflow runs.*moons/a/seed0/mle"):
        tables.runs_frame(store["files"], timing=stale)


def test_runs_frame_asserts_expected_count(store):
    n = len(store["files"])
    with pytest.raises(tables.TableError, match=f"expected {n + 1} runs, got {n}"):
        tables.runs_frame(store["files"], expected=n + 1)


def test_per_example_files_must_match_their_metrics(store, tmp_path):
    runs = tables.runs_frame(store["files"])
    assert set(tables.load_per_example(runs)) == set(_per_example())
    runs.loc[0, "test_loglik"] += 0.5  # a metrics file newer than its per-example file
    with pytest.raises(tables.TableError, match=f"run {runs.loc[0, 'job_key']}: mean of"):
        tables.load_per_example(runs)


def test_write_all_writes_every_format(store, tmp_path):
    runs = tables.runs_frame(store["files"], timing=store["timing"])
    conditions = {
        "timing_repeats": 5,
        "timing_batch_size": 1000,
        "load_before": [0.1, 0.2, 0.3],
        "load_after": [0.4, 0.5, 0.6],
        "threads": {"intra_op_threads": 1, "inter_op_threads": 2},
    }
    written = tables.write_all(
        runs,
        tmp_path / "runs.csv",
        expected_seeds=SEEDS,
        timing_conditions=conditions,
        log_z=LOG_Z,
    )
    for kind in ("loglik", "vi", "timing"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / f"{kind}.{ext}").stat().st_size > 0
    assert len(pd.read_csv(written["runs"])) == len(store["files"])
    loglik = pd.read_csv(tmp_path / "loglik.csv")
    assert {"se_test", "se_seed", "n_seeds", "n_test"} <= set(loglik.columns)
    assert "| iaf | **0.11 ± " in (tmp_path / "vi.md").read_text()
    assert "u1: 1.000 (box only 0.900)" in (tmp_path / "vi.md").read_text()
    timing = pd.read_csv(tmp_path / "timing.csv").set_index(["dataset", "flow"])
    assert timing.loc[("u1", "iaf"), "sample_seconds_per_1k"] == pytest.approx(0.02)
    assert timing.loc[("u1", "iaf"), "train_job_wall_seconds"] == pytest.approx(3.0)
    md = (tmp_path / "timing.md").read_text()
    assert "load average before [0.1, 0.2, 0.3]" in md and "intra/inter 1/2" in md


def test_runs_frame_rejects_duplicate_and_superseded_runs(store, tmp_path):
    files = store["files"]
    with pytest.raises(tables.TableError, match="more than one metrics file"):
        tables.runs_frame([*files, files[0]])
    record = json.loads(files[0].read_text())
    job = experiment.Job("moons", "a", 0, "mle", "a")
    with tracking.job_run(
        job.key, EXPERIMENT, tmp_path, config_hash=job.config_hash
    ):  # a rerun supersedes the earlier run
        pass
    with pytest.raises(tables.TableError, match=f"{record['mlflow_run_id']}.*superseded"):
        tables.runs_frame(files)


def test_runs_frame_rejects_missing_run(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"mlflow_run_id": "f" * 32, "job_key": "a/b/seed0/mle"}))
    with pytest.raises(tables.TableError, match="not found"):
        tables.runs_frame([path])
    with pytest.raises(tables.TableError, match="missing or not JSON"):
        tables.runs_frame([tmp_path / "absent.json"])
