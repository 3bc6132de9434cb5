"""The DAG from config: dry runs list exactly the grid's jobs; bad configs stop before any job."""

import re

import pytest
import yaml
from snakemake.utils import validate
from snakemake_interface_common.exceptions import WorkflowError
from snakerun import run_snakemake

from flows_tf import experiment, schedule

TRAIN_OUTPUT = re.compile(r"results/models/([^/\s,]+)/([^/\s,]+)/seed(\d+)/train\.json")
SCHEMA = "workflow/schemas/config.schema.yaml"
PROFILE = ("--workflow-profile", "workflow/profiles/default")


def _planned(output: str, rule: str) -> set[str]:
    """The first output of each planned job of ``rule`` in a dry run's listing."""
    return {outputs.split(", ")[0] for outputs in _outputs(output, rule)}


def _outputs(output: str, rule: str) -> list[str]:
    """The output line (paths joined by ", ") of each planned job of ``rule``."""
    found = []
    for block in output.split("\n\n"):
        if re.search(rf"^(local)?rule {rule}:", block, re.M):
            found.append(re.search(r"^\s+output: (.+)$", block, re.M).group(1))
    return found


@pytest.mark.parametrize(
    "configfile", ["config/config.yaml", "config/smoke.yaml", "config/paper.yaml"]
)
def test_dry_run_lists_every_job_of_the_grid(project, configfile):
    config = yaml.safe_load((project / configfile).read_text())
    jobs = experiment.jobs(config)
    proc = run_snakemake(project, "-n", "--cores", "8", "--configfile", configfile, *PROFILE)
    trained = {m.groups() for m in TRAIN_OUTPUT.finditer(" ".join(_outputs(proc.stdout, "train")))}
    assert trained == {(j.dataset, j.flow, str(j.seed)) for j in jobs}
    outputs = ", ".join(_outputs(proc.stdout, "evaluate")).split(", ")
    evaluated = {path for path in outputs if path.endswith(".json")}
    assert evaluated == {f"results/metrics/{j.dataset}/{j.flow}/seed{j.seed}.json" for j in jobs}
    prepared = _planned(proc.stdout, "prepare_data")
    assert prepared == {f"results/data/{d}/train.npy" for d in experiment.data_datasets(config)}
    assert len(_planned(proc.stdout, "mlflow_init")) == 1
    assert len(_planned(proc.stdout, "build_tables")) == 1
    # one serial timing step, holding every core so that nothing runs beside it
    (timing,) = [b for b in proc.stdout.split("\n\n") if re.search(r"^rule time_models:", b, re.M)]
    assert re.search(r"^\s+threads: 8$", timing, re.M)


def test_student_trains_after_its_teacher(project):
    proc = run_snakemake(
        project, "-n", "--cores", "8", "--configfile", "config/smoke.yaml", *PROFILE
    )
    block = next(
        b
        for b in proc.stdout.split("\n\n")
        if "output: results/models/eight_gaussians/iaf_student/seed0/train.json" in b
    )
    assert "results/models/eight_gaussians/maf/seed0/train.json" in block.split("output:")[0]


def test_a_variants_seeds_train_in_one_job_longest_first_and_distillation_chains_first(project):
    proc = run_snakemake(project, "-n", "--cores", "2", *PROFILE)  # the default config
    priority = {}
    for block in proc.stdout.split("\n\n"):
        if re.search(r"^rule train:", block, re.M):
            line = re.search(r"^\s+output: (.+)$", block, re.M).group(1)
            outputs = {m.groups() for m in TRAIN_OUTPUT.finditer(line)}
            (variant,) = {(d, f) for d, f, _ in outputs}  # one variant per job ...
            assert {s for *_, s in outputs} == {"0", "1", "2"}  # ... with all its seeds
            priority[variant] = int(re.search(r"^\s+priority: (\d+)$", block, re.M).group(1))
            assert not re.search(r"^\s+threads:", block, re.M)  # listed only when above 1
    assert len(priority) == 32
    chains = {(d, f) for d in ("eight_gaussians", "digits") for f in ("maf", "iaf_student")}
    rest = set(priority) - chains
    assert min(priority[v] for v in chains) > max(priority[v] for v in rest)
    # the others longest first, by the committed seconds of a default run
    seconds = schedule.read_job_seconds(project / schedule.JOB_SECONDS)
    assert rest <= set(seconds)
    by_seconds = sorted(rest, key=lambda v: -seconds[v])
    assert [priority[v] for v in by_seconds] == sorted(priority[v] for v in rest)[::-1]


def _bad_config(project, tmp_path, edit):
    config = yaml.safe_load((project / "config/smoke.yaml").read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_snakemake(
        project, "-n", "--cores", "2", "--configfile", str(path), *PROFILE, check=False
    )


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c["mle"].update(trainig={}), "'trainig' was unexpected"),
        (lambda c: c["mle"]["training"].update(batchsize=3), "'batchsize' was unexpected"),
        (lambda c: c.update(seeds="0"), "On instance['seeds']"),
        (lambda c: c["flows"]["maf"].update(num_layers="five"), "'five' is not of type"),
        (lambda c: c["datasets"].update(digits={"n_trian": 5}), "'n_trian' was unexpected"),
    ],
    ids=["unknown-key", "unknown-nested-key", "wrong-type", "wrong-hparam-type", "data-option"],
)
def test_schema_rejects_bad_config_naming_the_key(project, edit, named):
    config = yaml.safe_load((project / "config/smoke.yaml").read_text())
    validate(config, str(project / SCHEMA))  # the shipped config is valid
    edit(config)
    with pytest.raises(WorkflowError) as err:
        validate(config, str(project / SCHEMA))
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c["mle"].update(trainig={}), "'trainig' was unexpected"),
        (lambda c: c["mle"]["flows"].append("not_a_flow"), "unknown flow 'not_a_flow'"),
    ],
    ids=["unknown-key", "unknown-flow"],
)
def test_bad_config_stops_the_run_before_any_job(project, tmp_path, edit, named):
    proc = _bad_config(project, tmp_path, edit)
    assert proc.returncode != 0
    assert named in proc.stdout
    assert "Job stats" not in proc.stdout
    assert not (project / "results").exists()
