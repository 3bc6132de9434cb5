"""The `flows-tf` command line: job listing, argument errors and the fast process end."""

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


def test_exit_now_flushes_output_and_keeps_the_exit_code(tmp_path):
    script = (
        "import sys, logging\n"
        "from flows_tf import runtime\n"
        "logging.basicConfig(filename=sys.argv[1], level=logging.INFO)\n"
        "logging.info('logged')\n"
        "print('unterminated', end='')\n"
        "sys.stderr.write('err')\n"
        "runtime.exit_now(3)\n"
        "print('never')\n"
    )
    log = tmp_path / "job.log"
    out = subprocess.run(
        [sys.executable, "-c", script, str(log)], cwd=REPO, capture_output=True, text=True
    )
    assert (out.returncode, out.stdout, out.stderr) == (3, "unterminated", "err")
    assert "logged" in log.read_text()


def test_failing_command_still_reports_its_error():
    out = subprocess.run(
        [sys.executable, "-m", "flows_tf", "list", "--config", "no/such.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "no/such.yaml not found" in out.stderr
