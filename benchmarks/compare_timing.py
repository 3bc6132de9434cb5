"""IAF/MAF speed ratios of the serial timing table beside those of ``benchmarks/perf.py``.

Per data set with both ``maf`` and ``iaf`` in ``results/timing/timing.csv`` (the workflow's
``time_models`` step), per seed: ``sampling = t_sample(maf) / t_sample(iaf)`` (how much faster
IAF draws samples) and ``density = t_log_prob(iaf) / t_log_prob(maf)`` (how much faster MAF
evaluates densities); printed as the median over seeds [min, max]. Beside them:

- ``perf.py measured``: ``perf.measure_flow`` (perf.py's own timer: median of repeats after a
  warm-up) on the same sizes as the timed models (D, layers, hidden units from each model's
  ``model_spec.json``; batch ``timing_batch_size``), MAF and IAF alternately ``--repeats``
  times, with the thread settings of the timing run, in each of ``--processes`` fresh Python
  processes; median [min, max] over the processes of each process's median ratio. At D=2 a
  call takes 2-4 ms and the ratio moves by +-20 % from one process to the next (thread
  placement, allocation), far more than between repeats in one process, so the noise that
  counts is the spread between processes;
- ``serial reruns``: the workflow's own timing process (:mod:`flows_tf.timing`: the data set's
  timed models, all of them, interleaved rounds) rerun in ``--serial-processes`` fresh
  processes on the same models; median [min, max] over the processes of each process's ratio
  (median over seeds). The table's value is one such process, so this is its noise;
- ``agrees``: the two measurements' ranges over fresh processes overlap (serial: the table's
  value and its reruns; perf.py: its processes), i.e. they differ by no more than one fresh
  process differs from another;
- ``perf.py committed``: ``benchmarks/results.csv`` at the same D (perf.py's models: 5 layers,
  2 x 256 hidden units, 10,000 rows), for reference; other sizes, so not expected to agree.

Usage:
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/compare_timing.py            # + measure
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/compare_timing.py --no-measure
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = pathlib.Path(__file__).resolve().parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timing", type=pathlib.Path, default=pathlib.Path("results/timing/timing.csv"))
    p.add_argument("--perf-csv", type=pathlib.Path, default=HERE / "results.csv")
    p.add_argument("--repeats", type=int, default=5, help="alternating measurements a process")
    p.add_argument("--processes", type=int, default=5, help="fresh processes measuring perf.py")
    p.add_argument("--serial-processes", type=int, default=2, help="reruns of the serial timing")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measuring process
    p.add_argument("--no-measure", dest="measure", action="store_false")
    return p.parse_args(argv)


def _spec(model_dir) -> dict:
    return json.loads((pathlib.Path(model_dir) / "model_spec.json").read_text())


def serial_ratios(timing: pd.DataFrame) -> pd.DataFrame:
    """Per data set and seed: sampling and density ratios from the serial timing table."""
    rows = []
    for (dataset, seed), g in timing.groupby(["dataset", "seed"]):
        by = g.set_index("flow")
        if not {"maf", "iaf"} <= set(by.index):
            continue
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "D": _spec(by.loc["maf", "model_dir"])["event_shape"][0],
                "n": int(by.loc["maf", "timing_batch_size"]),
                "maf": _spec(by.loc["maf", "model_dir"])["hparams"],
                "iaf": _spec(by.loc["iaf", "model_dir"])["hparams"],
                "sampling": by.loc["maf", "sample_seconds_per_1k"]
                / by.loc["iaf", "sample_seconds_per_1k"],
                "density": by.loc["iaf", "logprob_seconds_per_1k"]
                / by.loc["maf", "logprob_seconds_per_1k"],
            }
        )
    return pd.DataFrame(rows)


def serial_reruns(timing: pd.DataFrame, dataset: str, processes: int, threads: dict) -> dict:
    """The workflow's timing process for ``dataset`` (its timed models, as in ``timing``) in
    ``processes`` fresh interpreters; per process, the median over seeds of each ratio."""
    from flows_tf import timing as serial

    rows = timing[timing["dataset"] == dataset].reset_index(drop=True)
    records = rows[["job_key", "dataset", "flow", "seed", "model_dir"]].to_dict("records")
    n, repeats = int(rows["timing_batch_size"].iloc[0]), int(rows["timing_repeats"].iloc[0])
    ratios = {"sampling": [], "density": []}
    for _ in range(processes):
        seconds = np.asarray(serial.time_in_fresh_process(records, n, repeats, threads)["seconds"])
        per_seed = serial_ratios(pd.DataFrame(serial.timing_rows(records, seconds, n)))
        for key in ratios:
            ratios[key].append(float(np.median(per_seed[key])))
    return ratios


def perf_one_process(d: int, n: int, hparams: dict, repeats: int) -> dict:
    """perf.py's measure_flow on MAF and IAF of these sizes, alternately; median ratios."""
    sys.path.insert(0, str(HERE))
    import perf

    perf.N_EVAL = n  # perf.py's batch for sampling and log_prob
    ratios = {"sampling": [], "density": []}
    for _ in range(repeats):
        maf = perf.measure_flow("maf", d, hparams["maf"], False, what=("sample", "log_prob"))
        iaf = perf.measure_flow("iaf", d, hparams["iaf"], False, what=("sample", "log_prob"))
        ratios["sampling"].append(iaf["samples_per_s"] / maf["samples_per_s"])
        ratios["density"].append(maf["log_prob_per_s"] / iaf["log_prob_per_s"])
    return {k: float(np.median(v)) for k, v in ratios.items()}


def perf_measured(d: int, n: int, hparams: dict, repeats: int, processes: int, threads: dict):
    """:func:`perf_one_process` in ``processes`` fresh interpreters; the list of their ratios."""
    job = json.dumps({"d": d, "n": n, "hparams": hparams, "repeats": repeats, "threads": threads})
    per_process = []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, __file__, "--child", job], check=True, capture_output=True, text=True
        ).stdout
        per_process.append(json.loads(out.strip().splitlines()[-1]))
    return {k: [r[k] for r in per_process] for k in ("sampling", "density")}


def child(job: str) -> None:
    """One measuring process: configure threads as the timing run did, print the ratios."""
    from flows_tf import runtime

    spec = json.loads(job)
    t = spec["threads"]
    runtime.configure(t["threads"], intra_op=t["intra_op_threads"], inter_op=t["inter_op_threads"])
    print(json.dumps(perf_one_process(spec["d"], spec["n"], spec["hparams"], spec["repeats"])))


def perf_committed(path: pathlib.Path, d: int) -> dict:
    table = pd.read_csv(path).set_index(["flow", "D"])
    maf, iaf = table.loc[("maf", d)], table.loc[("iaf", d)]
    return {
        "sampling": [iaf["samples_per_s"] / maf["samples_per_s"]],
        "density": [maf["log_prob_per_s"] / iaf["log_prob_per_s"]],
    }


def _fmt(values) -> str:
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}x"
    return f"{np.median(values):.2f}x [{values.min():.2f}, {values.max():.2f}]"


def _agrees(serial, measured) -> str:
    """Whether the [min, max] of the two sets of fresh-process ratios overlap."""
    return "yes" if max(min(serial), min(measured)) <= min(max(serial), max(measured)) else "no"


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args.child)
    timing = pd.read_csv(args.timing)
    conditions = json.loads(args.timing.with_name("conditions.json").read_text())
    print(
        f"serial timing: {args.timing} ({conditions['date']}, threads {conditions['threads']}, "
        f"load {conditions['load_before']} -> {conditions['load_after']}); perf.py: "
        f"{args.processes} processes x {args.repeats} repeats; serial reruns: "
        f"{args.serial_processes} processes"
    )
    ratios = serial_ratios(timing)
    columns = ["data set", "D", "n", "ratio", "serial timing (seeds)", "serial reruns"]
    columns += ["perf.py measured"]
    columns += ["agrees", "perf.py committed"]
    print("| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|")
    for dataset, g in ratios.groupby("dataset"):
        d, n = int(g["D"].iloc[0]), int(g["n"].iloc[0])
        hparams = {"maf": g["maf"].iloc[0], "iaf": g["iaf"].iloc[0]}
        measured = reruns = None
        if args.measure:
            threads = conditions["threads"]
            reruns = serial_reruns(timing, dataset, args.serial_processes, threads)
            measured = perf_measured(d, n, hparams, args.repeats, args.processes, threads)
        committed = perf_committed(args.perf_csv, d)
        for key, label in (("sampling", "IAF/MAF sampling"), ("density", "MAF/IAF density")):
            cells = [_fmt(g[key])]
            if measured:
                serial = [float(np.median(g[key])), *reruns[key]]
                cells += [_fmt(reruns[key]), _fmt(measured[key]), _agrees(serial, measured[key])]
            else:
                cells += ["-", "-", "-"]
            cells += [_fmt(committed[key])]
            print(f"| {dataset} | {d} | {n} | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
