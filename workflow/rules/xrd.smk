# SpgNet / SpgVolNet (Ozaki et al. 2025): δ-profiles -> data sets -> 6-seed ensembles -> tables.

rule xrd_profiles:
    """δ-function profiles (10,001 bins of 1/d) of one structure shard, stored sparse."""
    input:
        RESULTS / "structures/{source}/shard-{shard}.parquet",
    output:
        profiles=XRD_OUT / "profiles/{source}/shard-{shard}.parquet",
        rejects=XRD_OUT / "profiles/{source}/rejects-{shard}.parquet",
    log:
        LOGS / "xrd/profiles/{source}-{shard}.log",
    benchmark:
        BENCH / "xrd/profiles/{source}-{shard}.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd profiles --structures {input:q} --out {output.profiles:q} --rejects {output.rejects:q} > {log:q} 2>&1"


rule xrd_dataset:
    """Space groups with enough members, the seven outlier ranges (Table 2), validation folds."""
    input:
        [str(XRD_OUT / f"profiles/{src}/shard-{shard}.parquet") for src, shard in xrd_shards()],
    output:
        dataset=XRD_OUT / "dataset/dataset.parquet",
        table2=report(XRD_OUT / "tables/table2.md", caption="../report/xrd_table2.rst", category="SpgNet"),
        table2_csv=XRD_OUT / "tables/table2.csv",
        sets=report(XRD_OUT / "tables/sets.md", caption="../report/xrd_sets.rst", category="SpgNet"),
        folds=XRD_OUT / "tables/validation_folds.csv",
    params:
        options=lambda wc: _flags(
            [
                ("--min-per-group", XRD["min_per_group"]),
                ("--max-groups", XRD["max_groups"]),
                ("--n-folds", XRD["n_folds"]),
                ("--per-fold", XRD["per_fold"]),
                ("--seed", config["seed"]),
                ("--leakage-bins", XRD["leakage_bins"]),
                ("--peak-threshold", XRD["peak_threshold"]),
                ("--max-train-per-group", XRD["max_train_per_group"]),
            ]
        ),
    log:
        LOGS / "xrd/dataset.log",
    benchmark:
        BENCH / "xrd/dataset.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd dataset --profiles {input:q} --out {output.dataset:q} --table2 {output.table2:q} "
        "--table2-csv {output.table2_csv:q} --sets {output.sets:q} --folds {output.folds:q} "
        "{params.options} > {log:q} 2>&1"


if XRD["train"]["together"]:

    rule xrd_train_together:
        """All seeds of one model × range × validation fold, trained together in one process as one
        batched model (xrd.train.together; GPU when present). Same per-seed files as xrd_train."""
        input:
            XRD_OUT / "dataset/dataset.parquet",
        output:
            models=expand(XRD_OUT / "models/{{model}}/{{range}}/fold{{fold}}/seed{seed}/model.pt", seed=XRD["seeds"]),
            predictions=expand(
                XRD_OUT / "models/{{model}}/{{range}}/fold{{fold}}/seed{seed}/predictions.parquet", seed=XRD["seeds"]
            ),
            histories=expand(
                XRD_OUT / "models/{{model}}/{{range}}/fold{{fold}}/seed{seed}/history.csv", seed=XRD["seeds"]
            ),
        wildcard_constraints:
            model="spgnet|spgvolnet",
            fold=r"\d+",
        params:
            train=lambda wc: _flags(
                [
                    ("--epochs", XRD["train"]["epochs"]),
                    ("--batch-size", XRD["train"]["batch_size"]),
                    ("--lr", XRD["train"]["lr"]),
                    ("--volume-weight", XRD["train"]["volume_weight"]),
                    ("--device", XRD["train"]["device"]),
                ]
            ),
            seeds=" ".join(str(s) for s in XRD["seeds"]),
            out=lambda wc: XRD_OUT / f"models/{wc.model}/{wc.range}/fold{wc.fold}",
        threads: XRD["train"]["threads"]
        resources:
            gpu=XRD["train"]["gpus_per_job"],
        log:
            LOGS / "xrd/train/{model}-{range}-fold{fold}-together.log",
        benchmark:
            BENCH / "xrd/train/{model}-{range}-fold{fold}-together.tsv"
        conda:
            ENV
        shell:
            "xtalspec xrd train-ensemble --dataset {input:q} --model {wildcards.model} --range {wildcards.range} "
            "--fold {wildcards.fold} --seeds {params.seeds} --threads {threads} {params.train} "
            "--out {params.out:q} > {log:q} 2>&1"

else:

    rule xrd_train:
        """One ensemble member: model × range × validation fold × seed (GPU when present)."""
        input:
            XRD_OUT / "dataset/dataset.parquet",
        output:
            model=XRD_OUT / "models/{model}/{range}/fold{fold}/seed{seed}/model.pt",
            predictions=XRD_OUT / "models/{model}/{range}/fold{fold}/seed{seed}/predictions.parquet",
            history=XRD_OUT / "models/{model}/{range}/fold{fold}/seed{seed}/history.csv",
        wildcard_constraints:
            model="spgnet|spgvolnet",
            fold=r"\d+",
            seed=r"\d+",
        params:
            train=lambda wc: _flags(
                [
                    ("--epochs", XRD["train"]["epochs"]),
                    ("--batch-size", XRD["train"]["batch_size"]),
                    ("--lr", XRD["train"]["lr"]),
                    ("--volume-weight", XRD["train"]["volume_weight"]),
                    ("--device", XRD["train"]["device"]),
                ]
            ),
        threads: XRD["train"]["threads"]
        resources:
            gpu=XRD["train"]["gpus_per_job"],
        log:
            LOGS / "xrd/train/{model}-{range}-fold{fold}-seed{seed}.log",
        benchmark:
            BENCH / "xrd/train/{model}-{range}-fold{fold}-seed{seed}.tsv"
        conda:
            ENV
        shell:
            "xtalspec xrd train --dataset {input:q} --model {wildcards.model} --range {wildcards.range} "
            "--fold {wildcards.fold} --seed {wildcards.seed} --threads {threads} {params.train} "
            "--out \"$(dirname {output.model:q})\" > {log:q} 2>&1"


rule xrd_table3_report:
    """Table 3: SpgNet/SpgVolNet × specific/ensemble mean, mean and 95 % interval over folds."""
    input:
        member_files("predictions.parquet", ranges=[XRD["table3_range"]]),
    output:
        csv=XRD_OUT / "tables/table3.csv",
        md=report(XRD_OUT / "tables/table3.md", caption="../report/xrd_table3.rst", category="SpgNet"),
    params:
        range=XRD["table3_range"],
    log:
        LOGS / "xrd/table3.log",
    benchmark:
        BENCH / "xrd/table3.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd report table3 --predictions {input:q} --range {params.range:q} "
        "--csv {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule xrd_ranges_report:
    """Table SXI: SpgNet accuracy by training range (outliers excluded or not)."""
    input:
        member_files("predictions.parquet", models=["spgnet"]),
    output:
        csv=XRD_OUT / "tables/table_sxi.csv",
        md=report(XRD_OUT / "tables/table_sxi.md", caption="../report/xrd_ranges.rst", category="SpgNet"),
    log:
        LOGS / "xrd/ranges.log",
    benchmark:
        BENCH / "xrd/ranges.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd report ranges --predictions {input:q} --csv {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule xrd_confusion_report:
    """57×57 (here: configured groups) confusion matrices, per member and ensemble mean."""
    input:
        member_files("predictions.parquet", ranges=[XRD["table3_range"]]),
    output:
        figures=[
            report(
                xrd_confusion_file(m, "ensemble", ".png"),
                caption="../report/xrd_confusion.rst",
                category="SpgNet",
            )
            for m in xrd_models()
        ],
        members=[
            xrd_confusion_file(m, label, ".csv")
            for m in xrd_models()
            for label in ROMAN[: len(XRD["seeds"])] + ["ensemble"]
        ],
        member_figures=[
            report(
                xrd_confusion_file(m, label, ".png"),
                caption="../report/xrd_confusion_members.rst",
                category="SpgNet",
                subcategory="Confusion matrices of the members",
            )
            for m in xrd_models()
            for label in ROMAN[: len(XRD["seeds"])]
        ],
    params:
        range=XRD["table3_range"],
        template=lambda wc: XRD_CONFUSION,
    log:
        LOGS / "xrd/confusion.log",
    benchmark:
        BENCH / "xrd/confusion.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd report confusion --predictions {input:q} --range {params.range:q} "
        "--template {params.template:q} > {log:q} 2>&1"


rule xrd_volume_report:
    """Volume error of SpgVolNet: histogram, Cauchy fit, median and quartiles."""
    input:
        member_files("predictions.parquet", models=["spgvolnet"]),
    output:
        figure=report(XRD_OUT / "figures/volume_error.png", caption="../report/xrd_volume.rst", category="SpgNet"),
        summary=XRD_OUT / "figures/volume_summary.json",
        errors=XRD_OUT / "figures/volume_errors.csv",
    log:
        LOGS / "xrd/volume.log",
    benchmark:
        BENCH / "xrd/volume.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd report volume --predictions {input:q} --figure {output.figure:q} --summary {output.summary:q} "
        "--errors {output.errors:q} > {log:q} 2>&1"


rule xrd_topk_report:
    """Top-3 predictions with each member's probability (Tables SI–SIX format)."""
    input:
        member_files("predictions.parquet", ranges=[XRD["table3_range"]]),
    output:
        tables=[
            report(XRD_TOPK.format(model=m), caption="../report/xrd_topk.rst", category="SpgNet")
            for m in xrd_models()
        ],
    params:
        range=XRD["table3_range"],
        template=lambda wc: XRD_TOPK,
    log:
        LOGS / "xrd/topk.log",
    benchmark:
        BENCH / "xrd/topk.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd report topk --predictions {input:q} --range {params.range:q} "
        "--template {params.template:q} > {log:q} 2>&1"


rule xrd_curves_report:
    """Training curves of every member."""
    input:
        member_files("history.csv"),
    output:
        report(XRD_OUT / "figures/training_curves.png", caption="../report/xrd_curves.rst", category="SpgNet"),
    log:
        LOGS / "xrd/curves.log",
    benchmark:
        BENCH / "xrd/curves.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd report curves --predictions {input:q} --figure {output:q} > {log:q} 2>&1"


rule xrd_table3:
    """Target: Table 3 only (from saved predictions)."""
    input:
        rules.xrd_table3_report.output,


rule xrd_confusion:
    """Target: confusion matrices only."""
    input:
        rules.xrd_confusion_report.output,


rule xrd_volume:
    """Target: volume analysis only."""
    input:
        rules.xrd_volume_report.output,


rule xrd:
    """Target: the whole SpgNet/SpgVolNet system."""
    input:
        rules.xrd_dataset.output,
        rules.xrd_table3_report.output,
        rules.xrd_ranges_report.output,
        rules.xrd_confusion_report.output,
        rules.xrd_volume_report.output,
        rules.xrd_topk_report.output,
        rules.xrd_curves_report.output,
