"""The results tree: every file the workflow, the CLI and the figures read or write.

One template per file, relative to the project root, with the grid's wildcards
``{dataset}``, ``{flow}``, ``{seed}``. Snakemake rules use the templates as they are (the
wildcards are theirs); Python fills them with :func:`of`, optionally under another results
folder. No TensorFlow here: the Snakefile imports this module.

Example:
    >>> from flows_tf import paths
    >>> paths.of(paths.METRICS, dataset="digits", flow="maf", seed=1)
    'results/metrics/digits/maf/seed1.json'
    >>> paths.of(paths.MODEL_DIR, results="/tmp/r", dataset="digits", flow="maf", seed=1)
    '/tmp/r/models/digits/maf/seed1'
"""

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flows_tf.experiment import Job

RESULTS = "results"

DATA_DIR = "results/data/{dataset}"
SPLIT = DATA_DIR + "/{split}.npy"
DATA_META = DATA_DIR + "/meta.json"
DOWNLOADS = "results/downloads"

MODEL_DIR = "results/models/{dataset}/{flow}/seed{seed}"
MODEL_FILE = MODEL_DIR + "/train.json"  # the training summary: the model's Snakemake output
HISTORY = MODEL_DIR + "/history.csv"
SAMPLES = MODEL_DIR + "/samples.npy"

METRICS = "results/metrics/{dataset}/{flow}/seed{seed}.json"
PER_EXAMPLE = "results/metrics/{dataset}/{flow}/seed{seed}.loglik.npy"  # test log p(x_n)

MLFLOW_INIT = "results/mlflow/{experiment}.json"
XLA_CACHE = "results/cache/xla"  # compiled XLA executables the training jobs share (runtime)
TIMING = "results/timing/timing.csv"  # serial timing, one row per model
TIMING_CONDITIONS = "results/timing/conditions.json"  # load average, threads, sizes
RUNS_TABLE = "results/tables/runs.csv"
TABLE = "results/tables/{name}.{ext}"
FIGURE = "results/figures/{name}.{ext}"


def of(template: str, results: str | None = None, **fields) -> str:
    """``template`` with its fields filled, under ``results`` instead of ``results/``."""
    path = template.format(**fields)
    if results is not None:
        path = str(results).rstrip("/") + path.removeprefix(RESULTS)
    return path


def of_job(template: str, job: "Job", results: str | None = None) -> str:
    """``template`` filled with a grid job's data set, flow and seed."""
    return of(template, results, dataset=job.dataset, flow=job.flow, seed=job.seed)


def per_example(metrics_path: "str | os.PathLike") -> str:
    """The per-example test values beside a metrics file: ``seedN.json`` -> ``seedN.loglik.npy``."""
    path = str(metrics_path)
    if not path.endswith(".json"):
        raise ValueError(f"a metrics file ends in .json, not {path!r}")
    return path.removesuffix(".json") + ".loglik.npy"
