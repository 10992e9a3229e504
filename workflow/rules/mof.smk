# One-to-one MOF identification from powder XRD (paper 001): CoRE MOF structures -> theoretical
# patterns (Cu Ka, 2theta 5-50 deg) -> noise-augmented training data -> CNN and five classical
# baselines at several library sizes -> Fig. 3a (top-k), Fig. 3b (library size), NCA map, CAMs.


rule mof_patterns:
    """Library of theoretical patterns in the seeded library order (measured-test MOFs first)."""
    input:
        shards=mof_structure_shards(),
        measured_test=mof_measured_test_inputs(),
    output:
        library=MOF_OUT / "library/patterns.parquet",
        rejects=MOF_OUT / "library/rejects.parquet",
    params:
        options=lambda wc: _flags(
            [
                ("--max-mofs", max(MOF["library_sizes"])),
                ("--seed", config["seed"]),
                ("--fwhm", MOF["pattern"]["fwhm"]),
                ("--measured-test", MOF["measured_test"]),
            ]
        ),
    log:
        LOGS / "mof/patterns.log",
    benchmark:
        BENCH / "mof/patterns.tsv"
    conda:
        ENV
    shell:
        "xtalspec mof patterns --structures {input.shards:q} --out {output.library:q} --rejects {output.rejects:q} "
        "{params.options} > {log:q} 2>&1"


rule mof_train:
    """CNN of one library size on the augmented library; predictions on the test set."""
    input:
        library=MOF_OUT / "library/patterns.parquet",
        measured=mof_measured_inputs(),
    output:
        model=MOF_OUT / "runs/{size}/cnn/model.pt",
        predictions=MOF_OUT / "runs/{size}/cnn/predictions.parquet",
        history=MOF_OUT / "runs/{size}/cnn/history.csv",
        test=MOF_OUT / "runs/{size}/cnn/test_patterns.parquet",
    wildcard_constraints:
        size=r"\d+",
    params:
        config=lambda wc: mof_run_json("train"),
        options=lambda wc: mof_run_options(),
    threads: MOF["train"]["threads"]
    resources:
        gpu=MOF["train"]["gpus_per_job"],
    log:
        LOGS / "mof/train-{size}.log",
    benchmark:
        BENCH / "mof/train-{size}.tsv"
    conda:
        ENV
    shell:
        "xtalspec mof train --library {input.library:q} --size {wildcards.size} --threads {threads} "
        "--config {params.config:q} "
        "{params.options} --model {output.model:q} --predictions {output.predictions:q} "
        "--history {output.history:q} --test-patterns {output.test:q} > {log:q} 2>&1"


rule mof_baselines:
    """Naive Bayes, kNN, logistic regression, random forest and SVM of one library size, same data."""
    input:
        library=MOF_OUT / "library/patterns.parquet",
        measured=mof_measured_inputs(),
    output:
        MOF_OUT / "runs/{size}/baselines/predictions.parquet",
    wildcard_constraints:
        size=r"\d+",
    params:
        config=lambda wc: mof_run_json("baselines"),
        options=lambda wc: mof_run_options(),
    threads: MOF["baselines"]["threads"]
    log:
        LOGS / "mof/baselines-{size}.log",
    benchmark:
        BENCH / "mof/baselines-{size}.tsv"
    conda:
        ENV
    shell:
        "xtalspec mof baselines --library {input.library:q} --size {wildcards.size} --threads {threads} "
        "--config {params.config:q} "
        "{params.options} --out {output:q} > {log:q} 2>&1"


rule mof_report:
    """Fig. 3a (top-1..top-5, every model), Fig. 3b (top-5 vs library size), NCA map, CAMs."""
    input:
        cnn=mof_run_files("cnn/predictions.parquet"),
        baselines=mof_run_files("baselines/predictions.parquet"),
        model=MOF_OUT / f"runs/{max(MOF['library_sizes'])}/cnn/model.pt",
        test=MOF_OUT / f"runs/{max(MOF['library_sizes'])}/cnn/test_patterns.parquet",
    output:
        topk_md=report(MOF_OUT / "report/mof_topk.md", caption="../report/mof_topk.rst", category="MOF"),
        topk_csv=MOF_OUT / "report/mof_topk.csv",
        topk_png=report(MOF_OUT / "report/mof_topk.png", caption="../report/mof_topk.rst", category="MOF"),
        size_md=report(
            MOF_OUT / "report/mof_library_size.md", caption="../report/mof_library_size.rst", category="MOF"
        ),
        size_csv=MOF_OUT / "report/mof_library_size.csv",
        size_png=report(
            MOF_OUT / "report/mof_library_size.png", caption="../report/mof_library_size.rst", category="MOF"
        ),
        nca_png=report(MOF_OUT / "report/mof_nca.png", caption="../report/mof_nca_cam.rst", category="MOF"),
        nca_csv=MOF_OUT / "report/mof_nca.csv",
        cam_png=report(MOF_OUT / "report/mof_cam.png", caption="../report/mof_nca_cam.rst", category="MOF"),
        cam_csv=MOF_OUT / "report/mof_cam.csv",
        summary=MOF_OUT / "report/mof_summary.json",
    params:
        options=lambda wc: _flags(
            [
                ("--nca-mofs", MOF["report"]["nca_mofs"]),
                ("--cam-mofs", MOF["report"]["cam_mofs"]),
                ("--seed", config["seed"]),
            ]
        ),
    log:
        LOGS / "mof/report.log",
    benchmark:
        BENCH / "mof/report.tsv"
    conda:
        ENV
    shell:
        "xtalspec mof report --cnn {input.cnn:q} --baselines {input.baselines:q} --model {input.model:q} "
        "--test-patterns {input.test:q} {params.options} --topk-md {output.topk_md:q} --topk-csv {output.topk_csv:q} "
        "--topk-png {output.topk_png:q} --size-md {output.size_md:q} --size-csv {output.size_csv:q} "
        "--size-png {output.size_png:q} --nca-png {output.nca_png:q} --nca-csv {output.nca_csv:q} "
        "--cam-png {output.cam_png:q} --cam-csv {output.cam_csv:q} --summary {output.summary:q} > {log:q} 2>&1"


rule mof_topk:
    """Target: Fig. 3a, top-1..top-5 of the CNN and the baselines at the largest library."""
    input:
        rules.mof_report.output.topk_md,
        rules.mof_report.output.topk_csv,
        rules.mof_report.output.topk_png,


rule mof_library_size:
    """Target: Fig. 3b, top-1/top-5 against library size."""
    input:
        rules.mof_report.output.size_md,
        rules.mof_report.output.size_csv,
        rules.mof_report.output.size_png,


rule mof_nca:
    """Target: NCA map of the test patterns."""
    input:
        rules.mof_report.output.nca_png,
        rules.mof_report.output.nca_csv,


rule mof_cam:
    """Target: class activation maps of the last conv layer for four MOFs."""
    input:
        rules.mof_report.output.cam_png,
        rules.mof_report.output.cam_csv,


rule mof:
    """Target: the whole MOF identification system."""
    input:
        rules.mof_report.output,
        MOF_OUT / "library/rejects.parquet",
