"""Fixed cost of a pipeline job as a fraction of a finished Snakemake run's total job time.

The fixed cost is what every train or evaluate job pays besides its own work: interpreter
start, ``runtime.configure`` (TensorFlow's import), TFP and the flows_tf training modules,
MLflow's import and client set-up on the tracking store, and the process end
(``runtime.exit_now``, as the job scripts end). It is timed by running that skeleton in fresh
processes, alternating with the same skeleton ending by Python's normal teardown. The run's job
times are the ``s`` column of the Snakemake ``benchmark:`` files under
``<project>/benchmarks/{rule}/...``.

Usage (after a workflow run in ``PROJECT``, with the tracking URI it used):
    MLFLOW_TRACKING_URI=sqlite:////tmp/x.db .venv/bin/python benchmarks/overhead.py PROJECT
"""

import argparse
import csv
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

SKELETON = """
import time
t0 = time.perf_counter()
from flows_tf import runtime
runtime.configure(2)
import tensorflow as tf
tf.reduce_sum(tf.ones([4])).numpy()  # an initialised runtime, as after a job's work
t1 = time.perf_counter()
import tensorflow_probability  # noqa: F401
from flows_tf import evaluate, flows, train  # noqa: F401
t2 = time.perf_counter()
from flows_tf import tracking
tracking.store.client()
tracking.init_experiment("overhead-probe")
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f}", flush=True)
if END_NOW:
    runtime.exit_now()  # as the job scripts end
"""


def fixed_cost(repeats, env):
    """Median wall seconds of the job skeleton ending as jobs do (``exit_now``) and of its parts
    (TF, TFP+flows_tf, MLflow); plus the median wall of the same skeleton ending with Python's
    normal teardown, the two alternated so that load changes hit both alike."""
    walls, plain, parts = [], [], []
    for _ in range(repeats):
        for end_now, into in ((True, walls), (False, plain)):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", f"END_NOW = {end_now}\n" + SKELETON],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            into.append(time.perf_counter() - t0)
            if end_now:
                parts.append([float(v) for v in out.stdout.split()[-3:]])
    cols = list(zip(*parts, strict=True))
    return statistics.median(walls), statistics.median(plain), [statistics.median(c) for c in cols]


def job_seconds(project):
    rows = []
    for path in sorted((project / "benchmarks").glob("*/**/*.tsv")):
        with open(path) as fh:
            for rec in csv.DictReader(fh, delimiter="\t"):
                rows.append((path.relative_to(project / "benchmarks").parts[0], float(rec["s"])))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("project", type=pathlib.Path, help="project folder of a finished run")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    jobs = job_seconds(args.project)
    if not jobs:
        raise SystemExit(f"no Snakemake benchmark files under {args.project / 'benchmarks'}")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory() as tmp:
        env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/probe.db")
        wall, plain, (t_tf, t_tfp, t_mlflow) = fixed_cost(args.repeats, env)
    total = sum(s for _, s in jobs)
    by_rule = {}
    for rule, s in jobs:
        by_rule.setdefault(rule, []).append(s)
    print(f"load average {os.getloadavg()}")
    print(f"jobs with benchmark files: {len(jobs)}, total job time {total:.1f} s")
    for rule, ss in sorted(by_rule.items()):
        med = statistics.median(ss)
        print(f"  {rule}: {len(ss)} jobs, median {med:.1f} s, sum {sum(ss):.1f} s")
    print(
        f"fixed cost per job {wall:.1f} s (TF import+configure {t_tf:.1f} s, TFP+flows_tf "
        f"{t_tfp:.1f} s, MLflow import+set-up {t_mlflow:.1f} s, rest: start and teardown "
        f"{wall - t_tf - t_tfp - t_mlflow:.1f} s)"
    )
    print(
        f"normal interpreter teardown instead of runtime.exit_now: {plain:.1f} s per job "
        f"({plain - wall:+.1f} s)"
    )
    print(f"fixed cost fraction: {len(jobs) * wall / total:.1%} of total job time")


if __name__ == "__main__":
    main()
