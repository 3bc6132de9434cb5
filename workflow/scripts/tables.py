"""Snakemake script: the tidy runs table and the comparison tables, from MLflow."""

from flows_tf import jobs, tables

sm = snakemake  # noqa: F821  (injected by Snakemake)

with jobs.log_to(sm.log[0]):
    runs = tables.runs_frame(sm.input.metrics, expected=sm.params.expected_runs)
    tables.write_all(runs, sm.output.runs)
