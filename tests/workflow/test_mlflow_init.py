"""The experiment `mlflow_init` creates opens in the MLflow UI on its training runs, ready to
compare: the experiment kind, saved runs views (grid tags and key metrics) and a description."""

import importlib.util
import json
import struct
from pathlib import Path

import pytest
import yaml
from snakerun import run_snakemake

from flows_tf import tracking

SCREENSHOT_TOOL = Path(__file__).resolve().parents[2] / "docs" / "mlflow_screenshot.py"
CHROMIUM = "/usr/bin/chromium"

CONFIG = {
    "experiment": "tiny",
    "seeds": [0],
    "flows": {"maf": {"num_layers": 1, "hidden_units": [4]}},
    "mle": {"datasets": ["eight_gaussians"], "flows": ["maf"]},
    # the default config's sections are extended, not replaced, by --configfile here
    "vi": {"datasets": [], "flows": []},
    "distill": {"datasets": []},
}


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh embedded store for this process."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("FLOWBENCH_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _assert_opens_as_training_experiment(tags: dict, exp_id: str):
    assert tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    for key, (name, _) in tracking.RUNS_VIEWS.items():
        envelope = json.loads(tags[tracking.VIEW_TAG_PREFIX + key])
        assert envelope["name"] == name and isinstance(envelope["createdAt"], int)
        state = json.loads(envelope["state"])
        assert {"tags.`dataset`", "tags.`flow`", "tags.`objective`", "tags.`seed`"} <= set(
            state["selectedColumns"]
        )
        assert {"metrics.`test_loglik`", "metrics.`kl_to_target`"} <= set(state["selectedColumns"])
        assert f"#{tracking.runs_view_url(exp_id, key)}" in tags[tracking.NOTE_TAG]
    assert "workflowType=machine_learning" in tracking.runs_view_url(exp_id)


def test_mlflow_init_rule_creates_an_experiment_that_opens_on_training_runs(project, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    target = "results/mlflow/tiny.json"
    args = (target, "--cores", "1", "--configfile", str(config))
    run_snakemake(project, *args, env={"MLFLOW_TRACKING_URI": uri}, timeout=300)
    record = json.loads((project / target).read_text())
    exp = _client(uri).get_experiment(record["experiment_id"])
    assert exp.name == "tiny"
    _assert_opens_as_training_experiment(exp.tags, exp.experiment_id)
    assert record["runs_view"] == tracking.runs_view_url(exp.experiment_id)


def test_an_existing_experiment_gets_the_tags_and_keeps_its_own_description(store):
    client = _client(store)
    exp_id = client.create_experiment("older", tags={tracking.NOTE_TAG: "my own notes"})
    assert tracking.init_experiment("older") == exp_id
    tags = client.get_experiment(exp_id).tags
    assert tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert tags[tracking.NOTE_TAG] == "my own notes"
    assert tracking.VIEW_TAG_PREFIX + "flowbench-runs" in tags


def test_the_description_links_the_summary_runs_figures(store, tmp_path):
    exp_id = tracking.init_experiment("with-figures")
    client = _client(store)
    assert (
        "Figures: logged to the summary run"
        in client.get_experiment(exp_id).tags[tracking.NOTE_TAG]
    )
    figure = tmp_path / "loglik_vs_time.png"
    figure.write_bytes(b"\x89PNG\r\n")
    run_id = tracking.log_summary_artifacts([figure], "with-figures")
    note = client.get_experiment(exp_id).tags[tracking.NOTE_TAG]
    _assert_opens_as_training_experiment(client.get_experiment(exp_id).tags, exp_id)
    link = f"#/experiments/{exp_id}/runs/{run_id}/artifacts/figures/loglik_vs_time.png"
    assert f"[loglik_vs_time.png]({link})" in note


def test_the_views_show_live_job_runs_only(store):
    exp_id = tracking.init_experiment("filtering")
    client = _client(store)
    live = client.create_run(exp_id, tags={"job_key": "a/maf/seed0/mle"}).info.run_id
    client.create_run(exp_id, tags={"job_key": "a/maf/seed0/mle", tracking.SUPERSEDED_TAG: live})
    client.create_run(exp_id, tags={tracking.SUMMARY_TAG: "true"})
    for _, group_by in tracking.RUNS_VIEWS.values():
        state = tracking.runs_view_state(group_by)
        found = client.search_runs([exp_id], state["searchFilter"], order_by=["tags.dataset ASC"])
        assert [r.info.run_id for r in found] == [live]


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"needs Debian's {CHROMIUM}")
def test_screenshot_tool_renders_the_runs_view(store, tmp_path):
    spec = importlib.util.spec_from_file_location("mlflow_screenshot", SCREENSHOT_TOOL)
    mlflow_screenshot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mlflow_screenshot)
    exp_id = tracking.init_experiment("shot")
    client = _client(store)
    tags = {"job_key": "eight_gaussians/maf/seed0/mle", "dataset": "eight_gaussians"}
    run_id = client.create_run(exp_id, tags={**tags, "mlflow.runName": "maf-run"}).info.run_id
    client.log_metric(run_id, "test_loglik", -2.9)
    client.set_terminated(run_id)
    out = mlflow_screenshot.screenshot(store, "shot", tmp_path / "shot.png", window="1200,800")
    header = out.read_bytes()[:24]  # the tool checked that the run's row rendered first
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1200, 800)
