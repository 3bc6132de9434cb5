"""Screenshot of an experiment's runs view in the MLflow UI, taken by a real (headless) browser.

    .venv/bin/python docs/mlflow_screenshot.py --tracking-uri sqlite:////work/main/mlflow.db \\
        --experiment flowbench-default --out docs/figures/mlflow_runs.png

Starts ``mlflow server`` on the store at a free loopback port, opens the experiment's saved runs
view (:func:`flows_tf.tracking.runs_view_url`) in headless Chromium, writes a PNG and stops the
server. The UI is a single-page app that fetches the runs after it loads, so Chromium runs on
a virtual time budget, and a first pass dumps the rendered page to check that the runs table
shows a run of the experiment before the screenshot is taken. Debian's Chromium:
``apt-get install -y chromium`` (as root). ``--describe`` first writes the saved views and the
description (:func:`flows_tf.tracking.describe_experiment`) into an experiment made before they
existed; without it the store is only read.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

__all__ = ["main", "screenshot"]

CHROMIUM = "/usr/bin/chromium"
# The UI opens its assistant panel on a first visit to localhost/127.0.0.1, over a third of the
# page: Chromium reaches the loopback server under this name instead (a reserved test domain).
HOSTNAME = "mlflow-ui.test"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tracking_uri: str, port: int, log_path: Path) -> subprocess.Popen:
    """``mlflow server`` on ``127.0.0.1:port`` in its own process group; waits for /health."""
    mlflow = Path(sys.executable).with_name("mlflow")
    argv = [str(mlflow), "server", "--backend-store-uri", tracking_uri]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    argv += ["--allowed-hosts", f"{HOSTNAME}:{port},127.0.0.1:{port}"]
    argv += ["--cors-allowed-origins", f"http://{HOSTNAME}:{port}"]
    log = open(log_path, "w")  # noqa: SIM115  (closed with the process, in stop_server)
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({proc.returncode}):\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"mlflow server did not answer on port {port} within 90 s")


def stop_server(proc: subprocess.Popen) -> None:
    """End the server's process group (the server and its workers), then close its log."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    proc.log.close()


def chromium(url: str, *, out: Path | None, window: str, budget_ms: int, profile: Path) -> str:
    """Run headless Chromium on ``url``: a screenshot into ``out``, or the rendered DOM."""
    argv = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}"]
    argv.append(f"--host-resolver-rules=MAP {HOSTNAME} 127.0.0.1")
    argv.append(f"--virtual-time-budget={budget_ms}")
    argv.append(f"--screenshot={out}" if out else "--dump-dom")
    done = subprocess.run(
        [*argv, url], capture_output=True, text=True, timeout=budget_ms / 1000 + 120
    )
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def screenshot(
    tracking_uri: str,
    experiment: str,
    out: Path,
    *,
    view: str = "flowbench-runs",
    window: str = "1600,1000",
    budget_ms: int = 20000,
) -> Path:
    """Write a PNG of ``experiment``'s runs ``view`` as the MLflow UI renders it."""
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from mlflow.tracking import MlflowClient

    from flows_tf import tracking

    exp_id = tracking.experiment_id(experiment)
    client = MlflowClient(tracking_uri)
    if tracking.VIEW_TAG_PREFIX + view not in client.get_experiment(exp_id).tags:
        raise SystemExit(
            f"experiment {experiment!r} has no saved view {view!r}: rerun its mlflow_init "
            "(`flows-tf init-mlflow --config ...`) or pass --describe"
        )
    state = tracking.runs_view_state(tracking.RUNS_VIEWS[view][1])
    order = f"{state['orderByKey']} {'ASC' if state['orderByAsc'] else 'DESC'}"
    first = client.search_runs([exp_id], state["searchFilter"], order_by=[order], max_results=10)
    if not first:
        raise SystemExit(f"experiment {experiment!r} in {tracking_uri} has no job runs to show")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlflow-shot-") as tmp:
        port = free_port()
        server = start_server(tracking_uri, port, Path(tmp) / "server.log")
        try:
            url = f"http://{HOSTNAME}:{port}/#{tracking.runs_view_url(exp_id, view)}"
            shot = {"window": window, "budget_ms": budget_ms}
            dom = chromium(url, out=None, profile=Path(tmp) / "dom", **shot)
            if not any(f">{run.info.run_name}<" in dom for run in first):
                raise RuntimeError(
                    f"the runs table did not render within {budget_ms} ms of virtual time "
                    f"(none of its first runs in the page): raise --budget-ms"
                )
            chromium(url, out=out, profile=Path(tmp) / "shot", **shot)
        finally:
            stop_server(server)
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {out}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True, help="e.g. sqlite:////abs/mlflow.db")
    parser.add_argument("--experiment", required=True, help="experiment name")
    parser.add_argument("--out", default="docs/figures/mlflow_runs.png", type=Path)
    parser.add_argument("--view", default="flowbench-runs", help="saved view key")
    parser.add_argument("--window", default="1600,1000", help="width,height in pixels")
    parser.add_argument("--budget-ms", default=20000, type=int, help="virtual time budget")
    parser.add_argument("--describe", action="store_true", help="write views and note first")
    args = parser.parse_args(argv)
    if args.describe:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
        from flows_tf import tracking

        tracking.describe_experiment(tracking.experiment_id(args.experiment))
    view = {"view": args.view, "window": args.window, "budget_ms": args.budget_ms}
    print(screenshot(args.tracking_uri, args.experiment, args.out, **view))
    return 0


if __name__ == "__main__":
    sys.exit(main())
