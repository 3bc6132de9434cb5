"""Tables from MLflow runs: exactly the runs the metrics files name; mean +- 2 SE; best in bold."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from flows_tf import experiment, tables, tracking

EXPERIMENT = "tables-test"
# (dataset, flow, seed) -> (test_loglik, test_loglik_se)
RESULTS = {
    ("moons", "maf", 0): (-1.0, 0.1),
    ("moons", "maf", 1): (-2.0, 0.3),
    ("moons", "gaussian", 0): (-3.0, 0.2),
    ("moons", "gaussian", 1): (-3.5, 0.2),
    ("rings", "maf", 0): (-4.0, 0.5),
    ("rings", "maf", 1): (-4.0, 0.5),
    ("rings", "gaussian", 0): (-0.5, 0.1),
    ("rings", "gaussian", 1): (-0.7, 0.1),
}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """One finished MLflow run and metrics JSON per job of RESULTS."""
    root = tmp_path_factory.mktemp("tables")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    tracking.init_experiment(EXPERIMENT)
    files = []
    for (dataset, flow, seed), (ll, se) in RESULTS.items():
        job = experiment.Job(dataset, flow, seed, "mle", flow)
        model_dir = root / "models" / dataset / flow / f"seed{seed}"
        with tracking.job_run(job, EXPERIMENT, model_dir) as run:
            metrics = {
                "test_loglik": ll,
                "test_loglik_se": se,
                "n_params": 10 + seed,
                "train_seconds": 2.0,
                "sample_seconds_per_1k": 0.01 * (1 + seed),
                "logprob_seconds_per_1k": 0.02,
            }
            run.log_metrics(metrics, step=1, flush=True)
        path = root / "metrics" / dataset / flow / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        # the file's numbers differ on purpose: the table must take MLflow's
        record = {
            "dataset": dataset,
            "flow": flow,
            "seed": seed,
            "objective": "mle",
            "job_key": job.key,
            "mlflow_run_id": run.run_id,
            "model_dir": str(model_dir),
            "test_loglik": 99.0,
        }
        path.write_text(json.dumps(record))
        files.append(path)
    yield {"root": root, "files": files}
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI")
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def test_runs_frame_one_row_per_job_from_mlflow(runs_dir):
    runs = tables.runs_frame(runs_dir["files"], expected=len(RESULTS))
    assert len(runs) == len(RESULTS)
    assert set(tables.COLUMNS) <= set(runs.columns)
    for row in runs.itertuples():
        assert row.test_loglik == RESULTS[(row.dataset, row.flow, row.seed)][0]
    assert runs["model_dir"].str.contains("models").all()
    assert runs["true_test_loglik"].isna().all()


def test_runs_frame_asserts_expected_count(runs_dir):
    with pytest.raises(tables.TableError, match="expected 9 runs, got 8"):
        tables.runs_frame(runs_dir["files"], expected=9)


def test_runs_frame_rejects_duplicate_and_superseded_runs(runs_dir, tmp_path):
    files = runs_dir["files"]
    with pytest.raises(tables.TableError, match="more than one metrics file"):
        tables.runs_frame([*files, files[0]])
    record = json.loads(files[0].read_text())
    job = experiment.Job("moons", "maf", 0, "mle", "maf")
    with tracking.job_run(job, EXPERIMENT, tmp_path):  # a rerun supersedes the earlier run
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


def _frame():
    rows = [
        {
            "dataset": d,
            "flow": f,
            "seed": s,
            "objective": "mle",
            "test_loglik": ll,
            "test_loglik_se": se,
            "n_params": 10,
            "train_seconds": 1.0,
            "sample_seconds_per_1k": 0.01,
            "logprob_seconds_per_1k": 0.02,
        }
        for (d, f, s), (ll, se) in RESULTS.items()
    ]
    rows.append(
        {
            "dataset": "u1",
            "flow": "maf",
            "seed": 0,
            "objective": "vi",
            "test_loglik": float("nan"),
            "test_loglik_se": float("nan"),
            "kl_to_target": 0.3,
        }
    )
    return pd.DataFrame(rows)


def test_loglik_table_mean_two_se_and_best():
    table = tables.loglik_table(_frame()).set_index(["dataset", "flow"])
    assert "u1" not in table.index.get_level_values(0)  # energy targets have no test data
    cell = table.loc[("moons", "maf")]
    assert cell["mean"] == pytest.approx(-1.5)
    assert cell["two_se"] == pytest.approx(2 * math.sqrt(0.1**2 + 0.3**2) / 2)
    assert cell["n_seeds"] == 2
    assert bool(table.loc[("moons", "maf"), "best"]) and bool(
        table.loc[("rings", "gaussian"), "best"]
    )
    assert not table.loc[("moons", "gaussian"), "best"]


def test_markdown_and_latex_bold_the_best():
    table = tables.loglik_table(_frame())
    md = tables.to_markdown(table, "loglik")
    lines = md.strip().splitlines()
    assert lines[0] == "| flow | moons | rings |"
    maf = next(line for line in lines if line.startswith("| maf "))
    assert "**-1.50 ± 0.32**" in maf and "-4.00 ± 0.71" in maf and "**-4.00" not in maf
    tex = tables.to_latex(table, "loglik")
    assert r"\textbf{-0.60 $\pm$ 0.14}" in tex and tex.count(r"\textbf") == 2
    assert tex.startswith(r"\begin{tabular}{lrr}")


def test_vi_table_mean_spread_over_seeds_and_lowest_kl_is_best():
    kl = {("u1", "planar_k2"): [0.9, 0.86, 0.89], ("u1", "iaf"): [0.1, 0.3, 0.2]}
    kl[("u2", "iaf")] = [0.05]
    runs = pd.DataFrame(
        [
            {"dataset": d, "flow": f, "seed": s, "objective": "vi", "kl_to_target": v}
            for (d, f), values in kl.items()
            for s, v in enumerate(values)
        ]
        + [{"dataset": "moons", "flow": "maf", "seed": 0, "objective": "mle", "kl_to_target": 9}]
    )
    table = tables.vi_table(runs).set_index(["dataset", "flow"])
    assert "moons" not in table.index.get_level_values(0)  # only VI runs
    iaf = table.loc[("u1", "iaf")]
    assert iaf["mean"] == pytest.approx(0.2) and iaf["n_seeds"] == 3
    assert iaf["two_se"] == pytest.approx(2 * 0.1 / math.sqrt(3))
    assert bool(iaf["best"]) and not table.loc[("u1", "planar_k2"), "best"]
    assert math.isnan(table.loc[("u2", "iaf"), "two_se"])  # one seed: no spread
    md = tables.to_markdown(tables.vi_table(runs), "vi")
    assert md.splitlines()[0] == "| flow | u1 | u2 |"
    assert "| iaf | **0.20 ± 0.12** | **0.05** |" in md


def test_write_all_writes_every_format(tmp_path):
    written = tables.write_all(_frame(), tmp_path / "runs.csv")
    for kind in ("loglik", "vi", "timing"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / f"{kind}.{ext}").stat().st_size > 0
    assert len(pd.read_csv(written["runs"])) == len(RESULTS) + 1
    assert "| maf | **0.30** |" in (tmp_path / "vi.md").read_text()
    timing = pd.read_csv(tmp_path / "timing.csv")
    assert np.allclose(timing["logprob_seconds_per_1k"].dropna(), 0.02)
