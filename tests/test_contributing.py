"""CONTRIBUTING.md stays true: the names and paths it gives exist, and its recipes work.

Each recipe is done here on a toy (a flow, a generated data set, a data file, an objective),
registered for the test only, and the result is built, loaded or trained the way the workflow
does it.
"""

import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from tensorflow_probability import bijectors as tfb

from flows_tf import build_flow, experiment, flows, modelio, objectives, train, vocabulary
from flows_tf.datasets import load_dataset, prepare_dataset, read_split, registry, toy
from flows_tf.objectives.base import Objective, as_data

REPO = Path(__file__).resolve().parents[1]
GUIDE = (REPO / "CONTRIBUTING.md").read_text()
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
TOKENS = sorted(set(re.findall(r"`([^`\n]+)`", GUIDE)))

# the schema locations the guide names, as keys into the YAML
SCHEMA_PATHS = {
    "flows.additionalProperties.properties.flow.enum": (
        "properties",
        "flows",
        "additionalProperties",
        "properties",
        "flow",
        "enum",
    ),
    "distill.method": ("properties", "distill", "properties", "method", "enum"),
    "$defs.training.properties": ("$defs", "training", "properties"),
}


def _is_path(token: str) -> bool:
    if re.search(r"[\s<>{}()]", token) or token.startswith(".venv/"):
        return False
    return "/" in token or bool(re.search(r"\.(py|ya?ml|md|toml|smk)$", token))


def _resolve(dotted: str) -> object:
    """``flows_tf.a.b.C`` -> the object: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


# --------------------------------------------------------------------------------------------
# Names and paths


def test_guide_names_paths_and_objects_that_exist():
    paths = [t for t in TOKENS if "::" not in t and _is_path(t)]
    dotted = [t for t in TOKENS if re.fullmatch(r"flows_tf(\.\w+)+", t)]
    assert len(paths) > 10 and len(dotted) > 15  # the parsing found the guide's references
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"CONTRIBUTING.md names missing files: {missing}"
    for name in dotted:
        _resolve(name)  # AttributeError / ModuleNotFoundError names the stale reference


def test_guide_names_definitions_in_files_that_hold_them():
    """``path::name`` (a test, a table): the file defines ``name`` at the start of a line."""
    assert (REPO / "workflow/rules/data.smk").read_text().count("rule prepare_data:") == 1
    refs = [t.split("::") for t in TOKENS if "::" in t]
    assert len(refs) >= 5
    for path, name in refs:
        text = (REPO / path).read_text()
        assert re.search(rf"^(def |class )?{name}\b", text, re.M), f"{path} lacks {name}"


def test_guide_schema_locations_exist():
    for shown, keys in SCHEMA_PATHS.items():
        assert shown in GUIDE
        node = SCHEMA
        for key in keys:
            node = node[key]
        assert node


def test_guide_names_the_objective_contract():
    """The attributes and methods step 1 of the objective recipe lists."""
    methods = ("block", "loss", "score", "initialize", "where", "record")
    attributes = ("name", "needs", "required", "extra_settings", "validates")
    for name in (*methods, *attributes):
        assert f"`{name}" in GUIDE and hasattr(Objective, name), name
    for name in ("total_steps", "eval_every", "signature"):  # set by each objective's __init__
        assert f"`{name}`" in GUIDE and name in Objective.__annotations__, name


def test_every_objective_setting_is_admitted_by_the_schema():
    """The objective recipe's last step, for every registered objective."""
    admitted = SCHEMA["$defs"]["training"]["properties"]
    for name, cls in objectives.OBJECTIVES.items():
        missing = sorted(set(cls.extra_settings) - set(admitted))
        assert not missing, f"objective {name}: schema lacks {missing}"
    assert {m for names in experiment.METHODS.values() for m in names} == set(objectives.OBJECTIVES)


# --------------------------------------------------------------------------------------------
# Add a flow


def toy_affine(d, dtype, *, num_layers=2, data_affine="full"):
    """Toy flow: elementwise affine layers.

    Map: ``x = z exp(s) + t`` per layer; both directions cheap.

    Args:
      d: event size D.
      dtype: float dtype.
      num_layers: number of layers.
      data_affine: data-side affine layer.

    References:
      None (a test fixture). arXiv:0000.00000.
    """
    layers = []
    for i in range(num_layers):
        shift = tf.Variable(tf.zeros([d], dtype), name=f"toy_shift_{i}")
        log_scale = tf.Variable(tf.zeros([d], dtype), name=f"toy_log_scale_{i}")
        layers.append(tfb.Chain([tfb.Shift(shift), tfb.Scale(log_scale=log_scale)]))
    return tfb.Chain([*flows._data_affine(data_affine, d, dtype), *layers], name="toy_affine")


@pytest.fixture
def toy_flow_registered(monkeypatch):
    monkeypatch.setitem(flows.FLOWS, "toy_affine", toy_affine)  # step 2
    monkeypatch.setitem(vocabulary.FLOW_HPARAMS, "toy_affine", ("num_layers", "data_affine"))


def test_flow_recipe_gives_a_flow_that_builds_saves_and_trains(toy_flow_registered, tmp_path):
    import inspect

    accepted = tuple(p for p in inspect.signature(toy_affine).parameters if p not in ("d", "dtype"))
    assert vocabulary.FLOW_HPARAMS["toy_affine"] == accepted  # step 3, as test_experiment checks
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((600, 2)) @ [[2.0, 0.5], [0.0, 0.5]] + 3.0).astype(np.float32)
    flow = build_flow("toy_affine", [2], num_layers=2)
    assert flows.initialize(flow, x) == 1  # the data affine: untrained, the Gaussian fit
    baseline = build_flow("gaussian", [2])
    flows.initialize(baseline, x)
    np.testing.assert_allclose(flow.log_prob(x[:50]), baseline.log_prob(x[:50]), atol=1e-4)

    result = train.fit(
        flow,
        "mle",
        train=x[:500],
        val=x[500:],
        settings={"batch_size": 100, "max_epochs": 2, "learning_rate": 1e-2},
        workdir=tmp_path / "run",
        seed=0,
    )
    assert result.steps == 10 and np.isfinite(result.best_score)

    spec = modelio.make_spec("toy_affine", [2], {"num_layers": 2})
    restored = modelio.load_flow(spec, modelio.save_flow(flow, tmp_path / "model"))
    fresh = tf.constant(x[:8])
    np.testing.assert_array_equal(restored.log_prob(fresh), flow.log_prob(tf.identity(fresh)))


# --------------------------------------------------------------------------------------------
# Add a data set


def _line(n, rng):
    t = rng.uniform(-3.0, 3.0, n)
    return np.stack([t, 0.5 * t + 0.1 * rng.standard_normal(n)], axis=1)


def test_generated_data_set_recipe_joins_the_registry_and_prepares(monkeypatch, tmp_path):
    monkeypatch.setitem(toy.TOYS, "toy_line", (_line, None))
    monkeypatch.setattr(registry, "DATASETS", registry._entries())  # as at import
    info = registry.DATASETS["toy_line"]
    assert info.kind == "toy" and set(info.defaults) == {"n_train", "n_val", "n_test"}
    sizes = {"n_train": 100, "n_val": 20, "n_test": 30}
    assert load_dataset("toy_line", "val", seed=0, **sizes).shape == (20, 2)
    prepare_dataset("toy_line", tmp_path / "toy_line", seed=0, **sizes)
    assert read_split(tmp_path / "toy_line", "test").shape == (30, 2)


def test_data_file_recipe_needs_no_code(tmp_path):
    path = tmp_path / "mydata.npy"
    assert path.suffix in vocabulary.DATA_FILE_SUFFIXES
    np.save(path, np.random.default_rng(0).standard_normal((200, 3)))
    parts = [load_dataset("mydata", s, path=str(path)) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 200 and all(p.shape[1] == 3 for p in parts)


# --------------------------------------------------------------------------------------------
# Add an objective


class FullBatchMLE(Objective):
    """Toy objective: ``min -mean log q(x)`` over all of ``train`` at every step."""

    name, needs, required = "full_batch_mle", ("train",), ("train",)

    def __init__(self, flow, settings, seed, *, train=None, **_):
        super().__init__(flow, settings, seed, train=train)
        self._train = tf.constant(as_data(train, "train", flow))
        self.total_steps = int(settings["steps"])
        self.eval_every = int(settings["eval_every"] or 10)
        self.signature = [tf.TensorSpec([None], tf.int32)]

    def block(self, start, k):
        return (np.arange(start, start + k, dtype=np.int32),)

    def loss(self, step):
        return objectives.mle_loss(self.flow, self._train)

    def score(self, step, train_loss):
        return -train_loss


def test_objective_recipe_gives_an_objective_that_fit_runs(monkeypatch, tmp_path):
    monkeypatch.setitem(objectives.OBJECTIVES, FullBatchMLE.name, FullBatchMLE)  # step 2
    assert train.OBJECTIVES is objectives.OBJECTIVES  # the registry fit reads
    x = np.random.default_rng(1).normal(2.0, 0.5, size=(256, 2)).astype(np.float32)
    flow = build_flow("maf", [2], num_layers=1, hidden_units=[8], data_affine="none")
    result = train.fit(
        flow,
        "full_batch_mle",
        train=x,
        settings={"steps": 30, "eval_every": 10, "learning_rate": 5e-2, "patience": None},
        workdir=tmp_path,
        seed=0,
    )
    assert result.steps == 30 and len(result.history) == 3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_a_new_objective_runs_through_the_job_and_the_tables(monkeypatch, tmp_path):
    """The recipe's objective as the method of an mle job: trained and evaluated by the job
    functions, recorded in MLflow, and a cell of the log-likelihood table."""
    import dataclasses

    from flows_tf import jobs, runtime, tables, tracking

    monkeypatch.setitem(objectives.OBJECTIVES, FullBatchMLE.name, FullBatchMLE)
    monkeypatch.setitem(experiment.METHODS, "mle", ("mle", FullBatchMLE.name))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = {
        "experiment": "new-objective",
        "seeds": [0],
        "datasets": {"two_moons": {"n_train": 256, "n_val": 64, "n_test": 64}},
        "flows": {"maf": {"num_layers": 1, "hidden_units": [8]}},
        "mle": {"datasets": ["two_moons"], "flows": ["maf"], "training": {"max_epochs": 1}},
    }
    experiment.check_config(config)
    job = dataclasses.replace(
        experiment.make_job(config, "two_moons", "maf", 0),
        method=FullBatchMLE.name,
        training={"steps": 20, "eval_every": 10, "patience": None},
    )
    tracking.init_experiment(config["experiment"])
    prepare_dataset("two_moons", tmp_path / "data", seed=0, **config["datasets"]["two_moons"])
    common = {
        "data_dir": tmp_path / "data",
        "model_dir": tmp_path / "model",
        "threads": runtime.configure(1),
        "evaluation": {"n_samples": 50, "timing_n": 50, "timing_repeats": 1, "grid_n": 10},
    }
    summary = jobs.train_job(job, experiment=config["experiment"], **common)
    assert (summary["method"], summary["steps"]) == (FullBatchMLE.name, 20)
    assert summary["best_val_loglik"] is None  # its score is a training loss, not validation
    metrics_path = tmp_path / "metrics" / "seed0.json"
    jobs.evaluate_job(job, metrics_path=metrics_path, **common)
    runs = tables.runs_frame([metrics_path])
    table = tables.loglik_table(runs, tables.load_per_example(runs), expected_seeds=[0])
    assert len(table) == 1 and np.isfinite(table["mean"].iloc[0])
    assert table["n_seeds"].iloc[0] == 1


# --------------------------------------------------------------------------------------------
# The checks every contribution passes


def test_pre_commit_hooks_are_the_local_commands_flowbench_runs():
    import shlex

    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]  # nothing fetched
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {hook["id"] for hook in hooks} == {"ruff", "ruff-format", "snakefmt"}
    for hook in hooks:
        assert hook["language"] == "system" and hook["pass_filenames"] is False, hook["id"]
        assert (REPO / shlex.split(hook["entry"])[0]).exists(), hook["entry"]
    assert ".pre-commit-config.yaml" in (REPO / "flowbench").read_text()
