"""Paper figures as functions of the tidy run table and of the files each run wrote.

Every figure function takes the table ``results/tables/runs.csv`` (one row per job, with a
``model_dir`` column) as a :class:`pandas.DataFrame`, reads what it needs from
``{model_dir}/history.csv``, ``{model_dir}/density_grid.npz`` (``xs``, ``ys``, ``logp``) and
``{model_dir}/samples.npy``, and returns a :class:`matplotlib.figure.Figure` drawn on the Agg
canvas (no pyplot state, no TensorFlow, no training code). :func:`save` writes PNG and PDF.

Flows keep one colour and marker in every figure (:func:`flow_style`); the distilled student
``iaf_student`` is drawn as a large red star.

Example:
    >>> import pandas as pd
    >>> table = pd.read_csv("results/tables/runs.csv")  # doctest: +SKIP
    >>> save(loglik_vs_time(table), "results/figures/loglik_vs_time")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from flows_tf.figures._base import STUDENT, flow_order, flow_style, save
from flows_tf.figures.densities import density_grid, read_density_grid, vi_grid
from flows_tf.figures.results import distillation, far_out, loglik_vs_time
from flows_tf.figures.runs import digit_samples, training_curves

__all__ = [
    "FIGURES",
    "STUDENT",
    "density_grid",
    "digit_samples",
    "distillation",
    "far_out",
    "figures_for_config",
    "flow_order",
    "flow_style",
    "loglik_vs_time",
    "make_figures",
    "read_density_grid",
    "save",
    "training_curves",
    "vi_grid",
]

log = logging.getLogger(__name__)

FIGURES: dict[str, Callable[..., Figure]] = {
    "density_grid": density_grid,
    "vi_grid": vi_grid,
    "loglik_vs_time": loglik_vs_time,
    "distillation": distillation,
    "training_curves": training_curves,
    "digit_samples": digit_samples,
}


def _kind(dataset: str) -> str | None:
    from flows_tf.datasets import DATASETS

    info = DATASETS.get(dataset)
    return None if info is None else info.kind


def figures_for_config(config: dict) -> dict[str, str]:
    """The figures a config's grid can fill, each with a sentence naming the runs it draws.

    ``density_grid`` needs maximum-likelihood runs on 2-D toy data, ``vi_grid`` VI runs,
    ``distillation`` a distilled student, ``digit_samples`` an image data set; the others any
    maximum-likelihood run. Pure Python: the workflow calls it to list its outputs.

    Example:
        >>> figures_for_config({"experiment": "e", "mle": {"datasets": ["two_moons"],
        ...                     "flows": ["maf"]}, "flows": {"maf": {}}})["loglik_vs_time"]
        'experiment e: 1 run (data sets: two_moons; flows: maf; seeds: 0)'
    """
    from flows_tf import experiment

    jobs = experiment.jobs(config)
    fitted = [j for j in jobs if j.on_data]
    selections = {
        "density_grid": [j for j in fitted if _kind(j.dataset) == "toy"],
        "vi_grid": [j for j in jobs if not j.on_data],
        "loglik_vs_time": fitted,
        "distillation": [j for j in jobs if j.teacher],
        "training_curves": fitted,
        "digit_samples": [j for j in fitted if _kind(j.dataset) == "image"],
    }

    def describe(selected: list) -> str:
        def names(attr: str) -> str:
            return ", ".join(str(v) for v in dict.fromkeys(getattr(j, attr) for j in selected))

        n = len(selected)
        return (
            f"experiment {config.get('experiment', '?')}: {n} run{'s' * (n != 1)} "
            f"(data sets: {names('dataset')}; flows: {names('flow')}; seeds: {names('seed')})"
        )

    return {name: describe(sel) for name, sel in selections.items() if sel}


def make_figures(
    table: pd.DataFrame | str | Path,
    out_dir: str | Path,
    *,
    names: Iterable[str] | None = None,
    options: Mapping[str, dict] | None = None,
) -> dict[str, list[Path]]:
    """Draw and save every figure of :data:`FIGURES` (or ``names``) into ``out_dir``.

    Args:
        table: the run table or the path of ``runs.csv``.
        out_dir: folder for ``{name}.png`` and ``{name}.pdf``.
        names: which figures (default: all); unknown names raise ``ValueError``.
        options: keyword arguments per figure name, e.g. ``{"digit_samples": {"data_root": p}}``.

    Returns:
        ``{figure name: [png path, pdf path]}``.
    """
    if not isinstance(table, pd.DataFrame):
        path = Path(table)
        if not path.exists():
            raise FileNotFoundError(f"run table {path} does not exist")
        table = pd.read_csv(path)
    names = list(FIGURES if names is None else names)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; known: {sorted(FIGURES)}")
    options = options or {}
    out = {}
    for name in names:
        log.info("figure %s", name)
        out[name] = save(FIGURES[name](table, **options.get(name, {})), Path(out_dir) / name)
    return out
