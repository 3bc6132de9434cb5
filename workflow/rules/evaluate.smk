# Evaluation: test log-likelihood and diagnostics of a variant's trained seeds (one job, as
# training); then the serial timing of every model at once. The training job already evaluated
# each model in its own process; this step publishes that evaluation when its fingerprint
# (settings, threads, model, teacher, data, code) is this step's, and evaluates afresh
# otherwise (flows_tf.jobs.draft).


rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        metrics=get_seed_files(paths.METRICS),
        loglik=get_seed_files(paths.PER_EXAMPLE),
    log:
        "logs/evaluate/{dataset}/{flow}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{flow}.tsv"
    conda:
        "../envs/flowbench.yaml"
    threads: 1
    resources:
        mem_mb=get_mem_mb,
        runtime=30,
    params:
        experiment=config["experiment"],
        config_hash=get_config_hash,
        variants=get_pairs,
        seeds=SEEDS,
        evaluation=get_evaluation_settings(timing=False),
    script:
        "../scripts/evaluate.py"


rule evaluate_all:
    input:
        get_all_metrics(),


# One serial step after every evaluation: all cores, so that nothing runs beside it.
rule time_models:
    input:
        metrics=get_all_metrics(),
        mlflow=ancient(MLFLOW_INIT),
    output:
        timing=TIMING_TABLE,
        conditions=TIMING_CONDITIONS,
    log:
        "logs/timing/time_models.log",
    benchmark:
        "benchmarks/time_models/time_models.tsv"
    conda:
        "../envs/flowbench.yaml"
    threads: get_serial_threads()
    resources:
        mem_mb=4000,
        runtime=60,
        slurm_extra="--exclusive",
    params:
        evaluation=get_evaluation_settings(timing=True),
    script:
        "../scripts/time_models.py"
