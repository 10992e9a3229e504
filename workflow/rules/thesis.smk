# Thesis systems (Jha 2019, paper 002).
# Compositions: records of a source (janaf offline; oqmd, mp online, cached) -> cleaned 10-fold data
# set -> 10-fold CV of ElemNet, IRNet-17/48 and random forests, learning curve, transfer learning.
# PADNet: the SpgNet data set rendered as laboratory patterns -> PADNet and plain SpgNets with
# background removal -> accuracy vs background strength. All tables/figures from saved predictions.

COMP = THESIS["compositions"]
PAD = THESIS["padnet"]


wildcard_constraints:
    csource="janaf|oqmd|mp",
    cmodel="elemnet|irnet17|irnet24|irnet48|rf_comp|rf_phys",
    pmodel="padnet|spgnet_min|spgnet_min_mean|spgnet_raw|spgnet_clean",


rule compositions_fetch:
    """One source's formation enthalpies per atom; bad rows in rejects (REST pages cached)."""
    output:
        records=THESIS_OUT / "compositions/{csource}/records.parquet",
        rejects=THESIS_OUT / "compositions/{csource}/fetch_rejects.parquet",
    params:
        options=lambda wc: composition_source_json(wc.csource),
        cache=lambda wc: THESIS_OUT / f"compositions/{wc.csource}/cache",
    log:
        LOGS / "thesis/fetch-{csource}.log",
    benchmark:
        BENCH / "thesis/fetch-{csource}.tsv"
    conda:
        ENV
    shell:
        "xtalspec compositions fetch --source {wildcards.csource} --options {params.options:q} "
        "--cache {params.cache:q} --out {output.records:q} --rejects {output.rejects:q} > {log:q} 2>&1"


rule compositions_dataset:
    """Lowest entry per composition, single elements and ±nσ outliers out, seeded K folds."""
    input:
        THESIS_OUT / "compositions/{csource}/records.parquet",
    output:
        dataset=THESIS_OUT / "compositions/{csource}/dataset.parquet",
        rejects=THESIS_OUT / "compositions/{csource}/dataset_rejects.parquet",
    params:
        options=lambda wc: _flags(
            [("--n-folds", COMP["n_folds"]), ("--n-sigma", COMP["n_sigma"]), ("--seed", config["seed"])]
        ),
    log:
        LOGS / "thesis/dataset-{csource}.log",
    benchmark:
        BENCH / "thesis/dataset-{csource}.tsv"
    conda:
        ENV
    shell:
        "xtalspec compositions dataset --records {input:q} --out {output.dataset:q} --rejects {output.rejects:q} "
        "{params.options} > {log:q} 2>&1"


rule compositions_cv:
    """K-fold cross-validation of one model: every composition predicted once, by the fold holding it out."""
    input:
        THESIS_OUT / "compositions/{csource}/dataset.parquet",
    output:
        THESIS_OUT / "compositions/{csource}/cv/{cmodel}.parquet",
    params:
        config=lambda wc: json.dumps(COMP["train"], separators=(",", ":")),
    threads: COMP["train"]["threads"]
    resources:
        gpu=lambda wc: 0 if wc.cmodel.startswith("rf_") else COMP["train"]["gpus_per_job"],
    log:
        LOGS / "thesis/cv-{csource}-{cmodel}.log",
    benchmark:
        BENCH / "thesis/cv-{csource}-{cmodel}.tsv"
    conda:
        ENV
    shell:
        "xtalspec compositions cv --dataset {input:q} --model {wildcards.cmodel} --config {params.config:q} "
        "--threads {threads} --out {output:q} > {log:q} 2>&1"


rule compositions_learning_curve:
    """Test MAE vs training-set size (thesis Fig. 3.3)."""
    input:
        THESIS_OUT / "compositions/{csource}/dataset.parquet",
    output:
        THESIS_OUT / "compositions/{csource}/learning_curve/{cmodel}.parquet",
    params:
        config=lambda wc: json.dumps(COMP["train"], separators=(",", ":")),
        options=lambda wc: _flags(
            [("--fractions", COMP["learning_curve"]["fractions"]), ("--folds", COMP["learning_curve"]["folds"])]
        ),
    threads: COMP["train"]["threads"]
    resources:
        gpu=lambda wc: 0 if wc.cmodel.startswith("rf_") else COMP["train"]["gpus_per_job"],
    log:
        LOGS / "thesis/learning-curve-{csource}-{cmodel}.log",
    benchmark:
        BENCH / "thesis/learning-curve-{csource}-{cmodel}.tsv"
    conda:
        ENV
    shell:
        "xtalspec compositions learning-curve --dataset {input:q} --model {wildcards.cmodel} "
        "--config {params.config:q} --threads {threads} {params.options} --out {output:q} > {log:q} 2>&1"


rule compositions_pretrain:
    """A network on the whole DFT source (a validation split for early stopping) for transfer learning."""
    input:
        THESIS_OUT / "compositions/{csource}/dataset.parquet",
    output:
        THESIS_OUT / "compositions/{csource}/pretrained/{cmodel}.pt",
    params:
        config=lambda wc: json.dumps(COMP["train"], separators=(",", ":")),
    threads: COMP["train"]["threads"]
    resources:
        gpu=COMP["train"]["gpus_per_job"],
    log:
        LOGS / "thesis/pretrain-{csource}-{cmodel}.log",
    benchmark:
        BENCH / "thesis/pretrain-{csource}-{cmodel}.tsv"
    conda:
        ENV
    shell:
        "xtalspec compositions pretrain --dataset {input:q} --model {wildcards.cmodel} --config {params.config:q} "
        "--threads {threads} --out {output:q} > {log:q} 2>&1"


rule compositions_transfer:
    """Target folds: trained from scratch vs the pretrained model as is vs fine-tuned (thesis Table 5.2)."""
    input:
        pretrained=lambda wc: THESIS_OUT
        / f"compositions/{COMP['transfer']['pretrain_source']}/pretrained/{COMP['transfer']['model']}.pt",
        records=THESIS_OUT / "compositions/{csource}/records.parquet",
    output:
        predictions=THESIS_OUT / "compositions/{csource}/transfer/predictions.parquet",
        rejects=THESIS_OUT / "compositions/{csource}/transfer/rejects.parquet",
    params:
        config=lambda wc: json.dumps(COMP["train"], separators=(",", ":")),
        options=lambda wc: _flags(
            [("--n-folds", COMP["n_folds"]), ("--n-sigma", COMP["n_sigma"]), ("--split-seed", config["seed"])]
        ),
    threads: COMP["train"]["threads"]
    resources:
        gpu=COMP["train"]["gpus_per_job"],
    log:
        LOGS / "thesis/transfer-{csource}.log",
    benchmark:
        BENCH / "thesis/transfer-{csource}.tsv"
    conda:
        ENV
    shell:
        "xtalspec compositions transfer --pretrained {input.pretrained:q} --records {input.records:q} "
        "--config {params.config:q} --threads {threads} {params.options} --out {output.predictions:q} "
        "--rejects {output.rejects:q} > {log:q} 2>&1"


rule padnet_train:
    """One model of the PADNet comparison on rendered laboratory patterns of the SpgNet data set."""
    input:
        XRD_OUT / "dataset/dataset.parquet",
    output:
        model=THESIS_OUT / "padnet/models/{pmodel}/model.pt",
        history=THESIS_OUT / "padnet/models/{pmodel}/history.csv",
    params:
        config=lambda wc: json.dumps(PAD, separators=(",", ":")),
        seed=lambda wc: config["seed"] + 1,
    threads: PAD["train"]["threads"]
    resources:
        gpu=PAD["train"]["gpus_per_job"],
    log:
        LOGS / "thesis/padnet-train-{pmodel}.log",
    benchmark:
        BENCH / "thesis/padnet-train-{pmodel}.tsv"
    conda:
        ENV
    shell:
        "xtalspec padnet train --dataset {input:q} --model {wildcards.pmodel} --config {params.config:q} "
        "--seed {params.seed} --threads {threads} --out-dir \"$(dirname {output.model:q})\" > {log:q} 2>&1"


rule padnet_evaluate:
    """Held-out structures rendered at increasing background strengths; every approach scored (and AdaBoost fitted)."""
    input:
        dataset=XRD_OUT / "dataset/dataset.parquet",
        models=expand(THESIS_OUT / "padnet/models/{pmodel}/model.pt", pmodel=PAD["models"]),
    output:
        THESIS_OUT / "padnet/predictions.parquet",
    params:
        config=lambda wc: json.dumps(PAD, separators=(",", ":")),
        seed=lambda wc: config["seed"] + 1,
    log:
        LOGS / "thesis/padnet-evaluate.log",
    benchmark:
        BENCH / "thesis/padnet-evaluate.tsv"
    conda:
        ENV
    shell:
        "xtalspec padnet evaluate --dataset {input.dataset:q} --models {input.models:q} --config {params.config:q} "
        "--seed {params.seed} --out {output:q} > {log:q} 2>&1"


rule thesis_report:
    """CV table, parity plots, learning curve, transfer table, PADNet comparison: from saved predictions only."""
    input:
        unpack(thesis_report_inputs),
    output:
        cv=report(THESIS_OUT / "tables/cv_mae.md", caption="../report/thesis_cv.rst", category="Thesis"),
        cv_csv=THESIS_OUT / "tables/cv_mae.csv",
        parity=[
            report(THESIS_OUT / f"figures/parity_{csource}.png", caption="../report/thesis_parity.rst", category="Thesis")
            for csource in COMP["sources"]
        ],
        learning_curve=report(
            THESIS_OUT / "figures/learning_curve.png", caption="../report/thesis_learning_curve.rst", category="Thesis"
        ),
        padnet=report(
            THESIS_OUT / "figures/padnet_background.png", caption="../report/thesis_padnet.rst", category="Thesis"
        ),
        padnet_table=report(
            THESIS_OUT / "tables/padnet_background.md", caption="../report/thesis_padnet.rst", category="Thesis"
        ),
        summary=THESIS_OUT / "thesis_summary.json",
        transfer=report(THESIS_OUT / "tables/transfer.md", caption="../report/thesis_transfer.rst", category="Thesis"),
    params:
        options=lambda wc, input: _flags(
            [
                ("--cv", input.cv),
                ("--learning-curve", input.learning_curve),
                ("--learning-curve-source", COMP["learning_curve"]["source"]),
                ("--transfer", input.get("transfer")),
                ("--padnet", input.padnet),
            ]
        ),
        out_dir=THESIS_OUT,
    log:
        LOGS / "thesis/report.log",
    benchmark:
        BENCH / "thesis/report.tsv"
    conda:
        ENV
    shell:
        "xtalspec thesis report {params.options} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule thesis_cv_table:
    input:
        THESIS_OUT / "tables/cv_mae.md",


rule thesis_learning_curve:
    input:
        THESIS_OUT / "figures/learning_curve.png",


rule thesis_parity:
    input:
        expand(THESIS_OUT / "figures/parity_{csource}.png", csource=COMP["sources"]),


rule thesis_transfer:
    """Transfer-learning table (a note saying how to switch it on when no online source is configured)."""
    input:
        THESIS_OUT / "tables/transfer.md",


rule thesis_padnet:
    input:
        THESIS_OUT / "figures/padnet_background.png",
        THESIS_OUT / "tables/padnet_background.md",


rule thesis:
    input:
        THESIS_OUT / "thesis_summary.json",
