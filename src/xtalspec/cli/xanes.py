"""``xtalspec xanes …`` and ``xtalspec predict-xanes``: the XANES coordination classifier (paper 004):
sites, FEFF spectra and the resumable spectra cache, data set, training, reports, and the
coordination (T4 / S5 / O6) of a measured K-edge XANES."""

from __future__ import annotations

import json
from pathlib import Path

from ..spectra.xanes_labels import COMPARE_DISTANCE_FACTOR, DEFAULT_DISTANCE_FACTOR, LABELS
from ..utils.atomic import check_output_path
from ..utils.gpu_slots import wants_gpu
from .main import config_device, json_arg


def cmd_sites(args) -> int:
    from ..datasets.xanes_sites import write_sites

    summary = write_sites(args.structures, args.element, args.out, args.rejects,
                          distance_factor=args.distance_factor, compare_factor=args.compare_factor,
                          max_per_class=json_arg(args.max_per_class), max_structures=args.max_structures,
                          max_elements=args.max_elements, max_atoms=args.max_atoms, seed=args.seed)
    print(json.dumps(summary))
    return 0


def cmd_feff(args) -> int:
    from ..datasets.xanes_spectra import write_feff_shard

    result = write_feff_shard(args.sites, args.shard, args.n_shards, args.preset, args.workroot, args.out,
                              args.rejects, timeout_s=args.timeout, keep_bulky=args.keep_bulky)
    print(json.dumps(result))
    return 0


def cmd_cache_merge(args) -> int:
    from ..datasets.xanes_cache import merge_caches

    summary = merge_caches(args.caches, args.out)
    print(f"{summary['spectra']} spectra, {summary['rejects']} rejects; per element and class: {summary['counts']}")
    return 0


def cmd_cache(args) -> int:
    from ..datasets.xanes_cache import DEFAULT_QUOTA, build_cache

    quota = (dict(DEFAULT_QUOTA) if args.quota is None
             else {c: (None if n < 0 else n) for c, n in zip(LABELS, args.quota)})
    summary = build_cache(args.structures, args.elements, args.cache, args.rejects, args.workroot,
                          preset=args.preset, quota=quota, max_elements=args.max_elements,
                          max_atoms=args.max_atoms, seed=args.seed, timeout_s=args.timeout,
                          max_seconds=args.hours * 3600 if args.hours else None, max_sites=args.max_sites,
                          max_per_element=args.max_per_element, include_disordered=args.include_disordered)
    print(json.dumps(summary))
    return 0


def cmd_from_cache(args) -> int:
    from ..datasets.xanes_cache import write_element_from_cache

    print(json.dumps(write_element_from_cache(args.cache, args.cache_rejects, args.element, args.sites, args.spectra,
                                              args.rejects)))
    return 0


def cmd_check_cache(args) -> int:
    from ..datasets.xanes_cache import verify_cache
    from ..utils.atomic import atomic_write_text

    summary = verify_cache(args.cache, args.structures, args.n_sites, args.seed, args.workroot, timeout_s=args.timeout)
    atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
    print(f"{summary['n_checked']} cached sites recomputed: max |Δμ| {summary['max_abs_d_mu']:.3g} "
          f"({summary['max_rel_d_mu']:.3g} of the maximum; tolerance {summary['mu_rel_tol']:g})")
    return 0


def cmd_dataset(args) -> int:
    from ..datasets.xanes_spectra import build_xanes_dataset
    from ..utils.tables import write_frame

    dataset, rejects, meta = build_xanes_dataset(args.spectra, args.feff_rejects, min_coverage=args.min_coverage,
                                                 dedup_tol=args.dedup_tol, pre_edge_offset=args.pre_edge_offset,
                                                 preprocessing=json_arg(args.preprocessing))
    write_frame(dataset, meta, args.out)
    write_frame(rejects, {"stage": "xanes_dataset"}, args.rejects)
    print(json.dumps({e: i["counts"] for e, i in meta["elements"].items()}))
    return 0


def _write_fold_predictions(predictions, summary: dict, args) -> None:
    """A training command's fold predictions (Parquet, at --out) and its summary (JSON beside it)."""
    from ..utils.atomic import atomic_write_text
    from ..utils.tables import write_frame

    write_frame(predictions, {"summary": summary, "dataset": str(args.dataset)}, args.out)
    atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(summary, indent=1) + "\n")


@wants_gpu(device_of=config_device)
def cmd_train(args) -> int:
    from ..training.xanes import train_element
    from ..utils.tables import read_frame

    dataset, meta = read_frame(args.dataset)
    cfg = json_arg(args.config) or {}
    predictions, summary = train_element(dataset, meta, args.element, args.model, cfg)
    _write_fold_predictions(predictions, summary, args)
    return 0


@wants_gpu(device_of=config_device)
def cmd_train_cross(args) -> int:
    from ..training.xanes import train_cross
    from ..utils.tables import read_frame

    dataset, meta = read_frame(args.dataset)
    predictions, summary = train_cross(dataset, meta, args.model, json_arg(args.config) or {}, elements=args.elements)
    _write_fold_predictions(predictions, summary, args)
    return 0


@wants_gpu(device_of=config_device)
def cmd_bundle_cross(args) -> int:
    from ..models.xanes import save_bundle
    from ..training.xanes import train_cross_bundle
    from ..utils.tables import read_frame

    dataset, meta = read_frame(args.dataset)
    bundle, models = train_cross_bundle(dataset, meta, json_arg(args.config) or {}, elements=args.elements)
    bundle["provenance"] = {"dataset": str(args.dataset), "code_version": meta.get("code_version")}
    save_bundle(args.out_dir, bundle, models)
    return 0


@wants_gpu(device_of=config_device)
def cmd_bundle(args) -> int:
    from ..models.xanes import save_bundle
    from ..training.xanes import train_bundle
    from ..utils.tables import read_frame

    dataset, meta = read_frame(args.dataset)
    bundle, models = train_bundle(dataset, meta, args.element, json_arg(args.config) or {})
    bundle["provenance"] = {"dataset": str(args.dataset), "code_version": meta.get("code_version")}
    save_bundle(args.out_dir, bundle, models)
    return 0


def cmd_report(args) -> int:
    import pandas as pd

    from ..evaluation import xanes_reports
    from ..provenance import code_version
    from ..utils.tables import read_frame

    frames, statuses = [], {}
    for path in args.predictions:
        frame, pmeta = read_frame(path)
        frames.append(frame)
        status = (pmeta.get("summary") or {}).get("status", "ok")
        element = (pmeta.get("summary") or {}).get("element")
        if element and status != "ok":
            statuses[element] = status
    predictions = pd.concat(frames, ignore_index=True)
    dataset, meta = read_frame(args.dataset)
    provenance = {"code_version": code_version(), "dataset": str(args.dataset),
                  "predictions": [str(p) for p in args.predictions], "config": json_arg(args.config)}
    xanes_reports.write_all(predictions, dataset, meta, args.tables, args.figures, provenance, statuses=statuses)
    return 0


def cmd_sim_to_real(args) -> int:
    from ..evaluation.xanes_sim_to_real import run_comparison

    train_cfg = {"epochs": args.epochs, "threads": 1, "device": "cpu"}
    summary = run_comparison(args.cache, args.labels, args.out_md, args.out_csv, per_file_csv=args.per_file_csv,
                             n_seeds=args.seeds, train_cfg=train_cfg, names=args.choices)
    print(Path(args.out_md).read_text())
    return 0 if len(summary) else 1


def cmd_predict_xanes(args) -> int:
    from ..prediction.xanes import predict_xanes

    if args.out:
        check_output_path(args.out)
    result = predict_xanes(args.file, args.element, args.models, cross=not args.no_cross)
    print(result.text)
    if args.out:
        csv, sidecar = result.write(args.out)
        print(f"wrote {csv} and {sidecar}")
    return 0


def register(sub) -> None:
    from ..prediction.xanes import DEFAULT_MODELS_DIR

    p = sub.add_parser("predict-xanes", help="T4/S5/O6 coordination from a measured K-edge XANES "
                                             "(two columns energy, mu; energy, I0, It; or XDI)")
    p.add_argument("file")
    p.add_argument("--element", required=True, help="absorbing element (Sc…Zn), e.g. Fe")
    p.add_argument("--models", default=DEFAULT_MODELS_DIR,
                   help="folder holding <element>/bundle.json and the cross-element cross/bundle.json")
    p.add_argument("--no-cross", action="store_true", help="leave out the cross-element models")
    p.add_argument("--out", default=None, help="write the probabilities here (CSV, plus a .json sidecar)")
    p.set_defaults(func=cmd_predict_xanes)

    xanes = sub.add_parser("xanes", help="XANES coordination classifier: sites, FEFF, data set, training, reports")
    xsub = xanes.add_subparsers(dest="xanes_command", required=True)

    p = xsub.add_parser("sites", help="label the absorbing sites of one element (ChemEnv) and pick them")
    p.add_argument("--structures", nargs="+", required=True, help="structure shards")
    p.add_argument("--element", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.add_argument("--distance-factor", type=float, default=DEFAULT_DISTANCE_FACTOR)
    p.add_argument("--compare-factor", type=float, default=COMPARE_DISTANCE_FACTOR)
    p.add_argument("--max-per-class", default=None, help='JSON, e.g. {"T4": 8, "S5": 6, "O6": 10}')
    p.add_argument("--max-structures", type=int, default=None)
    p.add_argument("--max-elements", type=int, default=None)
    p.add_argument("--max-atoms", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sites)

    p = xsub.add_parser("feff", help="FEFF10 spectra of one shard of an element's selected sites")
    p.add_argument("--sites", required=True)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--n-shards", type=int, required=True)
    p.add_argument("--preset", choices=["fast", "reference"], default="fast")
    p.add_argument("--workroot", required=True, help="folder of the per-site FEFF work directories")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per site")
    p.add_argument("--keep-bulky", action="store_true", help="keep FEFF's binary intermediates")
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.set_defaults(func=cmd_feff)

    p = xsub.add_parser("cache", help="extend the FEFF spectra cache (resources/xanes) site by site, resumable")
    p.add_argument("--structures", nargs="+", required=True, help="structure shards")
    p.add_argument("--elements", nargs="+", required=True)
    p.add_argument("--cache", required=True, help="the cache's Parquet file (created when missing)")
    p.add_argument("--rejects", required=True, help="Parquet file of the sites FEFF could not compute")
    p.add_argument("--workroot", required=True, help="folder of the per-site FEFF work directories")
    p.add_argument("--preset", choices=["fast", "reference"], default="fast")
    p.add_argument("--quota", type=int, nargs=3, default=None, metavar=LABELS,
                   help="sites per class and element (-1 = no limit; default: the cache's DEFAULT_QUOTA)")
    p.add_argument("--max-elements", type=int, default=5)
    p.add_argument("--max-atoms", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per site")
    p.add_argument("--hours", type=float, default=None, help="stop starting new sites after this long")
    p.add_argument("--max-sites", type=int, default=None, help="stop after this many new sites")
    p.add_argument("--max-per-element", type=int, default=None,
                   help="stop an element once the cache holds this many of its spectra")
    p.add_argument("--include-disordered", action="store_true",
                   help="also visit structures with partial occupancies, in their majority-occupant "
                        "approximation (xtalspec.structures.ordering)")
    p.set_defaults(func=cmd_cache)

    p = xsub.add_parser("cache-merge", help="merge FEFF spectra caches (and their rejects) built side by side")
    p.add_argument("--caches", nargs="+", required=True)
    p.add_argument("--out", required=True, help="the merged cache (its rejects go beside it)")
    p.set_defaults(func=cmd_cache_merge)

    p = xsub.add_parser("from-cache", help="one element's sites, spectra and FEFF rejects taken from the cache")
    p.add_argument("--cache", required=True)
    p.add_argument("--cache-rejects", required=True)
    p.add_argument("--element", required=True)
    p.add_argument("--sites", required=True, help="sites table to write")
    p.add_argument("--spectra", required=True, help="spectra (FEFF-shard form) to write")
    p.add_argument("--rejects", required=True, help="the element's FEFF rejects to write")
    p.set_defaults(func=cmd_from_cache)

    p = xsub.add_parser("check-cache", help="recompute a seeded sample of cached sites with FEFF and compare "
                                            "(exit 2 and the sites named when they differ)")
    p.add_argument("--cache", required=True)
    p.add_argument("--structures", nargs="+", required=True, help="structure shards holding the cached structures")
    p.add_argument("--n-sites", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workroot", required=True, help="folder of the fresh FEFF work directories")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--out", required=True, help="the comparison (JSON)")
    p.set_defaults(func=cmd_check_cache)

    p = xsub.add_parser("dataset", help="grid, scaling, duplicates, pre-edge cutoff (Table I)")
    p.add_argument("--spectra", nargs="+", required=True)
    p.add_argument("--feff-rejects", nargs="*", default=[], help="reject tables of the earlier XANES stages (sites, FEFF)")
    p.add_argument("--min-coverage", type=float, default=0.8)
    p.add_argument("--dedup-tol", type=float, default=0.015)
    p.add_argument("--pre-edge-offset", type=float, default=0.0)
    p.add_argument("--preprocessing", default=None,
                   help="JSON settings of xtalspec.spectra.xanes_matching.Preprocessing (default: its defaults)")
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.set_defaults(func=cmd_dataset)

    p = xsub.add_parser("train", help="bootstrap folds of one element and model (all variants and tests)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--element", required=True)
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--config", default=None, help="JSON training settings (see xtalspec.training.xanes)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train)

    p = xsub.add_parser("train-cross", help="cross-element model (one-hot element input) on the per-element folds")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--elements", nargs="*", default=None, help="elements to use (default: all in the data set)")
    p.add_argument("--config", default=None, help="JSON training settings (see xtalspec.training.xanes)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train_cross)

    p = xsub.add_parser("bundle-cross", help="final cross-element MLP + CNN on all spectra (for predict-xanes)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--elements", nargs="*", default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_bundle_cross)

    p = xsub.add_parser("bundle", help="final MLP + CNN of one element on all its spectra (for predict-xanes)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--element", required=True)
    p.add_argument("--config", default=None)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_bundle)

    p = xsub.add_parser("sim-to-real", help="FEFF cache vs measured development set: distances and accuracy per "
                                            "preprocessing choice (xtalspec.evaluation.xanes_sim_to_real)")
    p.add_argument("--cache", nargs="+", required=True, help="FEFF spectra cache(s); several are merged by site")
    p.add_argument("--labels", required=True, help="LABELS.csv of measured K-edge files (file, label, element)")
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--per-file-csv", default=None, help="default: <out-csv stem>_per_file.csv")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per choice")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--choices", nargs="*", default=None, help="only these choices (names as in the table)")
    p.set_defaults(func=cmd_sim_to_real)

    p = xsub.add_parser("report", help="Tables I–III, Figures 3, 5, 6, PCA and gallery from saved predictions")
    p.add_argument("--dataset", required=True)
    p.add_argument("--predictions", nargs="+", required=True)
    p.add_argument("--tables", required=True)
    p.add_argument("--figures", required=True)
    p.add_argument("--config", default=None)
    p.set_defaults(func=cmd_report)
