"""Fixtures that start real services on localhost and always stop them.

- ``slurm_cluster``: a single-node SLURM cluster (Debian's ``slurm-wlm``): a private ``munged``
  with its own key and socket, ``slurmctld`` and ``slurmd`` in the foreground on free loopback
  ports, state under a temporary directory. The configuration goes to
  ``/etc/slurm/slurm.conf`` (the job steps call ``srun`` inside a job, which reads that path and
  not ``SLURM_CONF``); a file already there is restored at teardown.
- ``postgres_server``: PostgreSQL from Debian, ``initdb -A trust`` into a temporary directory
  (as the ``postgres`` user when running as root), ``pg_ctl start`` on a free loopback port.
- ``mlflow_server``: ``mlflow server`` backed by that PostgreSQL database, on loopback.

When a binary is missing the tests skip with the reason, except in CI (``CI=true``), where
``.ci/run`` installs the packages and a missing binary is a failure.
"""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SLURM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "flowbench"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str):
    """Skip the test with ``reason``; in CI (``CI=true``) fail instead: CI must run it."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def require(found: dict, what: str) -> dict:
    """Skip (or fail in CI) unless every value of ``found`` (name -> path or None) is set."""
    missing = sorted(name for name, path in found.items() if not path)
    if missing:
        unavailable(
            f"{what} not installed (missing: {', '.join(missing)}); "
            f".ci/run installs it with apt-get"
        )
    return found


def which(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which(name, path=path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, log: Path | None = None, interval: float = 0.5):
    """Poll ``check()`` until it returns a truthy value; fail naming ``what`` and the log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s\n{tail}")


def stop(proc: subprocess.Popen | None, timeout: float = 15):
    """SIGTERM, then SIGKILL, one process we started (by its pid)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kwargs)


# --------------------------------------------------------------------------- SLURM


@dataclass
class SlurmCluster:
    partition: str
    node: str
    root: Path
    conf: Path

    def squeue(self) -> str:
        return run(["squeue", "--states=all", "--noheader"]).stdout


def slurm_conf(
    root: Path, node: str, cpus: int, mem_mb: int, ports: tuple[int, int], munge_socket: Path
) -> str:
    return "\n".join(
        [
            "ClusterName=flowbench",
            f"SlurmctldHost={node}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "MinJobAge=300",
            "SlurmdParameters=config_overrides",  # trust the node line below, not the hardware
            f"SlurmctldPort={ports[0]}",
            f"SlurmdPort={ports[1]}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def total_mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


@contextlib.contextmanager
def slurm_cluster_running(root: Path):
    """Start munged, slurmctld and slurmd; yield a :class:`SlurmCluster`; stop everything."""
    bins = require(
        {
            name: which(name)
            for name in (
                "munged",
                "slurmctld",
                "slurmd",
                "sbatch",
                "srun",
                "squeue",
                "scancel",
                "sinfo",
            )
        },
        "SLURM (slurm-wlm, munge)",
    )
    if os.geteuid() != 0:
        unavailable("the single-node SLURM cluster needs root (it writes /etc/slurm/slurm.conf)")
    node = run(["hostname", "-s"]).stdout.strip()
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    munge_dir = root / "munge"
    munge_dir.chmod(0o700)
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    munge_socket = munge_dir / "munge.socket"
    conf_text = slurm_conf(
        root,
        node,
        os.cpu_count() or 1,
        max(8192, total_mem_mb() - 1024),
        (free_port(), free_port()),
        munge_socket,
    )
    backup = SLURM_CONF.read_bytes() if SLURM_CONF.exists() else None
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(conf_text)
        (root / "slurm.conf").write_text(conf_text)

        def start(cmd, log_name):
            log = open(root / log_name, "w")  # noqa: SIM115 (closed at teardown)
            logs.append(log)
            procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            return procs[-1]

        munged = start(
            [
                bins["munged"],
                "--foreground",
                "--force",
                f"--socket={munge_socket}",
                f"--key-file={key}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
                f"--log-file={munge_dir / 'munged.log'}",
            ],
            "munged.out",
        )
        wait_for(
            lambda: munge_socket.exists() or munged.poll() is not None,
            20,
            "munged",
            root / "munged.out",
        )
        if munged.poll() is not None:
            raise RuntimeError(f"munged exited: {(root / 'munged.out').read_text()}")
        ctld = start([bins["slurmctld"], "-D", "-i", "-f", str(SLURM_CONF)], "slurmctld.out")
        wait_for(
            lambda: run(["scontrol", "ping"]).stdout.count("UP") > 0 or ctld.poll() is not None,
            30,
            "slurmctld",
            root / "slurmctld.log",
        )
        if ctld.poll() is not None:
            raise RuntimeError(f"slurmctld exited: {(root / 'slurmctld.out').read_text()}")
        start([bins["slurmd"], "-D", "-N", node, "-f", str(SLURM_CONF)], "slurmd.out")

        def node_idle():
            state = run(["sinfo", "--noheader", "-n", node, "-o", "%T"]).stdout.strip()
            if state.startswith(("down", "drain")):
                run(["scontrol", "update", f"NodeName={node}", "State=RESUME"])
            return state.startswith("idle")

        wait_for(node_idle, 60, "slurmd (node idle)", root / "slurmd.log", interval=1)
        yield SlurmCluster(PARTITION, node, root, SLURM_CONF)
    finally:
        if procs and procs[1:] and procs[1].poll() is None:  # slurmctld up: cancel our jobs
            run(["scancel", f"--partition={PARTITION}"])
            with contextlib.suppress(RuntimeError):
                wait_for(
                    lambda: not run(["squeue", "--noheader"]).stdout.strip(), 30, "job cancellation"
                )
        for proc in reversed(procs):  # slurmd, slurmctld, munged
            stop(proc)
        for log in logs:
            log.close()
        if backup is None:
            SLURM_CONF.unlink(missing_ok=True)
        else:
            SLURM_CONF.write_bytes(backup)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM cluster with one partition (``SlurmCluster``)."""
    root = Path(tempfile.mkdtemp(prefix="flowbench-slurm-"))
    try:
        with slurm_cluster_running(root) as cluster:
            yield cluster
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@contextlib.contextmanager
def postgres_running(root: Path):
    """Start PostgreSQL (trust auth, loopback only); yield its ``postgresql://`` URI."""
    bindir = pg_bindir()
    require(
        {"pg_ctl": bindir and bindir / "pg_ctl", "initdb": bindir and bindir / "initdb"},
        "PostgreSQL",
    )
    as_user = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    data, log, port = root / "data", root / "postgres.log", free_port()
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        out = run(
            [
                str(bindir / "initdb"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "-D",
                str(data),
            ],
            cwd=root,
            **as_user,
        )
        if out.returncode:
            raise RuntimeError(f"initdb failed: {out.stdout}{out.stderr}")
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        out = run(
            [*pg_ctl, "-o", opts, "-l", str(log), "-w", "-t", "60", "start"], cwd=root, **as_user
        )
        started = True
        if out.returncode:
            raise RuntimeError(
                f"pg_ctl start failed: {out.stdout}{out.stderr}\n"
                f"{log.read_text(errors='replace') if log.exists() else ''}"
            )
        out = run(
            [
                str(bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "mlflow",
            ],
            cwd=root,
            **as_user,
        )
        if out.returncode:
            raise RuntimeError(f"createdb failed: {out.stdout}{out.stderr}")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        if started:
            run([*pg_ctl, "-m", "immediate", "-w", "stop"], cwd=root, **as_user)


@pytest.fixture(scope="session")
def postgres_server():
    """A running PostgreSQL server; yields the URI of an empty database ``mlflow``."""
    root = Path(tempfile.mkdtemp(prefix="flowbench-pg-"))  # /tmp: readable by postgres
    try:
        with postgres_running(root) as uri:
            yield uri
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(postgres_server, tmp_path_factory):
    """``mlflow server`` on loopback, backed by PostgreSQL; yields ``http://127.0.0.1:PORT``."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log_path = root / "mlflow-server.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                str(VENV_BIN / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                postgres_server,
                "--artifacts-destination",
                (root / "artifacts").as_uri(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def healthy():
                if proc.poll() is not None:
                    raise RuntimeError(f"mlflow server exited:\n{log_path.read_text()[-3000:]}")
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                        return response.status == 200
                return False

            wait_for(healthy, 90, "mlflow server", log_path, interval=1)
            yield url
        finally:
            # the server and its uvicorn workers share the session we gave them: end that group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers (graceful shutdown can hang)
            proc.wait(10)
