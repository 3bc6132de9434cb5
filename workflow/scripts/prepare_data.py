"""Snakemake script: write results/data/{dataset}/{train,val,test}.npy and meta.json."""

from pathlib import Path

from flows_tf import datasets, jobs

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    options = dict(sm.params.options)
    if "raw" in sm.input.keys():  # UCI: the extracted MAF release
        options["root"] = sm.input.raw
    meta = datasets.prepare_dataset(
        sm.wildcards.dataset, Path(sm.output.meta).parent, seed=sm.params.seed, **options
    )
    print(meta)
