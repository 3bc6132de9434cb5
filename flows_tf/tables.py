"""Comparison tables from MLflow runs: tidy runs, test log-likelihood, VI fit and timing.

:func:`runs_frame` reads the metrics JSON files the workflow wrote, fetches exactly the MLflow
runs they name, checks that every job has one finished, non-superseded run, and returns one
row per job. :func:`loglik_table` formats mean test log-likelihood +- 2 standard errors per
(flow, dataset), averaged over seeds, best per dataset in bold (as Table 1 of the MAF paper);
:func:`vi_table` the same for ``KL(q || p)`` of the variational fits per energy target (lowest
in bold); :func:`timing_table` gives seconds per 1,000 samples and per 1,000 density
evaluations.

Averaging over seeds: with per-seed means ``m_s`` and standard errors ``se_s`` (S seeds), the
cell is ``mean(m_s) +- 2 sqrt(sum se_s^2) / S``, the standard error of the average of S
independent estimates. The VI cell is ``mean(KL_s) +- 2 std(KL_s) / sqrt(S)``, the spread over
seeds (each KL is a Monte Carlo estimate on ``vi_samples`` draws of q, by default 10,000, whose
error is far smaller).

Example:
    >>> runs = runs_frame(sorted(Path("results/metrics").rglob("*.json")))  # doctest: +SKIP
    >>> write_all(runs, "results/tables/runs.csv")  # doctest: +SKIP

References:
    Papamakarios, G., Pavlakou, T. and Murray, I. (2017). Masked Autoregressive Flow for
    Density Estimation. NeurIPS. arXiv:1705.07057 (Table 1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from flows_tf import tracking

__all__ = [
    "COLUMNS",
    "TableError",
    "runs_frame",
    "loglik_table",
    "vi_table",
    "timing_table",
    "to_markdown",
    "to_latex",
    "write_all",
]

COLUMNS = [
    "dataset", "flow", "builder", "seed", "objective", "n_params", "test_loglik",
    "test_loglik_se", "true_test_loglik", "train_seconds", "sample_seconds_per_1k",
    "logprob_seconds_per_1k", "bits_per_dim", "elbo", "kl_to_target", "ess",
    "teacher_test_loglik", "kl_to_teacher", "sampling_speedup", "mlflow_run_id", "model_dir",
]  # fmt: skip
_TAGS = ("dataset", "flow", "builder", "objective")
OBJECTIVE_ORDER = ("mle", "distill", "vi")  # row order of the tables
CELL_COLUMNS = ["dataset", "flow", "n_seeds", "mean", "two_se", "best"]
WIDE = ("loglik", "vi")  # tables drawn flows x data sets, best cell in bold


class TableError(RuntimeError):
    """The runs behind a table are missing, duplicated or unfinished."""


def runs_frame(metrics_files, expected: int | None = None) -> pd.DataFrame:
    """One row per job, from the MLflow runs named by ``metrics_files``.

    Numbers come from the run's metrics, identity from its tags; ``model_dir`` from the file.

    Args:
        metrics_files: paths of metrics JSON files (each with ``mlflow_run_id``).
        expected: the number of jobs the config defines; any other count is an error.

    Raises:
        TableError: a missing file or run, a run not FINISHED or superseded, a run whose
            ``job_key`` differs from the file's, two files naming one job, or a count other than
            ``expected``.
    """
    files = [Path(f) for f in metrics_files]
    if expected is not None and len(files) != expected:
        raise TableError(f"expected {expected} runs, got {len(files)} metrics files")
    records = []
    for path in files:
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise TableError(f"metrics file {path} is missing or not JSON: {err}") from err
    run_ids = [r.get("mlflow_run_id") for r in records]
    for path, run_id in zip(files, run_ids, strict=True):
        if not run_id:
            raise TableError(f"metrics file {path} names no mlflow_run_id")
    try:
        runs = tracking.load_runs(run_ids)
    except tracking.TrackingError as err:
        raise TableError(str(err)) from err
    rows = []
    for path, record, run in zip(files, records, runs, strict=True):
        tags = run["tags"]
        if run["status"] != "FINISHED":
            raise TableError(f"MLflow run {run['run_id']} of {path} is {run['status']}")
        if tracking.SUPERSEDED_TAG in tags:
            raise TableError(
                f"MLflow run {run['run_id']} of {path} was superseded by "
                f"{tags[tracking.SUPERSEDED_TAG]}; rerun its evaluation"
            )
        if record.get("job_key") and tags.get("job_key") != record["job_key"]:
            raise TableError(
                f"MLflow run {run['run_id']} is job {tags.get('job_key')!r}, but "
                f"{path} is {record['job_key']!r}"
            )
        row = {c: record.get(c) for c in COLUMNS}
        row.update({k: tags[k] for k in _TAGS if k in tags})
        row["seed"] = int(tags.get("seed", record.get("seed")))
        row.update({k: v for k, v in run["metrics"].items() if k in COLUMNS})
        row["mlflow_run_id"] = run["run_id"]
        row["job_key"] = tags.get("job_key")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "job_key"])
    dup = frame["job_key"][frame["job_key"].duplicated()]
    if len(dup):
        raise TableError(f"jobs with more than one metrics file: {sorted(set(dup))}")
    numeric = [c for c in COLUMNS if c not in (*_TAGS, "seed", "mlflow_run_id", "model_dir")]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    order = {name: i for i, name in enumerate(OBJECTIVE_ORDER)}
    frame = frame.assign(_o=frame["objective"].map(order).fillna(len(order)))
    frame = frame.sort_values(["_o", "dataset", "flow", "seed"], kind="stable")
    return frame.drop(columns="_o").reset_index(drop=True)


def _order(values) -> list:
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _cell_table(data: pd.DataFrame, value: str, two_se, best: str) -> pd.DataFrame:
    """Long table (dataset, flow, n_seeds, mean, two_se, best): per (dataset, flow), the mean of
    ``value`` over seeds, ``two_se(group)`` and whether the mean is the ``best`` ("max" or
    "min") of its data set."""
    rows = [
        {
            "dataset": dataset,
            "flow": flow,
            "n_seeds": len(g),
            "mean": float(g[value].astype(float).mean()),
            "two_se": two_se(g),
        }
        for (dataset, flow), g in data.groupby(["dataset", "flow"], sort=False)
    ]
    table = pd.DataFrame(rows, columns=CELL_COLUMNS[:-1])
    table["best"] = table["mean"] == table.groupby("dataset")["mean"].transform(best)
    return table


def _pooled_two_se(g: pd.DataFrame) -> float:
    se = g["test_loglik_se"].astype(float).fillna(0.0).to_numpy()
    return 2.0 * math.sqrt(float(np.sum(se**2))) / len(g)


def _seed_two_se(g: pd.DataFrame) -> float:
    kl = g["kl_to_target"].astype(float).to_numpy()
    return 2.0 * float(np.std(kl, ddof=1)) / math.sqrt(len(kl)) if len(kl) > 1 else math.nan


def loglik_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Long table (dataset, flow, n_seeds, mean, two_se, best) of test log-likelihood.

    Only runs with a finite ``test_loglik`` (data sets, not energy targets) take part.
    """
    data = runs[np.isfinite(runs["test_loglik"].astype(float))]
    return _cell_table(data, "test_loglik", _pooled_two_se, best="max")


def vi_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Long table (dataset, flow, n_seeds, mean, two_se, best) of ``KL(q || p)`` in nats for
    the VI runs, per (energy target, flow): mean over seeds +- 2 standard errors across seeds
    (NaN for one seed); ``best`` is the lowest mean per target."""
    data = runs[(runs["objective"] == "vi") & np.isfinite(runs["kl_to_target"].astype(float))]
    return _cell_table(data, "kl_to_target", _seed_two_se, best="min")


def timing_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, flow), averaged over seeds: seconds per 1,000 samples and densities,
    parameters and training seconds."""
    cols = ["sample_seconds_per_1k", "logprob_seconds_per_1k", "n_params", "train_seconds"]
    table = runs.groupby(["dataset", "flow"], sort=False)[cols].mean().reset_index()
    table.insert(2, "n_seeds", runs.groupby(["dataset", "flow"], sort=False).size().to_numpy())
    return table


def _wide(table: pd.DataFrame, fmt) -> tuple[list[str], list[str], dict]:
    flows = _order(table["flow"])
    datasets = _order(table["dataset"])
    cells = {(r.flow, r.dataset): fmt(r) for r in table.itertuples()}
    return flows, datasets, cells


def _cell(r, bold: str) -> str:
    text = f"{r.mean:.2f} ± {r.two_se:.2f}" if math.isfinite(r.two_se) else f"{r.mean:.2f}"
    return bold.format(text) if r.best else text


def to_markdown(table: pd.DataFrame, kind: str = "loglik") -> str:
    """A Markdown table: flows as rows, data sets as columns (loglik, vi) or a long table."""
    if kind in WIDE:
        flows, datasets, cells = _wide(table, lambda r: _cell(r, "**{}**"))
        lines = ["| flow | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
        for f in flows:
            lines.append(f"| {f} | " + " | ".join(cells.get((f, d), "–") for d in datasets) + " |")
        return "\n".join(lines) + "\n"
    return table.to_markdown(index=False, floatfmt=".4g") + "\n"


def _tex_escape(text: str) -> str:
    return str(text).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def to_latex(table: pd.DataFrame, kind: str = "loglik") -> str:
    """A booktabs LaTeX tabular (best per data set in ``\\textbf``)."""
    if kind in WIDE:
        flows, datasets, cells = _wide(
            table, lambda r: _cell(r, r"\textbf{{{}}}").replace("±", r"$\pm$")
        )
        header = ["flow", *datasets]
        body = [[f, *(cells.get((f, d), "--") for d in datasets)] for f in flows]
    else:
        header = list(table.columns)
        body = [
            [v if isinstance(v, str) else f"{v:.4g}" for v in row]
            for row in table.itertuples(index=False)
        ]
    lines = [
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(_tex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [
        " & ".join(_tex_escape(c) if i == 0 or kind not in WIDE else c for i, c in enumerate(row))
        + r" \\"
        for row in body
    ]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_all(runs: pd.DataFrame, runs_path) -> dict[str, Path]:
    """Write ``runs.csv`` and ``{loglik,vi,timing}.{csv,md,tex}`` beside it; returns the paths."""
    runs_path = Path(runs_path)
    out_dir = runs_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    runs.to_csv(runs_path, index=False)
    written = {"runs": runs_path}
    kinds = {"loglik": loglik_table, "vi": vi_table, "timing": timing_table}
    for kind, make in kinds.items():
        table = make(runs)
        paths = {ext: out_dir / f"{kind}.{ext}" for ext in ("csv", "md", "tex")}
        table.to_csv(paths["csv"], index=False)
        paths["md"].write_text(to_markdown(table, kind))
        paths["tex"].write_text(to_latex(table, kind))
        written |= {f"{kind}_{ext}": p for ext, p in paths.items()}
    return written
