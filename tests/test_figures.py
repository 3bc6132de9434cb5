"""Figures on a small hand-made run table and hand-made per-run files (no TensorFlow)."""

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from sklearn.datasets import load_digits

from flows_tf import figures
from flows_tf.datasets.digits import pixel_space_info, to_model_space

GRID = np.linspace(-4.0, 4.0, 25)  # holds 0, where the peaks are
MLE_FLOWS = ["gaussian", "maf", "iaf"]
VI_FLOWS = ["planar_k2", "planar_k8", "radial"]
SEEDS = [0, 1]
# dequantized 8x8 digits in [0, 17), as the data package makes them
PIXELS = load_digits().data[:90] + np.random.default_rng(1).random((90, 64))


def gaussian_log_prob(points, loc=(0.0, 0.0), scale=1.0):
    z = (np.asarray(points) - np.asarray(loc)) / scale
    return -0.5 * (z**2).sum(axis=1) - np.log(2 * np.pi * scale**2)


def write_grid(path, loc, scale):
    gx, gy = np.meshgrid(GRID, GRID)
    logp = gaussian_log_prob(np.stack([gx.ravel(), gy.ravel()], 1), loc, scale)
    np.savez(path, xs=GRID, ys=GRID, logp=logp.reshape(GRID.size, GRID.size))


def true_log_prob(name, points):
    """Closed form for eight_gaussians only (stands in for flows_tf.datasets.true_log_prob)."""
    return gaussian_log_prob(points, scale=0.5) if name == "eight_gaussians" else None


def target_log_prob(name, points):
    return gaussian_log_prob(points, loc=(1.0, 0.0), scale=0.7)


def make_runs(root):
    """Two 2-D data sets, digits, two energy targets, a distilled student; two seeds each."""
    rows = []
    rng = np.random.default_rng(0)

    def add(dataset, flow, seed, objective, **metrics):
        model_dir = root / "models" / dataset / flow / f"seed{seed}"
        model_dir.mkdir(parents=True)
        rows.append(
            dict(
                dataset=dataset,
                flow=flow,
                builder=flow.split("_")[0],
                seed=seed,
                objective=objective,
                model_dir=str(model_dir),
                **metrics,
            )
        )
        return model_dir

    for i, flow in enumerate(MLE_FLOWS):
        for seed in SEEDS:
            for dataset in ("eight_gaussians", "two_moons", "digits"):
                model_dir = add(
                    dataset,
                    flow,
                    seed,
                    "mle",
                    test_loglik=-3.0 + i + 0.1 * seed,
                    sample_seconds_per_1k=10.0 ** (i - 2) * (1 + 0.1 * seed),
                )
                steps = np.arange(0, 500, 50)
                pd.DataFrame(
                    {
                        "step": steps,
                        "epoch": steps // 100,
                        "train_loss": 1.0,
                        "val_loglik": -3.0 + i * (1 - np.exp(-steps / 100.0)) - seed * 0.05,
                    }
                ).to_csv(model_dir / "history.csv", index=False)
                if dataset == "digits":
                    z = to_model_space(PIXELS[i : i + 80], logit=True, alpha=0.05)
                    np.save(model_dir / "samples.npy", z.astype(np.float32))
                else:
                    write_grid(model_dir / "density_grid.npz", (0.2 * i, 0.0), 0.4 + 0.3 * i)
                    np.save(model_dir / "samples.npy", rng.normal(size=(50, 2)))
    for seed in SEEDS:
        model_dir = add(
            "eight_gaussians",
            figures.STUDENT,
            seed,
            "distill",
            test_loglik=-1.2 - 0.1 * seed,
            sample_seconds_per_1k=0.01,
            teacher_test_loglik=-1.0,
            kl_to_teacher=0.05 + 0.1 * seed,
            sampling_speedup=12.0 + seed,
        )
        write_grid(model_dir / "density_grid.npz", (0.0, 0.0), 0.6)
        for dataset in ("u1", "u2"):
            for i, flow in enumerate(VI_FLOWS):
                model_dir = add(
                    dataset,
                    flow,
                    seed,
                    "vi",
                    test_loglik=np.nan,
                    sample_seconds_per_1k=0.001,
                    elbo=-1.0,
                )
                write_grid(model_dir / "density_grid.npz", (1.0, 0.0), 0.5 + 0.2 * i)
                pd.DataFrame(
                    {
                        "step": [0, 10],
                        "epoch": [0, 0],
                        "train_loss": [2.0, 1.0],
                        "val_loglik": [np.nan, np.nan],
                    }
                ).to_csv(model_dir / "history.csv", index=False)
    return pd.DataFrame(rows)


DIGITS_META = {
    "name": "digits",
    "kind": "image",
    "shape": {"train": [80, 64]},
    "sha256": "0" * 64,
    "pixel_space": pixel_space_info(logit=True, alpha=0.05),
}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("runs"))


def images(fig):
    return [ax.images[0] for ax in fig.axes if ax.images]


def test_density_grid_rows_columns_and_shared_scale(table):
    fig = figures.density_grid(table, true_log_prob=true_log_prob)
    # rows: eight_gaussians, two_moons; columns: truth + gaussian, maf, iaf, iaf_student
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 5
    titles = [ax.get_title() for ax in panels[:5]]
    assert titles == ["true density", "gaussian", "maf", "iaf", figures.STUDENT]
    assert [panels[0].get_ylabel(), panels[5].get_ylabel()] == ["eight_gaussians", "two_moons"]
    ims = images(fig)
    assert len(ims) == 5 + 3  # two_moons has no truth and no student
    first_row = {im.get_clim() for im in ims[:5]}
    second_row = {im.get_clim() for im in ims[5:]}
    assert len(first_row) == 1 and len(second_row) == 1
    # the row's scale is the truth's maximum: N(0, 0.5^2) peaks at 1 / (2 pi 0.25)
    peak = np.exp(true_log_prob("eight_gaussians", np.zeros((1, 2))))[0]
    assert first_row.pop() == pytest.approx((0.0, peak), rel=1e-2)
    assert [panels[5].texts[0].get_text(), panels[9].texts[0].get_text()] == ["n/a", "n/a"]
    assert sum(1 for ax in fig.axes if ax.get_label() == "<colorbar>") == 2


def test_density_grid_without_truth_has_no_truth_column(table):
    fig = figures.density_grid(table, true_log_prob=False)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "true density" not in titles and len(images(fig)) == 4 + 3


def test_density_grid_rejects_inconsistent_grid(tmp_path):
    np.savez(tmp_path / "g.npz", xs=GRID, ys=GRID, logp=np.zeros(7))
    with pytest.raises(ValueError, match="logp has 7 values"):
        figures.read_density_grid(tmp_path / "g.npz")
    np.savez(tmp_path / "h.npz", xs=GRID, logp=np.zeros(7))
    with pytest.raises(ValueError, match="missing array"):
        figures.read_density_grid(tmp_path / "h.npz")


def test_vi_grid_targets_then_flows(table):
    fig = figures.vi_grid(table, target_log_prob=target_log_prob)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 4
    assert [ax.get_title() for ax in panels[:4]] == ["target exp(-U)", *VI_FLOWS]
    assert [panels[0].get_ylabel(), panels[4].get_ylabel()] == ["U1", "U2"]
    ims = images(fig)
    assert len(ims) == 8 and len({im.get_clim() for im in ims[:4]}) == 1
    target_peak = np.exp(target_log_prob("u1", np.array([[1.0, 0.0]])))[0]
    assert ims[0].get_clim()[1] == pytest.approx(target_peak, rel=0.05)


def test_loglik_vs_time_one_marker_per_flow(table):
    fig = figures.loglik_vs_time(table)
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert [ax.get_title() for ax in panels] == ["eight_gaussians", "two_moons", "digits"]
    for ax in panels:
        assert ax.get_xscale() == "log"
        assert ax.get_xlabel() == "sampling time per 1,000 samples (s)"
        assert ax.get_ylabel() == "test log-likelihood (nats)"
    for ax, expected in zip(
        panels, [MLE_FLOWS + [figures.STUDENT], MLE_FLOWS, MLE_FLOWS], strict=True
    ):
        assert [c.get_label() for c in ax.containers] == expected  # one marker per flow
        assert all(len(c.lines[0].get_xdata()) == 1 for c in ax.containers)
    markers = {c.get_label(): c.lines[0] for c in panels[0].containers}
    maf = markers["maf"]
    # mean over seeds (-2.0, -1.9) and geometric mean of the times (0.1, 0.11)
    assert maf.get_ydata()[0] == pytest.approx(-1.95)
    assert maf.get_xdata()[0] == pytest.approx(np.sqrt(0.1 * 0.11))
    bar = panels[0].containers[1].lines[2][0].get_segments()[0]  # maf's error bar: +-1 sd
    assert bar[:, 1] == pytest.approx(
        [-1.95 - np.std([-2.0, -1.9], ddof=1), -1.95 + np.std([-2.0, -1.9], ddof=1)]
    )
    student = markers[figures.STUDENT]
    assert student.get_markersize() > maf.get_markersize()
    assert any("student" in t.get_text() for t in panels[0].texts)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == MLE_FLOWS + [figures.STUDENT]


def test_loglik_vs_time_keeps_a_far_out_flow_off_the_y_range(table):
    far = table.copy()
    student = far["flow"] == figures.STUDENT
    far.loc[student, "test_loglik"] = [-3.9, -10_730.0]  # a collapsed seed: mean -5366.95
    far = pd.concat([far, far[far["flow"] == "maf"].assign(flow="nsf", test_loglik=-2.5)])
    ax = next(a for a in figures.loglik_vs_time(far).axes if a.get_title() == "eight_gaussians")
    low, high = ax.get_ylim()
    assert low > -10.0  # the panel is not flattened by the outlier
    assert figures.STUDENT not in [c.get_label() for c in ax.containers]
    marker = next(line for line in ax.lines if line.get_label() == figures.STUDENT)
    assert low < marker.get_ydata()[0] < min(c.lines[0].get_ydata()[0] for c in ax.containers)
    assert any("-5367 (off scale)" in t.get_text() and "↓" in t.get_text() for t in ax.texts)
    edge = min(line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == ":")
    assert all(tick >= edge for tick in ax.get_yticks())  # no y tick inside the outlier band
    # x: whole decades, labelled majors only, so that tick labels cannot crowd
    lo, hi = np.log10(ax.get_xlim())
    assert lo == int(lo) and hi == int(hi) and hi - lo >= 1
    assert all(t.get_text() == "" for t in ax.get_xticklabels(minor=True))


def test_far_out_flags_only_values_that_would_squeeze_the_others():
    # -3598 squeezes the rest (range 22) 163-fold, then -25 squeezes -3.0 ... -4.6 (range 1.6)
    # 13.75-fold; without them, -4.6 only widens the range 2.7-fold: it stays on the axis
    values = [-3.0, -3.2, -3.4, -3.6, -4.6, -25.0, -3598.0]
    assert list(figures.far_out(values)) == [False] * 5 + [True, True]
    # 0.09 nats below three flows within 0.02: the panel stays readable, nothing flagged
    assert not figures.far_out([-4.167, -4.168, -4.184, -4.256]).any()
    assert not figures.far_out([-1.0, -100.0, -3.0]).any()  # too few flows to call one far out


def test_distillation_shows_every_seed_and_the_objective(table):
    fig = figures.distillation(table, teacher="maf")
    ax_ll, ax_kl, ax_speed = fig.axes
    assert ax_ll.get_ylabel() == "test log-likelihood (nats)"
    assert [t.get_text() for t in ax_ll.get_legend().get_texts()] == [
        "teacher (maf)",
        f"student ({figures.STUDENT})",
    ]
    for ax in (ax_ll, ax_kl, ax_speed):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["eight_gaussians"]
    teacher, student = (line for line in ax_ll.lines if line.get_label().startswith(("t", "s")))
    assert list(teacher.get_ydata()) == pytest.approx([-1.0, -1.0])  # one point per seed
    assert list(student.get_ydata()) == pytest.approx([-1.2, -1.3])
    pairs = [line for line in ax_ll.lines if line.get_color() == "0.6"]
    assert [list(line.get_ydata()) for line in pairs] == [[-1.0, -1.2], [-1.0, -1.3]]
    assert ax_ll.get_yscale() == "linear"  # no seed below -100 nats
    assert ax_kl.get_yscale() == "log"
    assert list(ax_kl.lines[0].get_ydata()) == pytest.approx([0.05, 0.15])
    assert ax_speed.get_yscale() == "log"
    assert list(ax_speed.lines[0].get_ydata()) == pytest.approx([12.0, 13.0])
    assert ax_speed.texts[0].get_text() == "12.5x"  # the mean over seeds
    assert "maf" in ax_speed.get_ylabel()


def test_distillation_collapsed_seed_switches_to_a_symlog_axis(table):
    collapsed = table.copy()
    collapsed.loc[collapsed["flow"] == figures.STUDENT, "test_loglik"] = [-3.0, -10_000.0]
    ax_ll = figures.distillation(collapsed, teacher="maf").axes[0]
    assert ax_ll.get_yscale() == "symlog"
    low, _ = ax_ll.get_ylim()
    assert low <= -10_000.0  # the collapsed seed is drawn, not clipped


def test_training_curves_one_line_per_flow(table):
    fig = figures.training_curves(table)
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert [ax.get_title() for ax in panels] == ["eight_gaussians", "two_moons", "digits"]
    for ax in panels:
        assert [line.get_label() for line in ax.lines] == MLE_FLOWS  # VI runs have no val data
        assert ax.get_xlabel() == "training step"
        assert ax.get_ylabel() == "validation log-likelihood (nats)"
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3
    maf = panels[0].lines[1]
    assert maf.get_ydata()[0] == pytest.approx(-3.025)  # mean of the two seeds at step 0
    assert [t.get_text() for t in fig.legends[0].get_texts()] == MLE_FLOWS


def test_digit_samples_pixel_space(table):
    fig = figures.digit_samples(table, metas={"digits": DIGITS_META})
    panels = fig.axes
    assert [ax.get_title() for ax in panels] == MLE_FLOWS
    assert panels[0].get_ylabel() == "digits"
    assert "pixel space" in fig.get_suptitle()
    for i, im in enumerate(images(fig)):
        assert im.get_clim() == (0.0, 17.0)
        data = im.get_array()
        assert data.shape == (8 * 9 - 1, 8 * 9 - 1)  # 64 images of 8x8, one-pixel gaps
        # model space -> pixels inverts the data package's map: sample 0 of flow i is PIXELS[i]
        np.testing.assert_allclose(data[:8, :8], PIXELS[i].reshape(8, 8), atol=1e-3)
        np.testing.assert_allclose(data[9:17, :8], PIXELS[i + 8].reshape(8, 8), atol=1e-3)
        assert np.ma.getmaskarray(data)[8, :].all()  # the gap between rows of the mosaic


def test_digit_samples_from_data_root(table, tmp_path):
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "meta.json").write_text(json.dumps(DIGITS_META))
    fig = figures.digit_samples(table, data_root=tmp_path)
    assert [im.get_clim() for im in images(fig)] == [(0.0, 17.0)] * 3


def test_digit_samples_without_meta_shows_model_space(table):
    fig = figures.digit_samples(table)
    assert len(images(fig)) == 3
    lo, hi = images(fig)[0].get_clim()
    assert lo < 0 < hi  # logits, drawn as they are
    assert "model space" in fig.get_suptitle()


def test_empty_table_gives_a_placeholder(table):
    fig = figures.vi_grid(table[table["objective"] == "mle"])
    assert isinstance(fig, Figure) and "no VI runs" in fig.axes[0].texts[0].get_text()


def test_missing_column_is_named(table):
    with pytest.raises(ValueError, match="sampling_speedup"):
        figures.distillation(table.drop(columns="sampling_speedup"))


def test_figures_for_config_lists_only_what_the_grid_fills():
    config = {
        "experiment": "tiny",
        "seeds": [0, 1],
        "flows": {"maf": {}, "iaf": {}, "planar_k2": {"flow": "planar", "num_layers": 2}},
        "mle": {"datasets": ["two_moons", "digits"], "flows": ["maf"]},
        "vi": {"datasets": ["u1"], "flows": ["planar_k2"]},
    }
    out = figures.figures_for_config(config)
    assert sorted(out) == sorted(set(figures.FIGURES) - {"distillation"})
    assert out["density_grid"] == (
        "experiment tiny: 2 runs (data sets: two_moons; flows: maf; seeds: 0, 1)"
    )
    assert "digits" in out["digit_samples"] and "two_moons" not in out["digit_samples"]
    assert "u1" in out["vi_grid"] and "planar_k2" in out["vi_grid"]
    config["distill"] = {"datasets": ["two_moons"], "teacher": "maf", "student": "iaf"}
    assert "iaf_student" in figures.figures_for_config(config)["distillation"]


def test_flow_style_is_stable():
    assert figures.flow_style("maf") == figures.flow_style("maf")
    assert figures.flow_style("new_flow")["color"] == figures.flow_style("new_flow")["color"]
    assert figures.flow_order(["nsf", "zeta", "gaussian", "maf", "nsf"]) == [
        "gaussian",
        "maf",
        "nsf",
        "zeta",
    ]


def test_save_and_make_figures_write_png_and_pdf(table, tmp_path):
    paths = figures.save(figures.loglik_vs_time(table), tmp_path / "sub" / "ll")
    assert [p.name for p in paths] == ["ll.png", "ll.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    csv = tmp_path / "runs.csv"
    table.to_csv(csv, index=False)
    out = figures.make_figures(
        csv,
        tmp_path / "figs",
        options={
            "density_grid": {"true_log_prob": true_log_prob},
            "vi_grid": {"target_log_prob": target_log_prob},
            "digit_samples": {"metas": {"digits": DIGITS_META}},
        },
    )
    assert sorted(out) == sorted(figures.FIGURES)
    for png, pdf in out.values():
        assert png.stat().st_size > 1000 and pdf.stat().st_size > 1000
    with pytest.raises(ValueError, match="unknown figure"):
        figures.make_figures(table, tmp_path, names=["nope"])
    with pytest.raises(FileNotFoundError, match="runs.csv"):
        figures.make_figures(tmp_path / "missing" / "runs.csv", tmp_path)


if __name__ == "__main__":  # draw the figures of the hand-made runs for a look
    import sys
    from pathlib import Path

    root = Path(sys.argv[1])
    t = make_runs(root / "runs")
    (root / "digits").mkdir(exist_ok=True)
    (root / "digits" / "meta.json").write_text(json.dumps(DIGITS_META))
    true_log_prob = figures.densities._default_true_log_prob()  # the data package's closed forms
    target_log_prob = figures.densities._default_target_log_prob()  # the data package's U1..U4
    figures.make_figures(
        t,
        root / "figs",
        options={
            "density_grid": {"true_log_prob": true_log_prob},
            "vi_grid": {"target_log_prob": target_log_prob},
            "digit_samples": {"data_root": root},
            "distillation": {"teacher": "maf"},
        },
    )
