"""Figures of the scalar results in the run table: log-likelihood, timing, distillation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

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

__all__ = ["distillation", "loglik_vs_time"]


def _seed_summary(table: pd.DataFrame, value: str, by: list[str]) -> pd.DataFrame:
    """Mean, standard deviation over seeds (0 for one seed) and count of ``value``."""
    grouped = table.groupby(by, sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def loglik_vs_time(table: pd.DataFrame) -> Figure:
    """Test log-likelihood against sampling time per 1,000 samples (log x), per data set.

    One panel per data set (maximum-likelihood and distilled runs), one marker per flow at
    the mean over seeds, vertical bars +-1 standard deviation over seeds. Shows the MAF/IAF
    trade-off (cheap density vs cheap sampling) and where the distilled student lands.
    """
    require_columns(
        table,
        ["dataset", "flow", "objective", "test_loglik", "sample_seconds_per_1k"],
        "loglik_vs_time",
    )
    runs = table[
        (table["objective"] != "vi")
        & np.isfinite(table["test_loglik"])
        & (table["sample_seconds_per_1k"] > 0)
    ]
    if runs.empty:
        return empty_figure(
            "Log-likelihood vs sampling time", "no runs with test_loglik and timing"
        )
    datasets = datasets_of(runs)
    nrows, ncols = grid_shape(len(datasets), 3)
    fig = new_figure(3.6 * ncols + 1.6, 3.0 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.suptitle("Test log-likelihood vs sampling time (mean +- sd over seeds)")
    flows = flow_order(runs["flow"])
    for ax, dataset in zip(axes, datasets, strict=False):
        sub = runs[runs["dataset"] == dataset]
        ll = _seed_summary(sub, "test_loglik", ["flow"]).set_index("flow")
        t = sub.groupby("flow")["sample_seconds_per_1k"].agg(
            lambda s: float(np.exp(np.log(s).mean()))
        )
        for flow in flows:
            if flow not in ll.index:
                continue
            style = flow_style(flow)
            ax.errorbar(
                t[flow],
                ll.loc[flow, "mean"],
                yerr=ll.loc[flow, "std"],
                label=flow,
                linestyle="none",
                capsize=3,
                ecolor=style["color"],
                **style,
            )
            if flow == STUDENT:
                ax.annotate(
                    "distilled\nstudent",
                    (t[flow], ll.loc[flow, "mean"]),
                    textcoords="offset points",
                    xytext=(10, -14),
                    fontsize="small",
                    color=style["color"],
                )
        ax.set_xscale("log")
        ax.set_title(dataset)
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(LOGLIK_LABEL)
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.15, y=0.12)
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


def distillation(table: pd.DataFrame, *, teacher: str = "teacher") -> Figure:
    """Distilled student vs its teacher: test log-likelihood and sampling speed-up per data set.

    Left: test log-likelihood of teacher and student (mean +- sd over seeds). Right: sampling
    speed-up ``teacher time / student time`` per 1,000 samples (log scale; 1 = no gain).

    Args:
        table: the run table; student rows have ``teacher_test_loglik`` and
            ``sampling_speedup``.
        teacher: the teacher's flow name, for the legend.
    """
    cols = ["dataset", "flow", "test_loglik", "teacher_test_loglik", "sampling_speedup"]
    require_columns(table, cols, "distillation")
    mask = table["flow"] == STUDENT
    if "objective" in table:
        mask |= table["objective"] == "distill"
    runs = table[mask & np.isfinite(table["teacher_test_loglik"])]
    if runs.empty:
        return empty_figure("Distillation", "no distilled student runs in the table")
    datasets = datasets_of(runs)
    student = _seed_summary(runs, "test_loglik", ["dataset"]).set_index("dataset")
    master = _seed_summary(runs, "teacher_test_loglik", ["dataset"]).set_index("dataset")
    speedup = _seed_summary(runs, "sampling_speedup", ["dataset"]).set_index("dataset")

    fig = new_figure(max(7.0, 1.4 * len(datasets) + 5.0), 3.4)
    ax_ll, ax_speed = fig.subplots(1, 2)
    fig.suptitle("Density distillation: student vs teacher (mean +- sd over seeds)")
    x = np.arange(len(datasets))
    for offset, summary, flow, label in (
        (-0.12, master, teacher, f"teacher ({teacher})"),
        (0.12, student, STUDENT, f"student ({STUDENT})"),
    ):
        style = flow_style(flow)
        ax_ll.errorbar(
            x + offset,
            summary.loc[datasets, "mean"],
            yerr=summary.loc[datasets, "std"],
            label=label,
            linestyle="none",
            capsize=3,
            ecolor=style["color"],
            **style,
        )
    ax_ll.set_xticks(x, datasets)
    ax_ll.set_xlim(-0.6, len(datasets) - 0.4)
    ax_ll.set_ylabel(LOGLIK_LABEL)
    ax_ll.set_title("test log-likelihood")
    ax_ll.margins(y=0.25)
    ax_ll.grid(True, axis="y", alpha=0.3)
    ax_ll.legend(frameon=False, loc="best")

    style = flow_style(STUDENT)
    values = speedup.loc[datasets, "mean"].to_numpy()
    ax_speed.vlines(x, 1.0, values, color=style["color"], linewidth=2)
    ax_speed.errorbar(
        x,
        values,
        yerr=speedup.loc[datasets, "std"],
        linestyle="none",
        capsize=3,
        ecolor=style["color"],
        label=STUDENT,
        **style,
    )
    ax_speed.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="no speed-up")
    for xi, value in zip(x, values, strict=True):
        ax_speed.annotate(
            f"{value:.1f}x",
            (xi, value),
            textcoords="offset points",
            xytext=(12, 0),
            va="center",
            fontsize="small",
        )
    ax_speed.set_yscale("log")
    ax_speed.set_xticks(x, datasets)
    ax_speed.set_xlim(-0.6, len(datasets) - 0.4)
    ax_speed.set_ylim(min(0.5, values.min() / 2), max(2.0, values.max() * 2))
    ax_speed.set_ylabel(f"speed-up over {teacher} (time ratio)")
    ax_speed.set_title("sampling speed-up")
    ax_speed.grid(True, axis="y", which="both", alpha=0.3)
    return fig
