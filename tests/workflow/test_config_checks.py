"""Bad configs stop a dry run (`snakemake -n`) and `flows-tf train` before any job starts."""

import copy

import numpy as np
import pytest
import yaml
from snakerun import run_snakemake

from flows_tf import cli

PROFILE = ("--workflow-profile", "workflow/profiles/default")
TINY = {
    "experiment": "tiny",
    "seeds": [0],
    "datasets": {"eight_gaussians": {"n_train": 100, "n_val": 50, "n_test": 50}},
    "flows": {
        "maf": {"num_layers": 1, "hidden_units": [4]},
        "iaf": {"num_layers": 1, "hidden_units": [4]},
        "planar": {"num_layers": 2},
    },
    "mle": {"datasets": ["eight_gaussians"], "flows": ["maf", "planar"]},
    "vi": {"datasets": ["u1"], "flows": ["planar"]},
    "distill": {"datasets": ["eight_gaussians"], "teacher": "maf", "student": "iaf"},
}


def _use_file(path):
    def edit(config):
        config["datasets"]["mine"] = {"path": path}
        config["mle"]["datasets"].append("mine")

    return edit


CASES = {
    "unknown-mle-dataset": (
        lambda c: c["mle"]["datasets"].append("eight_gausians"),
        "mle.datasets: unknown data set 'eight_gausians'; did you mean 'eight_gaussians'?",
    ),
    "unknown-vi-dataset": (
        lambda c: c["vi"]["datasets"].append("u_1"),
        "vi.datasets: unknown data set 'u_1'; did you mean 'u1'?",
    ),
    "unknown-distill-dataset": (
        lambda c: c["distill"]["datasets"].append("two_moon"),
        "distill.datasets: unknown data set 'two_moon'; did you mean 'two_moons'?",
    ),
    "unknown-datasets-entry": (
        lambda c: c["datasets"].update(digit={}),
        "datasets.digit: unknown data set 'digit'; did you mean 'digits'?",
    ),
    "unknown-hyperparameter": (
        lambda c: c["flows"]["planar"].update(hidden_units=[8]),
        "flows.planar.hidden_units: the planar builder takes no hyperparameter 'hidden_units'",
    ),
    "missing-data-file": (
        _use_file("data/missing.npy"),
        "datasets.mine.path: 'data/missing.npy' does not exist",
    ),
    "unreadable-suffix": (
        _use_file("data/mine.txt"),
        "datasets.mine.path: 'data/mine.txt' has suffix '.txt'",
    ),
    "vi-needs-an-energy-target": (
        lambda c: c["vi"]["datasets"].append("digits"),
        "vi.datasets: 'digits' is of kind image; vi needs an energy target",
    ),
    "mle-needs-data": (
        lambda c: c["mle"]["datasets"].append("u2"),
        "mle.datasets: 'u2' is of kind energy; mle needs data",
    ),
    "student-not-one-pass": (
        lambda c: c["distill"].update(student="maf"),
        "distill.student: 'maf' (builder maf) does not sample in one pass",
    ),
}


def _write(tmp_path, edit=None):
    config = copy.deepcopy(TINY)
    if edit:
        edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _dry_run(project, path, check=False):
    args = ("-n", "--cores", "1", "--configfile", str(path), *PROFILE)
    return run_snakemake(project, *args, check=check, timeout=300)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_stops_the_dry_run_naming_the_key(project, tmp_path, case):
    edit, named = CASES[case]
    proc = _dry_run(project, _write(tmp_path, edit))
    assert proc.returncode != 0
    assert named in proc.stdout, proc.stdout[-3000:]
    assert "Job stats" not in proc.stdout
    assert not (project / "results").exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_stops_flows_tf_train_naming_the_key(tmp_path, case):
    edit, named = CASES[case]
    argv = ["train", "--config", str(_write(tmp_path, edit)), "--dataset", "eight_gaussians"]
    with pytest.raises(SystemExit) as err:
        cli.main([*argv, "--flow", "maf", "--seed", "0"])
    assert named in str(err.value)
    assert not (tmp_path / "results").exists()


def test_a_user_data_file_that_exists_is_planned(project, tmp_path):
    (project / "data").mkdir(exist_ok=True)
    np.save(project / "data/mine.npy", np.random.default_rng(0).normal(size=(50, 2)))
    proc = _dry_run(project, _write(tmp_path, _use_file("data/mine.npy")), check=True)
    assert "results/data/mine/train.npy" in proc.stdout
    assert "results/models/mine/maf/seed0/train.json" in proc.stdout
