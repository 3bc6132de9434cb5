"""Config cross-checks (`experiment.check_config`) and the TF-free vocabulary they rely on."""

import copy
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from flows_tf import experiment, vocabulary

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())

TINY = {
    "experiment": "tiny",
    "seeds": [0],
    "datasets": {"eight_gaussians": {"n_train": 100, "n_val": 50, "n_test": 50}},
    "flows": {
        "maf": {"num_layers": 1, "hidden_units": [4]},
        "iaf": {"num_layers": 1, "hidden_units": [4]},
        "planar": {"num_layers": 2},
    },
    "mle": {"datasets": ["eight_gaussians"], "flows": ["maf", "planar"]},
    "vi": {"datasets": ["u1"], "flows": ["planar"]},
    "distill": {"datasets": ["eight_gaussians"], "teacher": "maf", "student": "iaf"},
}


def _problems(edit, base_dir=None) -> str:
    config = copy.deepcopy(TINY)
    edit(config)
    with pytest.raises(experiment.ConfigError) as err:
        experiment.check_config(config, base_dir=base_dir)
    return str(err.value)


# --------------------------------------------------------------------------------------------
# The vocabulary equals its sources


def test_flow_hparams_are_the_keyword_arguments_of_every_builder():
    from flows_tf.flows import FLOWS

    signatures = {
        name: tuple(p for p in inspect.signature(builder).parameters if p not in ("d", "dtype"))
        for name, builder in FLOWS.items()
    }
    assert vocabulary.FLOW_HPARAMS == signatures


def _choice_cases():
    for hparam, choices in vocabulary.HPARAM_CHOICES.items():
        for builder, accepted in vocabulary.FLOW_HPARAMS.items():
            if hparam in accepted:
                yield builder, hparam, choices


@pytest.mark.parametrize(("builder", "hparam", "choices"), list(_choice_cases()))
def test_builders_accept_exactly_the_listed_choices(builder, hparam, choices, small_hparams):
    from flows_tf import build_flow

    small = small_hparams[builder]
    for value in choices:
        assert build_flow(builder, [2], **small, **{hparam: value}).event_shape == [2]
    with pytest.raises(ValueError, match=hparam):
        build_flow(builder, [2], **small, **{hparam: "not_a_choice"})


def test_one_pass_samplers_are_the_builders_without_a_sequential_forward_map(small_hparams, walk):
    """A forward map is sequential (one pass per dimension) where it holds a MAF layer that is
    not inverted."""
    from tensorflow_probability import bijectors as tfb

    from flows_tf import FLOWS, build_flow

    one_pass = set()
    for name in FLOWS:
        leaves = walk(build_flow(name, [2], **small_hparams[name]).bijector)
        if not any(
            isinstance(b, tfb.MaskedAutoregressiveFlow) and not inverted for b, inverted in leaves
        ):
            one_pass.add(name)
    assert set(vocabulary.ONE_PASS_SAMPLERS) == one_pass
    assert "iaf" in one_pass and "maf" not in one_pass


def test_data_file_suffixes_are_what_the_file_reader_reads(tmp_path):
    from flows_tf.datasets import DataError
    from flows_tf.datasets.files import read_user_file

    data = np.arange(6, dtype=float).reshape(3, 2)
    np.save(tmp_path / "x.npy", data)
    np.savetxt(tmp_path / "x.csv", data, delimiter=",")
    for suffix in vocabulary.DATA_FILE_SUFFIXES:
        np.testing.assert_allclose(read_user_file("x", tmp_path / f"x{suffix}"), data)
    (tmp_path / "x.txt").write_text("0,1\n2,3\n")
    with pytest.raises(DataError, match="must be"):
        read_user_file("x", tmp_path / "x.txt")


def test_importing_experiment_does_not_import_tensorflow():
    code = "import sys, flows_tf.experiment; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# The schema admits exactly the registries' names


def _flow_properties():
    return SCHEMA["$defs"]["hparams"]["properties"]


def test_schema_admits_exactly_the_builders_and_their_keyword_arguments():
    from flows_tf import FLOWS

    variant = SCHEMA["properties"]["flows"]["additionalProperties"]
    assert sorted(variant["properties"]["flow"]["enum"]) == sorted(FLOWS)
    assert set(variant["properties"]) == {"flow", "training", "by_dataset"}
    hparams = {h for accepted in vocabulary.FLOW_HPARAMS.values() for h in accepted}
    assert set(_flow_properties()) == hparams


def test_schema_choices_are_the_builders_choices():
    props = _flow_properties()
    for hparam, choices in vocabulary.HPARAM_CHOICES.items():
        assert props[hparam]["enum"] == list(choices)


def test_schema_accepts_patience_null_and_refuses_patience_zero():
    import jsonschema

    config = copy.deepcopy(TINY)
    config["mle"]["training"] = {"patience": None}
    jsonschema.validate(config, SCHEMA)
    config["mle"]["training"] = {"patience": 0}
    with pytest.raises(jsonschema.ValidationError, match="0 is less than the minimum"):
        jsonschema.validate(config, SCHEMA)


# --------------------------------------------------------------------------------------------
# check_config


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml"])
def test_shipped_configs_pass(name):
    experiment.check_config(yaml.safe_load((REPO / "config" / name).read_text()))


def test_tiny_config_passes():
    experiment.check_config(copy.deepcopy(TINY))


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (
            lambda c: c["mle"]["datasets"].append("eight_gausians"),
            "mle.datasets: unknown data set 'eight_gausians'; did you mean 'eight_gaussians'?",
        ),
        (
            lambda c: c["vi"]["datasets"].append("u_1"),
            "vi.datasets: unknown data set 'u_1'; did you mean 'u1'? accepted: u1, u2, u3, u4",
        ),
        (
            lambda c: c["distill"]["datasets"].append("two_moon"),
            "distill.datasets: unknown data set 'two_moon'; did you mean 'two_moons'?",
        ),
        (
            lambda c: c["datasets"].update(digit={}),
            "datasets.digit: unknown data set 'digit'; did you mean 'digits'?",
        ),
        (
            lambda c: c["datasets"]["eight_gaussians"].update(logit=True),
            "datasets.eight_gaussians.logit: a toy data set takes no option 'logit'",
        ),
        (
            lambda c: c["vi"]["datasets"].append("digits"),
            "vi.datasets: 'digits' is of kind image; vi needs an energy target: u1, u2, u3, u4",
        ),
        (
            lambda c: c["mle"]["datasets"].append("u2"),
            "mle.datasets: 'u2' is of kind energy; mle needs data",
        ),
        (
            lambda c: c["flows"]["planar"].update(hidden_units=[8]),
            "flows.planar.hidden_units: the planar builder takes no hyperparameter "
            "'hidden_units'; accepted: num_layers",
        ),
        (
            lambda c: c["flows"]["maf"].update(order="revers"),
            "flows.maf.order: 'revers' is not accepted; did you mean 'reverse'?",
        ),
        (
            lambda c: c["flows"]["maf"].update(by_dataset={"eight_gausians": {"num_layers": 2}}),
            "flows.maf.by_dataset.eight_gausians: unknown data set 'eight_gausians'; "
            "did you mean 'eight_gaussians'?",
        ),
        (
            lambda c: c["flows"]["planar"].update(by_dataset={"digits": {"num_bins": 4}}),
            "flows.planar.by_dataset.digits.num_bins: the planar builder takes no hyperparameter "
            "'num_bins'; accepted: num_layers",
        ),
        (
            lambda c: c["flows"].update(mafx={}),
            "flows.mafx: unknown flow builder 'mafx'; did you mean 'maf'?",
        ),
        (
            lambda c: c["flows"].update(big={"flow": "nfs"}),
            "flows.big.flow: unknown flow builder 'nfs'; did you mean 'nsf'?",
        ),
        (
            lambda c: c["mle"]["flows"].append("plnar"),
            "mle.flows: unknown flow 'plnar'; did you mean 'planar'?",
        ),
        (
            lambda c: c["vi"]["flows"].append(experiment.STUDENT),
            "vi.flows: 'iaf_student' is the distilled student",
        ),
        (
            lambda c: c["distill"].update(student="maf"),
            "distill.student: 'maf' (builder maf) does not sample in one pass",
        ),
        (
            lambda c: c["distill"].update(student="iaff"),
            "distill.student: unknown flow 'iaff'; did you mean 'iaf'?",
        ),
        (
            lambda c: c["distill"].update(teacher="iaf"),
            "distill.teacher: 'iaf' is not one of mle.flows",
        ),
        (
            lambda c: c["distill"]["datasets"].append("two_moons"),
            "distill.datasets: 'two_moons' is not one of mle.datasets",
        ),
    ],
)
def test_bad_config_is_refused_naming_key_value_and_accepted(edit, named):
    assert named in _problems(edit)


def test_every_problem_is_reported_at_once():
    def edit(c):
        c["mle"]["datasets"].append("eight_gausians")
        c["flows"]["planar"]["hidden_units"] = [8]

    message = _problems(edit)
    assert "mle.datasets: unknown data set" in message
    assert "flows.planar.hidden_units" in message


def test_a_user_file_must_exist_and_have_a_readable_suffix(tmp_path):
    np.save(tmp_path / "mine.npy", np.zeros((10, 2)))

    def use(path):
        def edit(c):
            c["datasets"]["mine"] = {"path": path}
            c["mle"]["datasets"].append("mine")

        return edit

    config = copy.deepcopy(TINY)
    use("mine.npy")(config)
    experiment.check_config(config, base_dir=tmp_path)  # exists, relative to base_dir
    experiment.check_config(config | {"datasets": {"mine": {"path": str(tmp_path / "mine.npy")}}})
    missing = _problems(use("missing.npy"), base_dir=tmp_path)
    assert "datasets.mine.path: 'missing.npy' does not exist" in missing
    assert "datasets.mine.path: 'mine.txt' has suffix '.txt'; a data file must be one of " in (
        _problems(use("mine.txt"), base_dir=tmp_path)
    )


def test_a_file_data_set_is_known_only_with_a_path():
    config = copy.deepcopy(TINY)
    assert experiment.dataset_kind(config, "mine") is None
    config["datasets"]["mine"] = {"path": "x.csv"}
    assert experiment.dataset_kind(config, "mine") == "file"
    assert experiment.dataset_kind(config, "u3") == "energy"


def test_a_one_pass_student_other_than_iaf_is_accepted():
    config = copy.deepcopy(TINY)
    config["flows"]["nsf"] = {"num_layers": 1, "hidden_units": [4]}
    config["distill"]["student"] = "nsf"
    experiment.check_config(config)


def test_schema_admits_every_training_setting():
    from flows_tf.train import DEFAULT_SETTINGS

    admitted = SCHEMA["$defs"]["training"]["properties"]
    assert set(DEFAULT_SETTINGS) <= set(admitted)


def test_methods_are_the_training_registry():
    from flows_tf import train

    methods = {m for names in experiment.METHODS.values() for m in names}
    assert methods == set(train.OBJECTIVES)


def test_training_settings_merge_section_dataset_and_flow():
    config = copy.deepcopy(TINY)
    config["mle"]["training"] = {"max_epochs": 50, "eval_every": 10}
    config["mle"]["training_by_dataset"] = {config["mle"]["datasets"][0]: {"max_epochs": 20}}
    flow = config["mle"]["flows"][0]
    config["flows"][flow] = {**(config["flows"][flow] or {}), "training": {"eval_every": 5}}
    job = experiment.make_job(config, config["mle"]["datasets"][0], flow, 0)
    assert job.training == {"max_epochs": 20, "eval_every": 5}
    assert "training" not in job.hparams


def test_training_by_dataset_of_a_variant_wins_for_that_dataset_only():
    import jsonschema

    config = copy.deepcopy(TINY)
    config["mle"]["datasets"].append("digits")
    config["mle"]["training"] = {"max_epochs": 50}
    config["flows"]["iaf"] = {
        **config["flows"]["iaf"],
        "training": {"max_epochs": 15},
        "by_dataset": {"digits": {"sequential": "by_degree", "training": {"max_epochs": 40}}},
    }
    experiment.check_config(config)
    jsonschema.validate(config, SCHEMA)
    digits = experiment.make_job(config, "digits", "iaf", 0)
    eight = experiment.make_job(config, "eight_gaussians", "iaf", 0)
    assert digits.training == {"max_epochs": 40}
    assert digits.hparams == {**TINY["flows"]["iaf"], "sequential": "by_degree"}
    assert eight.training == {"max_epochs": 15}
    assert "sequential" not in eight.hparams
    config["flows"]["iaf"]["by_dataset"]["digits"]["training"] = {"max_epoch": 40}
    with pytest.raises(jsonschema.ValidationError, match="max_epoch"):
        jsonschema.validate(config, SCHEMA)


def test_the_student_takes_the_variants_hyperparameters_but_the_distill_sections_training():
    config = copy.deepcopy(TINY)
    dataset = config["distill"]["datasets"][0]
    config["distill"]["training"] = {"steps": 300, "jit_compile": True}
    config["flows"]["iaf"] = {
        **config["flows"]["iaf"],
        "training": {"steps": 7},
        "by_dataset": {dataset: {"sequential": "by_degree", "training": {"jit_compile": False}}},
    }
    student = experiment.make_job(config, dataset, experiment.STUDENT, 0)
    assert student.training == {"steps": 300, "jit_compile": True}
    assert student.hparams == {**TINY["flows"]["iaf"], "sequential": "by_degree"}
    assert experiment.make_job(config, dataset, "iaf", 0).training["jit_compile"] is False


def test_hyperparameters_by_dataset_replace_the_variants_for_that_dataset_only():
    import jsonschema

    config = copy.deepcopy(TINY)
    config["mle"]["datasets"].append("digits")
    config["flows"]["maf"] = {
        "num_layers": 5,
        "hidden_units": [64, 64],
        "by_dataset": {"eight_gaussians": {"num_layers": 10}},
    }
    experiment.check_config(config)
    jsonschema.validate(config, SCHEMA)
    eight = experiment.make_job(config, "eight_gaussians", "maf", 0)
    digits = experiment.make_job(config, "digits", "maf", 0)
    assert eight.hparams == {"num_layers": 10, "hidden_units": [64, 64]}
    assert digits.hparams == {"num_layers": 5, "hidden_units": [64, 64]}
    student = experiment.make_job(config, "eight_gaussians", experiment.STUDENT, 0)
    assert student.hparams == {"num_layers": 1, "hidden_units": [4]}  # the iaf variant's
    config["flows"]["maf"]["by_dataset"]["digits"] = {"num_layers": "5"}
    with pytest.raises(jsonschema.ValidationError, match="'5' is not of type 'integer'"):
        jsonschema.validate(config, SCHEMA)
    config["flows"]["maf"]["by_dataset"]["digits"] = {"num_layer": 5}
    with pytest.raises(jsonschema.ValidationError, match="num_layer"):
        jsonschema.validate(config, SCHEMA)
