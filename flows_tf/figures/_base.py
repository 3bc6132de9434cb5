"""Shared look and plumbing of the figures: flow colours and markers, panels, run files."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flows_tf.experiment import STUDENT

__all__ = ["STUDENT", "flow_order", "flow_style", "save"]

# Canonical order and look (colour, marker) of every flow variant; unknown names follow.
STYLES = {
    "gaussian": ("#7f7f7f", "o"),
    "planar": ("#1f77b4", "v"),
    "planar_k2": ("#9ecae1", "v"),
    "planar_k8": ("#4292c6", "v"),
    "planar_k32": ("#08306b", "v"),
    "radial": ("#ff7f0e", "^"),
    "nice": ("#2ca02c", "s"),
    "realnvp": ("#9467bd", "D"),
    "glow": ("#8c564b", "P"),
    "maf": ("#e377c2", "X"),
    "iaf": ("#17becf", "p"),
    "nsf": ("#bcbd22", "h"),
    STUDENT: ("#d62728", "*"),
}
_EXTRA_COLOURS = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d"]
_EXTRA_MARKERS = ["<", ">", "d", "8", "H", "1", "2"]
LOGLIK_LABEL = "test log-likelihood (nats)"
TIME_LABEL = "sampling time per 1,000 samples (s)"


def flow_order(flows: Iterable[str]) -> list[str]:
    """Distinct flow names in the benchmark's canonical order (unknown names last, sorted)."""
    names = list(dict.fromkeys(str(f) for f in flows))
    known = [f for f in STYLES if f in names]
    return known + sorted(f for f in names if f not in STYLES)


def flow_style(flow: str) -> dict:
    """Colour, marker and size of a flow, the same in every figure.

    Example:
        >>> flow_style("maf")["marker"]
        'X'
    """
    if flow in STYLES:
        colour, marker = STYLES[flow]
    else:
        i = sum(ord(c) for c in flow)  # deterministic, independent of the other flows present
        colour, marker = _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)], _EXTRA_MARKERS[i % 7]
    student = flow == STUDENT
    return {
        "color": colour,
        "marker": marker,
        "markersize": 14 if student else 7,
        "markeredgecolor": "black" if student else colour,
        "zorder": 5 if student else 3,
    }


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def empty_figure(title: str, message: str) -> Figure:
    """A figure saying that the table holds no runs for it (keeps the set of outputs fixed)."""
    fig = new_figure(5, 2)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


def require_columns(table: pd.DataFrame, columns: Iterable[str], figure: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{figure}: run table lacks column(s) {missing}; has {list(table.columns)}"
        )


def datasets_of(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["dataset"].astype(str)))


def first_seed(table: pd.DataFrame) -> pd.DataFrame:
    """One run per (dataset, flow): the one with the smallest seed."""
    return table.sort_values("seed", kind="stable").drop_duplicates(["dataset", "flow"])


def run_file(row: pd.Series | Mapping[str, object], name: str) -> Path:
    return Path(str(row["model_dir"])) / name


def grid_shape(nrows_cols: int, max_cols: int = 4) -> tuple[int, int]:
    ncols = min(max_cols, nrows_cols)
    return math.ceil(nrows_cols / ncols), ncols


def label_panel(ax: Axes, text: str) -> None:
    ax.set_title(text, fontsize="medium")


def save(fig: Figure, stem: str | Path, *, dpi: int = 150) -> list[Path]:
    """Write ``{stem}.png`` (report) and ``{stem}.pdf`` (paper); returns both paths.

    Example:
        >>> save(loglik_vs_time(table), "results/figures/loglik_vs_time")  # doctest: +SKIP
        [PosixPath('results/figures/loglik_vs_time.png'), PosixPath('...pdf')]
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    for path in paths:
        fig.savefig(
            path,
            dpi=dpi,
            metadata={"Creator": "flowbench"}
            if path.suffix == ".png"
            else {"Creator": "flowbench", "CreationDate": None},
        )
    return paths
