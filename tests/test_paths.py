"""The results tree has one spelling: templates, filled for a job, under another folder."""

from types import SimpleNamespace

import pytest

from flows_tf import paths


def test_templates_fill_for_a_job_and_move_under_another_results_folder():
    job = SimpleNamespace(dataset="digits", flow="maf", seed=2)
    assert paths.of_job(paths.MODEL_FILE, job) == "results/models/digits/maf/seed2/train.json"
    assert paths.of_job(paths.METRICS, job, "/tmp/r/") == "/tmp/r/metrics/digits/maf/seed2.json"
    assert paths.of(paths.SPLIT, dataset="u1", split="val") == "results/data/u1/val.npy"


def test_per_example_values_sit_beside_their_metrics_file():
    assert paths.per_example(paths.METRICS) == paths.PER_EXAMPLE
    with pytest.raises(ValueError, match="ends in .json"):
        paths.per_example("results/metrics/a/b/seed0.csv")


def test_every_template_lives_under_results():
    templates = [v for k, v in vars(paths).items() if k.isupper() and isinstance(v, str)]
    assert templates and all(t.startswith(paths.RESULTS) for t in templates)
