"""Training throughput at the default grid's own sizes: the real loop, the bare step, TFP, zuko.

For every model the default config (``config/config.yaml``) trains, side by side in one run:

- ``fit``: steps/s of :func:`flows_tf.train.fit` as a job runs it (the config's training
  settings: blocks of compiled steps, XLA where the config sets it, evaluations, divergence
  checks, checkpoints), between the first and the last evaluation of a fresh fit, so that
  tracing, XLA compilation and set-up are left out; a distilled student's ``fit`` times its
  fine-tuning stage (pretraining cut to one evaluation window), where it spends most steps;
- ``step``: one compiled optimizer step per call (``tf.function``), called once per batch;
- ``stock``: ``fit`` again on the same model built from TFP's stock bijectors
  (:func:`flows_tf.bijectors.stock_twin`), for the flows where it differs;
- ``zuko``: the same model in zuko (PyTorch, eager), a plain Adam loop over the same batches,
  where zuko has the flow (MAF, NSF, NICE, Real-NVP).

Every number is the median of ``--repeats`` measurements; the load average is recorded before
and after, and the thread settings are the jobs' (one thread: intra-op 1, inter-op 1). Each case
runs in a fresh process of its own, as a job does: in one process for all cases, LLVM failed
with "Cannot allocate memory" (most of the RAM free) and the process segfaulted while compiling
the digits IAF's variants, after the three other cases of LOOP_SPEED_BY_DEGREE.

Usage (zuko and torch are not project dependencies):
    .venv/bin/pip install torch==2.13.0 zuko==1.6.0
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/loop_speed.py   # writes LOOP_SPEED.md
"""

import argparse
import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from runmeta import run_meta

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
ZUKO = {"maf": "MAF", "nsf": "NSF", "nice": "NICE", "realnvp": "RealNVP"}
XLA_FAILED = "XLA refused"  # a comparison variant XLA would not compile (see twin_rate)
WALKS = {"by_degree": "yes", "by_degree_implicit": "implicit"}  # the `by degree` column


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=pathlib.Path, default=ROOT / "config" / "config.yaml")
    p.add_argument("--threads", type=int, default=1, help="the jobs' thread count (default 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0, help="target seconds per measurement")
    p.add_argument("--only", nargs="*", default=None, help="subset of case names")
    p.add_argument("--no-zuko", action="store_true")
    p.add_argument("--xla", action="store_true", help="XLA blocks for every case (jit_compile)")
    p.add_argument("--out", type=pathlib.Path, default=HERE / "LOOP_SPEED.md")
    p.add_argument("--row-out", type=pathlib.Path, help=argparse.SUPPRESS)  # a case's process
    return p.parse_args(argv)


def median(values):
    s = sorted(values)
    return s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])


# --------------------------------------------------------------------------------------------
# The cases: what the default config trains


def cases(config):
    """(name, objective, builder, hparams, dataset, training settings) of every trained model."""
    from flows_tf import experiment

    out, seen = [], set()
    for job in experiment.jobs(config):
        key = (job.dataset, job.flow)
        if job.seed != 0 or key in seen:
            continue
        seen.add(key)
        out.append((f"{job.objective}:{job.dataset}:{job.flow}", job))
    return out


# --------------------------------------------------------------------------------------------
# TensorFlow measurements


def _inputs(config, job):
    """What fit needs for the job: data splits, the energy target, or an (untrained) teacher."""
    from flows_tf import datasets, experiment
    from flows_tf.flows import build_flow, initialize

    if job.objective == "vi":
        return {"target": datasets.energy_target(job.dataset)}, (2,)
    splits, _ = datasets.load_splits(job.dataset, seed=0, **job.dataset_options)
    shape = tuple(splits["train"].shape[1:])
    if job.objective == "mle":
        return {"train": splits["train"], "val": splits["val"]}, shape
    teacher = experiment.teacher_job(config, job)  # speed does not depend on its training
    flow = build_flow(teacher.builder, shape, **teacher.hparams)
    initialize(flow, splits["train"][:1024])
    return {"teacher": flow, "train": splits["train"]}, shape  # train: the bank's filter


def _steps_for(job, steps, inputs):
    """Training settings that run exactly ``steps`` steps (no early stop) with the job's loop."""
    s = {
        **job.training,
        "patience": None,
        "checkpoint_every": job.training.get("checkpoint_every", 1000),
    }
    if job.objective == "mle":
        batch = min(int(s.get("batch_size", 256)), len(inputs["train"]))
        per_epoch = len(inputs["train"]) // batch
        s["max_epochs"] = max(1, -(-steps // per_epoch))
        return s, s["max_epochs"] * per_epoch
    if "pretrain_steps" in s:  # a student: time fine-tuning, where it spends most of its steps
        s["pretrain_steps"] = int(s.get("eval_every", 100))
    s["steps"] = steps
    s.pop("max_epochs", None)
    return s, steps


def timed_fit(fit, *args, every=None, **kwargs):
    """``fit(*args, **kwargs)`` with a clock at each evaluation: ``(steps/s, result)``, the rate
    between the first and the last evaluation (tracing, XLA compilation and set-up excluded).
    ``every``: only evaluations at multiples of it count (an evaluation at a ragged end follows
    a shorter block, which XLA compiles anew)."""
    stamps = []

    def stamp(step, _):
        if every is None or step % every == 0:
            stamps.append((step, time.perf_counter()))

    result = fit(*args, log=stamp, **kwargs)
    if len(stamps) < 2:
        raise SystemExit(f"{len(stamps)} evaluation(s) in {result.steps} steps; raise the steps")
    (s1, t1), (s2, t2) = stamps[0], stamps[-1]
    return (s2 - s1) / (t2 - t1), result


def twin_rate(job, build, inputs, steps, repeats):
    """:func:`fit_rate` of a comparison variant, or ``XLA_FAILED`` where XLA rejects it."""
    import tensorflow as tf

    try:
        return fit_rate(job, build, inputs, steps, repeats)
    except tf.errors.UnimplementedError as err:
        print(f"{job.flow}: XLA rejected a variant: {str(err).splitlines()[0]}", file=sys.stderr)
        return XLA_FAILED


def fit_rate(job, build, inputs, steps, repeats):
    """steps/s of train.fit in its steady state: :func:`timed_fit` of fresh fits of ``steps``."""
    from flows_tf import train

    rates = []
    for _ in range(repeats):
        settings, _ = _steps_for(job, steps, inputs)
        with tempfile.TemporaryDirectory() as workdir:
            rate, _ = timed_fit(train.fit, build(), job.method, settings=settings,
                                workdir=workdir, seed=0, every=settings.get("eval_every"),
                                **inputs)  # fmt: skip
        rates.append(rate)
    return median(rates)


def bare_step_rate(job, flow, inputs, seconds, repeats):
    """steps/s of one compiled optimizer step per call on one fixed batch (no loop around it)."""
    import numpy as np
    import tensorflow as tf
    import tf_keras

    from flows_tf import objectives

    batch = int(job.training.get("batch_size", 256))
    variables = flow.trainable_variables
    opt = tf_keras.optimizers.Adam(1e-4)
    if job.objective == "mle":
        x = tf.constant(inputs["train"][: min(batch, len(inputs["train"]))])

        def loss():
            return objectives.mle_loss(flow, x)
    elif job.objective == "vi":

        def loss():
            return objectives.reverse_kl_loss(flow, inputs["target"], batch, seed=[0, 1])
    else:

        def loss():
            return objectives.distillation_loss(flow, inputs["teacher"], batch, seed=[0, 1])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss()
        opt.apply_gradients(zip(tape.gradient(value, variables), variables, strict=True))
        return value

    step().numpy()
    n = 3
    while True:  # calibrate the number of calls to about `seconds`
        start = time.perf_counter()
        for _ in range(n):
            step()
        np.asarray(step())
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 4 or n > 10**5:
            break
        n *= 4
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            step()
        np.asarray(step())
        rates.append((n + 1) / (time.perf_counter() - start))
    return median(rates)


# --------------------------------------------------------------------------------------------
# zuko (PyTorch, eager): the same model and batches, a plain Adam loop


def zuko_rate(job, x_train, seconds, repeats, threads):
    import torch
    import zuko

    torch.set_num_threads(max(1, threads // 2))
    h = job.hparams
    d = x_train.shape[1]
    kwargs = {"transforms": h.get("num_layers", 5), "hidden_features": h.get("hidden_units", [64])}
    if job.builder == "nsf":
        kwargs["bins"] = h.get("num_bins", 8)
    flow = getattr(zuko.flows, ZUKO[job.builder])(d, **kwargs)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-4)
    batch = min(int(job.training.get("batch_size", 256)), len(x_train))
    x = torch.as_tensor(x_train, dtype=torch.float32)
    order = torch.randperm(len(x))

    def run(n):
        start = time.perf_counter()
        for i in range(n):
            j = (i * batch) % (len(x) - batch + 1)
            loss = -flow().log_prob(x[order[j : j + batch]]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - start

    n = 3
    while run(n) < seconds / 4 and n < 10**5:
        n *= 4
    return median([n / run(n) for _ in range(repeats)])


# --------------------------------------------------------------------------------------------


def build_model(job, shape, inputs, stock=False):
    """The job's flow, seeded and initialised as a job does (``stock``: TFP's stock twin)."""
    from flows_tf import train
    from flows_tf.bijectors import stock_twin
    from flows_tf.flows import build_flow, initialize

    train.set_seeds(0)
    flow = build_flow(job.builder, shape, **job.hparams)
    if "train" in inputs:
        initialize(flow, inputs["train"][:1024])
    return stock_twin(flow) if stock else flow


def measure(config, name, job, args):
    inputs, shape = _inputs(config, job)

    def build(stock=False):
        return build_model(job, shape, inputs, stock)

    row = {"case": name, "D": shape[0], "objective": job.objective, "flow": job.flow,
           "xla": bool(job.training.get("jit_compile"))}  # fmt: skip
    step = bare_step_rate(job, build(), inputs, args.seconds, args.repeats)
    every = job.training.get("eval_every") or 100
    steps = every * (math.ceil(step * args.seconds / every) + 1)  # ~seconds after the 1st eval
    row["step"] = step
    row["fit"] = fit_rate(job, build, inputs, steps, args.repeats)
    if row["xla"]:  # the same loop in graph mode, to show what XLA gives
        graph = dataclasses.replace(job, training={**job.training, "jit_compile": False})
        row["fit_graph"] = fit_rate(graph, build, inputs, steps, args.repeats)
    row["sequential"] = job.hparams.get("sequential", "full_passes")
    if row["sequential"] in WALKS:  # what TFP's D passes give, and autodiff through the walk
        twins = {"fit_passes": "full_passes"}
        if row["sequential"] == "by_degree_implicit":
            twins["fit_walk_autodiff"] = "by_degree"
        for key, sequential in twins.items():
            twin = dataclasses.replace(job, hparams={**job.hparams, "sequential": sequential})
            row[key] = twin_rate(
                twin,
                lambda twin=twin: build_model(twin, shape, inputs),
                inputs,
                steps,
                args.repeats,
            )
    if job.builder in ("maf", "iaf", "nice", "realnvp", "glow", "nsf"):
        row["stock"] = twin_rate(job, lambda: build(stock=True), inputs, steps, args.repeats)
    if job.objective == "mle" and job.builder in ZUKO and not args.no_zuko:
        row["zuko"] = zuko_rate(job, inputs["train"], args.seconds, args.repeats, args.threads)
    return row


def fmt_rate(value):
    if value is None or isinstance(value, str):
        return value or "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def write(rows, meta, out):
    lines = [
        "# Training throughput at the default grid's sizes (generated by benchmarks/loop_speed.py)",
        "",
        f"Command: `{meta['command']}`",
        "",
        *[f"- {k}: {v}" for k, v in meta.items() if k != "command"],
        "",
        "steps/s; `fit` = the job's loop (`flows_tf.train.fit` with the config's settings,",
        "between its first and last evaluation; `XLA`: the config compiles its blocks with XLA,",
        "`fit, graph` = the same without XLA; `by degree`: the config runs MAF/IAF's sequential",
        "direction by degree (`implicit`: differentiated implicitly), `fit, D passes` = the same",
        "with TFP's D MADE passes per layer, `fit, walk autodiff` = the same by degree with",
        "autodiff through the walk),",
        "`step` = one compiled step per call (graph mode),",
        "`stock` = `fit` on TFP's stock bijectors, `zuko` = zuko (PyTorch, eager) on the same",
        f"model and batches; `{XLA_FAILED}`: XLA would not compile that variant (the error is",
        "on stderr).",
        "",
        "| case | D | XLA | by degree | fit | fit, graph | fit, D passes | fit, walk autodiff "
        "| step | stock | zuko | fit / zuko |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['case']} | {r['failed']} |" + " |" * 10)
            continue
        ratio = r["fit"] / r["zuko"] if r.get("zuko") else None
        lines.append(
            f"| {r['case']} | {r['D']} | {'yes' if r.get('xla') else 'no'} | "
            f"{WALKS.get(r.get('sequential'), 'no')} | {fmt_rate(r['fit'])} | "
            f"{fmt_rate(r.get('fit_graph'))} | {fmt_rate(r.get('fit_passes'))} | "
            f"{fmt_rate(r.get('fit_walk_autodiff'))} | "
            f"{fmt_rate(r['step'])} | "
            f"{fmt_rate(r.get('stock'))} | {fmt_rate(r.get('zuko'))} | "
            f"{'–' if ratio is None else f'{ratio:.2f}x'} |"
        )
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


def main(argv=None):
    args = parse_args(argv)
    import yaml

    from flows_tf import runtime

    threads = runtime.configure(args.threads)
    config = yaml.safe_load(args.config.read_text())
    todo = [(n, j) for n, j in cases(config) if not args.only or n in args.only]
    if args.xla:  # every case in XLA blocks, each beside its graph-mode twin
        todo = [(n, dataclasses.replace(j, training={**j.training, "jit_compile": True}))
                for n, j in todo]  # fmt: skip
    if args.row_out:  # a case's own process
        ((name, job),) = todo
        args.row_out.write_text(json.dumps(measure(config, name, job, args)))
        return
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rows = []
    for name, _ in todo:
        rows.append(measure_in_fresh_process(name, args))
        print(json.dumps(rows[-1]), flush=True)
    meta = run_meta("loop_speed.py", argv, t0, load_before, threads=threads)
    write(rows, meta, args.out)


def measure_in_fresh_process(name, args):
    """:func:`measure` of case ``name`` in a new Python process; its row (``failed`` if it died)."""
    with tempfile.TemporaryDirectory(prefix="loop-speed-") as tmp:
        row_out = pathlib.Path(tmp) / "row.json"
        flags = [*(["--no-zuko"] if args.no_zuko else []), *(["--xla"] if args.xla else [])]
        command = [
            *(sys.executable, __file__, "--config", str(args.config), "--threads"),
            *(str(args.threads), "--repeats", str(args.repeats), "--seconds", str(args.seconds)),
            *("--only", name, "--row-out", str(row_out), *flags),
        ]
        done = subprocess.run(command, check=False)
        if done.returncode != 0 or not row_out.is_file():
            print(f"{name}: its process exited with {done.returncode}", file=sys.stderr)
            return {"case": name, "failed": f"process exited with {done.returncode}"}
        return json.loads(row_out.read_text())


if __name__ == "__main__":
    main()
