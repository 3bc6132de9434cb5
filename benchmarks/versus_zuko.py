"""Our MAF against zuko's MAF (PyTorch), trained the same way on the same splits.

For each data set and seed, both libraries train the model the default config
(``config/config.yaml``) gives ``maf`` on that data set, with the job's protocol:

- the same training rows in the same order (epoch ``e`` visits ``permutation(rng(seed, e))``),
  batch and Adam learning rate; on images the training pixels are dequantized afresh at every
  step (``v + u``, ``u ~ U[0, 1)``) and mapped to model space, as the ``mle`` objective does;
- ``converged``: the job's stopping rule (validation log-likelihood every ``eval_every`` steps;
  after ``patience`` evaluations without improvement the learning rate is cut by
  ``lr_decay_factor`` with the best weights restored, ``lr_decays`` times, then stop), best
  weights scored;
- ``budget``: a fixed number of steps (``--budget``) at the constant learning rate, no early
  stopping, final weights scored (how fast each gets there).

Ours is :func:`flows_tf.train.fit` itself; zuko is ``zuko.flows.MAF`` (reverse orders between
layers, as ours) in a plain PyTorch loop that implements the same rule. Ours carries its
data-side affine layer (fitted to the data at the start, part of the model); zuko's MAF gets
the nearest fixed equivalent, a standardisation by the training mean and standard deviation
whose log-determinant ``-sum_i log sd_i`` is counted. Test log-likelihoods are nats per
example (digits in pixel space, as the tables).

Usage (torch and zuko are not project dependencies):
    .venv/bin/pip install torch==2.13.0 zuko==1.6.0
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/versus_zuko.py   # writes VERSUS_ZUKO.md
"""

import argparse
import json
import os
import pathlib
import tempfile
import time

import numpy as np
from runmeta import run_meta

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=pathlib.Path, default=ROOT / "config" / "config.yaml")
    p.add_argument("--datasets", nargs="*", default=["eight_gaussians", "digits"])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument(
        "--budget",
        type=int,
        default=600,
        help="steps of the fixed-budget protocol (rounded up to whole epochs)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--data-affine",
        choices=["full", "diag", "none"],
        help="our MAF's data-side affine instead of the config's (zuko keeps its standardisation)",
    )
    p.add_argument(
        "--shift-side",
        choices=["data", "noise"],
        help="our MAF's shift_side instead of the config's (flows_tf.flows.maf)",
    )
    p.add_argument("--out", type=pathlib.Path, default=HERE / "VERSUS_ZUKO.md")
    return p.parse_args(argv)


class Splits:
    """The job's splits, batches and (for images) fresh dequantization, as numpy arrays."""

    def __init__(self, job, seed, data_dir):
        from flows_tf.datasets.store import prepare_dataset, read_meta, read_split
        from flows_tf.objectives.mle import _levels

        folder = pathlib.Path(data_dir) / job.dataset
        if not (folder / "meta.json").exists():
            prepare_dataset(job.dataset, folder, **job.dataset_options)  # as the workflow does
        self.meta = read_meta(folder)
        self.train, self.val, self.test = (read_split(folder, s) for s in ("train", "val", "test"))
        self.seed = seed
        self.batch = min(int(job.training["batch_size"]), len(self.train))
        self.per_epoch = len(self.train) // self.batch
        ps = self.meta.get("pixel_space")
        self.levels = None if ps is None else _levels(self.train, ps)

    def batch_at(self, step):
        epoch, b = divmod(step, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train))
        rows = order[b * self.batch : (b + 1) * self.batch]
        if self.levels is None:
            return self.train[rows]
        from flows_tf.datasets import digits

        ps = self.meta["pixel_space"]
        u = np.random.default_rng([self.seed, step, 7]).uniform(size=self.levels[rows].shape)
        return digits.to_model_space(self.levels[rows] + u, ps["logit"], ps["alpha"])

    def reported(self, per_example_model):
        """Mean test log-likelihood in the tables' space (pixels for images)."""
        from flows_tf import datasets

        if not self.meta.get("pixel_space"):
            return float(np.mean(per_example_model))
        return float(np.mean(datasets.pixel_loglik(self.meta, self.test, per_example_model)))


def whole_epochs(budget, splits):
    """The fixed budget rounded up to whole epochs (``fit`` caps by epochs)."""
    return -(-budget // splits.per_epoch) * splits.per_epoch if budget else 0


def ours(job, splits, budget):
    from flows_tf import evaluate, train
    from flows_tf.flows import build_flow, initialize

    train.set_seeds(splits.seed)
    flow = build_flow(job.builder, splits.train.shape[1:], **job.hparams)
    initialize(flow, splits.train[:1024])
    settings = dict(job.training)
    if budget:
        settings.update(patience=None, lr_decays=0)
        settings["max_epochs"] = budget // splits.per_epoch
    start = time.perf_counter()
    result = train.fit(
        flow,
        "mle",
        train=splits.train,
        val=splits.val,
        pixel_space=splits.meta.get("pixel_space"),
        settings=settings,
        workdir=tempfile.mkdtemp(),
        seed=splits.seed,
    )
    seconds = time.perf_counter() - start
    test = splits.reported(evaluate.loglik(flow, splits.test)["per_example"])
    return {"test": test, "steps": result.steps, "converged": result.converged, "s": seconds}


def zuko_maf(job, splits, budget):
    """zuko's MAF under the same protocol (a plain loop with the job's stopping rule)."""
    import copy

    import torch
    import zuko

    torch.manual_seed(splits.seed)
    s, h = job.training, job.hparams
    flow = zuko.flows.MAF(
        splits.train.shape[1], transforms=h["num_layers"], hidden_features=h["hidden_units"]
    )
    lr = float(s["learning_rate"])
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    mu, sd = splits.train.mean(axis=0), splits.train.std(axis=0)

    def scaled(x):
        return torch.as_tensor((x - mu) / sd, dtype=torch.float32)

    def loglik(x):
        with torch.no_grad():
            return flow().log_prob(scaled(x)).double().numpy() - np.log(sd).sum()

    cap = budget or int(s["max_epochs"]) * splits.per_epoch
    every, patience = int(s["eval_every"]), int(s["patience"])
    best, best_state, bad, cuts, converged = -np.inf, None, 0, 0, False
    start, step = time.perf_counter(), 0
    while step < cap and not converged:
        loss = -flow().log_prob(scaled(splits.batch_at(step))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if budget or step % every:
            continue
        val = float(np.mean(loglik(splits.val)))
        if val > best:
            best, best_state, bad = val, copy.deepcopy(flow.state_dict()), 0
            continue
        bad += 1
        if bad < patience:
            continue
        if cuts >= int(s.get("lr_decays", 0)):
            converged = True
            break
        cuts, bad, lr = cuts + 1, 0, lr * float(s.get("lr_decay_factor", 0.2))
        flow.load_state_dict(best_state)
        for group in opt.param_groups:
            group["lr"] = lr
    if best_state is not None and not budget:
        flow.load_state_dict(best_state)
    seconds = time.perf_counter() - start
    return {
        "test": splits.reported(loglik(splits.test)),
        "steps": step,
        "converged": converged,
        "s": seconds,
    }


def run(config, args):
    from flows_tf import experiment

    rows, data_dir = [], tempfile.mkdtemp()
    for dataset in args.datasets:
        for seed in args.seeds:
            job = experiment.make_job(config, dataset, "maf", seed)
            if args.data_affine:
                job.hparams["data_affine"] = args.data_affine
            if args.shift_side:
                job.hparams["shift_side"] = args.shift_side
            splits = Splits(job, seed, data_dir)
            budget_steps = whole_epochs(args.budget, splits)
            for protocol, budget in (("budget", budget_steps), ("converged", 0)):
                row = {"dataset": dataset, "seed": seed, "protocol": protocol}
                row["ours"], row["zuko"] = ours(job, splits, budget), zuko_maf(job, splits, budget)
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def summary(rows):
    """Per data set and protocol: mean over seeds of ``d_s = ours_s - zuko_s`` with
    ``2 SE = 2 std(d) / sqrt(S)`` (ddof 1), seeds where ours is ahead, and the one-sided p of
    "ours is worse" (paired t-test over seeds, :func:`flows_tf.tables.paired_p_value`)."""
    from flows_tf.tables import paired_p_value

    lines = [
        "| data set | protocol | seeds | ours - zuko, mean ± 2 SE | ours ahead | p (ours worse) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key in dict.fromkeys((r["dataset"], r["protocol"]) for r in rows):
        group = [r for r in rows if (r["dataset"], r["protocol"]) == key]
        ours_ = np.array([r["ours"]["test"] for r in group])
        zuko_ = np.array([r["zuko"]["test"] for r in group])
        d, n = ours_ - zuko_, len(group)
        two_se = 2 * d.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        p = paired_p_value(zuko_, ours_) if n > 1 else float("nan")
        lines.append(
            f"| {key[0]} | {key[1]} | {n} | {d.mean():+.3f} ± {two_se:.3f} "
            f"| {int((d > 0).sum())} of {n} | {p:.2f} |"
        )
    return lines


def write(rows, meta, out):
    lines = [
        "# Our MAF against zuko's MAF, trained alike (generated by benchmarks/versus_zuko.py)",
        "",
        f"Command: `{meta['command']}`",
        "",
        *[f"- {k}: {v}" for k, v in meta.items() if k != "command"],
        "",
        "Test log-likelihood, nats per example (digits in pixel space); steps trained, and whether",
        "the stopping rule ended the run (`budget`: a fixed step count, no stopping rule).",
        "",
        "| data set | protocol | seed | ours | zuko | ours - zuko | steps (ours / zuko) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        o, z = r["ours"], r["zuko"]
        lines.append(
            f"| {r['dataset']} | {r['protocol']} | {r['seed']} | {o['test']:.3f} | {z['test']:.3f} "
            f"| {o['test'] - z['test']:+.3f} | {o['steps']} / {z['steps']} |"
        )
    lines += ["", "Over seeds (the seed sets each library's initialisation and batches):", ""]
    lines += summary(rows)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


def main(argv=None):
    args = parse_args(argv)
    import torch
    import yaml

    from flows_tf import runtime

    threads = runtime.configure(args.threads)
    torch.set_num_threads(max(1, args.threads // 2))
    config = yaml.safe_load(args.config.read_text())
    load_before, t0 = os.getloadavg(), time.perf_counter()
    rows = run(config, args)
    versions = f"torch {torch.__version__}, zuko {__import__('zuko').__version__}"
    meta = run_meta("versus_zuko.py", argv, t0, load_before, versions=versions, threads=threads)
    write(rows, meta, args.out)


if __name__ == "__main__":
    main()
