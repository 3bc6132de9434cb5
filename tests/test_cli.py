"""The `flows-tf` command line: job listing and argument errors (training goes through jobs)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows_tf import cli, experiment

REPO = Path(__file__).resolve().parents[1]


def test_list_prints_every_job_key_of_the_grid(capsys):
    assert cli.main(["list", "--config", str(REPO / "config/smoke.yaml")]) == 0
    printed = capsys.readouterr().out.split()
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    assert printed == [job.key for job in experiment.jobs(config)]


def test_train_needs_a_dataset_and_a_flow():
    with pytest.raises(SystemExit):
        cli.main(["train", "--flow", "maf"])


def test_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "flows_tf", "list", "--config", "config/smoke.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "eight_gaussians/maf/seed0/mle" in out.stdout.split()
