# spacegroupMining (Lan, Liu, Du & Billinge): PDFs -> 45-class CNN -> top-1/top-6 -> robustness sweeps.


rule pdf_profiles:
    """209-point PDF inputs of one structure shard (paper parameters, or randomised per structure)."""
    input:
        RESULTS / "structures/{source}/shard-{shard}.parquet",
    output:
        pdfs=PDF_OUT / "profiles/{kind}/{source}/shard-{shard}.parquet",
        rejects=PDF_OUT / "profiles/{kind}/{source}/rejects-{shard}.parquet",
    wildcard_constraints:
        kind="standard|randomised",
    params:
        randomise=lambda wc: f"--randomise-seed {config['seed']}" if wc.kind == "randomised" else "",
    log:
        LOGS / "pdf/profiles/{kind}-{source}-{shard}.log",
    benchmark:
        BENCH / "pdf/profiles/{kind}-{source}-{shard}.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf profiles --structures {input:q} --out {output.pdfs:q} --rejects {output.rejects:q} "
        "{params.randomise} > {log:q} 2>&1"


rule pdf_dataset_standard:
    """Classes (the paper's 45 groups present in the data) and the stratified 80/20 split."""
    input:
        pdf_shard_files("standard"),
    output:
        PDF_OUT / "dataset/standard.parquet",
    params:
        options=lambda wc: _flags(
            [
                ("--seed", config["seed"]),
                ("--test-fraction", PDF["test_fraction"]),
                ("--min-per-group", PDF["min_per_group"]),
            ]
        ),
    log:
        LOGS / "pdf/dataset-standard.log",
    benchmark:
        BENCH / "pdf/dataset-standard.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf dataset --pdfs {input:q} --out {output:q} {params.options} > {log:q} 2>&1"


rule pdf_dataset_randomised:
    """PDFs with parameters drawn from the swept ranges, same classes and split (beyond the paper)."""
    input:
        pdfs=pdf_shard_files("randomised"),
        like=PDF_OUT / "dataset/standard.parquet",
    output:
        PDF_OUT / "dataset/randomised.parquet",
    log:
        LOGS / "pdf/dataset-randomised.log",
    benchmark:
        BENCH / "pdf/dataset-randomised.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf dataset --pdfs {input.pdfs:q} --like {input.like:q} --out {output:q} > {log:q} 2>&1"


rule pdf_train:
    """Train the PDF classifier (weighted CE, Adam, batch 64, lr 5e-4·exp(−0.025·epoch))."""
    input:
        PDF_OUT / "dataset/{kind}.parquet",
    output:
        model=PDF_OUT / "models/{kind}/model.pt",
        predictions=PDF_OUT / "models/{kind}/predictions.parquet",
        history=PDF_OUT / "models/{kind}/history.csv",
    wildcard_constraints:
        kind="standard|randomised",
    params:
        train=lambda wc: _flags(
            [
                ("--epochs", PDF["train"]["epochs"]),
                ("--batch-size", PDF["train"]["batch_size"]),
                ("--lr", PDF["train"]["lr"]),
                ("--lr-decay", PDF["train"]["lr_decay"]),
                ("--seed", PDF["train"]["seed"]),
                ("--device", PDF["train"]["device"]),
            ]
        ),
    threads: PDF["train"]["threads"]
    resources:
        gpu=PDF["train"]["gpus_per_job"],
    log:
        LOGS / "pdf/train-{kind}.log",
    benchmark:
        BENCH / "pdf/train-{kind}.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf train --dataset {input:q} --threads {threads} {params.train} "
        "--out \"$(dirname {output.model:q})\" > {log:q} 2>&1"


rule pdf_topk_report:
    """Top-1 / top-6 accuracy on the test split, the paper's beside."""
    input:
        [PDF_OUT / f"models/{kind}/predictions.parquet" for kind in pdf_kinds()],
    output:
        md=report(PDF_OUT / "tables/topk.md", caption="../report/pdf_topk.rst", category="spacegroupMining"),
        csv=PDF_OUT / "tables/topk.csv",
    log:
        LOGS / "pdf/topk.log",
    benchmark:
        BENCH / "pdf/topk.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf topk --predictions {input:q} --csv {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule pdf_sweep:
    """Robustness to one PDF parameter: recompute a seeded 10 % of the test set, no retraining."""
    input:
        dataset=PDF_OUT / "dataset/standard.parquet",
        models=[PDF_OUT / f"models/{kind}/model.pt" for kind in pdf_kinds()],
    output:
        md=report(
            PDF_OUT / "tables/table{number}_{parameter}.md",
            caption="../report/pdf_sweep_table.rst",
            category="spacegroupMining",
        ),
        csv=PDF_OUT / "tables/table{number}_{parameter}.csv",
        figure=report(
            PDF_OUT / "figures/figure{number}_{parameter}.png",
            caption="../report/pdf_sweep_figure.rst",
            category="spacegroupMining",
        ),
    wildcard_constraints:
        parameter="|".join(PDF_SWEEPS),
        number="|".join(str(n) for n in PDF_SWEEPS.values()),
    params:
        options=lambda wc: _flags(
            [
                ("--fraction", PDF["sweep_fraction"]),
                ("--n-bootstrap", PDF["n_bootstrap"]),
                ("--seed", config["seed"]),
            ]
        ),
    log:
        LOGS / "pdf/sweep-{number}-{parameter}.log",
    benchmark:
        BENCH / "pdf/sweep-{number}-{parameter}.tsv"
    conda:
        ENV
    shell:
        "xtalspec pdf sweep {wildcards.parameter} --dataset {input.dataset:q} --models {input.models:q} "
        "{params.options} --csv {output.csv:q} --md {output.md:q} --figure {output.figure:q} > {log:q} 2>&1"


rule pdf_table2:
    """Target: robustness to rmax (Table 2, Figure 2)."""
    input:
        pdf_sweep_outputs("rmax"),


rule pdf_table3:
    """Target: robustness to Qmax (Table 3, Figure 3)."""
    input:
        pdf_sweep_outputs("qmax"),


rule pdf_table4:
    """Target: robustness to Qdamp (Table 4, Figure 4)."""
    input:
        pdf_sweep_outputs("qdamp"),


rule pdf_table5:
    """Target: robustness to Uiso (Table 5, Figure 5)."""
    input:
        pdf_sweep_outputs("uiso"),


rule pdf_robustness:
    """Target: all four sweeps."""
    input:
        [f for parameter in PDF_SWEEPS for f in pdf_sweep_outputs(parameter)],


rule pdf:
    """Target: the whole spacegroupMining system."""
    input:
        rules.pdf_topk_report.output,
        rules.pdf_robustness.input,
