"""Snakemake script: every figure of the config's grid from the runs table, then MLflow."""

from pathlib import Path

from flows_tf import figures, jobs, tracking
from flows_tf.datasets import read_meta

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    metas = {Path(p).parent.name: read_meta(Path(p).parent) for p in sm.input.metas}
    names = list(sm.params.runs)
    written = figures.make_figures(
        sm.input.runs,
        Path(sm.output[names[0]]).parent,
        names=names,
        options={
            "density_grid": {"dataset_options": sm.params.dataset_options},
            "distillation": {"teacher": sm.params.teacher},
            "digit_samples": {"metas": metas},
        },
    )
    paths = [p for pair in written.values() for p in pair]
    print("wrote", *paths, sep="\n  ")
    run_id = tracking.log_summary_artifacts(paths, sm.params.experiment)
    print("logged to MLflow summary run", run_id)
