# PDF deploy models (issue "Measured data"): predict-pdf's default. One PDFNet per radiation (X-ray,
# neutron), trained on every space group with >= pdf.deploy.min_per_group structures, on PDFs
# rendered like measured ones (randomised Table-1 parameters, Qmax termination, noise, scale, rmax
# cut-off). The paper-protocol models of pdf.smk stay as they are (`--models results/pdf/models`).


rule pdf_deploy_profiles:
    """Measured-like PDFs of one structure shard, X-ray and neutron from one neighbour search (all groups)."""
    input:
        RESULTS / "structures/{source}/shard-{shard}.parquet",
    output:
        xray=PDF_DEPLOY_OUT / "profiles/{source}/xray-{shard}.parquet",
        neutron=PDF_DEPLOY_OUT / "profiles/{source}/neutron-{shard}.parquet",
        rejects=PDF_DEPLOY_OUT / "profiles/{source}/rejects-{shard}.parquet",
    params:
        options=lambda wc: _flags(
            [
                ("--copies", PDF_DEPLOY["copies"]),
                ("--seed", config["seed"]),
                ("--augment", json.dumps(PDF_DEPLOY["augment"], separators=(",", ":"))),
            ]
        ),
    log:
        LOGS / "pdf/deploy/profiles-{source}-{shard}.log",
    benchmark:
        BENCH / "pdf/deploy/profiles-{source}-{shard}.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf deploy-profiles --structures {input:q} --out-xray {output.xray:q} "
        "--out-neutron {output.neutron:q} --rejects {output.rejects:q} {params.options} > {log:q} 2>&1"


rule pdf_deploy_dataset:
    """One radiation's PDFs of the groups with >= min_per_group structures; a seeded share held out."""
    input:
        lambda wc: pdf_deploy_shard_files(wc.radiation),
    output:
        PDF_DEPLOY_OUT / "dataset/{radiation}.parquet",
    wildcard_constraints:
        radiation="xray|neutron",
    params:
        options=lambda wc: _flags(
            [
                ("--radiation", PDF_RADIATION_NAMES[wc.radiation]),
                ("--min-per-group", PDF_DEPLOY["min_per_group"]),
                ("--holdout", PDF_DEPLOY["holdout"]),
                ("--seed", config["seed"]),
            ]
        ),
    log:
        LOGS / "pdf/deploy/dataset-{radiation}.log",
    benchmark:
        BENCH / "pdf/deploy/dataset-{radiation}.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf deploy-dataset --pdfs {input:q} {params.options} --out {output:q} > {log:q} 2>&1"


rule pdf_deploy_train:
    """One deploy model: held-out top-1/top-6 after every epoch, held-out logits for calibration."""
    input:
        PDF_DEPLOY_OUT / "dataset/{radiation}.parquet",
    output:
        model=PDF_DEPLOY_OUT / "{radiation}/model.pt",
        history=PDF_DEPLOY_OUT / "{radiation}/history.csv",
        heldout=PDF_DEPLOY_OUT / "{radiation}/heldout.parquet",
        summary=PDF_DEPLOY_OUT / "{radiation}/summary.json",
    wildcard_constraints:
        radiation="xray|neutron",
    params:
        train=lambda wc: _flags(
            [
                ("--epochs", PDF_DEPLOY["train"]["epochs"]),
                ("--batch-size", PDF_DEPLOY["train"]["batch_size"]),
                ("--lr", PDF_DEPLOY["train"]["lr"]),
                ("--lr-decay", PDF_DEPLOY["train"]["lr_decay"]),
                ("--class-weight-power", PDF_DEPLOY["train"]["class_weight_power"]),
                ("--confident-accuracy", PDF_DEPLOY.get("confident_accuracy", 0.9)),
                ("--seed", PDF_DEPLOY["train"]["seed"]),
                ("--device", PDF_DEPLOY["train"]["device"]),
            ]
        ),
        out=lambda wc, output: Path(output.model).parent,
    threads: PDF_DEPLOY["train"]["threads"]
    resources:
        gpu=PDF_DEPLOY["train"]["gpus_per_job"],
    log:
        LOGS / "pdf/deploy/train-{radiation}.log",
    benchmark:
        BENCH / "pdf/deploy/train-{radiation}.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf deploy-train --dataset {input:q} --threads {threads} {params.train} "
        "--out {params.out:q} > {log:q} 2>&1"


rule pdf_deploy_report:
    """Held-out accuracy and validation curve of the deploy models."""
    input:
        pdf_deploy_files("summary.json"),
    output:
        md=report(PDF_DEPLOY_OUT / "tables/deploy.md", caption="../report/pdf_deploy.rst", category="spacegroupMining"),
        json=PDF_DEPLOY_OUT / "tables/deploy.json",
    log:
        LOGS / "pdf/deploy/report.log",
    benchmark:
        BENCH / "pdf/deploy/report.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf deploy-report --summaries {input:q} --md {output.md:q} --json {output.json:q} > {log:q} 2>&1"


rule pdf_deploy:
    """Target: the deploy models of predict-pdf (part of `all` unless pdf.deploy.enabled is false)."""
    input:
        pdf_deploy_files("model.pt"),
        rules.pdf_deploy_report.output if pdf_deploy_enabled() else [],
