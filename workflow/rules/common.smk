# Helpers only: the job grid, targets, wildcard constraints, input functions, resources.
import re

from flows_tf import experiment

# Cross-references the JSON schema cannot express (unknown data sets and hyperparameters, data
# set kinds, data files, the student); every problem names its key, before any job starts.
experiment.check_config(config)

JOBS = experiment.jobs(config)
JOB_BY_KEY = {(j.dataset, j.flow, j.seed): j for j in JOBS}
MLFLOW_INIT = f"results/mlflow/{config['experiment']}.json"
MODEL_DIR = "results/models/{dataset}/{flow}/seed{seed}"


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))


wildcard_constraints:
    dataset=_alternatives(j.dataset for j in JOBS),
    flow=_alternatives(j.flow for j in JOBS),
    seed=r"\d+",


def get_job(wildcards):
    """The experiment.Job of a (dataset, flow, seed) wildcard triple."""
    key = (wildcards.dataset, wildcards.flow, int(wildcards.seed))
    if key not in JOB_BY_KEY:
        raise ValueError(f"no job {key} in the config grid")
    return JOB_BY_KEY[key]


def get_data_dir(dataset):
    return f"results/data/{dataset}"


def get_split_files(dataset, splits):
    return {s: f"{get_data_dir(dataset)}/{s}.npy" for s in splits} | {
        "meta": f"{get_data_dir(dataset)}/meta.json"
    }


def get_train_inputs(wildcards):
    """Data splits for mle/distill jobs, the teacher's model for the student, MLflow init."""
    job = get_job(wildcards)
    inputs = {"mlflow": ancient(MLFLOW_INIT)}
    if job.objective in ("mle", "distill"):
        inputs |= get_split_files(job.dataset, ("train", "val"))
    if job.objective == "distill":
        teacher = experiment.teacher_job(config, job)
        inputs["teacher"] = get_model_file(teacher)
    return inputs


def get_evaluate_inputs(wildcards):
    """The trained model, the test split (mle/distill) and, for a student, its teacher."""
    job = get_job(wildcards)
    inputs = {"model": get_model_file(job), "mlflow": ancient(MLFLOW_INIT)}
    if job.objective in ("mle", "distill"):
        inputs |= get_split_files(job.dataset, ("test",))
    if job.objective == "distill":
        inputs["teacher"] = get_model_file(experiment.teacher_job(config, job))
    return inputs


def get_model_file(job):
    return f"results/models/{job.dataset}/{job.flow}/seed{job.seed}/train.json"


def get_metrics_file(job):
    return f"results/metrics/{job.dataset}/{job.flow}/seed{job.seed}.json"


def get_config_hash(wildcards):
    """A param, so that changing a job's settings reruns exactly that job."""
    return get_job(wildcards).config_hash


def get_dataset_options(wildcards):
    return dict((config.get("datasets") or {}).get(wildcards.dataset) or {})


def get_data_inputs(wildcards):
    """UCI data sets need the downloaded archive; the others are generated."""
    if wildcards.dataset in UCI_DATASETS:
        return {"raw": UCI_RAW}
    return {}


UCI_DATASETS = ("power", "gas", "hepmass", "miniboone", "bsds300")
UCI_ARCHIVE = "results/downloads/maf_data.tar.gz"
UCI_RAW = "results/downloads/maf_data"


def get_all_models():
    return [get_model_file(j) for j in JOBS]


def get_all_metrics():
    return [get_metrics_file(j) for j in JOBS]


TABLES = [
    f"results/tables/{name}.{ext}"
    for name in ("loglik", "vi", "timing")
    for ext in ("csv", "md", "tex")
]
RUNS_TABLE = "results/tables/runs.csv"
TIMING_TABLE = "results/timing/timing.csv"  # serial timing, one row per model
TIMING_CONDITIONS = "results/timing/conditions.json"  # load average, threads, sizes


def get_serial_threads():
    """Every core Snakemake may use, so that it runs nothing beside a serial measurement.

    Without ``--cores`` (a cluster executor) the rule asks SLURM for a node of its own
    (``slurm_extra``) and two threads.
    """
    try:
        return workflow.cores
    except WorkflowError:
        return 2


def get_final_outputs():
    out = [RUNS_TABLE, *TABLES, TIMING_TABLE, TIMING_CONDITIONS]
    try:  # the figures of workflow/rules/figures.smk, when it defines them
        out += list(rules.figures.input)
    except WorkflowError:
        pass
    return out


def get_train_runtime(wildcards, attempt):
    """Minutes: generous for the cluster, grows on retries."""
    job = get_job(wildcards)
    base = 60 if job.objective == "mle" else 30
    return base * attempt


def get_mem_mb(wildcards, attempt):
    return 3000 * attempt
