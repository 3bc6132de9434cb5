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
TRAIN_RULES = r"train(_data|_targets)?"  # one job per variant, or grouped (train_jobs)


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
    outputs = " ".join(_outputs(proc.stdout, TRAIN_RULES))
    trained = {m.groups() for m in TRAIN_OUTPUT.finditer(outputs)}
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


def _train_jobs(output: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
    """``{(rule, variants): priority}`` of the planned training jobs of a dry run, ``variants``
    the sorted (dataset, flow) pairs it trains; each job trains every seed of them, with one
    thread."""
    jobs = {}
    for block in output.split("\n\n"):
        rule = re.search(rf"^rule ({TRAIN_RULES}):", block, re.M)
        if rule:
            line = re.search(r"^\s+output: (.+)$", block, re.M).group(1)
            outputs = {m.groups() for m in TRAIN_OUTPUT.finditer(line)}
            variants = tuple(sorted({(d, f) for d, f, _ in outputs}))
            assert outputs == {(*v, s) for v in variants for s in "012"}
            assert not re.search(r"^\s+threads:", block, re.M)  # listed only when above 1
            priority = int(re.search(r"^\s+priority: (\d+)$", block, re.M).group(1))
            jobs[(rule.group(1), variants)] = priority
    return jobs


def test_seven_training_jobs_longest_first_and_distillation_chains_first(project):
    config = yaml.safe_load((project / "config/config.yaml").read_text())
    proc = run_snakemake(project, "-n", "--cores", "2", *PROFILE)  # the default config
    jobs = _train_jobs(proc.stdout)
    mle, vi = config["mle"], config["vi"]
    chains = [(d, f) for d in config["distill"]["datasets"] for f in ("maf", "iaf_student")]
    expected = {("train", (v,)) for v in chains}  # the teacher and the students alone
    data_flows = sorted(set(mle["flows"]) - {"maf"})
    expected |= {("train_data", tuple((d, f) for f in data_flows)) for d in mle["datasets"]}
    expected.add(
        ("train_targets", tuple(sorted((d, f) for d in vi["datasets"] for f in vi["flows"])))
    )
    assert set(jobs) == expected  # 7 processes for 32 variants
    # longest first: a job's priority is its variants' seconds in a default run (a teacher's
    # with its student's), so the eight_gaussians distillation chain starts first
    seconds = schedule.read_job_seconds(project / schedule.JOB_SECONDS)
    variants = [(j.dataset, j.flow, j.teacher) for j in experiment.jobs(config)]
    priorities = schedule.train_priorities(variants, seconds)
    for (_, pairs), priority in jobs.items():
        assert priority == sum(priorities[pair] for pair in pairs)
    assert max(jobs, key=jobs.get) == ("train", (("eight_gaussians", "maf"),))
    for dataset in config["distill"]["datasets"]:
        teacher, student = (jobs[("train", ((dataset, f),))] for f in ("maf", "iaf_student"))
        assert teacher > student


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
