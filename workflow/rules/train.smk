# Training: the MLflow experiment once, then one job per (dataset, flow, seed).


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


rule train:
    input:
        unpack(get_train_inputs),
    output:
        model=paths.MODEL_FILE,
        history=paths.HISTORY,
        samples=paths.SAMPLES,
    log:
        "logs/train/{dataset}/{flow}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{dataset}/{flow}/seed{seed}.tsv"
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
        model_dir=MODEL_DIR,
    script:
        "../scripts/train.py"


rule train_all:
    input:
        get_all_models(),
