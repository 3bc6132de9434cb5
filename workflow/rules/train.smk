# Training: the MLflow experiment once, then one job per (dataset, flow) for all its seeds, or
# with train_jobs: grouped one job for several variants.


rule mlflow_init:
    output:
        MLFLOW_INIT,
    log:
        "logs/mlflow_init.log",
    conda:
        "../envs/flowbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        experiment=config["experiment"],
    script:
        "../scripts/mlflow_init.py"


# One job per (dataset, flow): its seeds train one after another in one process, each into its
# own folder and MLflow run, sharing TensorFlow's start, the data and the compiled training steps
# (flows_tf.jobs.train_variant); the same weights as one job per seed. With train_jobs:
# grouped, only the distillation teacher and students (ALONE).
rule train:
    input:
        unpack(get_train_inputs),
    output:
        model=get_seed_files(paths.MODEL_FILE),
        history=get_seed_files(paths.HISTORY),
        samples=get_seed_files(paths.SAMPLES),
    log:
        "logs/train/{dataset}/{flow}.log",
    benchmark:
        "benchmarks/train/{dataset}/{flow}.tsv"
    wildcard_constraints:
        dataset=alternatives_or_none({d for d, _ in ALONE}),
        flow=alternatives_or_none({f for _, f in ALONE}),
    priority: get_train_priority
    conda:
        "../envs/flowbench.yaml"
    # one thread per job: on 2 cores, two one-thread jobs train 20-25 % more steps/s than four
    # two-thread jobs, to the same weights (benchmarks/THREAD_LAYOUT.md)
    threads: 1
    resources:
        mem_mb=get_mem_mb,
        runtime=get_train_runtime,
    params:
        experiment=config["experiment"],
        config_hash=get_config_hash,
        variants=get_pairs,
        seeds=SEEDS,
        metrics=get_variant_metrics,
    script:
        "../scripts/train.py"


# train_jobs: grouped: the train rule with other outputs: one job per mle data set for its grouped
# flows ({dataset}), and one for every energy target's flows (no wildcard), variant after variant
# in one process (flows_tf.jobs.train_variants): one start of TensorFlow and MLflow instead of
# one per variant (README, "How long it takes").
DATA_VARIANTS = [(None, f) for f in GROUPED["mle"]]  # {dataset} left as a wildcard
if DATA_VARIANTS:

    use rule train as train_data with:
        output:
            model=get_group_files(paths.MODEL_FILE, DATA_VARIANTS),
            history=get_group_files(paths.HISTORY, DATA_VARIANTS),
            samples=get_group_files(paths.SAMPLES, DATA_VARIANTS),
        log:
            "logs/train/{dataset}.log",
        benchmark:
            "benchmarks/train/{dataset}.tsv"
        wildcard_constraints:
            dataset=alternatives_or_none((config.get("mle") or {}).get("datasets", [])),


if TARGET_VARIANTS:

    use rule train as train_targets with:
        output:
            model=get_group_files(paths.MODEL_FILE, TARGET_VARIANTS),
            history=get_group_files(paths.HISTORY, TARGET_VARIANTS),
            samples=get_group_files(paths.SAMPLES, TARGET_VARIANTS),
        log:
            "logs/train/targets.log",
        benchmark:
            "benchmarks/train/targets.tsv"


rule train_all:
    input:
        get_all_models(),
