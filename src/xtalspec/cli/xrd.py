"""``xtalspec xrd …`` and ``xtalspec predict-xrd``: the SpgNet/SpgVolNet system's commands."""

from __future__ import annotations

import logging

from ..utils.atomic import check_output_path
from ..utils.gpu_slots import wants_gpu
from .main import positive_int, share

log = logging.getLogger("xtalspec.xrd")


def cmd_profiles(args) -> int:
    from ..datasets.xrd_profiles import write_profile_shard

    write_profile_shard(args.structures, args.out, args.rejects)
    return 0


def cmd_dataset(args) -> int:
    from ..datasets.spgnet import build_dataset
    from ..datasets.xrd_profiles import read_profiles
    from ..evaluation.report_io import output_paths
    from ..evaluation.xrd_reports import DATASET_FILES, write_dataset_tables
    from ..utils.tables import write_frame

    paths = output_paths(DATASET_FILES, args.tables, table2=args.table2, table2_csv=args.table2_csv, sets=args.sets,
                         folds=args.folds)
    table, description = build_dataset(read_profiles(args.profiles), args.min_per_group, args.n_folds, args.per_fold,
                                       args.seed, args.max_groups, args.leakage_bins, args.peak_threshold,
                                       args.max_train_per_group)
    write_frame(table, description, args.out)
    settings = {k: getattr(args, k) for k in ("min_per_group", "n_folds", "per_fold", "leakage_bins",
                                              "peak_threshold", "max_train_per_group")}
    print(write_dataset_tables(description, settings, paths))
    return 0


def _train_config(args, seed: int):
    """The TrainConfig of the training flags shared by `xrd train`, `train-ensemble` and `deploy-train`."""
    from ..training.loop import TrainConfig, set_deterministic

    set_deterministic()
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
                       volume_weight=args.volume_weight, threads=args.threads, device=args.device,
                       checkpoint_every=args.checkpoint_every)


@wants_gpu
def cmd_train(args) -> int:
    from ..training.loop import throughput
    from ..training.xrd import train_member

    cfg = _train_config(args, args.seed)
    result = train_member(args.dataset, args.model, args.range, args.fold, cfg, args.out)
    last = result["history"][-1]
    print(f"{args.model} {args.range} fold {args.fold} seed {args.seed}: val_acc {last.get('val_acc', float('nan')):.3f}"
          f", {throughput(result['history']):.1f} samples/s")
    return 0


@wants_gpu
def cmd_train_ensemble(args) -> int:
    from ..training.ensemble import train_members_together
    from ..training.loop import throughput

    cfg = _train_config(args, args.seeds[0])
    results = train_members_together(args.dataset, args.model, args.range, args.fold, cfg, args.seeds, args.out,
                                     conv_mode=args.conv_mode)
    for seed, result in results.items():
        last = result["history"][-1] if result["history"] else {}
        print(f"{args.model} {args.range} fold {args.fold} seed {seed}: val_acc {last.get('val_acc', float('nan')):.3f}"
              f", {throughput(result['history']):.1f} samples/s (each of {len(results)} trained together)")
    return 0


def cmd_report(args) -> int:
    from ..evaluation.report_io import output_paths
    from ..evaluation.xrd_reports import REPORT_FILES, write_report

    given = {key: getattr(args, key) for key in ("csv", "md", "figure", "summary", "errors", "template")}
    write_report(args.what, args.predictions, args.range, output_paths(REPORT_FILES[args.what], args.out_dir, **given))
    return 0


def cmd_predict(args) -> int:
    from ..prediction.outputs import output_paths
    from ..prediction.xrd import DEPLOY_MODELS_DIR, PADNET_MODELS_DIR, predict_pattern, predict_raw_pattern

    for path in output_paths(args.out, args.json).values():
        check_output_path(path)
    if args.model == "padnet":  # raw scan, no peak picking (thesis ch. 7)
        result = predict_raw_pattern(args.pattern, args.wavelength, args.models or PADNET_MODELS_DIR, top=args.top)
    else:
        result = predict_pattern(args.pattern, args.wavelength, args.models or DEPLOY_MODELS_DIR, top=args.top,
                                 peak_list=args.peak_list, model_kind=args.model, n_atoms=args.n_atoms)
    print(result.text)
    if args.out or args.json:
        result.write(args.out, args.json)
    return 0


def cmd_deploy_render(args) -> int:
    from ..datasets.xrd_deploy import render_shard

    result = render_shard(args.profiles, args.out, args.rejects, copies=args.copies, seed=args.seed,
                          disabled=tuple(args.disable), fraction=args.fraction)
    print(f"{args.profiles}: {result['rendered']} front-end profiles, {result['rejects']} rejected, "
          f"{result['seconds']:.0f} s")
    return 0


def cmd_deploy_dataset(args) -> int:
    from ..datasets.xrd_deploy import read_rendered
    from ..datasets.xrd_profiles import read_profiles
    from ..training.xrd_deploy import build_deploy_dataset
    from ..utils.tables import write_frame

    items, description = build_deploy_dataset(read_profiles(args.profiles), read_rendered(args.rendered),
                                              min_per_group=args.min_per_group, holdout=args.holdout, seed=args.seed,
                                              train_fraction=args.train_fraction)
    write_frame(items, description, args.out)
    print(f"{len(description['spacegroups'])} space groups, {description['n_structures']} structures "
          f"({description['n_held_out']} held out), items {description['items']}")
    return 0


@wants_gpu
def cmd_deploy_train(args) -> int:
    from ..training.loop import throughput
    from ..training.xrd_deploy import train_deploy

    cfg = _train_config(args, args.seed)
    summary = train_deploy(args.dataset, args.model, cfg, args.out, target_accuracy=args.confident_accuracy)
    held = summary["held_out"]
    text = ", ".join(f"{kind} top-1 {m['top1']:.3f} top-3 {m['top3']:.3f} ECE {m['ece_before']:.3f}→{m['ece_after']:.3f}"
                     for kind, m in held.items())
    print(f"{args.model} deploy seed {args.seed}: held out {text}; T = {summary['temperature']:.3f}, "
          f"{throughput(summary['history']):.1f} samples/s")
    return 0


def cmd_deploy_score(args) -> int:
    import json

    from ..training.xrd_deploy import score_member
    from ..utils.atomic import atomic_write_text

    scores = score_member(args.model, args.dataset)
    atomic_write_text(args.out, json.dumps({"variant": args.variant, "model": args.model, "scores": scores}, indent=2))
    print(json.dumps(scores))
    return 0


def cmd_deploy_report(args) -> int:
    from ..evaluation.xrd_deploy_report import deploy_report

    print(deploy_report(args.summaries, args.heldout, args.md, args.figure))
    return 0


def cmd_deploy_ablation_table(args) -> int:
    from ..evaluation.xrd_deploy_report import ablation_table

    print(ablation_table(args.scores, args.md))
    return 0


def _member_args(p) -> None:
    """Which member(s): data set, model, range, validation fold."""
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True, choices=["spgnet", "spgvolnet"])
    p.add_argument("--range", default="inf")
    p.add_argument("--fold", type=int, required=True)


def _training_args(p) -> None:
    """Training settings shared by `xrd train` and `xrd train-ensemble`."""
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--volume-weight", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--checkpoint-every", type=int, default=1)


def register(sub) -> None:
    xrd = sub.add_parser("xrd", help="SpgNet/SpgVolNet: δ-profiles, data sets, training, reports")
    xsub = xrd.add_subparsers(dest="xrd_command", required=True)

    p = xsub.add_parser("profiles", help="δ-profiles of one structure shard")
    p.add_argument("--structures", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.set_defaults(func=cmd_profiles)

    p = xsub.add_parser("dataset", help="space groups, outlier ranges, validation folds (Table 2)")
    p.add_argument("--profiles", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tables", default=None,
                   help="folder for table2.{csv,md}, sets.md, validation_folds.csv (unless given one by one)")
    p.add_argument("--table2", default=None, help="Table 2 (Markdown)")
    p.add_argument("--table2-csv", default=None, help="Table 2 (CSV)")
    p.add_argument("--sets", default=None, help="what each set holds (Markdown)")
    p.add_argument("--folds", default=None, help="validation-fold report (CSV)")
    p.add_argument("--min-per-group", type=int, default=100)
    p.add_argument("--max-groups", type=int, default=None)
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--per-fold", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--leakage-bins", type=int, default=5)
    p.add_argument("--peak-threshold", type=float, default=0.01)
    p.add_argument("--max-train-per-group", type=int, default=None, help="cap (small machines); paper: none")
    p.set_defaults(func=cmd_dataset)

    p = xsub.add_parser("train", help="train one member (model × range × fold × seed)")
    _member_args(p)
    p.add_argument("--seed", type=int, required=True)
    _training_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train)

    p = xsub.add_parser("train-ensemble",
                        help="train all seeds of one model × range × fold together (one process, one batched model)")
    _member_args(p)
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    _training_args(p)
    p.add_argument("--conv-mode", default="auto", choices=["auto", "grouped", "split"],
                   help="convolutions as one grouped Conv1d over all members (auto on CUDA) or one Conv1d "
                        "per member (auto on CPU); the linear layers are batched either way")
    p.add_argument("--out", required=True, help="the fold folder: writes OUT/seed{n}/{model.pt,predictions.parquet,"
                                                "history.csv} and OUT/ensemble_checkpoint.pt")
    p.set_defaults(func=cmd_train_ensemble)

    p = xsub.add_parser("report", help="tables and figures from saved predictions (no training)")
    p.add_argument("what", choices=["table3", "ranges", "confusion", "volume", "topk", "curves"])
    p.add_argument("--predictions", nargs="+", required=True,
                   help="members' predictions.parquet (for 'curves': their history.csv)")
    p.add_argument("--range", default="inf")
    p.add_argument("--out-dir", default=None, help="folder of the report's files under their default names "
                                                   "(xtalspec.evaluation.xrd_reports.REPORT_FILES)")
    p.add_argument("--csv", default=None, help="table3, ranges: the CSV table")
    p.add_argument("--md", default=None, help="table3, ranges: the Markdown table")
    p.add_argument("--figure", default=None, help="volume, curves: the PNG figure")
    p.add_argument("--summary", default=None, help="volume: the JSON summary")
    p.add_argument("--errors", default=None, help="volume: the CSV of volume errors")
    p.add_argument("--template", default=None,
                   help="confusion: file stem with {model} and {label} (writes .csv and .png); topk: CSV file "
                        "name with {model}")
    p.set_defaults(func=cmd_report)

    p = xsub.add_parser("deploy-render", help="measured-like front-end profiles of one profile shard")
    p.add_argument("--profiles", required=True, help="a δ-profile shard")
    p.add_argument("--copies", type=positive_int, default=1, help="rendered scans per structure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--disable", nargs="*", default=[], metavar="AUGMENTATION",
                   help="augmentations switched off (ablation): wavelength kalpha2 width zero_shift strain "
                        "preferred_orientation intensity_drift background noise")
    p.add_argument("--fraction", type=share, default=1.0,
                   help="render only this seeded share of the structures (the ablation; default all)")
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.set_defaults(func=cmd_deploy_render)

    p = xsub.add_parser("deploy-dataset", help="the deploy models' items: clean and front-end profiles, held-out split")
    p.add_argument("--profiles", nargs="+", required=True)
    p.add_argument("--rendered", nargs="+", required=True)
    p.add_argument("--min-per-group", type=positive_int, default=20)
    p.add_argument("--holdout", type=float, default=0.1, help="share of each group's structures kept out of training")
    p.add_argument("--train-fraction", type=share, default=1.0,
                   help="keep only this seeded share of the training structures (the ablation; default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_deploy_dataset)

    p = xsub.add_parser("deploy-train", help="train one deploy member on all structures (calibrated on the held-out ones)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True, choices=["spgnet", "spgvolnet"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--confident-accuracy", type=float, default=0.9,
                   help="held-out top-1 accuracy the 'confident' threshold is chosen for")
    _training_args(p)
    p.add_argument("--out", required=True, help="the member's folder")
    p.set_defaults(func=cmd_deploy_train)

    p = xsub.add_parser("deploy-score", help="a member's top-k on another data set's held-out items (ablation)")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_deploy_score)

    p = xsub.add_parser("deploy-report", help="the deploy models' held-out accuracy, curve and calibration")
    p.add_argument("--summaries", nargs="+", required=True)
    p.add_argument("--heldout", nargs="+", required=True)
    p.add_argument("--md", required=True)
    p.add_argument("--figure", required=True)
    p.set_defaults(func=cmd_deploy_report)

    p = xsub.add_parser("deploy-ablation-table", help="the augmentation ablation table")
    p.add_argument("--scores", nargs="+", required=True)
    p.add_argument("--md", required=True)
    p.set_defaults(func=cmd_deploy_ablation_table)

    p = sub.add_parser("predict-xrd", help="space group and volume from a measured 2θ pattern (Scheme 2)")
    p.add_argument("pattern")
    p.add_argument("--wavelength", default=None,
                   help="CuKa, MoKa, … or a value in Å; default: the wavelength the file states (XRDML, UXD, "
                        "DASH .xye, Fox XML), an error if it states none. A given value wins over the file's")
    p.add_argument("--models", default=None,
                   help="folder of trained members (default: the deploy models, results/xrd/deploy/models; "
                        "results/xrd/models: the paper-protocol ensembles; padnet: results/thesis/padnet/models)")
    p.add_argument("--model", default="spgvolnet", choices=["spgnet", "spgvolnet", "padnet"],
                   help="spgnet/spgvolnet: peaks → δ-profile → ensemble; padnet: the raw scan (no peak picking)")
    p.add_argument("--top", type=positive_int, default=5)
    p.add_argument("--peak-list", action="store_true", default=None, help="the file is a list of peaks")
    p.add_argument("--n-atoms", type=positive_int, default=None, help="atoms in the primitive cell (to report a volume)")
    p.add_argument("--out", default=None, help="write the ranking (CSV, with the verdict) here, the crystal-system "
                                               "ranking beside it (<stem>_crystal_systems.csv) and a JSON document "
                                               "(<stem>.json, unless --json)")
    p.add_argument("--json", default=None, help="write the prediction as JSON here (ranking, crystal systems, verdict)")
    p.set_defaults(func=cmd_predict)
