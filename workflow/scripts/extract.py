"""Snakemake script: extract the UCI raw files from the MAF release archive."""

from flows_tf import jobs
from flows_tf.datasets import uci

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    uci.extract_maf_archive(sm.input[0], sm.output[0])
