# Shared helpers: where results go, which sources are on, which shards exist.
# Every default lives in config/schema.yaml (the Snakefile's `validate` fills it in), so the rules
# read config[...] without fallbacks.

import json
from pathlib import Path

RESULTS = Path(config["results"])
LOGS = RESULTS / "logs"
BENCH = RESULTS / "benchmarks" / "rules"
ENV = "../../envs/xtalspec.yaml"
DOWNLOADING_SOURCES = ("cod", "mp")


def source_config(source):
    return config["structures"]["sources"][source]


def enabled_sources():
    return [name for name, opts in config["structures"]["sources"].items() if opts["enabled"]]


def structure_shards():
    """(source, shard) pairs: the unit every later stage fans out over."""
    return [
        (source, f"{i:03d}")
        for source in enabled_sources()
        for i in range(source_config(source)["n_shards"])
    ]


def structure_shard_files(kind="shard"):
    return [str(RESULTS / f"structures/{src}/{kind}-{shard}.parquet") for src, shard in structure_shards()]


def _flags(pairs):
    """CLI flags from (flag, value) pairs; None/empty values are left out."""
    import shlex

    out = []
    for flag, value in pairs:
        if value is None or value == [] or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            values = " ".join(shlex.quote(str(v)) for v in value)
            out.append(f"{flag} {values}")
        else:
            out.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(out)


def ingest_inputs(wildcards):
    if wildcards.source in DOWNLOADING_SOURCES:
        return [str(RESULTS / f"structures/{wildcards.source}/cache/index.jsonl")]
    return []


def _source_flags(opts, flags):
    """(flag, value) pairs of the options this source has (its schema section says which)."""
    return [(flag, opts[key]) for key, flag in flags.items() if key in opts]


def ingest_options(source):
    opts = source_config(source)
    cleaning = config["structures"]["cleaning"]
    density = cleaning["density_range"]
    path = opts["path"] if "path" in opts else None  # cif_dir only: the others have no path option
    if source in DOWNLOADING_SOURCES:
        path = str(RESULTS / f"structures/{source}/cache")
    return _flags(
        [
            ("--n-shards", opts["n_shards"]),
            ("--seed", config["seed"]),
            *_source_flags(opts, {"max_structures": "--max-structures", "dataset": "--dataset"}),
            ("--path", path),
            ("--symprec", config["structures"]["symprec"]),
            ("--angle-tolerance", config["structures"]["angle_tolerance"]),
            ("--max-atoms", cleaning["max_atoms"]),
            ("--min-distance", cleaning["min_distance"]),
            ("--density-min", density[0]),
            ("--density-max", density[1]),
        ]
    )


def fetch_options(source):
    opts = source_config(source)
    flags = {"base_url": "--base-url", "elements": "--elements", "exclude_elements": "--exclude-elements",
             "max_atoms": "--max-atoms", "max_results": "--max-results"}
    organic = [("--include-organic", not opts["inorganic_only"])] if "inorganic_only" in opts else []
    return _flags(_source_flags(opts, flags) + organic)


# --- SpgNet / SpgVolNet ---------------------------------------------------------

XRD = config["xrd"]
XRD_OUT = RESULTS / "xrd"
from xtalspec.utils.roman import ROMAN  # member names I, II, … (one list, in the package)


def xrd_shards():
    return [(src, shard) for src, shard in structure_shards() if src in XRD["sources"]]


def xrd_members():
    """Every trained member: (model, range, fold, seed)."""
    return [
        (m["model"], m["range"], fold, seed)
        for m in XRD["members"]
        for fold in range(1, XRD["n_folds"] + 1)
        for seed in XRD["seeds"]
    ]


def member_files(name, models=None, ranges=None):
    return [
        str(XRD_OUT / f"models/{m}/{r}/fold{f}/seed{s}/{name}")
        for m, r, f, s in xrd_members()
        if (models is None or m in models) and (ranges is None or r in ranges)
    ]


def xrd_models():
    return sorted({m["model"] for m in XRD["members"]})


# File names of the per-model XRD reports, written once: the rules expand them and pass the template.
XRD_CONFUSION = str(XRD_OUT / "figures/confusion_{model}_{label}")  # + .csv / .png
XRD_TOPK = str(XRD_OUT / "tables/topk_{model}.csv")


def xrd_confusion_file(model, label, suffix):
    return XRD_CONFUSION.format(model=model, label=label) + suffix


# --- spacegroupMining (PDF) -------------------------------------------------------

PDF = config["pdf"]
PDF_OUT = RESULTS / "pdf"
from xtalspec.datasets.pdf_paper import SWEEP_TABLES as PDF_SWEEPS  # {"rmax": 2, …, "uiso": 5}


def pdf_kinds():
    return ["standard", "randomised"] if PDF["train_randomised"] else ["standard"]


def pdf_shard_files(kind):
    return [
        str(PDF_OUT / f"profiles/{kind}/{src}/shard-{shard}.parquet")
        for src, shard in structure_shards()
        if src in PDF["sources"]
    ]


def pdf_sweep_outputs(parameter):
    number = PDF_SWEEPS[parameter]
    return [
        str(PDF_OUT / f"tables/table{number}_{parameter}.md"),
        str(PDF_OUT / f"tables/table{number}_{parameter}.csv"),
        str(PDF_OUT / f"figures/figure{number}_{parameter}.png"),
    ]


# PDF deploy models (predict-pdf's default): one per radiation, under results/pdf/deploy/{xray,neutron}/
PDF_DEPLOY = PDF["deploy"]  # every key has a schema default
PDF_DEPLOY_OUT = PDF_OUT / "deploy"
PDF_RADIATION_DIRS = {"x-ray": "xray", "neutron": "neutron"}  # = xtalspec.prediction.pdf.DEPLOY_SUBDIRS
PDF_RADIATION_NAMES = {folder: name for name, folder in PDF_RADIATION_DIRS.items()}


def pdf_deploy_enabled():
    return bool(PDF_DEPLOY["enabled"])


def pdf_deploy_files(name):
    """One file per deploy model (``model.pt``, ``summary.json``, …); none when deploy is off."""
    if not pdf_deploy_enabled():
        return []
    return [str(PDF_DEPLOY_OUT / f"{PDF_RADIATION_DIRS[r]}/{name}") for r in PDF_DEPLOY["radiations"]]


def pdf_deploy_shard_files(radiation_dir):
    return [
        str(PDF_DEPLOY_OUT / f"profiles/{src}/{radiation_dir}-{shard}.parquet")
        for src, shard in structure_shards()
        if src in PDF["sources"]
    ]


XANES = config["xanes"]
XANES_OUT = RESULTS / "xanes"
XANES_MODELS = ("mlp", "cnn")


def xanes_structure_shards():
    return [
        str(RESULTS / f"structures/{src}/shard-{shard}.parquet")
        for src, shard in structure_shards()
        if src in XANES["sources"]
    ]


XANES_CACHE = XANES["feff"]["cache"]  # a FEFF spectra cache: sites and spectra from it, FEFF only to check it


def xanes_feff_files(kind="spectra"):
    if XANES_CACHE:
        return [str(XANES_OUT / f"feff/{element}/{kind}-cache.parquet") for element in XANES["elements"]]
    return [
        str(XANES_OUT / f"feff/{element}/{kind}-{k:03d}.parquet")
        for element in XANES["elements"]
        for k in range(XANES["feff"]["n_shards"])
    ]


def xanes_cache_files():
    """The cache and its rejects file (rule inputs in cache mode)."""
    from xtalspec.datasets.xanes_cache import rejects_path_for

    return {"cache": XANES_CACHE, "cache_rejects": str(rejects_path_for(XANES_CACHE))}


def xanes_train_json():
    import json

    return json.dumps(dict(XANES["train"], seed=config["seed"]), separators=(",", ":"))


# --- MOF identification (paper 001) ------------------------------------------------

MOF = config["mof"]
MOF_OUT = RESULTS / "mof"


def mof_structure_shards():
    return [
        str(RESULTS / f"structures/{src}/shard-{shard}.parquet")
        for src, shard in structure_shards()
        if src in MOF["sources"]
    ]


def mof_run_files(name):
    return [str(MOF_OUT / f"runs/{size}/{name}") for size in sorted(MOF["library_sizes"])]


def mof_measured_test_inputs():
    """The measured-test CSV and the pattern files it lists (relative to the CSV's folder)."""
    import csv

    listed = MOF["measured_test"]
    if not listed:
        return []
    path = Path(listed)
    files = [str(path)]
    if path.is_file():
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = csv.DictReader(line for line in fh if line.strip() and not line.lstrip().startswith("#"))
            for row in rows:
                name = (row.get("file") or "").strip()
                if name:
                    files.append(str(Path(name) if Path(name).is_absolute() else path.parent / name))
    return files


def mof_measured_inputs():
    noise = [MOF["measured_noise_dir"]] if MOF["measured_noise_dir"] else []
    return noise + mof_measured_test_inputs()


def mof_run_options():
    return _flags(
        [
            ("--measured-noise", MOF["measured_noise_dir"]),
            ("--measured-test", MOF["measured_test"]),
            ("--seed", config["seed"]),
        ]
    )


def mof_run_json(part):
    """Settings of one run rule: the shared data settings plus `train` or `baselines`."""
    import json

    keys = ("augment", "test", "denoise", part)
    return json.dumps({key: MOF[key] for key in keys}, separators=(",", ":"))


# ---------------------------------------------------------------- thesis (paper 002)
THESIS = config["thesis"]
THESIS_OUT = RESULTS / "thesis"


def composition_source_json(source):
    """Options of one composition source for `xtalspec compositions fetch` (janaf takes none)."""
    options = THESIS["compositions"][source]
    return json.dumps(options, separators=(",", ":"))


def thesis_transfer_enabled():
    return bool(THESIS["compositions"]["transfer"]["enabled"])


def thesis_report_inputs(wildcards):
    comp = THESIS["compositions"]
    curve = comp["learning_curve"]
    inputs = {
        "cv": [
            str(THESIS_OUT / f"compositions/{source}/cv/{model}.parquet")
            for source in comp["sources"]
            for model in comp["models"]
        ],
        "learning_curve": [
            str(THESIS_OUT / f"compositions/{curve['source']}/learning_curve/{model}.parquet")
            for model in curve["models"]
        ],
        "padnet": str(THESIS_OUT / "padnet/predictions.parquet"),
    }
    if thesis_transfer_enabled():
        target = comp["transfer"]["target"]
        inputs["transfer"] = str(THESIS_OUT / f"compositions/{target}/transfer/predictions.parquet")
    return inputs


# --- validation on measured data ------------------------------------------------

VALIDATION = config["validation"]
VALIDATION_OUT = RESULTS / "validation"


def validation_models(kind):
    if kind == "xrd":
        return xrd_deploy_members() or member_files("model.pt")
    if kind == "xrd-paper":
        return member_files("model.pt")
    if kind == "pdf":  # the deploy models (predict-pdf's default), else the paper's
        return pdf_deploy_files("model.pt") or [str(PDF_OUT / f"models/{k}/model.pt") for k in pdf_kinds()]
    return [str(XANES_OUT / f"models/{element}/bundle.json") for element in XANES["elements"]] + [
        str(XANES_OUT / "models/cross/bundle.json")
    ]


def validation_models_dir(kind):
    if kind == "xrd" and xrd_deploy_members():
        return XRD_DEPLOY_OUT / "models"
    pdf = PDF_DEPLOY_OUT if pdf_deploy_enabled() else PDF_OUT / "models"  # predict-pdf's default, else the paper's
    return {"xrd": XRD_OUT / "models", "xrd-paper": XRD_OUT / "models", "pdf": pdf,
            "xanes": XANES_OUT / "models"}[kind]


# --- XRD deploy models (predict-xrd's default) ---------------------------------

XRD_DEPLOY = XRD.get("deploy") or {"enabled": False}
XRD_DEPLOY_OUT = XRD_OUT / "deploy"


def xrd_deploy_members(name="model.pt", root=None):
    root = root or XRD_DEPLOY_OUT / "models"
    if not XRD_DEPLOY.get("enabled", True) or "models" not in XRD_DEPLOY:
        return []
    return [str(root / f"{m}/all/fold0/seed{s}/{name}") for m in XRD_DEPLOY["models"] for s in XRD_DEPLOY["seeds"]]


def xrd_deploy_train_flags(epochs):
    t = XRD_DEPLOY["train"]
    return _flags([("--epochs", epochs), ("--batch-size", t["batch_size"]), ("--lr", t["lr"]),
                   ("--volume-weight", t["volume_weight"]), ("--device", t["device"])])


def xrd_deploy_fraction(variant):
    """Share of the structures a deploy variant renders and trains on: all of them for the deploy
    models (`all`), `ablation_fraction` for the ablation's variants (`subset`, `no-X`)."""
    return 1.0 if variant == "all" else XRD_DEPLOY.get("ablation_fraction", 1.0)


def xrd_deploy_rendered(variant="all"):
    return [str(XRD_DEPLOY_OUT / f"rendered/{variant}/{src}/shard-{shard}.parquet") for src, shard in xrd_shards()]
