# Helpers only: the job grid, targets, wildcard constraints, input functions, resources.
import re

from flows_tf import experiment, paths, schedule

# Cross-references the JSON schema cannot express (unknown data sets and hyperparameters, data
# set kinds, data files, the student); every problem names its key, before any job starts.
experiment.check_config(config)

JOBS = experiment.jobs(config)
JOB_BY_KEY = {(j.dataset, j.flow, j.seed): j for j in JOBS}
MLFLOW_INIT = paths.of(paths.MLFLOW_INIT, experiment=config["experiment"])


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))


wildcard_constraints:
    dataset=_alternatives(j.dataset for j in JOBS),
    flow=_alternatives(j.flow for j in JOBS),


SEEDS = [int(s) for s in config.get("seeds", [0])]


def get_seed_files(template):
    """A per-seed path template for every seed, with {dataset} and {flow} left as wildcards."""
    return expand(template, seed=SEEDS, allow_missing=True)


# train_jobs: grouped: one training job per mle data set for its grouped flows, and one for every
# energy target's flows (flows_tf.experiment.grouped_flows); the others, one job per variant
GROUPED = {o: experiment.grouped_flows(config, o) for o in ("mle", "vi")}
TARGET_VARIANTS = [
    (d, f) for d in (config.get("vi") or {}).get("datasets", []) for f in GROUPED["vi"]
]
ALONE = [
    (j.dataset, j.flow) for j in JOBS if j.flow not in GROUPED.get(j.objective, [])
]


def alternatives_or_none(names):
    """A wildcard constraint for exactly ``names``; one that matches nothing when empty."""
    return _alternatives(names) if names else "(?!)"


def get_pairs(wildcards):
    """The (dataset, flow) variants a training (or evaluate) job of these wildcards trains, in
    the order of its files: its own, an mle data set's grouped flows, or the targets' job's.
    """
    if "flow" in wildcards.keys():
        return [(wildcards.dataset, wildcards.flow)]
    if "dataset" in wildcards.keys():
        return [(wildcards.dataset, f) for f in GROUPED["mle"]]
    return TARGET_VARIANTS


def get_group_files(template, pairs):
    """A per-seed path template for every (dataset, flow) of ``pairs`` and seed, variant by
    variant; a dataset of None is left as the wildcard {dataset}."""
    files = []
    for dataset, flow in pairs:
        names = {"flow": flow} | ({} if dataset is None else {"dataset": dataset})
        files += expand(template, seed=SEEDS, allow_missing=True, **names)
    return files


def get_variant_metrics(wildcards):
    """Where the evaluate step publishes each seed's metrics, variant by variant: its training
    job mirrors the evaluation it makes into MLflow under these names (flows_tf.jobs.draft).
    """
    return [[get_metrics_file(job) for job in v] for v in get_variants(wildcards)]


def get_variants(wildcards):
    """The experiment.Job of every seed of each variant a job of these wildcards trains."""
    return [_variant(d, f) for d, f in get_pairs(wildcards)]


def get_variant(wildcards):
    """The experiment.Job of every seed of a (dataset, flow) wildcard pair."""
    return _variant(wildcards.dataset, wildcards.flow)


def _variant(dataset, flow):
    keys = [(dataset, flow, s) for s in SEEDS]
    if keys[0] not in JOB_BY_KEY:
        raise ValueError(f"no variant {keys[0][:2]} in the config grid")
    return [JOB_BY_KEY[k] for k in keys]


def get_data_dir(dataset):
    return paths.of(paths.DATA_DIR, dataset=dataset)


def get_split_files(dataset, splits):
    return {s: paths.of(paths.SPLIT, dataset=dataset, split=s) for s in splits} | {
        "meta": paths.of(paths.DATA_META, dataset=dataset)
    }


def get_variant_inputs(variants, splits):
    """MLflow init, the data set's ``splits`` (mle/distill) and, for a student, its teachers'
    models, seed by seed (``variants``: the seeds' jobs of each variant of one training job:
    one data set's, or energy targets', which read no splits).
    """
    inputs = {"mlflow": ancient(MLFLOW_INIT)}
    if variants[0][0].on_data:
        inputs |= get_split_files(variants[0][0].dataset, splits)
    teachers = [
        experiment.teacher_job(config, j) for v in variants for j in v if j.teacher
    ]
    if teachers:
        inputs["teacher"] = [get_model_file(j) for j in teachers]
    return inputs


def get_train_inputs(wildcards):
    """What a training job reads: the test split too, because each model is evaluated in the
    job once saved (the evaluate step publishes that evaluation if nothing it read has
    changed: flows_tf.jobs.draft)."""
    return get_variant_inputs(get_variants(wildcards), ("train", "val", "test"))


def get_evaluate_inputs(wildcards):
    """The trained models (seed by seed), the test split and the teachers."""
    variant = get_variant(wildcards)
    models = [get_model_file(j) for j in variant]
    return {"model": models, **get_variant_inputs([variant], ("test",))}


def get_model_file(job):
    return paths.of_job(paths.MODEL_FILE, job)


def get_metrics_file(job):
    return paths.of_job(paths.METRICS, job)


def get_config_hash(wildcards):
    """A param, so that changing a variant's settings reruns exactly its jobs (the hash of its
    variants' seeds' hashes)."""
    return experiment.stable_hash(
        [j.config_hash for v in get_variants(wildcards) for j in v]
    )


def get_dataset_options(wildcards):
    return dict((config.get("datasets") or {}).get(wildcards.dataset) or {})


def get_data_inputs(wildcards):
    """UCI data sets need the downloaded archive; the others are generated."""
    if wildcards.dataset in UCI_DATASETS:
        return {"raw": UCI_RAW}
    return {}


UCI_DATASETS = ("power", "gas", "hepmass", "miniboone", "bsds300")
UCI_ARCHIVE = f"{paths.DOWNLOADS}/maf_data.tar.gz"
UCI_RAW = f"{paths.DOWNLOADS}/maf_data"


def get_all_models():
    return [get_model_file(j) for j in JOBS]


def get_all_metrics():
    return [get_metrics_file(j) for j in JOBS]


TABLES = [
    paths.of(paths.TABLE, name=name, ext=ext)
    for name in ("loglik", "vi", "timing")
    for ext in ("csv", "md", "tex")
]
RUNS_TABLE = paths.RUNS_TABLE
TIMING_TABLE = paths.TIMING
TIMING_CONDITIONS = paths.TIMING_CONDITIONS
TIMING_SETTINGS = ("timing_n", "timing_repeats")


def get_evaluation_settings(timing):
    """The `evaluation:` settings of time_models (`timing`) or of evaluate (the others), so
    that changing how models are timed re-evaluates none."""
    settings = config.get("evaluation", {})
    return {k: v for k, v in settings.items() if (k in TIMING_SETTINGS) == timing}


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


# Longest first (a teacher with its student's seconds): the seconds of this folder's last run
# of a variant, else of the default run's table (flows_tf.schedule).
TRAIN_PRIORITIES = schedule.train_priorities(
    [(j.dataset, j.flow, j.teacher) for j in JOBS],
    schedule.read_benchmarks(schedule.TRAIN_BENCHMARKS),
    schedule.read_job_seconds(schedule.JOB_SECONDS),
)


def get_train_priority(wildcards):
    """A job's variants' priorities together (a grouped job's own benchmark file is not read:
    its variants' seconds come from per-variant records, else the committed table)."""
    return sum(TRAIN_PRIORITIES[pair] for pair in get_pairs(wildcards))


def get_train_runtime(wildcards, attempt):
    """Minutes: generous for the cluster (per seed of each variant), grows on retries."""
    variants = get_variants(wildcards)
    base = 60 if variants[0][0].objective == "mle" else 30
    return base * len(SEEDS) * len(variants) * attempt


def get_mem_mb(wildcards, attempt):
    return 3000 * attempt
