"""Seed 1 of the eight_gaussians student: after seed 0 in the same process (as a variant's
training job runs it) or alone in a fresh process; prints one JSON line per seed with its
steps/s after its first block. Needs a finished default run's data and MAF teachers.

Usage (nothing else on the CPU; alone, together, alone again to bracket the drift):
    for m in "alone a1" "together t" "alone a2"; do set -- $m
      TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/student_seeds.py $1 OUT/$2 RUN
    done
"""

import json
import sys

import yaml

from flows_tf import runtime


def main(mode, out, run):
    runtime.configure(1)  # one thread, as a job; before TensorFlow starts
    from flows_tf import evaluate, experiment
    from flows_tf.jobs.training import next_seed_inputs, train_model

    with open("config/config.yaml") as handle:
        config = yaml.safe_load(handle)
    results = f"{run}/results"
    shared, inputs = {}, None
    with evaluate.reuse_traces():
        for seed in (0, 1) if mode == "together" else (1,):
            job = experiment.make_job(config, "eight_gaussians", "iaf_student", seed)
            teacher = f"{results}/models/eight_gaussians/maf/seed{seed}"
            inputs = next_seed_inputs(job, inputs, f"{results}/data/eight_gaussians", teacher)
            s = train_model(job, inputs, f"{out}/seed{seed}", shared=shared,
                            evaluation=config.get("evaluation"))  # fmt: skip
            rate = s["steps"] / (s["train_seconds"] - s["first_call_seconds"])
            line = {"mode": mode, "seed": seed, "steps": s["steps"], "fit": s["train_seconds"],
                    "first": s["first_call_seconds"], "steps_per_s": rate}  # fmt: skip
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
