"""Training throughput now against the loop the throughput issue measured, same model, same data.

The baseline is the code of a past commit (default ``227df19``: one compiled step per call,
the loop of the default run the throughput issue timed), extracted with ``git archive`` into a
temporary folder. For each case, side by side in one run, alternating the two trees:

- a fresh process imports ``flows_tf`` from one tree, builds the named flow with the case's
  hyperparameters (each tree's own builder), and trains it with that tree's
  :func:`flows_tf.train.fit` on the same arrays (split once by this tree with the default
  config's data set options);
- steps/s is taken between the first and the last evaluation of one fit of N steps
  (validation every epoch, or every 100 VI steps, in both trees), so that import, tracing,
  XLA compilation and set-up are left out; ``baseline`` uses its own jobs' thread
  setting (intra-op 1, inter-op 2), ``now`` the jobs' setting since c6d7734 (one thread), the
  loop settings (``steps_per_call``, ``jit_compile``) the default config gives the job and its
  way of running the same map (``sequential``: MAF/IAF's sequential direction by degree).

The four cases are the ones the issue names: MAF 5 x (64, 64) on 2-D data, planar K = 32
reverse KL, NSF and IAF on 8x8 digits, all at batch 256.

Usage:
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/versus_baseline.py  # VERSUS_BASELINE.md
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from loop_speed import fmt_rate, timed_fit
from runmeta import run_meta

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

CASES = {  # name: (objective, data, flow, hparams, training settings, steps)
    "maf_5x64_d2": ("mle", "eight_gaussians", "maf",
                    {"num_layers": 5, "hidden_units": [64, 64]}, {}, 2400),
    "planar_k32_vi": ("vi", "u1", "planar", {"num_layers": 32},
                      {"learning_rate": 0.005, "anneal_steps": 600}, 4000),
    "nsf_digits": ("mle", "digits", "nsf",
                   {"num_layers": 4, "hidden_units": [64, 64], "num_bins": 8}, {}, 200),
    "iaf_digits": ("mle", "digits", "iaf",
                   {"num_layers": 5, "hidden_units": [64, 64]}, {}, 40),
}  # fmt: skip
VARIANTS = {"planar_k32_vi": "planar_k32"}
THREADS = {"baseline": (1, 2), "now": (1, 1)}  # (intra-op, inter-op) of each tree's jobs
LOOP_SETTINGS = ("steps_per_call", "jit_compile")  # `now` takes the default config's, if set
SAME_MAP_HPARAMS = ("sequential",)  # hparams that change how, not what: `now` takes the config's


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="227df19", help="commit of the baseline loop")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", nargs="*", choices=sorted(CASES), help="subset of cases")
    p.add_argument("--out", type=pathlib.Path, default=HERE / "VERSUS_BASELINE.md")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # JSON: one measurement, in a subprocess
    return p.parse_args(argv)


def _settings(objective, training, steps, n_train):
    """Settings both trees accept that run exactly ``steps`` steps without early stopping."""
    s = {"batch_size": 256, "learning_rate": 1e-3, "patience": None, **training}
    if objective == "mle":
        per_epoch = n_train // min(256, n_train)
        s["max_epochs"] = -(-steps // per_epoch)
        return s, s["max_epochs"] * per_epoch
    return {**s, "steps": steps}, steps


def worker(spec):
    """In a fresh process on one tree: steps/s of that tree's fit (:func:`timed_fit`)."""
    import numpy as np

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from flows_tf import runtime

    intra, inter = spec["threads"]
    runtime.configure(intra + inter, intra_op=intra, inter_op=inter)
    from flows_tf import datasets, train
    from flows_tf.flows import build_flow, initialize

    objective, data, name, hparams, training, _ = CASES[spec["case"]]
    training = {**training, **spec["loop"]}
    hparams = {**hparams, **spec["how"]}
    if objective == "vi":
        inputs, shape = {"target": datasets.energy_target(data)}, (2,)
    else:
        arrays = np.load(spec["data"])
        inputs = {"train": arrays["train"], "val": arrays["val"]}
        shape = arrays["train"].shape[1:]
    settings, _ = _settings(objective, training, spec["steps"], len(inputs.get("train", ())))
    train.set_seeds(0)
    flow = build_flow(name, shape, **hparams)
    if objective == "mle":
        initialize(flow, inputs["train"][:1024])
    with tempfile.TemporaryDirectory() as workdir:
        rate, result = timed_fit(train.fit, flow, objective, settings=settings, workdir=workdir,
                                 seed=0, **inputs)  # fmt: skip
    params = int(sum(np.prod(v.shape) for v in flow.trainable_variables))
    print(json.dumps({"rate": rate, "steps": result.steps, "params": params,
                      "flows_tf": str(pathlib.Path(train.__file__).parent)}))  # fmt: skip


def measure(tree, case, steps, threads, data, loop, how):
    """Run :func:`worker` in a fresh interpreter that imports ``flows_tf`` from ``tree``."""
    spec = {"case": case, "steps": steps, "threads": list(threads), "data": str(data),
            "loop": loop, "how": how}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                          capture_output=True, text=True, cwd=tree)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"{case} on {tree} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if not out["flows_tf"].startswith(str(tree)):
        raise SystemExit(f"the worker imported flows_tf from {out['flows_tf']}, not {tree}")
    return out


def write(rows, meta, baseline, out):
    lines = [
        "# Training loop now against the baseline loop (generated by "
        "benchmarks/versus_baseline.py)",
        "",
        f"Command: `{meta.pop('command')}`",
        "",
        *(f"- {k}: {v}" for k, v in meta.items()),
        "",
        f"steps/s of `flows_tf.train.fit` (checkpoints, evaluations, divergence checks), median "
        f"of the repeats; `baseline` is the code of {baseline} at its jobs' threads (intra-op 1 "
        "/ inter-op 2), `now` this commit at its jobs' one thread; each process alone on the "
        "machine, the two trees alternating. `params`: trainable parameters (baseline / now).",
        "",
        "| case | params | now's loop and sequential pass | baseline | now | now / baseline "
        "| runs |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['params']} | {json.dumps(r['now_loop'])} | "
            f"{fmt_rate(r['baseline'])} | {fmt_rate(r['now'])} | "
            f"{r['now'] / r['baseline']:.2f}x | {r['runs']} |"
        )
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    started, load_before = time.perf_counter(), os.getloadavg()
    import numpy as np
    import yaml

    sys.path.insert(0, str(ROOT))
    from flows_tf import datasets, experiment

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = pathlib.Path(tmp) / "baseline"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.baseline, "flows_tf"], cwd=ROOT,
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        trees = {"baseline": old, "now": ROOT}
        for case in args.only or CASES:
            objective, data, flow, *_, steps = CASES[case]
            arrays = pathlib.Path(tmp) / f"{data}.npz"
            if objective == "mle" and not arrays.exists():
                splits, _ = datasets.load_splits(data, seed=0, **config["datasets"][data])
                np.savez(arrays, train=splits["train"], val=splits["val"])
            variant = VARIANTS.get(case, flow)  # the config's name of the flow variant
            job = experiment.training_settings(config, objective, data, variant)
            loops = {"baseline": {}, "now": {k: job[k] for k in LOOP_SETTINGS if k in job}}
            _, variant_hparams = experiment.flow_variant(config, variant, data)
            hows = {"baseline": {}, "now": {k: variant_hparams[k] for k in SAME_MAP_HPARAMS
                                            if k in variant_hparams}}  # fmt: skip
            runs = {"baseline": [], "now": []}
            for _ in range(args.repeats):
                for key, tree in trees.items():
                    runs[key].append(measure(tree, case, steps, THREADS[key], arrays, loops[key],
                                             hows[key]))  # fmt: skip
                    print(case, key, f"{runs[key][-1]['rate']:.3g} steps/s", flush=True)
            rates = {k: float(np.median([r["rate"] for r in v])) for k, v in runs.items()}
            params = " / ".join(str(runs[k][0]["params"]) for k in trees)
            runs_text = "; ".join(f"{k}: " + ", ".join(fmt_rate(r["rate"]) for r in v)
                                  for k, v in runs.items())  # fmt: skip
            rows.append({"case": case, "params": params, **rates, "runs": runs_text,
                         "steps": steps, "now_loop": {**loops["now"], **hows["now"]}})  # fmt: skip
    meta = run_meta("versus_baseline.py", argv, started, load_before)
    write(rows, meta, args.baseline, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
