"""Figures of the scalar results in the run table: log-likelihood, timing, distillation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullFormatter
from numpy.typing import ArrayLike

from flows_tf.experiment import on_data
from flows_tf.figures._base import (
    LOGLIK_LABEL,
    STUDENT,
    TIME_LABEL,
    datasets_of,
    empty_figure,
    flow_order,
    flow_style,
    grid_shape,
    new_figure,
    require_columns,
)

__all__ = ["distillation", "far_out", "loglik_vs_time"]


def _seed_summary(table: pd.DataFrame, value: str, by: list[str]) -> pd.DataFrame:
    """Mean, standard deviation over seeds (0 for one seed) and count of ``value``."""
    grouped = table.groupby(by, sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def far_out(values: ArrayLike, ratio: float = 8.0) -> np.ndarray:
    """Mask of the values that would squeeze the others into less than ``1 / ratio`` of an axis.

    Repeatedly, the value farthest from the median of the unflagged ones is flagged while the
    range of the unflagged values is more than ``ratio`` times the range without it (that range
    counted as at least 1 % of the median's magnitude); at least 3 values stay unflagged.
    """
    values = np.asarray(values, dtype=float)
    flagged = np.zeros(len(values), dtype=bool)
    while (~flagged).sum() > 3:
        rest = np.flatnonzero(~flagged)
        median = np.median(values[rest])
        extreme = rest[np.argmax(np.abs(values[rest] - median))]
        others = values[rest[rest != extreme]]
        floor = max(0.01 * abs(median), 1e-9)
        if np.ptp(values[rest]) <= ratio * max(np.ptp(others), floor):
            break
        flagged[extreme] = True
    return flagged


def _decade_limits(times: ArrayLike) -> tuple[float, float]:
    """x limits on whole decades around ``times`` (at least one decade): labelled major ticks
    only, so tick labels never crowd."""
    logs = np.log10(np.asarray(times, dtype=float))
    lo, hi = math.floor(logs.min()), math.ceil(logs.max())
    return 10.0**lo, 10.0 ** max(hi, lo + 1)


def _panel_points(sub: pd.DataFrame) -> pd.DataFrame:
    """Per flow: mean and sd over seeds of test log-likelihood, geometric-mean sampling time,
    and whether the mean is far out (:func:`far_out`) among the panel's flows."""
    points = _seed_summary(sub, "test_loglik", ["flow"]).set_index("flow")
    points["time"] = sub.groupby("flow")["sample_seconds_per_1k"].agg(
        lambda s: float(np.exp(np.log(s).mean()))
    )
    points["far_out"] = far_out(points["mean"])
    return points


def _draw_far_out(
    ax: Axes, points: pd.DataFrame, flows: list[str], edge: float, band: float
) -> None:
    """Far-out flows in a band beyond ``edge`` (below it for negative ``band``), one level each:
    the flow's marker and its value with an arrow that says which way it lies off scale."""
    arrow = "↓" if band < 0 else "↑"
    lo, hi = np.log10(ax.get_xlim())
    for level, flow in enumerate(flows):
        point, style = points.loc[flow], flow_style(flow)
        y = edge + band * (level + 0.5) / len(flows)
        ax.plot([point["time"]], [y], linestyle="none", label=flow, **style)
        name = "distilled student" if flow == STUDENT else flow
        right_half = np.log10(point["time"]) > (lo + hi) / 2  # label towards the middle
        ax.annotate(
            f"{arrow} {name}: {point['mean']:.4g} (off scale)",
            (point["time"], y),
            xytext=(-9 if right_half else 9, 0),
            textcoords="offset points",
            ha="right" if right_half else "left",
            va="center",
            fontsize="small",
            color=style["color"],
        )
    ax.axhline(edge, color="0.5", linestyle=":", linewidth=1)


def _draw_panel(ax: Axes, points: pd.DataFrame, flows: list[str]) -> None:
    """One data set: inliers with error bars set the y-range; far-out flows sit in a band at
    the panel's edge (:func:`_draw_far_out`)."""
    inside = points[~points["far_out"]]
    lo = float((inside["mean"] - inside["std"]).min())
    hi = float((inside["mean"] + inside["std"]).max())
    pad = 0.12 * max(hi - lo, 1e-3)
    present = [f for f in flows if f in points.index]
    below = [f for f in present if points.loc[f, "far_out"] and points.loc[f, "mean"] < lo]
    above = [f for f in present if points.loc[f, "far_out"] and points.loc[f, "mean"] > hi]
    band = 0.14 * (hi - lo + 2 * pad)
    ax.set_xscale("log")
    ax.set_xlim(*_decade_limits(points["time"]))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ticks = MaxNLocator(nbins=6).tick_values(lo - pad, hi + pad)
    ax.set_yticks([t for t in ticks if lo - pad <= t <= hi + pad])  # none in the bands
    ax.set_ylim(lo - pad - band * len(below), hi + pad + band * len(above))
    if below:
        _draw_far_out(ax, points, below, lo - pad, -band * len(below))
    if above:
        _draw_far_out(ax, points, above, hi + pad, band * len(above))
    for flow in (f for f in present if not points.loc[f, "far_out"]):
        point, style = points.loc[flow], flow_style(flow)
        ax.errorbar(
            point["time"],
            point["mean"],
            yerr=point["std"],
            label=flow,
            linestyle="none",
            capsize=3,
            ecolor=style["color"],
            **style,
        )
        if flow == STUDENT:
            ax.annotate(
                "distilled\nstudent",
                (point["time"], point["mean"]),
                textcoords="offset points",
                xytext=(10, -14),
                fontsize="small",
                color=style["color"],
            )


def loglik_vs_time(table: pd.DataFrame) -> Figure:
    """Test log-likelihood against the serial sampling time per 1,000 samples (log x).

    One panel per data set (maximum-likelihood and distilled runs), one marker per flow at
    the mean over seeds, vertical bars +-1 standard deviation over seeds; the time is the
    geometric mean over seeds of ``sample_seconds_per_1k`` from the serial timing step. A
    flow whose mean would squeeze the panel's other flows into less than an eighth of its
    height (:func:`far_out`) does not set the y-range: it is drawn in a band beyond a dotted
    line at the panel's edge, with an arrow showing the direction and its value. Shows the
    MAF/IAF trade-off (cheap density vs cheap sampling) and where the distilled student lands.
    """
    require_columns(
        table,
        ["dataset", "flow", "objective", "test_loglik", "sample_seconds_per_1k"],
        "loglik_vs_time",
    )
    runs = table[
        table["objective"].map(on_data)
        & np.isfinite(table["test_loglik"])
        & (table["sample_seconds_per_1k"] > 0)
    ]
    if runs.empty:
        return empty_figure(
            "Log-likelihood vs sampling time", "no runs with test_loglik and timing"
        )
    datasets = datasets_of(runs)
    nrows, ncols = grid_shape(len(datasets), 3)
    fig = new_figure(max(3.8 * ncols + 1.6, 7.0), 3.3 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.suptitle("Test log-likelihood vs sampling time (mean +- sd over seeds; serial timing)")
    flows = flow_order(runs["flow"])
    for ax, dataset in zip(axes, datasets, strict=False):
        _draw_panel(ax, _panel_points(runs[runs["dataset"] == dataset]), flows)
        ax.set_title(dataset)
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(LOGLIK_LABEL)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[len(datasets) :]:
        ax.set_axis_off()
    handles = [_legend_handle(f) for f in flows]
    fig.legend(handles=handles, loc="outside right center", title="flow", frameon=False)
    return fig


def _legend_handle(flow: str) -> Line2D:
    style = flow_style(flow)
    return Line2D(
        [],
        [],
        linestyle="none",
        label=flow,
        color=style["color"],
        marker=style["marker"],
        markeredgecolor=style["markeredgecolor"],
        markersize=min(style["markersize"], 11),
    )


def _seed_points(
    ax: Axes,
    x: float,
    values: ArrayLike,
    style: dict,
    *,
    label: str | None = None,
    offset: float = 0.0,
) -> np.ndarray:
    """One marker per seed at ``x + offset`` (spread a little), the mean as a bar."""
    values = np.asarray(values, dtype=float)
    spread = np.linspace(-0.04, 0.04, len(values)) if len(values) > 1 else np.zeros(1)
    ax.plot(x + offset + spread, values, linestyle="none", label=label, **style)
    ax.hlines(values.mean(), x + offset - 0.09, x + offset + 0.09, color=style["color"], lw=2)
    return x + offset + spread


def distillation(table: pd.DataFrame, *, teacher: str = "teacher") -> Figure:
    """Distilled student vs its teacher, one point per seed, per data set.

    Left: test log-likelihood of teacher and student, each seed's pair joined by a line (a
    symmetric-log axis when a seed falls below -100 nats, as a student that dropped modes does).
    Middle: ``KL(student || teacher)`` on the student's own samples (log scale), the reverse KL
    of Parallel WaveNet (the whole objective of ``distill``, one term of ``distill_paired``).
    Right: sampling speed-up ``teacher time / student time`` per 1,000 samples (log scale;
    1 = no gain), with the mean over seeds written beside it.

    Args:
        table: the run table; student rows have ``teacher_test_loglik``, ``kl_to_teacher`` and
            ``sampling_speedup``.
        teacher: the teacher's flow name, for the legend.
    """
    cols = ["dataset", "flow", "test_loglik", "teacher_test_loglik", "kl_to_teacher"]
    require_columns(table, [*cols, "sampling_speedup"], "distillation")
    runs = table[np.isfinite(table["teacher_test_loglik"])]  # a student's row has its teacher's
    if runs.empty:
        return empty_figure("Distillation", "no distilled student runs in the table")
    datasets = datasets_of(runs)
    fig = new_figure(max(10.0, 2.1 * len(datasets) + 7.5), 3.6)
    axes = fig.subplots(1, 3)
    fig.suptitle("Density distillation: student vs teacher (one point per seed, bar = mean)")
    for x, dataset in enumerate(datasets):
        rows = runs[runs["dataset"] == dataset].sort_values("seed")
        _distillation_points(axes, x, rows, teacher, legend=x == 0)
    _distillation_axes(axes, runs, datasets, teacher)
    return fig


def _distillation_points(
    axes: list[Axes], x: int, rows: pd.DataFrame, teacher: str, legend: bool
) -> None:
    """One data set's seeds at position ``x`` of the three panels."""
    ax_ll, ax_kl, ax_speed = axes
    teacher_style, student_style = flow_style(teacher), flow_style(STUDENT)
    ys_t, ys_s = rows["teacher_test_loglik"], rows["test_loglik"]
    label_t, label_s = (f"teacher ({teacher})", f"student ({STUDENT})") if legend else (None, None)
    xs_t = _seed_points(ax_ll, x, ys_t, teacher_style, label=label_t, offset=-0.15)
    xs_s = _seed_points(ax_ll, x, ys_s, student_style, label=label_s, offset=0.15)
    for xt, yt, xs, ys in zip(xs_t, ys_t, xs_s, ys_s, strict=True):
        ax_ll.plot([xt, xs], [yt, ys], color="0.6", linewidth=0.8, zorder=0)
    _seed_points(ax_kl, x, rows["kl_to_teacher"].clip(lower=1e-3), student_style)
    speedups = rows["sampling_speedup"].to_numpy(dtype=float)
    _seed_points(ax_speed, x, speedups, student_style)
    ax_speed.annotate(
        f"{speedups.mean():.1f}x",
        (x + 0.1, speedups.mean()),
        textcoords="offset points",
        xytext=(6, 0),
        va="center",
        fontsize="small",
    )


def _distillation_axes(
    axes: list[Axes], runs: pd.DataFrame, datasets: list[str], teacher: str
) -> None:
    """Scales, labels and ticks of the three distillation panels."""
    ax_ll, ax_kl, ax_speed = axes
    lowest = float(np.nanmin(runs[["test_loglik", "teacher_test_loglik"]].to_numpy()))
    if lowest < -100.0:
        ax_ll.set_yscale("symlog", linthresh=10.0)
    ax_ll.set_ylabel(LOGLIK_LABEL)
    ax_ll.set_title("test log-likelihood")
    ax_ll.legend(frameon=False, loc="best")
    ax_kl.set_yscale("log")
    ax_kl.set_ylabel("KL(student || teacher) (nats)")
    ax_kl.set_title("reverse KL to the teacher")
    ax_speed.axhline(1.0, color="0.3", linestyle="--", linewidth=1)  # no speed-up
    ax_speed.set_yscale("log")
    speed = runs["sampling_speedup"].to_numpy(dtype=float)
    ax_speed.set_ylim(min(0.5, speed.min() / 2), max(2.0, speed.max() * 2))
    ax_speed.set_ylabel(f"speed-up over {teacher} (time ratio)")
    ax_speed.set_title("sampling speed-up")
    for ax in axes:
        ax.set_xticks(np.arange(len(datasets)), datasets)
        ax.set_xlim(-0.6, len(datasets) - 0.4)
        ax.grid(True, axis="y", which="major", alpha=0.3)
