# XANES coordination classifier (Carbone et al. 2019): absorbing sites -> ChemEnv labels ->
# FEFF10 K-edge spectra -> per-element grid -> MLP/CNN over bootstrap folds -> Tables I-III, Figs.


if not XANES_CACHE:

    rule xanes_sites:
        """Symmetry-inequivalent absorber sites of one element, ChemEnv T4/S5/O6 labels, quotas."""
        input:
            xanes_structure_shards(),
        output:
            sites=XANES_OUT / "sites/{element}.parquet",
            rejects=XANES_OUT / "sites/{element}-rejects.parquet",
        params:
            options=lambda wc: _flags(
                [
                    ("--distance-factor", XANES["distance_factor"]),
                    ("--compare-factor", XANES["compare_factor"]),
                    ("--max-per-class", json.dumps(XANES["max_per_class"]) if XANES["max_per_class"] else None),
                    ("--max-structures", XANES["max_structures"]),
                    ("--max-elements", XANES["max_elements"]),
                    ("--max-atoms", XANES["max_atoms"]),
                    ("--seed", config["seed"]),
                ]
            ),
        log:
            LOGS / "xanes/sites-{element}.log",
        benchmark:
            BENCH / "xanes/sites-{element}.tsv"
        conda:
            ENV
        shell:
            "xtalspec xanes sites --structures {input:q} --element {wildcards.element} --out {output.sites:q} "
            "--rejects {output.rejects:q} {params.options} > {log:q} 2>&1"


    rule xanes_feff:
        """FEFF10 K-edge XANES of one shard of an element's sites (resumable per site)."""
        input:
            XANES_OUT / "sites/{element}.parquet",
        output:
            spectra=XANES_OUT / "feff/{element}/spectra-{shard}.parquet",
            rejects=XANES_OUT / "feff/{element}/rejects-{shard}.parquet",
        params:
            n_shards=XANES["feff"]["n_shards"],
            preset=XANES["feff"]["preset"],
            timeout=XANES["feff"]["timeout_s"],
            keep=lambda wc: "--keep-bulky" if XANES["feff"]["keep_bulky"] else "",
            workroot=lambda wc: XANES_OUT / f"feff/workdirs/{XANES['feff']['preset']}",
        log:
            LOGS / "xanes/feff-{element}-{shard}.log",
        benchmark:
            BENCH / "xanes/feff-{element}-{shard}.tsv"
        conda:
            ENV
        shell:
            "xtalspec xanes feff --sites {input:q} --shard $((10#{wildcards.shard})) --n-shards {params.n_shards} "
            "--preset {params.preset} --timeout {params.timeout} --workroot {params.workroot:q} {params.keep} "
            "--out {output.spectra:q} --rejects {output.rejects:q} > {log:q} 2>&1"


else:

    rule xanes_from_cache:
        """One element's sites, spectra and FEFF rejects from the verified FEFF spectra cache."""
        input:
            **xanes_cache_files(),
        output:
            sites=XANES_OUT / "sites/{element}.parquet",
            site_rejects=XANES_OUT / "sites/{element}-rejects.parquet",
            spectra=XANES_OUT / "feff/{element}/spectra-cache.parquet",
            rejects=XANES_OUT / "feff/{element}/rejects-cache.parquet",
        log:
            LOGS / "xanes/from-cache-{element}.log",
        benchmark:
            BENCH / "xanes/from-cache-{element}.tsv"
        conda:
            ENV
        shell:
            "xtalspec xanes from-cache --cache {input.cache:q} --cache-rejects {input.cache_rejects:q} "
            "--element {wildcards.element} --sites {output.sites:q} --spectra {output.spectra:q} "
            "--rejects {output.rejects:q} > {log:q} 2>&1 && cp {output.rejects:q} {output.site_rejects:q}"

    rule xanes_cache_check:
        """The cache checked, not trusted: a seeded sample of its sites recomputed by FEFF and compared."""
        input:
            cache=XANES_CACHE,
            structures=xanes_structure_shards(),
        output:
            XANES_OUT / "feff/cache_check.json",
        params:
            n_sites=XANES["feff"]["cache_check_sites"],
            seed=config["seed"],
            timeout=XANES["feff"]["timeout_s"],
            workroot=lambda wc: XANES_OUT / "feff/workdirs/cache-check",
        log:
            LOGS / "xanes/cache-check.log",
        benchmark:
            BENCH / "xanes/cache-check.tsv"
        conda:
            ENV
        shell:
            "xtalspec xanes check-cache --cache {input.cache:q} --structures {input.structures:q} "
            "--n-sites {params.n_sites} --seed {params.seed} --timeout {params.timeout} "
            "--workroot {params.workroot:q} --out {output:q} > {log:q} 2>&1"


rule xanes_dataset:
    """Per-element 100-point grid, scaling, duplicate removal, pre-edge cutoff."""
    input:
        spectra=xanes_feff_files("spectra"),
        rejects=xanes_feff_files("rejects")
        + [str(XANES_OUT / f"sites/{element}-rejects.parquet") for element in XANES["elements"]],
        check=[str(XANES_OUT / "feff/cache_check.json")] if XANES_CACHE else [],
    output:
        dataset=XANES_OUT / "dataset/spectra.parquet",
        rejects=XANES_OUT / "dataset/rejects.parquet",
    params:
        options=_flags(
            [
                ("--min-coverage", XANES["dataset"]["min_coverage"]),
                ("--dedup-tol", XANES["dataset"]["dedup_tol"]),
                ("--pre-edge-offset", XANES["dataset"]["pre_edge_offset"]),
            ]
        ),
        preprocessing=json.dumps(XANES.get("preprocessing") or {}, separators=(",", ":")),
    log:
        LOGS / "xanes/dataset.log",
    benchmark:
        BENCH / "xanes/dataset.tsv"
    conda:
        ENV
    shell:
        "xtalspec xanes dataset --spectra {input.spectra:q} --feff-rejects {input.rejects:q} {params.options} "
        "--preprocessing {params.preprocessing:q} --out {output.dataset:q} --rejects {output.rejects:q} > {log:q} 2>&1"


rule xanes_train:
    """Bootstrap folds of one element and model: all variants, shift and noise tests."""
    input:
        XANES_OUT / "dataset/spectra.parquet",
    output:
        XANES_OUT / "predictions/{element}-{model}.parquet",
    wildcard_constraints:
        model="mlp|cnn",
        element="[A-Z][a-z]?",
    params:
        config=lambda wc: xanes_train_json(),
    threads: XANES["train"]["threads"]
    resources:
        gpu=XANES["train"]["gpus_per_job"],
    log:
        LOGS / "xanes/train-{element}-{model}.log",
    benchmark:
        BENCH / "xanes/train-{element}-{model}.tsv"
    conda:
        ENV
    shell:
        "xtalspec xanes train --dataset {input:q} --element {wildcards.element} --model {wildcards.model} "
        "--config {params.config:q} --out {output:q} > {log:q} 2>&1"


rule xanes_bundle:
    """Final MLP and CNN of one element on all its spectra, for `xtalspec predict-xanes`."""
    input:
        XANES_OUT / "dataset/spectra.parquet",
    output:
        XANES_OUT / "models/{element}/bundle.json",
    wildcard_constraints:
        element="[A-Z][a-z]?",
    params:
        config=lambda wc: xanes_train_json(),
    threads: XANES["train"]["threads"]
    resources:
        gpu=XANES["train"]["gpus_per_job"],
    log:
        LOGS / "xanes/bundle-{element}.log",
    benchmark:
        BENCH / "xanes/bundle-{element}.tsv"
    conda:
        ENV
    shell:
        "xtalspec xanes bundle --dataset {input:q} --element {wildcards.element} --config {params.config:q} "
        "--out-dir \"$(dirname {output:q})\" > {log:q} 2>&1"


rule xanes_train_cross:
    """One model across elements (one-hot element input) on the per-element models' folds."""
    input:
        XANES_OUT / "dataset/spectra.parquet",
    output:
        XANES_OUT / "predictions/cross-{model}.parquet",
    wildcard_constraints:
        model="mlp|cnn",
    params:
        config=lambda wc: xanes_train_json(),
        elements=XANES["elements"],
    threads: XANES["train"]["threads"]
    resources:
        gpu=XANES["train"]["gpus_per_job"],
    log:
        LOGS / "xanes/train-cross-{model}.log",
    benchmark:
        BENCH / "xanes/train-cross-{model}.tsv"
    conda:
        ENV
    shell:
        "xtalspec xanes train-cross --dataset {input:q} --model {wildcards.model} --elements {params.elements} "
        "--config {params.config:q} --out {output:q} > {log:q} 2>&1"


rule xanes_bundle_cross:
    """Final cross-element MLP and CNN on all spectra of all elements, for `xtalspec predict-xanes`."""
    input:
        XANES_OUT / "dataset/spectra.parquet",
    output:
        XANES_OUT / "models/cross/bundle.json",
    params:
        config=lambda wc: xanes_train_json(),
        elements=XANES["elements"],
    threads: XANES["train"]["threads"]
    resources:
        gpu=XANES["train"]["gpus_per_job"],
    log:
        LOGS / "xanes/bundle-cross.log",
    benchmark:
        BENCH / "xanes/bundle-cross.tsv"
    conda:
        ENV
    shell:
        "xtalspec xanes bundle-cross --dataset {input:q} --elements {params.elements} --config {params.config:q} "
        "--out-dir \"$(dirname {output:q})\" > {log:q} 2>&1"


rule xanes_sim_to_real:
    """FEFF cache vs the measured development set, per preprocessing choice (not part of `xanes`:
    it trains ~25 x 3 model sets; `snakemake xanes_sim_to_real`)."""
    input:
        cache=XANES_CACHE or "resources/xanes/feff_cache.parquet",
        labels=VALIDATION["xanes"] or "resources/measured/xanes/LABELS.csv",
    output:
        md=XANES_OUT / "sim_to_real/sim_to_real.md",
        csv=XANES_OUT / "sim_to_real/sim_to_real.csv",
    log:
        LOGS / "xanes/sim-to-real.log",
    benchmark:
        BENCH / "xanes/sim-to-real.tsv"
    conda:
        ENV
    shell:
        "xtalspec xanes sim-to-real --cache {input.cache:q} --labels {input.labels:q} --out-md {output.md:q} "
        "--out-csv {output.csv:q} > {log:q} 2>&1"


rule xanes_report:
    """Tables I-III, Figures 3, 5, 6, PCA and the spectra gallery, from saved predictions."""
    input:
        dataset=XANES_OUT / "dataset/spectra.parquet",
        predictions=expand(
            XANES_OUT / "predictions/{element}-{model}.parquet", element=XANES["elements"], model=XANES_MODELS
        )
        + expand(XANES_OUT / "predictions/cross-{model}.parquet", model=XANES_MODELS),
    output:
        table1=report(XANES_OUT / "tables/xanes_table1.md", caption="../report/xanes_tables.rst", category="XANES"),
        table2=report(XANES_OUT / "tables/xanes_table2.md", caption="../report/xanes_tables.rst", category="XANES"),
        table3=report(XANES_OUT / "tables/xanes_table3.md", caption="../report/xanes_tables.rst", category="XANES"),
        figure3=report(XANES_OUT / "figures/xanes_fig3_f1.png", caption="../report/xanes_figures.rst", category="XANES"),
        figure5=report(XANES_OUT / "figures/xanes_fig5_shift.png", caption="../report/xanes_figures.rst", category="XANES"),
        figure6=report(XANES_OUT / "figures/xanes_fig6_noise.png", caption="../report/xanes_figures.rst", category="XANES"),
        pca=report(XANES_OUT / "figures/xanes_fig2_pca.png", caption="../report/xanes_figures.rst", category="XANES"),
        gallery=report(XANES_OUT / "figures/xanes_fig2_gallery.png", caption="../report/xanes_figures.rst", category="XANES"),
        summary=XANES_OUT / "tables/xanes_summary.json",
    params:
        config=lambda wc: json.dumps(XANES, separators=(",", ":")),
    log:
        LOGS / "xanes/report.log",
    benchmark:
        BENCH / "xanes/report.tsv"
    conda:
        ENV
    shell:
        "xtalspec xanes report --dataset {input.dataset:q} --predictions {input.predictions:q} "
        "--tables \"$(dirname {output.table1:q})\" --figures \"$(dirname {output.figure3:q})\" "
        "--config {params.config:q} > {log:q} 2>&1"


rule xanes_table1:
    input:
        rules.xanes_report.output.table1,


rule xanes_table2:
    input:
        rules.xanes_report.output.table2,


rule xanes_table3:
    input:
        rules.xanes_report.output.table3,


rule xanes_figure3:
    input:
        rules.xanes_report.output.figure3,


rule xanes_figure5:
    input:
        rules.xanes_report.output.figure5,


rule xanes_figure6:
    input:
        rules.xanes_report.output.figure6,


rule xanes:
    """The XANES system: tables, figures, the per-element and the cross-element model bundles."""
    input:
        rules.xanes_report.output,
        expand(XANES_OUT / "models/{element}/bundle.json", element=XANES["elements"]),
        XANES_OUT / "models/cross/bundle.json",
