# Deploy models for predict-xrd (issue "Measured data"): every space group with enough structures,
# trained on clean δ-profiles and on what predict-xrd's front end makes of measured-like scans.
# The paper-protocol ensembles of xrd.smk stay as they are.


rule xrd_deploy_render:
    """Measured-like scans of one δ-profile shard through the front end (variant: `all` augmentations,
    or `no-<augmentation>` for the ablation, rendered for its seeded share of the structures only)."""
    input:
        XRD_OUT / "profiles/{source}/shard-{shard}.parquet",
    output:
        rendered=XRD_DEPLOY_OUT / "rendered/{variant}/{source}/shard-{shard}.parquet",
        rejects=XRD_DEPLOY_OUT / "rendered/{variant}/{source}/rejects-{shard}.parquet",
    wildcard_constraints:
        variant=r"all|no-[a-z0-9_]+",
    params:
        disable=lambda wc: " ".join(XRD_DEPLOY.get("disable", []) + ([wc.variant[3:]] if wc.variant != "all" else [])),
        copies=XRD_DEPLOY.get("copies", 1),
        fraction=lambda wc: xrd_deploy_fraction(wc.variant),
        seed=config["seed"],
    log:
        LOGS / "xrd/deploy/render-{variant}-{source}-{shard}.log",
    benchmark:
        BENCH / "xrd/deploy/render-{variant}-{source}-{shard}.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd deploy-render --profiles {input:q} --copies {params.copies} --seed {params.seed} "
        "--disable {params.disable} --fraction {params.fraction} --out {output.rendered:q} "
        "--rejects {output.rejects:q} > {log:q} 2>&1"


rule xrd_deploy_dataset:
    """Clean and front-end items of every group with >= deploy.min_per_group structures; held-out split
    (`subset`: all augmentations on the ablation's share of the training structures)."""
    input:
        profiles=[str(XRD_OUT / f"profiles/{src}/shard-{shard}.parquet") for src, shard in xrd_shards()],
        rendered=lambda wc: xrd_deploy_rendered("all" if wc.variant == "subset" else wc.variant),
    output:
        XRD_DEPLOY_OUT / "dataset/{variant}.parquet",
    wildcard_constraints:
        variant=r"all|subset|no-[a-z0-9_]+",
    params:
        min_per_group=XRD_DEPLOY.get("min_per_group", 20),
        holdout=XRD_DEPLOY.get("holdout", 0.1),
        fraction=lambda wc: xrd_deploy_fraction(wc.variant),
        seed=config["seed"],
    log:
        LOGS / "xrd/deploy/dataset-{variant}.log",
    benchmark:
        BENCH / "xrd/deploy/dataset-{variant}.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd deploy-dataset --profiles {input.profiles:q} --rendered {input.rendered:q} "
        "--min-per-group {params.min_per_group} --holdout {params.holdout} --train-fraction {params.fraction} "
        "--seed {params.seed} "
        "--out {output:q} > {log:q} 2>&1"


rule xrd_deploy_train:
    """One deploy member, calibrated on the held-out structures (GPU when present)."""
    input:
        XRD_DEPLOY_OUT / "dataset/all.parquet",
    output:
        model=XRD_DEPLOY_OUT / "models/{model}/all/fold0/seed{seed}/model.pt",
        history=XRD_DEPLOY_OUT / "models/{model}/all/fold0/seed{seed}/history.csv",
        heldout=XRD_DEPLOY_OUT / "models/{model}/all/fold0/seed{seed}/heldout.parquet",
        summary=XRD_DEPLOY_OUT / "models/{model}/all/fold0/seed{seed}/summary.json",
    wildcard_constraints:
        model="spgnet|spgvolnet",
        seed=r"\d+",
    params:
        train=lambda wc: xrd_deploy_train_flags(XRD_DEPLOY["train"]["epochs"]),
        confident=XRD_DEPLOY.get("confident_accuracy", 0.9),
        out=lambda wc, output: Path(output.model).parent,
    threads: XRD_DEPLOY.get("train", {}).get("threads", 1)
    resources:
        gpu=XRD_DEPLOY.get("train", {}).get("gpus_per_job", 0),
    log:
        LOGS / "xrd/deploy/train-{model}-seed{seed}.log",
    benchmark:
        BENCH / "xrd/deploy/train-{model}-seed{seed}.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd deploy-train --dataset {input:q} --model {wildcards.model} --seed {wildcards.seed} "
        "--confident-accuracy {params.confident} --threads {threads} {params.train} --out {params.out:q} > {log:q} 2>&1"


rule xrd_deploy_ablation_train:
    """A short SpgNet trained on the ablation's share of the structures (`subset`: every augmentation;
    `no-X`: X switched off), scored on the full-augmentation held-out items of `all`
    (`snakemake xrd_deploy_ablation`, not part of `all`)."""
    input:
        train=XRD_DEPLOY_OUT / "dataset/{variant}.parquet",
        reference=XRD_DEPLOY_OUT / "dataset/all.parquet",
    output:
        model=XRD_DEPLOY_OUT / "ablation/{variant}/spgnet/all/fold0/seed1/model.pt",
        summary=XRD_DEPLOY_OUT / "ablation/{variant}/spgnet/all/fold0/seed1/summary.json",
        scored=XRD_DEPLOY_OUT / "ablation/{variant}/score.json",
    wildcard_constraints:
        variant=r"subset|no-[a-z0-9_]+",
    params:
        train=lambda wc: xrd_deploy_train_flags(XRD_DEPLOY.get("ablation_epochs", 2)),
        out=lambda wc, output: Path(output.model).parent,
    threads: XRD_DEPLOY.get("train", {}).get("threads", 1)
    resources:
        gpu=XRD_DEPLOY.get("train", {}).get("gpus_per_job", 0),
    log:
        LOGS / "xrd/deploy/ablation-{variant}.log",
    benchmark:
        BENCH / "xrd/deploy/ablation-{variant}.tsv"
    conda:
        ENV
    shell:
        "(xtalspec xrd deploy-train --dataset {input.train:q} --model spgnet --seed 1 --threads {threads} "
        "{params.train} --out {params.out:q} && xtalspec xrd deploy-score --model {output.model:q} "
        "--dataset {input.reference:q} --variant {wildcards.variant} --out {output.scored:q}) > {log:q} 2>&1"


rule xrd_deploy_report:
    """Held-out accuracy (clean and front-end), validation curve, calibration (ECE, reliability diagram)."""
    input:
        summaries=xrd_deploy_members("summary.json"),
        heldout=xrd_deploy_members("heldout.parquet"),
    output:
        md=report(XRD_DEPLOY_OUT / "report/deploy.md", caption="../report/xrd_deploy.rst", category="SpgNet deploy"),
        figure=report(XRD_DEPLOY_OUT / "report/reliability.png", caption="../report/xrd_deploy.rst",
                      category="SpgNet deploy"),
    log:
        LOGS / "xrd/deploy/report.log",
    benchmark:
        BENCH / "xrd/deploy/report.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd deploy-report --summaries {input.summaries:q} --heldout {input.heldout:q} "
        "--md {output.md:q} --figure {output.figure:q} > {log:q} 2>&1"


rule xrd_deploy_ablation:
    """Target: one short model per switched-off augmentation, scored on the same held-out items."""
    input:
        scores=expand(XRD_DEPLOY_OUT / "ablation/{variant}/score.json",
                      variant=["subset"] + [f"no-{a}" for a in XRD_DEPLOY.get("ablation", [])]),
    output:
        report(XRD_DEPLOY_OUT / "report/ablation.md", caption="../report/xrd_deploy.rst", category="SpgNet deploy"),
    log:
        LOGS / "xrd/deploy/ablation.log",
    benchmark:
        BENCH / "xrd/deploy/ablation.tsv"
    conda:
        ENV
    shell:
        "xtalspec xrd deploy-ablation-table --scores {input.scores:q} --md {output:q} > {log:q} 2>&1"


rule xrd_deploy:
    """Target: predict-xrd's deploy models and their report."""
    input:
        xrd_deploy_members(),
        rules.xrd_deploy_report.output if XRD_DEPLOY.get("enabled", True) and "models" in XRD_DEPLOY else [],
