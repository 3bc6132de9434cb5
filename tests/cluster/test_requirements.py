"""Missing cluster software: a skip with the reason on a workstation, a failure in CI."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "cluster_services", Path(__file__).with_name("conftest.py")
)
services = importlib.util.module_from_spec(spec)
spec.loader.exec_module(services)


def test_missing_binary_skips_naming_it_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="slurmctld.*apt-get"):
        services.require({"slurmctld": None, "sbatch": "/usr/bin/sbatch"}, "SLURM")


def test_missing_binary_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but SLURM not installed.*slurmctld"):
        services.require({"slurmctld": None}, "SLURM")


def test_present_binaries_pass_through(monkeypatch):
    monkeypatch.setenv("CI", "true")
    found = {"pg_ctl": "/usr/lib/postgresql/15/bin/pg_ctl"}
    assert services.require(found, "PostgreSQL") == found


def test_slurm_conf_names_this_host_and_the_private_munge_socket(tmp_path):
    text = services.slurm_conf(tmp_path, "node1", 2, 8192, (7001, 7002), tmp_path / "m.socket")
    lines = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and " " not in line
    )
    assert lines["SlurmctldHost"] == "node1"
    assert lines["AuthInfo"] == f"socket={tmp_path / 'm.socket'}"
    assert lines["ProctrackType"] == "proctrack/linuxproc"
    assert lines["TaskPlugin"] == "task/none"
    assert lines["AccountingStorageType"] == "accounting_storage/none"
    assert lines["StateSaveLocation"] == str(tmp_path / "state")
    assert "NodeName=node1 NodeAddr=127.0.0.1 CPUs=2 RealMemory=8192" in text
    assert f"PartitionName={services.PARTITION} Nodes=node1 Default=YES" in text
