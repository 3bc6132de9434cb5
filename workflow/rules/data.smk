# Data: generate / preprocess each data set into train, val and test splits.


rule prepare_data:
    input:
        unpack(get_data_inputs),
    output:
        train=paths.of(paths.SPLIT, dataset="{dataset}", split="train"),
        val=paths.of(paths.SPLIT, dataset="{dataset}", split="val"),
        test=paths.of(paths.SPLIT, dataset="{dataset}", split="test"),
        meta=paths.DATA_META,
    log:
        "logs/data/{dataset}.log",
    conda:
        "../envs/flowbench.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        options=get_dataset_options,
        seed=0,
    script:
        "../scripts/prepare_data.py"


rule download_uci:
    output:
        UCI_ARCHIVE,
    log:
        "logs/data/download_uci.log",
    conda:
        "../envs/flowbench.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=120,
    params:
        url=lambda wildcards: config["uci"]["url"],
        md5=lambda wildcards: config["uci"].get("md5"),
        sha256=lambda wildcards: config["uci"].get("sha256"),
    script:
        "../scripts/download.py"


rule extract_uci:
    input:
        UCI_ARCHIVE,
    output:
        directory(UCI_RAW),
    log:
        "logs/data/extract_uci.log",
    conda:
        "../envs/flowbench.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/extract.py"
