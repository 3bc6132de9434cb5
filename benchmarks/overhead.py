"""A finished workflow run's fixed cost, measured from its records, and the floor of it.

1. The run's own numbers. Every ``train`` and ``evaluate`` job's wall seconds (the ``s`` column
   of Snakemake's ``benchmark:`` files: ``benchmarks/train/{dataset}/{flow}.tsv``, one job for
   a variant's seeds, or ``.../{flow}/seed{seed}.tsv`` in older runs, and the same two layouts
   under ``benchmarks/evaluate/``) and each model's ``train.json``
   (``train_seconds``: its ``fit``; ``first_call_seconds``: the first block of steps, tracing
   and compiling the step plus its first 25-50 steps; ``steps``). With

       job-seconds = sum over train and evaluate jobs of their wall seconds
       fixed cost  = (train job seconds - train_seconds) + evaluate job seconds

   i.e. all a job pays besides training steps: start-up (Python, TensorFlow, MLflow), data,
   building the model, saving it, its samples and density grid, its in-process evaluation,
   MLflow logging, and the evaluate step. ``with first blocks`` adds each fit's first block.
   The serial ``time_models`` step (with its per-data-set split between loading and measuring,
   ``results/timing/conditions.json``) and the workflow's wall time (the span of Snakemake's log
   timestamps) are reported beside, not in the job-seconds.
   Where a training job's time outside ``fit`` goes, by its log's stamps (whole seconds):
   before its first line and after its last seed's ``trained`` line (start-up, the last seed's
   evaluation, the exit); each seed from its first line to its ``trained`` line beyond its fit
   (its MLflow run, building and initialising the model, saving it, samples and density grid,
   logging); from a seed's ``trained`` line to the next seed's first line (its in-process
   evaluation), per seed position: a job's first seed pays its process's first calls.
2. The floor of one process per job: the start-up skeleton every training job runs before its
   work (interpreter, ``runtime.configure`` with TensorFlow's import, TFP and flows_tf, MLflow's
   import and client set-up on a tracking store, ``runtime.exit_now``), timed in fresh
   processes, alternating with the same skeleton ending by Python's normal teardown. An
   evaluate step that publishes what its training job evaluated and mirrored starts neither
   TensorFlow nor MLflow: its floor is its own skeleton (the interpreter, ``flows_tf.jobs``,
   ``runtime.exit_now``), timed in the same alternation.

Usage (after a workflow run in ``RUN``; nothing else on the CPU):
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/overhead.py RUN --out benchmarks/FIXED_COST.md

With ``--job-seconds workflow/job_seconds.tsv`` it also writes each variant's training job
seconds, from which the workflow orders its jobs longest first (:mod:`flows_tf.schedule`).
"""

import argparse
import csv
import datetime
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

from runmeta import commit_of, run_meta

SKELETON = """
import time
t0 = time.perf_counter()
from flows_tf import runtime
runtime.configure(1)  # jobs run one thread each
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

EVALUATE_SKELETON = """
from flows_tf import jobs, runtime  # what workflow/scripts/evaluate.py imports
runtime.exit_now()
"""


def fixed_cost(repeats, env):
    """Median wall seconds of the job skeleton ending as jobs do (``exit_now``) and of its parts
    (TF, TFP+flows_tf, MLflow); the median wall of the same skeleton ending with Python's
    normal teardown; and that of an evaluate step's skeleton: the three alternated so that load
    changes hit them alike."""
    walls, plain, evaluate_walls, parts = [], [], [], []
    for _ in range(repeats):
        for code, into in (
            ("END_NOW = True\n" + SKELETON, walls),
            ("END_NOW = False\n" + SKELETON, plain),
            (EVALUATE_SKELETON, evaluate_walls),
        ):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            into.append(time.perf_counter() - t0)
            if into is walls:
                parts.append([float(v) for v in out.stdout.split()[-3:]])
    cols = list(zip(*parts, strict=True))
    medians = [statistics.median(c) for c in cols]
    return (
        statistics.median(walls),
        statistics.median(plain),
        medians,
        statistics.median(evaluate_walls),
    )


STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", re.MULTILINE)


def job_seconds(tsv):
    """The wall seconds of one Snakemake ``benchmark:`` file (its first row's ``s``)."""
    with open(tsv, newline="") as handle:
        return float(next(csv.DictReader(handle, delimiter="\t"))["s"])


def _seeds_of(run, dataset, flow):
    models = run / "results" / "models" / dataset / flow
    return sorted(p.parent.name for p in models.glob("seed*/train.json"))


JOB_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] job ([^/\s]+)/([^/\s]+)/seed", re.MULTILINE)


def _train_jobs(run):
    """``(tsv, [(dataset, flow, seed folders), ...], log)`` of every training job of ``run``:
    one for several variants (``train/{name}.tsv``, ``train_jobs: grouped``: the variants its
    log ``logs/train/{name}.log`` names), one per variant (``train/{dataset}/{flow}.tsv``), or
    one per seed in runs before that (``train/{dataset}/{flow}/seed{seed}.tsv``)."""
    root, logs = run / "benchmarks" / "train", run / "logs" / "train"
    for tsv in sorted(root.glob("*.tsv")):
        log = logs / f"{tsv.stem}.log"
        if not log.exists():
            sys.exit(f"{tsv}: no log {log} naming its variants")
        pairs = dict.fromkeys(JOB_LINE.findall(log.read_text()))
        yield tsv, [(d, f, _seeds_of(run, d, f)) for d, f in pairs], log
    for tsv in sorted(root.glob("*/*.tsv")):
        dataset, flow = tsv.parts[-2], tsv.stem
        log = logs / dataset / f"{flow}.log"
        yield tsv, [(dataset, flow, _seeds_of(run, dataset, flow))], log
    for tsv in sorted(root.glob("*/*/seed*.tsv")):
        yield tsv, [(tsv.parts[-3], tsv.parts[-2], [tsv.stem])], None


def _evaluate_files(run, dataset, flow, seeds):
    """The evaluate step's benchmark files of a variant: one per variant, or per seed."""
    per_variant = run / "benchmarks" / "evaluate" / dataset / f"{flow}.tsv"
    if per_variant.exists():
        return [per_variant]
    return [run / "benchmarks" / "evaluate" / dataset / flow / f"{s}.tsv" for s in seeds]


def jobs_of(run):
    """One dict per training job (one or more variants' seeds, or one seed): its name, its
    train and its models' evaluate job seconds, and their ``train.json`` fit, first blocks and
    steps; ``variants``: each variant's fit seconds."""
    rows = []
    for tsv, variants, _ in _train_jobs(run):
        summaries, evaluates, fits = [], [], {}
        for dataset, flow, seeds in variants:
            models = run / "results" / "models" / dataset / flow
            mine = [json.loads((models / seed / "train.json").read_text()) for seed in seeds]
            summaries += mine
            fits[f"{dataset}/{flow}"] = sum(float(s["train_seconds"]) for s in mine)
            evaluates += _evaluate_files(run, dataset, flow, seeds)
            if not seeds:
                sys.exit(f"{tsv}: no model of {dataset}/{flow}: the run did not finish")
        if not all(e.exists() for e in evaluates):
            sys.exit(f"{tsv}: an evaluate step is missing: the run did not finish")
        name = (
            "/".join(variants[0][:2])
            if len(variants) == 1
            else f"{tsv.stem} ({len(variants)} variants)"
        )
        rows.append(
            {
                "model": name,
                "variants": fits,
                "models": len(summaries),
                "evaluate_jobs": len(evaluates),
                "train_job": job_seconds(tsv),
                "evaluate_job": sum(job_seconds(e) for e in evaluates),
                "fit": sum(fits.values()),
                "first_block": sum(float(s.get("first_call_seconds") or 0.0) for s in summaries),
                "steps": sum(int(s["steps"]) for s in summaries),
            }
        )
    if not rows:
        sys.exit(f"no train benchmark files under {run / 'benchmarks' / 'train'}")
    return rows


def totals(rows):
    """Sums over ``rows``: jobs, job-seconds, fit, first blocks, outside fit, evaluate, fixed."""
    out = {"jobs": len(rows)}
    for key in (
        "models",
        "evaluate_jobs",
        "train_job",
        "evaluate_job",
        "fit",
        "first_block",
        "steps",
    ):
        out[key] = sum(r[key] for r in rows)
    out["outside_fit"] = out["train_job"] - out["fit"]
    out["job_seconds"] = out["train_job"] + out["evaluate_job"]
    out["fixed"] = out["outside_fit"] + out["evaluate_job"]
    out["fixed_share"] = out["fixed"] / out["job_seconds"]
    out["fixed_and_first_share"] = (out["fixed"] + out["first_block"]) / out["job_seconds"]
    return out


def workflow_span(run):
    """(first, last) timestamp of the newest Snakemake log of ``run``, or None."""
    logs = sorted((run / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None
    stamps = STAMP.findall(logs[-1].read_text())
    if not stamps:
        return None
    parse = [
        datetime.datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y") for s in stamps
    ]
    return min(parse), max(parse)


def by_model(rows):
    """Totals per model (its seeds together), largest job-seconds first."""
    models = {}
    for row in rows:
        models.setdefault(row["model"], []).append(row)
    table = [{"model": m, **totals(rs)} for m, rs in models.items()]
    return sorted(table, key=lambda t: -t["job_seconds"])


def _summary_lines(total, run):
    span = workflow_span(run)
    timing = run / "results" / "timing" / "conditions.json"
    lines = [
        f"- training jobs: {total['jobs']} for {total['models']} models, "
        f"{total['train_job']:,.0f} job-seconds, of which "
        f"{total['fit']:,.0f} inside `fit` ({total['first_block']:,.0f} in first blocks) and "
        f"{total['outside_fit']:,.0f} outside it",
        f"- evaluate steps: {total['evaluate_jobs']}, {total['evaluate_job']:,.0f} job-seconds",
        f"- job-seconds (train + evaluate): {total['job_seconds']:,.0f}",
        f"- **fixed cost: {total['outside_fit']:,.0f} + {total['evaluate_job']:,.0f} = "
        f"{total['fixed']:,.0f} job-seconds, {total['fixed_share']:.1%}**; with the first "
        f"blocks {total['fixed_and_first_share']:.1%}",
    ]
    if span:
        lines.append(
            f"- workflow wall time (Snakemake log): {span[1] - span[0]} ({span[0]} to {span[1]})"
        )
    time_models = run / "benchmarks" / "time_models" / "time_models.tsv"
    if time_models.exists():
        lines.append(f"- `time_models` (serial): {job_seconds(time_models):,.0f} s")
    if timing.exists():
        for dataset, c in json.loads(timing.read_text()).get("per_dataset", {}).items():
            split = ""
            if "load_seconds" in c:
                split = (
                    f": loading {c['load_seconds']:.1f} s, measuring {c['measure_seconds']:.1f} s"
                )
            lines.append(f"  - {dataset}: {c['models']} models in {c['wall_seconds']:.1f} s{split}")
    return lines


LOG_LINE = re.compile(r"^\[(\d\d:\d\d:\d\d)\] (job|trained) ([^\s:]+)", re.MULTILINE)


def _stamps(log):
    """``(kind, seconds, job key)`` of a training log's ``job`` and ``trained`` lines, in
    order."""
    out, day = [], 0
    for line in LOG_LINE.finditer(log.read_text()):
        h, m, sec = (int(v) for v in line.group(1).split(":"))
        t = day + 3600 * h + 60 * m + sec
        if out and t < out[-1][1]:  # past midnight
            day, t = day + 86400, t + 86400
        out.append((line.group(2), t, line.group(3)))
    return out


def log_phases(run):
    """Seconds outside ``fit`` of the training jobs that trained several seeds in one process,
    split by their logs' stamps (see the module docstring), the per-seed sums keyed by the
    seed's position in its variant; None when no job has a log of one attempt."""
    phases = {"jobs": 0, "start_end": 0.0, "seed_work": Counter(), "evaluation": Counter()}
    for tsv, variants, log in _train_jobs(run):
        n_models = sum(len(seeds) for *_, seeds in variants)
        stamps = _stamps(log) if log is not None and log.exists() else []
        if [k for k, _, _ in stamps] != ["job", "trained"] * n_models or n_models < 2:
            continue  # one seed per job, or a log of several attempts
        t = [v for _, v, _ in stamps]
        phases["jobs"] += 1
        phases["start_end"] += job_seconds(tsv) - (t[-1] - t[0])
        position = Counter()
        for i in range(n_models):
            dataset_flow_seed = stamps[2 * i][2].split("/")[:3]
            model = run / "results" / "models" / "/".join(dataset_flow_seed) / "train.json"
            variant = tuple(dataset_flow_seed[:2])
            k = position[variant]
            position[variant] += 1
            fit = json.loads(model.read_text())["train_seconds"]
            phases["seed_work"][k] += t[2 * i + 1] - t[2 * i] - fit
            if i + 1 < n_models:
                phases["evaluation"][k] += t[2 * i + 2] - t[2 * i + 1]
    return phases if phases["jobs"] else None


def _phase_lines(phases):
    if phases is None:
        return []
    ordinal = ("first", "second", "third")

    def per_seed(sums):
        return ", ".join(
            f"{ordinal[i] if i < 3 else f'#{i + 1}'} seeds {v:,.0f}"
            for i, v in sorted(sums.items())
        )

    return [
        "",
        f"Outside `fit`, by the logs' stamps (whole seconds) of {phases['jobs']} training jobs: "
        f"{phases['start_end']:,.0f} job-seconds before a job's first line and after its last "
        f"seed's `trained` line (start-up, the last seed's evaluation, the exit); from a seed's "
        f"first line to its `trained` line beyond its fit (its MLflow run, building the model, "
        f"saving, samples and density grid, logging): {per_seed(phases['seed_work'])}; from a "
        f"seed's `trained` line to the next seed's first line (its in-process evaluation): "
        f"{per_seed(phases['evaluation'])}. Seeds by their position in their variant: a "
        f"variant's first seed pays its first calls, a job's first seed its process's too.",
    ]


def report(run):
    """The Markdown report of ``run``'s own records (the skeleton is timed apart)."""
    rows = jobs_of(run)
    total, models = totals(rows), by_model(rows)
    lines = [
        f"Run: {run} at commit {commit_of(run) or 'unknown'}",
        "",
        *_summary_lines(total, run),
        "",
        "Per training job (its variants' seeds together), seconds; `fixed` = outside `fit` + "
        "evaluate steps:",
        "",
        "| job | train jobs | job-s | fit | first blocks | outside fit | evaluate | fixed "
        "| steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in models:
        lines.append(
            f"| {t['model']} | {t['jobs']} | {t['job_seconds']:.0f} | {t['fit']:.0f} | "
            f"{t['first_block']:.0f} | {t['outside_fit']:.0f} | {t['evaluate_job']:.0f} | "
            f"{t['fixed']:.0f} ({t['fixed_share']:.0%}) | {t['steps']:,} |"
        )
    phases = log_phases(run)
    lines += _phase_lines(phases)
    data = {"totals": total, "models": models, "log_phases": phases}
    return "\n".join(lines) + "\n", data | {"variant_seconds": variant_seconds(rows)}


def variant_seconds(rows):
    """``{"dataset/flow": seconds}``: each variant's fit, plus an equal share of its training
    job's seconds outside ``fit`` among the job's variants."""
    out = {}
    for row in rows:
        outside = (row["train_job"] - row["fit"]) / len(row["variants"])
        out |= {name: fit + outside for name, fit in row["variants"].items()}
    return out


def write_job_seconds(path, seconds):
    """``dataset``, ``flow``, ``seconds`` (:func:`variant_seconds`), longest first."""
    lines = ["dataset\tflow\tseconds"]
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        dataset, flow = name.split("/")
        lines.append(f"{dataset}\t{flow}\t{value:.1f}")
    path.write_text("\n".join(lines) + "\n")


def floor(total, skeleton):
    """Start-up seconds no job with a process of its own avoids, and their share: a training
    job's skeleton, and an evaluate step's."""
    wall, _, _, evaluate_step = skeleton
    seconds = total["jobs"] * wall + total["evaluate_jobs"] * evaluate_step
    return {
        "evaluate_step": evaluate_step,
        "seconds": seconds,
        "share_of_run": seconds / total["job_seconds"],
        "share_at_this_fit": seconds / (total["fit"] + seconds),
    }


def _skeleton_lines(skeleton, total, low):
    wall, plain, (t_tf, t_tfp, t_mlflow), _ = skeleton
    return [
        "",
        f"Start-up skeleton of a training job (median of fresh processes): **{wall:.2f} s** "
        f"(TensorFlow import and thread set-up {t_tf:.2f} s, TFP and flows_tf {t_tfp:.2f} s, "
        f"MLflow import and client {t_mlflow:.2f} s, interpreter start and end "
        f"{wall - t_tf - t_tfp - t_mlflow:.2f} s); with Python's normal teardown {plain:.2f} s. "
        f"An evaluate step's (the interpreter and flows_tf.jobs: no TensorFlow, no MLflow): "
        f"{low['evaluate_step']:.2f} s.",
        "",
        f"Floor of one process per job: {total['jobs']} training jobs and {total['evaluate_jobs']} "
        f"evaluate steps pay {low['seconds']:,.0f} job-seconds of start-up alone, "
        f"{low['share_of_run']:.1%} of this run's job-seconds, and "
        f"{low['share_at_this_fit']:.1%} of a run that kept only its `fit` time and that "
        "start-up.",
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=pathlib.Path, help="the folder of a finished workflow run")
    parser.add_argument("--repeats", type=int, default=5, help="skeleton processes per ending")
    parser.add_argument("--out", type=pathlib.Path, help="Markdown file (a .json beside it)")
    parser.add_argument(
        "--job-seconds",
        type=pathlib.Path,
        help="also write each variant's training job seconds, the workflow's longest-first "
        "priorities (flows_tf.schedule; workflow/job_seconds.tsv)",
    )
    args = parser.parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()
    text, data = report(args.run.resolve())
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory() as tmp:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/probe.db"
        skeleton = fixed_cost(args.repeats, env)
    meta = run_meta("overhead.py", argv, started, load_before)
    header = ["# Fixed cost of a workflow run (generated by benchmarks/overhead.py)", ""]
    header += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    low = floor(data["totals"], skeleton)
    skeleton_lines = "\n".join(_skeleton_lines(skeleton, data["totals"], low))
    text = "\n".join(header) + "\n" + text + skeleton_lines + "\n"
    data["meta"] = meta
    names = ("wall", "plain_teardown", "parts", "evaluate_step")
    data["skeleton"] = dict(zip(names, skeleton, strict=True))
    data["floor"] = low
    print(text)
    if args.job_seconds:
        write_job_seconds(args.job_seconds, data["variant_seconds"])
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
