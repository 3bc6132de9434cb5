"""The workflow's serial timing step, this checkout beside a baseline, on one run's models.

``flows_tf.timing.time_models`` (each data set's models in a fresh process, as the
``time_models`` step runs it) is run on the trained models of a finished workflow run, in turn
with ``--baseline``'s code and with this checkout's: baseline, this, baseline, this (``--turns``
pairs), so that a drift of the machine's speed hits both. Reported: each turn's seconds per data
set (loading the models, measuring them) and in total; and per model, the ratio of this
checkout's timings (seconds per 1,000 samples and per 1,000 densities) to the baseline's in the
same pair, beside the baseline against itself (its first turn against its second), which is
the noise of one timing run against another.

Usage:
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/time_models_cost.py RUN \
        --baseline /tmp/base [--datasets digits u1] [--turns 2] --out benchmarks/TIME_MODELS.md
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from runmeta import ROOT, commit_of, run_meta

METRICS = ("sample_seconds_per_1k", "logprob_seconds_per_1k")

# one timing run in a fresh interpreter whose flows_tf is the checkout's (cwd and PYTHONPATH)
_DRIVER = """
import json, os, sys
from flows_tf import jobs, runtime, timing
threads = runtime.configure(os.cpu_count() or 1)  # all cores, as the time_models step
n, repeats = jobs.EVALUATION_DEFAULTS["timing_n"], jobs.EVALUATION_DEFAULTS["timing_repeats"]
rows, conds = timing.time_models(json.loads(sys.argv[1]), n=n, repeats=repeats, threads=threads)
json.dump({"rows": rows, "per_dataset": conds["per_dataset"], "seconds": conds["seconds"]},
          open(sys.argv[2], "w"))
"""


def metrics_files(run, datasets, folder):
    """Copies of the run's metrics JSON files with absolute model folders, in the run's order."""
    files = []
    for path in sorted((run / "results" / "metrics").glob("*/*/seed*.json")):
        record = json.loads(path.read_text())
        if path.name.endswith("_loglik.json") or (datasets and record["dataset"] not in datasets):
            continue
        record["model_dir"] = str((run / record["model_dir"]).resolve())
        copy = folder / "__".join(path.relative_to(run).parts)
        copy.write_text(json.dumps(record))
        files.append(str(copy))
    return files


def time_with(checkout, files, folder, label):
    """One timing run of ``files`` with ``checkout``'s code; its rows and seconds."""
    out = folder / f"{label}.json"
    env = dict(
        os.environ, PYTHONPATH=str(checkout), TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2"
    )
    command = [sys.executable, "-c", _DRIVER, json.dumps(files), str(out)]
    subprocess.run(command, cwd=checkout, env=env, check=True, capture_output=True)
    return json.loads(out.read_text())


def ratios(numerator, denominator):
    """Per model and metric, ``numerator / denominator`` (both lists of timing rows)."""
    a = pd.DataFrame(numerator).set_index("job_key")[list(METRICS)]
    b = pd.DataFrame(denominator).set_index("job_key")[list(METRICS)]
    return a / b.loc[a.index]


def _spread(frame):
    parts = []
    for metric in METRICS:
        q = frame[metric].quantile([0.05, 0.5, 0.95]).to_numpy()
        parts.append(f"{metric} median {q[1]:.3f} (5-95 % {q[0]:.3f}-{q[2]:.3f})")
    return "; ".join(parts)


def report(turns):
    """Markdown: seconds per turn and data set, then the ratios of timings."""
    lines = ["| turn | code | " + " | ".join(turns[0]["per_dataset"]) + " | total |"]
    lines.append("|---|---|" + "---:|" * (len(turns[0]["per_dataset"]) + 1))
    for i, turn in enumerate(turns):
        cells = [
            f"{d['wall_seconds']:.1f} ({d['load_seconds']:.1f} + {d['measure_seconds']:.1f})"
            for d in turn["per_dataset"].values()
        ]
        lines.append(f"| {i + 1} | {turn['code']} | " + " | ".join(cells) + f" | "
                     f"{turn['seconds']:.1f} |")  # fmt: skip
    lines += ["", "Cells: wall seconds of the data set's process (loading + measuring).", ""]
    base, this = turns[0::2], turns[1::2]
    same = pd.concat([ratios(t["rows"], b["rows"]) for t, b in zip(this, base, strict=True)])
    lines.append(f"- this / baseline, same pair, {len(same)} model timings: {_spread(same)}")
    if len(base) > 1:
        noise = ratios(base[1]["rows"], base[0]["rows"])
        lines.append(f"- baseline / baseline (turn 3 / turn 1): {_spread(noise)}")
    totals = {code: np.mean([t["seconds"] for t in turns if t["code"] == code]) for code in
              ("baseline", "this")}  # fmt: skip
    lines.append(f"- mean total: this {totals['this']:.1f} s, baseline {totals['baseline']:.1f} s")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=pathlib.Path, help="the folder of a finished workflow run")
    parser.add_argument("--baseline", required=True, help="root of the checkout to compare")
    parser.add_argument("--datasets", nargs="*", help="only these data sets (default: all)")
    parser.add_argument("--turns", type=int, default=2, help="baseline/this pairs")
    parser.add_argument("--out", type=pathlib.Path, help="Markdown file (a .json beside it)")
    args = parser.parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()
    sources = {"baseline": pathlib.Path(args.baseline).resolve(), "this": ROOT}
    turns = []
    with tempfile.TemporaryDirectory() as tmp:
        files = metrics_files(args.run.resolve(), args.datasets, pathlib.Path(tmp))
        for i in range(2 * args.turns):
            code = ("baseline", "this")[i % 2]
            turn = time_with(sources[code], files, pathlib.Path(tmp), f"turn{i}")
            turns.append({"code": code, **turn})
            print(f"turn {i + 1} ({code}): {turn['seconds']:.1f} s", flush=True)
    meta = run_meta("time_models_cost.py", argv, started, load_before,
                    baseline=commit_of(sources["baseline"]), run=str(args.run))  # fmt: skip
    header = ["# The serial timing step against a baseline (benchmarks/time_models_cost.py)", ""]
    text = "\n".join(header + [f"- {k}: {v}" for k, v in meta.items()] + [""]) + "\n"
    text += report(turns)
    print(text)
    if args.out:
        args.out.write_text(text)
        data = {"meta": meta, "turns": turns}
        args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
