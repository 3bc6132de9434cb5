"""Comparison tables from the run record: tidy runs, test log-likelihood, VI fit and timing.

:func:`runs_frame` takes every number from the metrics JSON files the workflow wrote (the
record) and checks with MLflow only that each names one finished, non-superseded run of the
same job; it joins the serial timing of :mod:`flows_tf.timing`. :func:`loglik_table`,
:func:`vi_table` and :func:`timing_table` give long tables, :func:`to_markdown` and
:func:`to_latex` draw them (flows x data sets for log-likelihood and VI), :func:`write_all`
writes them all.

Log-likelihood cell. For one (data set, flow) with S seeds scored on the same N test examples,
``l[s, i]`` nats (the per-example files beside the metrics JSON; pixel space for images):

    m_s = mean_i l[s, i],   m = mean_s m_s,   lbar_i = mean_s l[s, i],
    SE_test = std_i(lbar_i) / sqrt(N),   SE_seed = std_s(m_s) / sqrt(S)   (ddof = 1 both),
    SE = sqrt(SE_test^2 + SE_seed^2),    cell = m +- 2 SE.

``SE_test`` is the test-set error of the seed-averaged model (the S seeds share one test set,
so each example is averaged over seeds first); ``SE_seed`` is the spread between training runs.
With S = 1 the spread is unknown: ``se_seed`` is NaN (not 0) and the cell, ``m +- 2 SE_test``,
is marked with a dagger. Bold, per data set: the highest ``m`` and every flow not significantly
worse than it by a one-sided paired t-test at the 5 % level on ``lbar_i`` (best minus flow, N - 1
degrees of freedom), as in Table 1 of the MAF paper; distilled students take part like any flow.

VI cell. Seed s gives ``KL_s = log Z - ELBO_s`` with Monte Carlo error ``se_s =
std_j(log w_j) / sqrt(n)`` (``kl_to_target_se``); the cell is ``mean_s KL_s +- 2 SE`` with
``SE^2 = mean_s(se_s^2) / S + var_s(KL_s) / S`` (the seed term is NaN for S = 1: dagger). Bold:
the lowest mean and every flow not significantly worse by a one-sided z-test at 5 % on the
difference of independent estimates, ``z = (m_f - m_best) / sqrt(SE_f^2 + SE_best^2)``.

Nothing is dropped silently: a cell with other seeds than configured (``expected_seeds``), a
non-finite value of any seed, a per-example file that disagrees with its metrics file or a
missing serial timing raise :class:`TableError` naming the cell or the run.

Example:
    >>> runs = runs_frame(sorted(Path("results/metrics").rglob("*.json")))  # doctest: +SKIP
    >>> write_all(runs, "results/tables/runs.csv", expected_seeds=[0, 1, 2])  # doctest: +SKIP

References:
    Papamakarios, G., Pavlakou, T. and Murray, I. (2017). Masked Autoregressive Flow for
    Density Estimation. NeurIPS. arXiv:1705.07057 (Table 1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from flows_tf import tracking
from flows_tf.experiment import on_data
from flows_tf.timing import TIMING_METRICS

__all__ = [
    "ALPHA",
    "COLUMNS",
    "LOGLIK_COLUMNS",
    "VI_COLUMNS",
    "TableError",
    "runs_frame",
    "load_per_example",
    "loglik_cell",
    "vi_cell",
    "paired_p_value",
    "z_p_value",
    "loglik_table",
    "vi_table",
    "timing_table",
    "table_note",
    "to_markdown",
    "to_latex",
    "write_all",
]

COLUMNS = [
    "dataset", "flow", "builder", "seed", "objective", "teacher", "n_params", "test_loglik",
    "test_loglik_se", "n_test", "test_loglik_model", "true_test_loglik", "bits_per_dim",
    "train_seconds", "best_val_loglik", "final_loss", "elbo", "kl_to_target", "kl_to_target_se",
    "ess", "teacher_test_loglik", "kl_to_teacher", "mlflow_run_id", "model_dir", "loglik_file",
    "steps", "converged",
]  # fmt: skip
_TEXT = (
    "dataset",
    "flow",
    "builder",
    "seed",
    "objective",
    "teacher",
    "mlflow_run_id",
    "model_dir",
    "loglik_file",
)
OBJECTIVE_ORDER = ("mle", "distill", "vi")  # row order of the tables
ALPHA = 0.05  # one-sided level of the "not significantly worse than the best" tests
LOGLIK_COLUMNS = [
    "dataset", "flow", "n_seeds", "n_test", "mean", "se_test", "se_seed", "two_se", "n_capped",
    "p_vs_best", "bold",
]  # fmt: skip
VI_COLUMNS = [
    "dataset", "flow", "n_seeds", "mean", "se_mc", "se_seed", "two_se", "n_capped", "p_vs_best",
    "bold", "log_z", "log_z_box",
]  # fmt: skip
WIDE = ("loglik", "vi")  # tables drawn flows x data sets
DAGGER = "†"
CAPPED = "‡"  # a seed of the cell ended at its step cap, not by its stopping rule


def _n_capped(group: pd.DataFrame) -> int:
    """Seeds of a cell whose training ended at the step cap (``converged`` false)."""
    if "converged" not in group:
        return 0
    known = [c for c in group["converged"] if c is not None and not pd.isna(c)]
    return int(sum(1 for c in known if not _truthy(c)))


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


class TableError(RuntimeError):
    """The runs behind a table are missing, duplicated, unfinished, incomplete or non-finite."""


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TableError(f"metrics file {path} is missing or not JSON: {err}") from err
    if not record.get("mlflow_run_id"):
        raise TableError(f"metrics file {path} names no mlflow_run_id")
    return record


def _check_run(path: Path, record: dict, run: dict) -> None:
    """The run a metrics file names is FINISHED, not superseded, and of the same job."""
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


def runs_frame(
    metrics_files: Iterable[str | Path],
    expected: int | None = None,
    timing: pd.DataFrame | str | Path | None = None,
) -> pd.DataFrame:
    """One row per job; every number from its metrics JSON, MLflow checked for identity only.

    Args:
        metrics_files: paths of metrics JSON files (each with ``mlflow_run_id``).
        expected: the number of jobs the config defines; any other count is an error.
        timing: the serial timing table (``results/timing/timing.csv`` or its DataFrame);
            its :data:`~flows_tf.timing.TIMING_METRICS` join the rows by ``job_key``.

    Raises:
        TableError: a missing file or run, a run not FINISHED or superseded, a run whose
            ``job_key`` differs from the file's, two files naming one job, a count other than
            ``expected``, or a timing table without (or with other) jobs or runs.
    """
    files = [Path(f) for f in metrics_files]
    if expected is not None and len(files) != expected:
        raise TableError(f"expected {expected} runs, got {len(files)} metrics files")
    records = [_read_record(path) for path in files]
    try:
        runs = tracking.load_runs([r["mlflow_run_id"] for r in records])
    except tracking.TrackingError as err:
        raise TableError(str(err)) from err
    rows = []
    for path, record, run in zip(files, records, runs, strict=True):
        _check_run(path, record, run)
        row = {c: record.get(c) for c in COLUMNS}
        row["seed"] = int(record.get("seed", run["tags"].get("seed", -1)))
        row["job_key"] = record.get("job_key") or run["tags"].get("job_key")
        row["metrics_file"] = str(path)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "job_key", "metrics_file"])
    dup = frame["job_key"][frame["job_key"].duplicated()]
    if len(dup):
        raise TableError(f"jobs with more than one metrics file: {sorted(set(dup))}")
    numeric = [c for c in COLUMNS if c not in _TEXT]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    if timing is not None:
        frame = _join_timing(frame, timing)
    order = {name: i for i, name in enumerate(OBJECTIVE_ORDER)}
    frame = frame.assign(_o=frame["objective"].map(order).fillna(len(order)))
    frame = frame.sort_values(["_o", "dataset", "flow", "seed"], kind="stable")
    return frame.drop(columns="_o").reset_index(drop=True)


def _join_timing(frame: pd.DataFrame, timing: pd.DataFrame | str | Path) -> pd.DataFrame:
    """Add the serial timing's metrics; every job timed once, for the run its file names."""
    if not isinstance(timing, pd.DataFrame):
        timing = pd.read_csv(timing)
    missing = sorted(set(frame["job_key"]) - set(timing["job_key"]))
    extra = sorted(set(timing["job_key"]) - set(frame["job_key"]))
    if missing or extra:
        raise TableError(
            f"the serial timing does not match the runs: untimed jobs {missing}, timed jobs "
            f"without a metrics file {extra}; rerun the time_models step"
        )
    timing = timing.set_index("job_key")
    if "mlflow_run_id" in timing:
        ran = frame.set_index("job_key")["mlflow_run_id"]
        stale = sorted(k for k in ran.index if timing.loc[k, "mlflow_run_id"] != ran[k])
        if stale:
            raise TableError(f"the serial timing is of other MLflow runs for jobs {stale}")
    joined = timing[TIMING_METRICS].apply(pd.to_numeric, errors="coerce")
    return frame.join(joined, on="job_key")


def load_per_example(runs: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-example test log-likelihoods of every data-set run, by ``job_key``.

    Each comes from ``loglik_file`` beside the run's ``metrics_file``.

    Raises:
        TableError: a missing file, a non-finite value, or a mean that differs from the
            metrics file's ``test_loglik`` (the file is stale), naming the run.
    """
    out = {}
    for row in runs[runs["objective"].map(on_data)].itertuples():
        if not isinstance(row.loglik_file, str) or not row.loglik_file:
            raise TableError(f"run {row.job_key}: its metrics file names no loglik_file")
        path = Path(row.metrics_file).parent / row.loglik_file
        try:
            values = np.load(path).astype(np.float64)
        except OSError as err:
            raise TableError(f"run {row.job_key}: per-example file {path} unreadable") from err
        if values.ndim != 1 or not np.all(np.isfinite(values)):
            raise TableError(f"run {row.job_key}: {path} is not a finite 1-D array")
        if not math.isclose(float(values.mean()), row.test_loglik, rel_tol=1e-9, abs_tol=1e-9):
            raise TableError(
                f"run {row.job_key}: mean of {path} is {values.mean():.6g}, its metrics file "
                f"says test_loglik {row.test_loglik:.6g}"
            )
        out[row.job_key] = values
    return out


def loglik_cell(values: ArrayLike) -> dict:
    """Mean and standard errors of one cell from ``values[s, i]`` (S seeds x N examples).

    Returns:
        ``{n_seeds, n_test, mean, se_test, se_seed, two_se}`` as in the module docstring;
        ``se_seed`` is NaN for one seed and then ``two_se = 2 se_test``.
    """
    values = np.asarray(values, dtype=np.float64)
    n_seeds, n_test = values.shape
    per_seed = values.mean(axis=1)
    se_test = float(values.mean(axis=0).std(ddof=1) / math.sqrt(n_test))
    se_seed = _seed_se(per_seed)
    return {
        "n_seeds": n_seeds,
        "n_test": n_test,
        "mean": float(per_seed.mean()),
        "se_test": se_test,
        "se_seed": se_seed,
        "two_se": _two_se(se_test, se_seed),
    }


def _seed_se(per_seed: ArrayLike) -> float:
    """``std_s(m_s) / sqrt(S)`` (ddof 1), NaN for one seed (the spread is not measured)."""
    n = len(per_seed)
    return float(np.std(per_seed, ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def _two_se(se_within: float, se_seed: float) -> float:
    """``2 sqrt(se_within^2 + se_seed^2)``, the seed term counted as 0 when unknown."""
    return 2.0 * math.hypot(se_within, 0.0 if math.isnan(se_seed) else se_seed)


def vi_cell(kl: ArrayLike, se: ArrayLike) -> dict:
    """Mean KL over seeds and its errors: ``se_mc^2 = mean(se_s^2) / S``, ``se_seed^2 =
    var(KL_s) / S`` (NaN for one seed), ``two_se = 2 sqrt(se_mc^2 + se_seed^2)``."""
    kl, se = np.asarray(kl, np.float64), np.asarray(se, np.float64)
    n = len(kl)
    se_mc = math.sqrt(float(np.mean(se**2)) / n)
    se_seed = _seed_se(kl)
    return {
        "n_seeds": n,
        "mean": float(kl.mean()),
        "se_mc": se_mc,
        "se_seed": se_seed,
        "two_se": _two_se(se_mc, se_seed),
    }


def paired_p_value(best: ArrayLike, other: ArrayLike) -> float:
    """One-sided p-value of "``other`` is worse than ``best``": a paired t-test on
    ``d_i = best_i - other_i``, ``t = mean(d) / (std(d) / sqrt(N))``, N - 1 degrees of freedom
    (``d = 0`` everywhere gives 1)."""
    from scipy import stats

    d = np.asarray(best, np.float64) - np.asarray(other, np.float64)
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return 1.0 if d.mean() <= 0 else 0.0
    return float(stats.t.sf(d.mean() / (sd / math.sqrt(len(d))), len(d) - 1))


def z_p_value(diff: float, se: float) -> float:
    """One-sided p-value of a difference ``diff > 0`` with standard error ``se`` (normal)."""
    if se == 0.0:
        return 1.0 if diff <= 0 else 0.0
    return 0.5 * math.erfc(diff / se / math.sqrt(2.0))


def _order(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _cells(
    data: pd.DataFrame,
    expected_seeds: Iterable[int] | None,
    check_row: Callable[[tuple], None],
) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """``(dataset, flow, group)`` per cell, each with the configured seeds and finite values."""
    for (dataset, flow), group in data.groupby(["dataset", "flow"], sort=False):
        for row in group.itertuples():
            check_row(row)
        seeds = sorted(int(s) for s in group["seed"])
        if expected_seeds is not None and seeds != sorted(int(s) for s in expected_seeds):
            missing = sorted(set(map(int, expected_seeds)) - set(seeds))
            extra = sorted(set(seeds) - set(map(int, expected_seeds)))
            raise TableError(
                f"cell ({dataset}, {flow}) has seeds {seeds}; missing {missing}, unexpected "
                f"{extra} (config seeds: {sorted(map(int, expected_seeds))})"
            )
        yield dataset, flow, group


def _finite(row: tuple, *keys: str) -> None:
    for key in keys:
        value = getattr(row, key)
        if value is None or not math.isfinite(float(value)):
            raise TableError(
                f"run {row.job_key} (MLflow {row.mlflow_run_id}) has {key} = {value}: "
                "a non-finite seed is never dropped; fix or rerun it"
            )


def _bold(
    table: pd.DataFrame, p_value: Callable[[int, int], float], higher_is_better: bool
) -> pd.DataFrame:
    """Per data set: ``p_vs_best`` of every flow against the best mean, and ``bold`` for the
    best and every flow with ``p_vs_best >= ALPHA``. ``p_value(best_index, index)``."""
    table = table.copy()
    table["p_vs_best"] = math.nan
    for _, group in table.groupby("dataset", sort=False):
        best = group["mean"].idxmax() if higher_is_better else group["mean"].idxmin()
        for i in group.index:
            if i != best:
                table.loc[i, "p_vs_best"] = p_value(best, i)
    table["bold"] = ~(table["p_vs_best"] < ALPHA)
    return table


def loglik_table(
    runs: pd.DataFrame,
    per_example: dict[str, np.ndarray] | None = None,
    expected_seeds: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Long table (:data:`LOGLIK_COLUMNS`) of test log-likelihood per (data set, flow).

    Args:
        runs: :func:`runs_frame` rows; every run that is not VI takes part.
        per_example: ``{job_key: (N,) array}``; default :func:`load_per_example`.
        expected_seeds: the config's seeds; a cell with others raises :class:`TableError`.
    """
    data = runs[runs["objective"].map(on_data)]
    per_example = load_per_example(data) if per_example is None else per_example
    rows, lbar = [], []
    for dataset, flow, group in _cells(data, expected_seeds, lambda r: _finite(r, "test_loglik")):
        arrays = [np.asarray(per_example[k], np.float64) for k in group["job_key"]]
        if len({len(a) for a in arrays}) != 1:
            raise TableError(f"cell ({dataset}, {flow}): seeds scored on different test sets")
        values = np.stack(arrays)
        rows.append(
            {"dataset": dataset, "flow": flow, **loglik_cell(values), "n_capped": _n_capped(group)}
        )
        lbar.append(values.mean(axis=0))
    table = pd.DataFrame(rows, columns=LOGLIK_COLUMNS[:-2])

    def p_value(best: int, other: int) -> float:
        if len(lbar[best]) != len(lbar[other]):
            raise TableError(
                f"data set {table.loc[best, 'dataset']}: flows {table.loc[best, 'flow']} and "
                f"{table.loc[other, 'flow']} were scored on test sets of different sizes"
            )
        return paired_p_value(lbar[best], lbar[other])

    return _bold(table, p_value, higher_is_better=True)[LOGLIK_COLUMNS]


def vi_table(
    runs: pd.DataFrame, expected_seeds: Iterable[int] | None = None, log_z: dict | None = None
) -> pd.DataFrame:
    """Long table (:data:`VI_COLUMNS`) of ``KL(q || p)`` in nats per (energy target, flow).

    Args:
        runs: :func:`runs_frame` rows; the VI runs take part.
        expected_seeds: the config's seeds; a cell with others raises :class:`TableError`.
        log_z: ``{target: {"log_z", "log_z_box"}}`` (default:
            :func:`flows_tf.datasets.energy.log_z_parts` of each target).
    """
    data = runs[~runs["objective"].map(on_data)]
    rows = [
        {
            "dataset": d,
            "flow": f,
            **vi_cell(g["kl_to_target"], g["kl_to_target_se"]),
            "n_capped": _n_capped(g),
        }
        for d, f, g in _cells(
            data, expected_seeds, lambda r: _finite(r, "kl_to_target", "kl_to_target_se")
        )
    ]
    table = pd.DataFrame(rows, columns=VI_COLUMNS[:-4])

    def p_value(best: int, other: int) -> float:
        se = table["two_se"] / 2.0
        diff = table.loc[other, "mean"] - table.loc[best, "mean"]
        return z_p_value(diff, math.hypot(se[other], se[best]))

    table = _bold(table, p_value, higher_is_better=False)
    if log_z is None:
        from flows_tf.datasets.energy import log_z_parts

        log_z = {d: log_z_parts(d) for d in _order(table["dataset"])}
    table["log_z"] = table["dataset"].map(lambda d: log_z[d]["log_z"])
    table["log_z_box"] = table["dataset"].map(lambda d: log_z[d]["log_z_box"])
    return table[VI_COLUMNS]


def timing_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (data set, flow), mean over seeds of the serial timing (seconds per 1,000 samples and
    per 1,000 densities; a student's sampling speed-up over its teacher), parameters, and
    ``train_job_wall_seconds`` (``train_seconds``: the wall time of the training job's ``fit``,
    including validation, checkpoints and logging but not the job's start-up, saving or
    evaluation, taken while other jobs shared the CPU)."""
    missing = [c for c in TIMING_METRICS if c not in runs]
    if missing:
        raise TableError(f"the runs carry no serial timing ({missing}); pass runs_frame(timing=)")
    cols = [*TIMING_METRICS, "n_params", "train_seconds"]
    grouped = runs.groupby(["dataset", "flow"], sort=False)
    table = grouped[cols].mean().reset_index()
    table.insert(2, "n_seeds", grouped.size().to_numpy())
    return table.rename(columns={"train_seconds": "train_job_wall_seconds"})


def _cell_text(r: tuple) -> str:
    """``mean ± 2 SE`` (2 decimals), a dagger when the seed term is unknown (one seed)."""
    mark = DAGGER if math.isnan(r.se_seed) else ""
    mark += CAPPED if int(getattr(r, "n_capped", 0) or 0) else ""
    return f"{r.mean:.2f} ± {r.two_se:.2f}{mark}"


def _seed_counts(table: pd.DataFrame) -> str:
    counts = table["n_seeds"].astype(int)
    common = int(counts.mode().iloc[0])
    others = [
        f"{r.flow} on {r.dataset}: {r.n_seeds}"
        for r in table.itertuples()
        if int(r.n_seeds) != common
    ]
    return f"{common}" + (f" ({'; '.join(others)})" if others else "")


def table_note(table: pd.DataFrame, kind: str, conditions: dict | None = None) -> str:
    """The sentence printed under a table: what a cell is, the seed count, what bold means.

    For ``timing``, ``conditions`` is the JSON of :func:`flows_tf.timing.conditions`.
    """
    if kind == "loglik":
        text = (
            f"Seeds per cell: {_seed_counts(table)}. Cell: mean over seeds ± 2 SE, "
            "SE² = SE_test² + SE_seed² (test-set error of the seed-averaged per-example values, "
            "spread over seeds). Bold: the best flow per data set and every flow not "
            f"significantly worse (one-sided paired t-test on the test examples, {ALPHA:.0%})."
        )
    elif kind == "vi":
        walls = "; ".join(
            f"{d}: {g['log_z'].iloc[0]:.3f} (box only {g['log_z_box'].iloc[0]:.3f})"
            for d, g in table.groupby("dataset", sort=False)
        )
        text = (
            f"Seeds per cell: {_seed_counts(table)}. Cell: mean KL over seeds ± 2 SE, SE² = "
            "mean(se_MC²)/S + var(KL)/S. Bold: the lowest KL per target and every flow not "
            f"significantly worse (one-sided z-test, {ALPHA:.0%}). log Z with the soft wall "
            f"outside [-4, 4]²: {walls}."
        )
    else:
        c = conditions or {}
        threads = c.get("threads", {})
        text = (
            "Serial timing (results/timing): each data set's models in a fresh process, no "
            "other job of the workflow running; "
            f"median of {c.get('timing_repeats', '?')} interleaved rounds of "
            f"{c.get('timing_batch_size', '?')} rows, compiled, after ~0.2 s of warm-up calls, "
            "each measurement an untimed call then a ~50 ms burst, per call; threads "
            f"intra/inter {threads.get('intra_op_threads', '?')}/"
            f"{threads.get('inter_op_threads', '?')}; load average before "
            f"{c.get('load_before', '?')}, after {c.get('load_after', '?')}. "
            "train_job_wall_seconds: wall time of the training job's fit (validation, "
            "checkpoints, logging included; not its start-up, saving or evaluation) while other "
            "jobs shared the CPU."
        )
    if kind in WIDE and table["se_seed"].isna().any():
        text += f" {DAGGER} one seed: the seed-to-seed spread is not measured."
    if kind in WIDE and "n_capped" in table and (table["n_capped"] > 0).any():
        text += (
            f" {CAPPED} at least one seed ended at its step cap, not by its stopping rule "
            "(n_capped in the CSV)."
        )
    return text


def _wide(table: pd.DataFrame, bold: str) -> tuple[list[str], list[str], dict]:
    flows, datasets = _order(table["flow"]), _order(table["dataset"])
    cells = {
        (r.flow, r.dataset): bold.format(_cell_text(r)) if r.bold else _cell_text(r)
        for r in table.itertuples()
    }
    return flows, datasets, cells


def to_markdown(table: pd.DataFrame, kind: str = "loglik", note: str | None = None) -> str:
    """A Markdown table: flows as rows, data sets as columns (loglik, vi) or a long table;
    ``note`` (e.g. :func:`table_note`) follows it as a paragraph."""
    if kind in WIDE:
        flows, datasets, cells = _wide(table, "**{}**")
        lines = ["| flow | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
        for f in flows:
            lines.append(f"| {f} | " + " | ".join(cells.get((f, d), "–") for d in datasets) + " |")
        text = "\n".join(lines) + "\n"
    else:
        shown = table.astype(object).where(table.notna(), None)  # NaN printed as a dash
        text = shown.to_markdown(index=False, floatfmt=".4g", missingval="–") + "\n"
    return text + (f"\n{note}\n" if note else "")


def _tex_escape(text: str) -> str:
    return str(text).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def _tex_number(value: float | None) -> str:
    return (
        "--"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.4g}"
    )


def _tex_note(note: str) -> str:
    symbols = {"±": r"$\pm$", "²": r"$^2$", DAGGER: r"$^\dagger$", CAPPED: r"$^\ddagger$"}
    text = _tex_escape(note)
    for symbol, tex in symbols.items():
        text = text.replace(symbol, tex)
    return text


def to_latex(table: pd.DataFrame, kind: str = "loglik", note: str | None = None) -> str:
    """A booktabs LaTeX tabular (bold cells in ``\\textbf``); ``note`` as a last, spanning row."""
    if kind in WIDE:
        flows, datasets, cells = _wide(table, r"\textbf{{{}}}")
        header = ["flow", *datasets]
        body = [
            [_tex_escape(f), *(_tex_note(cells.get((f, d), "--")) for d in datasets)] for f in flows
        ]
    else:
        header = list(table.columns)
        body = [
            [_tex_escape(v) if isinstance(v, str) else _tex_number(v) for v in row]
            for row in table.itertuples(index=False)
        ]
    lines = [
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(_tex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(row) + r" \\" for row in body),
        r"\bottomrule",
    ]
    if note:
        width = len(header)
        lines.append(
            rf"\multicolumn{{{width}}}{{p{{0.9\linewidth}}}}{{\footnotesize {_tex_note(note)}}} \\"
        )
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"


def write_all(
    runs: pd.DataFrame,
    runs_path: str | Path,
    *,
    per_example: dict[str, np.ndarray] | None = None,
    expected_seeds: Iterable[int] | None = None,
    timing_conditions: dict | None = None,
    log_z: dict | None = None,
) -> dict[str, Path]:
    """Write ``runs.csv`` and ``{loglik,vi,timing}.{csv,md,tex}`` beside it; returns the paths.

    Args:
        runs: :func:`runs_frame` (with the serial timing joined).
        runs_path: where ``runs.csv`` goes; the other tables go beside it.
        per_example: passed to :func:`loglik_table` (default: read from the files).
        expected_seeds: the config's seeds, checked in every cell.
        timing_conditions: the timing's conditions JSON, summarised under the timing table.
        log_z: passed to :func:`vi_table` (default: computed for each energy target).
    """
    runs_path = Path(runs_path)
    out_dir = runs_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    runs.to_csv(runs_path, index=False)
    written = {"runs": runs_path}
    tables = {
        "loglik": loglik_table(runs, per_example, expected_seeds),
        "vi": vi_table(runs, expected_seeds, log_z),
        "timing": timing_table(runs),
    }
    for kind, table in tables.items():
        note = table_note(table, kind, timing_conditions) if len(table) else None
        paths = {ext: out_dir / f"{kind}.{ext}" for ext in ("csv", "md", "tex")}
        table.to_csv(paths["csv"], index=False)
        paths["md"].write_text(to_markdown(table, kind, note))
        paths["tex"].write_text(to_latex(table, kind, note))
        written |= {f"{kind}_{ext}": p for ext, p in paths.items()}
    return written
