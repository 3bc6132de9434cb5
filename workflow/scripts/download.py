"""Snakemake script: download the MAF paper's UCI archive, checksum checked."""

from flows_tf import jobs
from flows_tf.datasets import uci

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    uci.fetch_maf_archive(
        sm.output[0], md5=sm.params.md5, sha256=sm.params.sha256, url=sm.params.url
    )
