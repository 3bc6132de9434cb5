"""Density images of 2-D flows: learned densities against the truth, and VI fits.

Both figures read ``{model_dir}/density_grid.npz`` (``xs``, ``ys``, ``logp[i, j] =
log q(xs[j], ys[i])``) and share one colour scale per row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from flows_tf.experiment import on_data
from flows_tf.figures._base import (
    datasets_of,
    empty_figure,
    first_seed,
    flow_order,
    label_panel,
    new_figure,
    require_columns,
    run_file,
)

__all__ = ["density_grid", "read_density_grid", "vi_grid"]


def read_density_grid(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xs, ys, logp)`` of a run's ``density_grid.npz``, ``logp`` of shape ``(len(ys), len(xs))``.

    Accepts ``xs``/``ys`` as 1-D axes or as meshgrids, and ``logp`` flat or on the grid.

    Raises:
        ValueError: the file is missing a key, or the shapes do not form a grid.
    """
    path = Path(path)
    try:
        with np.load(path) as npz:
            xs, ys, logp = (np.asarray(npz[k], dtype=float) for k in ("xs", "ys", "logp"))
    except KeyError as err:
        raise ValueError(f"density grid {path}: missing array {err}") from err
    except (OSError, ValueError) as err:
        raise ValueError(f"density grid {path}: unreadable ({err})") from err
    if xs.ndim == 2 and ys.ndim == 2:  # meshgrid, 'xy' indexing
        xs, ys = xs[0], ys[:, 0]
    if logp.size != xs.size * ys.size:
        raise ValueError(
            f"density grid {path}: logp has {logp.size} values for a {ys.size} x {xs.size} grid"
        )
    return xs, ys, logp.reshape(ys.size, xs.size)


def _grid_points(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def _panel(title: str, grid: tuple | None) -> tuple[str, np.ndarray | None, tuple | None]:
    """``(title, density exp(logp), extent)`` of a grid ``(xs, ys, logp)``, or a blank panel."""
    if grid is None:
        return title, None, None
    xs, ys, logp = grid
    return title, np.exp(logp), (xs[0], xs[-1], ys[0], ys[-1])


def _default_true_log_prob() -> Callable | None:
    try:
        from flows_tf import datasets
    except ImportError:
        return None
    return getattr(datasets, "true_log_prob", None)


def _default_target_log_prob() -> Callable | None:
    """``name, points -> normalised log density`` from ``flows_tf.datasets.energy_target``."""
    try:
        from flows_tf import datasets
    except ImportError:
        return None
    energy_target = getattr(datasets, "energy_target", None)
    if energy_target is None:
        return None

    def target(name: str, points: np.ndarray) -> np.ndarray:
        fn = energy_target(name)
        numpy_fn = getattr(fn, "numpy_log_prob", None)  # the same target without TensorFlow
        values = numpy_fn(points) if numpy_fn is not None else fn(points.astype(np.float32))
        return np.asarray(values, dtype=float) - float(fn.log_z)

    return target


def _density_panels(
    rows: list[tuple[str, list[tuple[str, np.ndarray | None, tuple | None]]]],
    colorbar_label: str,
    title: str,
) -> Figure:
    """Rows of density images sharing one colour scale per row, one colour bar per row.

    ``rows`` is ``[(row label, [(column title, density or None, extent), ...]), ...]`` with
    ``extent = (x0, x1, y0, y1)``. The first column's density (a truth or target) sets the
    row's upper colour limit when present, otherwise the median of the panels' maxima (so one
    collapsed spike cannot wash out the row); panels above it saturate (colour bar arrow).
    """
    ncols = max(len(cols) for _, cols in rows)
    fig = new_figure(1.7 * ncols + 0.9, 1.75 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    fig.suptitle(title)
    for r, (label, cols) in enumerate(rows):
        maxima = [float(np.nanmax(d)) for _, d, _ in cols if d is not None and np.isfinite(d).any()]
        reference = cols[0][1]
        if reference is not None and np.isfinite(reference).any():
            vmax = float(np.nanmax(reference))
        else:
            vmax = float(np.median(maxima)) if maxima else 1.0
        image = None
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
            if c >= len(cols):
                ax.set_axis_off()
                continue
            name, density, extent = cols[c]
            if r == 0:
                label_panel(ax, name)
            if density is None:
                ax.text(
                    0.5, 0.5, "n/a", ha="center", va="center", color="0.5", transform=ax.transAxes
                )
                for spine in ax.spines.values():
                    spine.set_color("0.8")
                continue
            image = ax.imshow(
                np.nan_to_num(density, nan=0.0),
                origin="lower",
                extent=extent,
                cmap="viridis",
                vmin=0.0,
                vmax=vmax,
                interpolation="nearest",
            )
        axes[r, 0].set_ylabel(label, fontsize="large")
        if image is not None:
            clipped = bool(maxima) and max(maxima) > vmax * 1.001
            fig.colorbar(
                image,
                ax=list(axes[r, :]),
                shrink=0.9,
                pad=0.02,
                label=colorbar_label,
                extend="max" if clipped else "neither",
            )
    return fig


def density_grid(
    table: pd.DataFrame,
    *,
    true_log_prob: Callable | None = None,
    dataset_options: Mapping[str, dict] | None = None,
    flows: list[str] | None = None,
) -> Figure:
    """Learned densities of the 2-D data sets: rows = data sets, columns = truth then each flow.

    Uses the maximum-likelihood (and distilled) runs whose model folder holds a
    ``density_grid.npz``, one seed per (data set, flow) (the smallest). Each row shares one
    grid and one colour scale ``[0, max p_true]`` (density, not log density); the column of
    true densities is drawn when ``true_log_prob(name, points (N, 2)) -> (N,) | None`` knows a
    closed form for at least one row (default: ``flows_tf.datasets.true_log_prob`` if present).

    Args:
        table: the run table (columns dataset, flow, seed, objective, model_dir).
        true_log_prob: ``(name, points, **options) -> log p or None``; ``False`` to omit truth.
        dataset_options: options per data set passed to ``true_log_prob`` (as in the config).
        flows: the columns to draw, in order (default: every flow with a grid, canonical order).
    """
    require_columns(table, ["dataset", "flow", "seed", "objective", "model_dir"], "density_grid")
    runs = first_seed(table[table["objective"].map(on_data)])
    runs = runs[[run_file(r, "density_grid.npz").exists() for _, r in runs.iterrows()]]
    if runs.empty:
        return empty_figure("Learned densities", "no 2-D runs with a density_grid.npz in the table")
    columns = flows or flow_order(runs["flow"])
    if true_log_prob is None:
        true_log_prob = _default_true_log_prob()
    options = dataset_options or {}

    grids, truths = {}, {}
    for dataset in datasets_of(runs):
        for _, row in runs[runs["dataset"] == dataset].iterrows():
            grids[dataset, row["flow"]] = read_density_grid(run_file(row, "density_grid.npz"))
        xs, ys, _ = next(g for (d, _), g in grids.items() if d == dataset)
        truths[dataset] = (None, None)
        if true_log_prob:
            values = true_log_prob(dataset, _grid_points(xs, ys), **options.get(dataset, {}))
            if values is not None:
                logp = np.asarray(values, dtype=float).reshape(ys.size, xs.size)
                truths[dataset] = _panel("true density", (xs, ys, logp))[1:]
    with_truth = any(t[0] is not None for t in truths.values())

    rows = []
    for dataset in datasets_of(runs):
        cols = [("true density", *truths[dataset])] if with_truth else []
        cols += [_panel(flow, grids.get((dataset, flow))) for flow in columns]
        rows.append((dataset, cols))
    return _density_panels(rows, "density", "Learned densities on 2-D data sets")


def vi_grid(
    table: pd.DataFrame,
    *,
    target_log_prob: Callable | None = None,
    flows: list[str] | None = None,
) -> Figure:
    """Variational fits to the energy targets, after Rezende and Mohamed (2015), Figure 3.

    Rows are the targets ``u1``..``u4``; the first column is the normalised target
    ``exp(-U(z)) / Z``, then each flow's density ``q(z)`` on the same grid and colour scale.

    Args:
        table: the run table; rows of the VI section (not ``on_data``) and a ``density_grid.npz``.
        target_log_prob: ``(name, points (N, 2)) -> (N,)`` normalised target log density
            (default: ``flows_tf.datasets.energy_target(name)`` minus its ``log_z``).
        flows: the columns to draw (default: every VI flow, canonical order, e.g. planar_k2,
            planar_k8, planar_k32, radial, nice, iaf).

    References:
        Rezende and Mohamed (2015), Variational Inference with Normalizing Flows, arXiv:1505.05770.
    """
    require_columns(table, ["dataset", "flow", "seed", "objective", "model_dir"], "vi_grid")
    runs = first_seed(table[~table["objective"].map(on_data)])
    runs = runs[[run_file(r, "density_grid.npz").exists() for _, r in runs.iterrows()]]
    if runs.empty:
        return empty_figure(
            "Variational inference", "no VI runs with a density_grid.npz in the table"
        )
    columns = flows or flow_order(runs["flow"])
    if target_log_prob is None:
        target_log_prob = _default_target_log_prob()
    rows = []
    for dataset in sorted(datasets_of(runs)):
        grids = {
            r["flow"]: read_density_grid(run_file(r, "density_grid.npz"))
            for _, r in runs[runs["dataset"] == dataset].iterrows()
        }
        xs, ys, _ = next(iter(grids.values()))
        target = None
        if target_log_prob is not None:
            values = np.asarray(target_log_prob(dataset, _grid_points(xs, ys)), dtype=float)
            target = (xs, ys, values.reshape(ys.size, xs.size))
        cols = [_panel("target exp(-U)", target)]
        cols += [_panel(flow, grids.get(flow)) for flow in columns]
        rows.append((dataset.upper() if len(dataset) <= 3 else dataset, cols))
    return _density_panels(rows, "density", "Variational inference on energy targets")
