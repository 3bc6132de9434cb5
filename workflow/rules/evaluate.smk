# Evaluation: test log-likelihood, timing and diagnostics of one trained flow.


rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        "results/metrics/{dataset}/{flow}/seed{seed}.json",
    log:
        "logs/evaluate/{dataset}/{flow}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{flow}/seed{seed}.tsv"
    conda:
        "../envs/flowbench.yaml"
    threads: 2
    resources:
        mem_mb=get_mem_mb,
        runtime=30,
    params:
        experiment=config["experiment"],
        config_hash=get_config_hash,
        model_dir=MODEL_DIR,
        evaluation=config.get("evaluation", {}),
    script:
        "../scripts/evaluate.py"


rule evaluate_all:
    input:
        get_all_metrics(),
