"""Speed of every flow, side by side in one process, and the ratios the benchmark promises.

Sections (all in one run; ``--quick`` shrinks everything to a smoke check):

- table: for every flow in ``flows_tf.FLOWS`` at D in {2, 8, 64}: training steps/s (batch 512,
  Adam, ``tf.function``, loss ``-mean log p(x)``), samples/s and log_prob/s (10,000 samples);
- ratios: our MAF training step against TFP's stock ``MaskedAutoregressiveFlow`` (same model,
  same weights, same loss: MAF 5 layers, 2x256 hidden, D=8, batch 512), measured interleaved;
  IAF and the distilled student (an IAF of the teacher's architecture) sampling vs MAF at D=64;
  MAF density vs IAF density at D=64;
- xla: graph mode against ``jit_compile=True`` per direction (train step, sample, log_prob);
- threads: the training-step ratio again in subprocesses with other thread settings.

The default threads are the jobs' (intra-op 1, inter-op 1: one thread per job since c6d7734,
``benchmarks/THREAD_LAYOUT.md``).

Every number is the median over repeats after warm-up (a trace and one untimed call). The
machine's load average is recorded before and after: other processes share the cores.

Usage:
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/perf.py            # writes RESULTS.md
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/perf.py --quick    # smoke check, no files
"""

import argparse
import csv
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = pathlib.Path(__file__).resolve().parent
DIMS = (2, 8, 64)
BATCH = 512
N_EVAL = 10_000
NET = [256, 256]
HPARAMS = {  # the benchmark's model per flow (the MAF of the ratio section is "maf")
    "gaussian": {},
    "planar": {"num_layers": 16},
    "radial": {"num_layers": 16},
    "nice": {"num_layers": 4, "hidden_units": NET},
    "realnvp": {"num_layers": 5, "hidden_units": NET},
    "glow": {"num_layers": 5, "hidden_units": NET},
    "maf": {"num_layers": 5, "hidden_units": NET},
    "iaf": {"num_layers": 5, "hidden_units": NET},
    "nsf": {"num_layers": 5, "hidden_units": NET, "num_bins": 8},
}
TARGETS = {"train_vs_stock": 1.5, "iaf_vs_maf_sampling": 30.0, "maf_vs_iaf_density": 30.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke check; writes no files")
    p.add_argument("--intra", type=int, default=1, help="TF intra-op threads (default 1)")
    p.add_argument("--inter", type=int, default=1, help="TF inter-op threads (default 1)")
    p.add_argument("--flows", nargs="*", default=None, help="subset of flows (default: all)")
    p.add_argument(
        "--sections",
        nargs="*",
        default=["table", "ratios", "xla", "threads"],
        choices=["table", "ratios", "xla", "threads"],
    )
    p.add_argument("--out", type=pathlib.Path, default=HERE, help="folder for RESULTS.md/CSV")
    p.add_argument("--json", type=pathlib.Path, help="(internal) write the ratio section here")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------
# Timing


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _plan(seconds, quick):
    """Repeats and calls per repeat for a unit that took ``seconds`` once warmed up."""
    target = 0.05 if quick else 0.4
    inner = max(1, int(target / max(seconds, 1e-6)))
    if quick:
        return (3 if seconds < 1 else 1), inner
    return (5 if seconds < 1 else 3 if seconds < 5 else 1), inner


def time_unit(fn, quick, warm=None):
    """Median seconds per call of ``fn`` after warm-up (``warm`` or ``fn`` once, untimed)."""
    (warm or fn)()
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    repeats, inner = _plan(first, quick)
    if repeats == 1 and inner == 1:
        return first, 1
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return median(times), repeats


# --------------------------------------------------------------------------------------------
# Workloads


def _data(d, n, seed=0):
    import numpy as np

    rng = np.random.RandomState(seed)
    return (rng.randn(n, d) @ (np.eye(d) + 0.3 * rng.randn(d, d) / np.sqrt(d))).astype("float32")


def make_flow(name, d, hparams, seed=0):
    import tensorflow as tf

    from flows_tf.flows import build_flow, initialize

    tf.random.set_seed(seed)
    flow = build_flow(name, [d], **hparams)
    initialize(flow, _data(d, BATCH, seed=1))
    return flow


def train_step_fn(flow, jit=False):
    """A compiled Adam step on ``-mean log p(x)`` (tf_keras Adam: honours MADE's masks)."""
    import tensorflow as tf
    import tf_keras

    variables = flow.trainable_variables
    optimizer = tf_keras.optimizers.Adam(1e-4)
    optimizer.build(variables)

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    return step


def measure_flow(name, d, hparams, quick, jit=False, what=("train", "sample", "log_prob")):
    """Throughputs of one flow: steps/s, samples/s, log-densities/s (and repeats used)."""
    import tensorflow as tf

    from flows_tf import evaluate

    n_eval = 1000 if quick else N_EVAL
    flow = make_flow(name, d, hparams)
    out = {}
    if "train" in what:
        step = train_step_fn(flow, jit)
        x = tf.constant(_data(d, BATCH, seed=2))
        sec, reps = time_unit(lambda: step(x).numpy(), quick)
        out["train_steps_per_s"], out["train_repeats"] = 1.0 / sec, reps
    if "sample" in what:
        if jit:  # XLA needs static shapes: warm up at the timed size
            sample = tf.function(lambda: flow.sample(n_eval), jit_compile=True)
            sec, reps = time_unit(lambda: sample().numpy(), quick)
        else:  # compiled for the timed size, as the workflow's timing does (a graph traced
            # for any n slowed MAF sampling at D = 2 from 1.9 to 2.6 ms per 1,000 rows)
            sample = evaluate.compiled_sampler(flow, n_eval)
            sec, reps = time_unit(lambda: sample().numpy(), quick)
        out["samples_per_s"], out["sample_repeats"] = n_eval / sec, reps
    if "log_prob" in what:
        x = tf.constant(_data(d, n_eval, seed=3))
        if jit:
            lp = tf.function(flow.log_prob, jit_compile=True)
            sec, reps = time_unit(lambda: lp(x).numpy(), quick)
        else:
            lp = tf.function(flow.log_prob, input_signature=[tf.TensorSpec([None, d], tf.float32)])
            sec, reps = time_unit(lambda: lp(x).numpy(), quick, warm=lambda: lp(x[:64]).numpy())
        out["log_prob_per_s"], out["log_prob_repeats"] = n_eval / sec, reps
    return out


def train_ratio(quick, repeats=None, inner=None, jit_variants=(False, True), name="maf"):
    """Interleaved train-step timing of our flow and its TFP-stock twin (same variables, loss)."""
    import numpy as np
    import tensorflow as tf

    from flows_tf.bijectors.onepass import stock_twin

    d = 8
    hparams = {**HPARAMS[name], "num_layers": 5, "hidden_units": [64, 64] if quick else NET}
    x = tf.constant(_data(d, BATCH, seed=2))
    ours = make_flow(name, d, hparams, seed=0)
    stock = stock_twin(ours)  # the same variables and maps, TFP's stock classes
    lp_ours, lp_stock = ours.log_prob(x).numpy(), stock.log_prob(x).numpy()
    if not np.array_equal(lp_ours, lp_stock):
        raise RuntimeError(f"{name} and its TFP-stock twin disagree on log_prob")
    variants = {}
    for jit in jit_variants:
        for key, flow in (("stock", stock), ("ours", ours)):
            variants[key + ("_xla" if jit else "")] = train_step_fn(flow, jit)
    for step in variants.values():  # trace and warm up (each trains the shared variables)
        step(x).numpy()
        step(x).numpy()
    inner = inner or (5 if quick else 30)
    repeats = repeats or (3 if quick else 7)
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for k, step in variants.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                loss = step(x)
            loss.numpy()
            times[k].append((time.perf_counter() - t0) / inner)
    out = {"identical_log_prob": True, "repeats": repeats, "steps_per_repeat": inner}
    for k, ts in times.items():
        out[f"{k}_steps_per_s"] = 1.0 / median(ts)
    for k in times:
        if k != "stock":
            paired = [s / o for s, o in zip(times["stock"], times[k], strict=True)]
            out[f"{k}_vs_stock"] = median(paired)
    return out


# --------------------------------------------------------------------------------------------
# Sections


def section_table(flows, quick, log):
    rows = []
    dims = (2,) if quick else DIMS
    for d in dims:
        for name in flows:
            hp = dict(HPARAMS[name])
            if quick and "hidden_units" in hp:
                hp["hidden_units"] = [32, 32]
            t0 = time.perf_counter()
            r = measure_flow(name, d, hp, quick)
            rows.append({"flow": name, "D": d, **r, "hparams": json.dumps(hp, sort_keys=True)})
            log(
                f"{name:9s} D={d:3d} train {r['train_steps_per_s']:9.1f}/s  sample "
                f"{r['samples_per_s']:12.0f}/s  log_prob {r['log_prob_per_s']:12.0f}/s "
                f"({time.perf_counter() - t0:.0f} s)"
            )
    return rows


def direction_ratios(quick):
    """Sampling and density of MAF, IAF and the student at D=64, measured interleaved.

    The slow direction (one call of 10,000) is timed between timings of the fast one, and each
    ratio is taken against the median of the fast timings around it, so load from other
    processes shifts both sides alike. The distilled student is an IAF with the teacher MAF's
    architecture; its speed does not depend on its weights, so a separately seeded IAF is timed.
    """
    import tensorflow as tf

    d = 2 if quick else 64
    n = 1000 if quick else N_EVAL
    hp = {"num_layers": 5, "hidden_units": [32, 32] if quick else NET}
    flows = {"maf": make_flow("maf", d, hp), "iaf": make_flow("iaf", d, hp)}
    flows["student"] = make_flow("iaf", d, hp, seed=1)
    sig = [tf.TensorSpec([None, d], tf.float32)]
    sample = {k: tf.function(lambda m, f=f: f.sample(m)) for k, f in flows.items()}
    lp = {k: tf.function(f.log_prob, input_signature=sig) for k, f in flows.items()}
    x = tf.constant(_data(d, n, seed=3))
    for k in flows:  # trace on small inputs
        sample[k](tf.constant(64)).numpy()
        lp[k](x[:64]).numpy()

    def seconds(fn, *args):
        t0 = time.perf_counter()
        fn(*args).numpy()
        return time.perf_counter() - t0

    full = tf.constant(n)
    fast = {"iaf": [], "student": []}
    slow = []
    for _ in range(2):
        for k in fast:
            fast[k] += [seconds(sample[k], full) for _ in range(3)]
        if not slow:
            slow.append(seconds(sample["maf"], full))
    lp_fast, lp_slow = [seconds(lp["maf"], x) for _ in range(3)], [seconds(lp["iaf"], x)]
    lp_fast += [seconds(lp["maf"], x) for _ in range(3)]
    out = {
        "D": d,
        "n": n,
        "maf_samples_per_s": n / slow[0],
        "iaf_samples_per_s": n / median(fast["iaf"]),
        "student_samples_per_s": n / median(fast["student"]),
        "maf_log_prob_per_s": n / median(lp_fast),
        "iaf_log_prob_per_s": n / lp_slow[0],
    }
    out["iaf_vs_maf_sampling"] = out["iaf_samples_per_s"] / out["maf_samples_per_s"]
    out["student_vs_maf_sampling"] = out["student_samples_per_s"] / out["maf_samples_per_s"]
    out["maf_vs_iaf_density"] = out["maf_log_prob_per_s"] / out["iaf_log_prob_per_s"]
    return out


def section_ratios(quick, log):
    out = {"train": train_ratio(quick)}
    log(f"train step ours vs stock: {out['train']}")
    for name in ("realnvp", "nsf"):
        out[f"train_{name}"] = train_ratio(quick, jit_variants=(False,), name=name)
        log(f"{name} train step ours vs stock: {out[f'train_{name}']}")
    out.update(direction_ratios(quick))
    log(f"ratios: {out}")
    return out


def repeatable(name, hp, jit, steps=20):
    """True when two training runs from the same weights give bit-identical losses and weights."""
    import numpy as np
    import tensorflow as tf

    flow = make_flow(name, 8, hp)
    start = [v.numpy() for v in flow.trainable_variables]
    x = tf.constant(_data(8, BATCH, seed=2))
    runs = []
    for _ in range(2):
        for v, s in zip(flow.trainable_variables, start, strict=True):
            v.assign(s)
        step = train_step_fn(flow, jit)
        losses = [step(x).numpy() for _ in range(steps)]
        runs.append((np.array(losses), [v.numpy() for v in flow.trainable_variables]))
    (l1, w1), (l2, w2) = runs
    return bool(np.array_equal(l1, l2) and all(map(np.array_equal, w1, w2)))


def section_xla(quick, log):
    rows = []
    hp = {"num_layers": 5, "hidden_units": [32, 32] if quick else NET}
    for name in ("maf", "iaf", "realnvp", "nsf"):
        for jit in (False, True):
            r = measure_flow(name, 8, hp, quick, jit=jit)
            if name == "maf":
                r["train_repeatable"] = repeatable(name, hp, jit)
            rows.append({"flow": name, "D": 8, "xla": jit, **r})
            log(f"xla={jit!s:5s} {name}: {r}")
    return rows


def section_threads(quick, log):
    rows = []
    for intra, inter in ((1, 1), (1, 2), (2, 2), (2, 1)):
        out = HERE / f".threads_{intra}_{inter}.json"
        cmd = [sys.executable, __file__, "--sections", "ratios", "--json", str(out)]
        cmd += ["--intra", str(intra), "--inter", str(inter)] + (["--quick"] if quick else [])
        subprocess.run(cmd, check=True)
        r = json.loads(out.read_text())
        out.unlink()
        rows.append({"intra": intra, "inter": inter, **r})
        log(f"threads {intra}/{inter}: {r}")
    return rows


# --------------------------------------------------------------------------------------------
# Report


def _fmt(v):
    if v is None or v != v:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}" if v < 10 else f"{v:.1f}"


def write_report(out, meta, rows, ratios, xla, threads):
    out.mkdir(parents=True, exist_ok=True)
    fields = ["flow", "D", "train_steps_per_s", "samples_per_s", "log_prob_per_s", "hparams"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# Speed of every flow (generated by benchmarks/perf.py; do not edit)",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"- date {meta['date']}, commit {meta['commit']}, {meta['machine']}",
        f"- TensorFlow {meta['tf']}, TFP {meta['tfp']}, float32, graph mode (`tf.function`)",
        f"- threads: intra-op {meta['threads']['intra_op_threads']}, inter-op "
        f"{meta['threads']['inter_op_threads']}",
        f"- load average (1, 5, 15 min) before {meta['load_before']}, after {meta['load_after']}"
        " (other processes share the cores: absolute numbers are noisy, ratios measured "
        "interleaved are steadier)",
        f"- wall time {meta['seconds']:.0f} s",
        "",
        "Training: batch 512, Adam (tf_keras), loss -mean log p(x); sampling and log_prob on "
        "10,000 points. Median of repeats after warm-up. Models: "
        + "; ".join(f"{k} {json.dumps(v)}" for k, v in HPARAMS.items()),
        "",
    ]
    if ratios:
        t = ratios["train"]
        lines += [
            "## Ratios",
            "",
            "| comparison | value | target |",
            "|---|---|---|",
            f"| MAF(5, 2x256) D=8 train step: ours / TFP stock (graph) | "
            f"{t['ours_vs_stock']:.2f}x ({_fmt(t['ours_steps_per_s'])} vs "
            f"{_fmt(t['stock_steps_per_s'])} steps/s) | >= {TARGETS['train_vs_stock']}x |",
            f"| same, both with XLA (`jit_compile=True`): ours XLA / stock graph | "
            f"{t['ours_xla_vs_stock']:.2f}x (ours XLA {_fmt(t['ours_xla_steps_per_s'])}, stock "
            f"XLA {_fmt(t['stock_xla_steps_per_s'])} steps/s) | - |",
        ]
        for name in ("realnvp", "nsf"):
            r = ratios.get(f"train_{name}")
            if r:
                lines.append(
                    f"| {name}(5, 2x256) D=8 train step: ours / TFP stock (graph) | "
                    f"{r['ours_vs_stock']:.2f}x ({_fmt(r['ours_steps_per_s'])} vs "
                    f"{_fmt(r['stock_steps_per_s'])} steps/s) | - |"
                )
        if "iaf_vs_maf_sampling" in ratios:
            d = ratios["D"]
            lines += [
                f"| sampling D={d}: IAF / MAF | {ratios['iaf_vs_maf_sampling']:.1f}x "
                f"({_fmt(ratios['iaf_samples_per_s'])} vs {_fmt(ratios['maf_samples_per_s'])}/s) "
                "| >= 30x |",
                f"| sampling D={d}: distilled student (IAF) / MAF | "
                f"{ratios['student_vs_maf_sampling']:.1f}x | >= 30x |",
                f"| density D={d}: MAF / IAF | {ratios['maf_vs_iaf_density']:.1f}x "
                f"({_fmt(ratios['maf_log_prob_per_s'])} vs {_fmt(ratios['iaf_log_prob_per_s'])}/s) "
                "| >= 30x |",
            ]
        lines += [""]
    if threads:
        lines += [
            "## Training step by thread setting (MAF(5, 2x256), D=8, batch 512, interleaved)",
            "",
            "| intra / inter | ours steps/s | stock steps/s | ours / stock |",
            "|---|---|---|---|",
        ]
        for r in threads:
            t = r["train"]
            lines.append(
                f"| {r['intra']} / {r['inter']} | {_fmt(t['ours_steps_per_s'])} | "
                f"{_fmt(t['stock_steps_per_s'])} | {t['ours_vs_stock']:.2f}x |"
            )
        lines += [""]
    if rows:
        lines += [
            "## Every flow",
            "",
            "| flow | D | train steps/s | samples/s | log_prob/s |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['flow']} | {r['D']} | {_fmt(r['train_steps_per_s'])} | "
                f"{_fmt(r['samples_per_s'])} | {_fmt(r['log_prob_per_s'])} |"
            )
        lines += ["", "The same numbers: `benchmarks/results.csv`.", ""]
    if xla:
        lines += [
            "## XLA (`jit_compile=True`) per direction, D=8",
            "",
            "| flow | train steps/s graph | XLA | samples/s graph | XLA | log_prob/s graph | XLA |",
            "|---|---|---|---|---|---|---|",
        ]
        by = {(r["flow"], r["xla"]): r for r in xla}
        for name in dict.fromkeys(r["flow"] for r in xla):
            g, x = by[(name, False)], by[(name, True)]
            lines.append(
                f"| {name} | {_fmt(g['train_steps_per_s'])} | {_fmt(x['train_steps_per_s'])} | "
                f"{_fmt(g['samples_per_s'])} | {_fmt(x['samples_per_s'])} | "
                f"{_fmt(g['log_prob_per_s'])} | {_fmt(x['log_prob_per_s'])} |"
            )
        rep = {r["xla"]: r.get("train_repeatable") for r in xla if r["flow"] == "maf"}
        lines += [
            "",
            f"MAF training bit-for-bit repeatable over 20 steps from the same weights: graph "
            f"{rep.get(False)}, XLA {rep.get(True)}.",
            "",
        ]
    (out / "RESULTS.md").write_text("\n".join(lines))


def main(argv=None):
    args = parse_args(argv)
    load_before = tuple(round(v, 2) for v in os.getloadavg())
    t_start = time.perf_counter()
    from flows_tf import runtime

    threads = runtime.configure(
        max(args.intra, args.inter), intra_op=args.intra, inter_op=args.inter
    )
    import tensorflow as tf
    import tensorflow_probability as tfp

    from flows_tf.flows import FLOWS

    def log(msg):
        print(msg, flush=True)

    flows = args.flows or list(FLOWS)
    unknown = sorted(set(flows) - set(HPARAMS))
    if unknown:
        raise SystemExit(f"no benchmark model for flow(s) {unknown}; add them to HPARAMS")
    if args.json:  # subprocess of the thread sweep: the training-step ratio only
        train = train_ratio(args.quick, repeats=5, inner=20, jit_variants=(False,))
        args.json.write_text(json.dumps({"threads": threads, "train": train}))
        return
    rows = section_table(flows, args.quick, log) if "table" in args.sections else []
    ratios = section_ratios(args.quick, log) if "ratios" in args.sections else None
    xla = section_xla(args.quick, log) if "xla" in args.sections else []
    thr = section_threads(args.quick, log) if "threads" in args.sections else []
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    meta = {
        "command": " ".join(
            ["TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/perf.py"]
            + (argv if argv is not None else sys.argv[1:])
        ),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "unknown",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "tf": tf.__version__,
        "tfp": tfp.__version__,
        "threads": threads,
        "load_before": load_before,
        "load_after": tuple(round(v, 2) for v in os.getloadavg()),
        "seconds": time.perf_counter() - t_start,
    }
    log(json.dumps(meta))
    if not args.quick:
        write_report(args.out, meta, rows, ratios, xla, thr)
        log(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'results.csv'}")


if __name__ == "__main__":
    main()
