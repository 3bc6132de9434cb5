"""Figures of what each run wrote besides its metrics: training histories and samples."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import Colormap, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flows_tf.datasets.digits import to_pixel_space
from flows_tf.figures._base import (
    STUDENT,
    datasets_of,
    empty_figure,
    first_seed,
    flow_order,
    flow_style,
    grid_shape,
    label_panel,
    new_figure,
    require_columns,
    run_file,
)

__all__ = ["digit_samples", "training_curves"]


def _read_history(path: Path) -> pd.DataFrame:
    try:
        history = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"history {path}: unreadable ({err})") from err
    missing = [c for c in ("step", "val_loglik") if c not in history.columns]
    if missing:
        raise ValueError(f"history {path}: missing column(s) {missing}")
    return history


def training_curves(table: pd.DataFrame) -> Figure:
    """Validation log-likelihood against training step, one panel per data set.

    One line per flow (the mean over seeds at each step, a band from the lowest to the highest
    seed); runs without validation data (VI) are left out. The y range starts at the 5th
    percentile of the plotted values so that the first, very poor steps do not flatten the rest.
    """
    require_columns(table, ["dataset", "flow", "model_dir"], "training_curves")
    curves = []
    for _, row in table.iterrows():
        path = run_file(row, "history.csv")
        if not path.exists():
            continue
        history = _read_history(path)[["step", "val_loglik"]].dropna()
        if history.empty:
            continue
        curves.append(history.assign(dataset=row["dataset"], flow=row["flow"]))
    if not curves:
        return empty_figure(
            "Training curves", "no runs with validation log-likelihood in history.csv"
        )
    data = pd.concat(curves, ignore_index=True)
    datasets = datasets_of(data)
    flows = flow_order(data["flow"])
    nrows, ncols = grid_shape(len(datasets), 3)
    fig = new_figure(3.6 * ncols + 1.6, 3.0 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.suptitle("Validation log-likelihood during training (mean over seeds, band = range)")
    for ax, dataset in zip(axes, datasets, strict=False):
        sub = data[data["dataset"] == dataset]
        for flow in flows:
            curve = sub[sub["flow"] == flow].groupby("step")["val_loglik"]
            if not len(curve):
                continue
            summary = curve.agg(["mean", "min", "max"])
            style = flow_style(flow)
            ax.plot(
                summary.index,
                summary["mean"],
                color=style["color"],
                label=flow,
                linewidth=2.2 if flow == STUDENT else 1.5,
            )
            ax.fill_between(
                summary.index,
                summary["min"],
                summary["max"],
                color=to_rgba(style["color"], 0.18),
                linewidth=0,
            )
        values = sub["val_loglik"].to_numpy()
        lo, hi = np.percentile(values, 5), values.max()
        pad = 0.08 * max(hi - lo, 1e-6)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(dataset)
        ax.set_xlabel("training step")
        ax.set_ylabel("validation log-likelihood (nats)")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(datasets) :]:
        ax.set_axis_off()
    handles = [Line2D([], [], color=flow_style(f)["color"], linewidth=2, label=f) for f in flows]
    fig.legend(handles=handles, loc="outside right center", title="flow", frameon=False)
    return fig


def _load_meta(data_root: str | Path | None, dataset: str) -> dict | None:
    """``{data_root}/{dataset}/meta.json`` through ``flows_tf.datasets.read_meta``, if present."""
    if data_root is None or not (Path(data_root) / dataset / "meta.json").exists():
        return None
    from flows_tf.datasets import read_meta

    return read_meta(Path(data_root) / dataset)


def _image_shape(meta: dict | None, dim: int) -> tuple[int, int] | None:
    """(height, width) of the images of a data set, or None if it is not an image data set.

    From the meta's ``pixel_space["image_shape"]``; without a meta, a square ``dim >= 16``.
    """
    if meta is not None:
        shape = (meta.get("pixel_space") or {}).get("image_shape")
        if not shape:
            return None
        h, w = int(shape[0]), int(shape[1])
        if int(np.prod(shape)) != dim:
            raise ValueError(
                f"{meta.get('name')}: samples have {dim} values per row, the meta's "
                f"image_shape {list(shape)} has {int(np.prod(shape))}"
            )
        return h, w
    side = math.isqrt(dim)
    return (side, side) if side * side == dim and dim >= 16 else None


def _to_pixels(meta: dict | None, z: np.ndarray) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Model-space samples z -> dequantized pixels in ``[0, levels)``, with that range.

    Without ``pixel_space`` in the meta the samples are returned as they are (range None).
    """
    pixel = (meta or {}).get("pixel_space")
    if not pixel:
        return np.asarray(z, dtype=float), None
    return to_pixel_space(z, pixel), (0.0, float(pixel["levels"]))


def _mosaic(images: np.ndarray, shape: tuple[int, int], per_row: int) -> np.ndarray:
    """(n, h*w) images -> one (rows*(h+1)-1, per_row*(w+1)-1) mosaic, separated by NaN."""
    h, w = shape
    n = images.shape[0]
    rows = math.ceil(n / per_row)
    out = np.full((rows * (h + 1) - 1, per_row * (w + 1) - 1), np.nan)
    for i in range(n):
        r, c = divmod(i, per_row)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[i].reshape(h, w)
    return out


def digit_samples(
    table: pd.DataFrame,
    *,
    data_root: str | Path | None = None,
    metas: Mapping[str, dict] | None = None,
    n: int = 64,
) -> Figure:
    """Samples from each image flow as an 8 x 8 mosaic, rows = image data sets, columns = flows.

    Samples (``samples.npy``, model space) are mapped back to pixel space with the data set's
    ``pixel_space`` meta when known (``metas`` or ``{data_root}/{dataset}/meta.json``) and drawn
    dark-on-light on that pixel range; otherwise they are drawn as they are on their own range.

    Args:
        table: the run table; one seed (the smallest) per (data set, flow) is drawn.
        data_root: folder holding ``{dataset}/meta.json``.
        metas: meta dicts by data set (take precedence over ``data_root``).
        n: samples per panel (the first ``n`` of ``samples.npy``).
    """
    require_columns(table, ["dataset", "flow", "seed", "model_dir"], "digit_samples")
    panels: dict[str, list[tuple[str, np.ndarray, tuple | None, tuple]]] = {}
    for _, row in first_seed(table).iterrows():
        path = run_file(row, "samples.npy")
        if not path.exists():
            continue
        dataset = str(row["dataset"])
        meta = (metas or {}).get(dataset) or _load_meta(data_root, dataset)
        samples = np.load(path)
        samples = samples.reshape(samples.shape[0], -1)
        shape = _image_shape(meta, samples.shape[1])
        if shape is None:
            continue
        pixels, limits = _to_pixels(meta, samples[:n])
        panels.setdefault(dataset, []).append((str(row["flow"]), pixels, limits, shape))
    if not panels:
        return empty_figure("Image samples", "no image data set runs with samples.npy in the table")
    flows = flow_order(f for cols in panels.values() for f, *_ in cols)
    fig = new_figure(2.0 * len(flows) + 0.4, 2.2 * len(panels) + 0.4)
    axes = fig.subplots(len(panels), len(flows), squeeze=False)
    in_pixels = all(limits is not None for cols in panels.values() for _, _, limits, _ in cols)
    fig.suptitle("Samples from each flow" + (" (pixel space)" if in_pixels else " (model space)"))
    for r, (dataset, cols) in enumerate(panels.items()):
        by_flow = {f: rest for f, *rest in cols}
        for c, flow in enumerate(flows):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                label_panel(ax, flow)
            if flow not in by_flow:
                ax.set_axis_off()
                continue
            pixels, limits, shape = by_flow[flow]
            vmin, vmax = limits if limits else (np.nanmin(pixels), np.nanmax(pixels))
            mosaic = _mosaic(np.clip(pixels, vmin, vmax), shape, math.ceil(math.sqrt(len(pixels))))
            ax.imshow(mosaic, cmap=_gray_with_gaps(), vmin=vmin, vmax=vmax, interpolation="nearest")
        axes[r, 0].set_ylabel(dataset, fontsize="large")
    return fig


def _gray_with_gaps() -> Colormap:
    from matplotlib import colormaps

    return colormaps["gray_r"].with_extremes(bad="white")
