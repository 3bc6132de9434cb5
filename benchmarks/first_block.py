"""A training job's first compiled block, cold and warm, against a baseline checkout.

A job's first block (``first_call_seconds`` in its ``train.json``) is Python tracing of the
block step, TensorFlow's lowering of that graph to XLA's HLO, XLA compilation (cold) or loading
the executable from the persistent cache (warm), and the block's own 25-50 steps. For every
named job of the default config this runs, in fresh processes, the job as the workflow runs it
(:func:`flows_tf.jobs.train_job`): seed 0 into an empty compile cache (cold), then seed 1 (warm:
it loads seed 0's executable), once with this checkout and once with ``--baseline`` (the root
of another checkout, e.g. ``git worktree add /tmp/base <commit>``), the two alternated per job
so that both see the same machine load. Here the block step is traced before its first call
(``get_concrete_function``) and that Python tracing is reported on its own, so the first-block
columns leave it out: a job's own ``first_call_seconds`` is the two together. The data sets are
prepared into a temporary folder first.

Usage (no other job on the CPU):
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/first_block.py --baseline /tmp/base \
        --jobs u1:planar_k32 eight_gaussians:realnvp --out benchmarks/FIRST_BLOCK.md
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from runmeta import commit_of, run_meta

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = """
import json, sys, time
from pathlib import Path
import yaml
from flows_tf import jobs, runtime, tracking
dataset, flow, seed, work, cache, config = sys.argv[1:7]
runtime.compile_cache(cache)
threads = runtime.configure(1)
from flows_tf.train import loop
traced = []
step = loop._block_step
def timed_step(*args, **kwargs):
    run = step(*args, **kwargs)
    started = time.perf_counter()
    run.get_concrete_function()
    traced.append(time.perf_counter() - started)
    return run
loop._block_step = timed_step
from flows_tf.experiment import make_job
tracking.init_experiment("first-block")
config = yaml.safe_load(Path(config).read_text())
job = make_job(config, dataset, flow, int(seed))
model_dir = Path(work) / f"{dataset}_{flow}_{seed}"
data_dir = Path(work) / "data" / dataset if job.on_data else None
jobs.train_job(job, data_dir=data_dir, model_dir=model_dir, experiment="first-block",
               threads=threads, evaluation=config.get("evaluation"))
summary = json.loads((model_dir / "train.json").read_text())
samples = (model_dir / "samples.npy").read_bytes().hex()
print(json.dumps({"trace": traced[0], "first_block": summary["first_call_seconds"],
                  "samples": samples}))
runtime.exit_now()
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="root of the checkout to compare")
    parser.add_argument("--jobs", nargs="+", required=True, help="DATASET:FLOW of the config")
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--out", default=str(HERE / "FIRST_BLOCK.md"))
    return parser.parse_args(argv)


def prepare_data(config, jobs, work):
    """Each data set the jobs train on, prepared as the workflow's data step does."""
    from flows_tf import datasets

    for name in sorted({dataset for dataset, _ in jobs}):
        options = (config.get("datasets") or {}).get(name)
        if options is not None:  # energy targets (VI) have no data
            datasets.prepare_dataset(name, work / "data" / name, seed=0, **options)


def run_job(src, dataset, flow, seed, work, cache, config_path):
    """One job in a fresh process with ``src`` first on the path; the child's JSON line."""
    env = {**os.environ, "PYTHONPATH": str(src), "TF_USE_LEGACY_KERAS": "1"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    args = [dataset, flow, str(seed), str(work), str(cache), config_path]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, cwd=work
    )
    if done.returncode != 0:
        raise RuntimeError(f"{dataset}:{flow} seed {seed} ({src}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(jobs, sources, config_path, work):
    """Per job and source: cold (seed 0, empty cache) and warm (seed 1) first blocks."""
    rows = []
    for dataset, flow in jobs:
        row = {"job": f"{dataset}:{flow}"}
        for label, src in sources.items():
            cache = pathlib.Path(tempfile.mkdtemp(prefix=f"xla-{label}-", dir=work))
            for seed, state in ((0, "cold"), (1, "warm")):
                out = run_job(src, dataset, flow, seed, work, cache, config_path)
                row[f"{label} {state}"] = out["first_block"]
                row[f"{label} {state} trace"] = out["trace"]
                row[f"{label} {state} samples"] = out["samples"]
            print(f"{row['job']} {label}: cold {row[f'{label} cold']:.2f} s, "
                  f"warm {row[f'{label} warm']:.2f} s", flush=True)  # fmt: skip
        same = all(
            row[f"baseline {s} samples"] == row[f"this {s} samples"] for s in ("cold", "warm")
        )
        row["same samples"] = "yes" if same else "no"
        rows.append(row)
    return rows


def write(rows, meta, out):
    lines = ["# A training job's first block, cold and warm (generated by "
             "benchmarks/first_block.py)", ""]  # fmt: skip
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    lines += [
        "",
        "Seconds of a job's first compiled block without its tracing (graph lowering, XLA",
        "compilation or cache load, and the block's steps), cold = seed 0 into an empty compile",
        "cache, warm = seed 1 after it; `trace` = the Python tracing, timed before it (seed 1);",
        "a job's `first_call_seconds` is the two together.",
        "`same samples`: both checkouts' trained models drew bit-identical samples.",
        "",
        "| job | baseline cold | this cold | baseline warm | this warm | trace (baseline / this)"
        " | same samples |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        trace = f"{r['baseline warm trace']:.2f} / {r['this warm trace']:.2f}"
        lines.append(
            f"| {r['job']} | {r['baseline cold']:.2f} | {r['this cold']:.2f} | "
            f"{r['baseline warm']:.2f} | {r['this warm']:.2f} | {trace} | {r['same samples']} |"
        )
    for state in ("cold", "warm"):
        base = sum(r[f"baseline {state}"] for r in rows)
        this = sum(r[f"this {state}"] for r in rows)
        lines.append(f"\nSum {state}: {base:.1f} s against {this:.1f} s ({this / base:.2f}x).")
    pathlib.Path(out).write_text("\n".join(lines) + "\n")


def main(argv=None):
    import yaml

    args = parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()
    jobs = [tuple(name.split(":")) for name in args.jobs]
    config = yaml.safe_load(pathlib.Path(args.config).read_text())
    sources = {"baseline": pathlib.Path(args.baseline).resolve(), "this": ROOT}
    with tempfile.TemporaryDirectory(prefix="first-block-") as tmp:
        work = pathlib.Path(tmp)
        prepare_data(config, jobs, work)
        rows = measure(jobs, sources, args.config, work)
    baseline = commit_of(sources["baseline"])
    meta = run_meta("first_block.py", argv, started, load_before, baseline=baseline)
    write(rows, meta, args.out)
    print(pathlib.Path(args.out).read_text())


if __name__ == "__main__":
    main()
