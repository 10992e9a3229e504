"""``xtalspec pdf …`` and ``xtalspec predict-pdf``: the spacegroupMining system's commands."""

from __future__ import annotations

import json

from ..utils.atomic import check_output_path
from ..utils.gpu_slots import wants_gpu
from .main import positive_int

from ..datasets.pdf_paper import SWEEPS


def cmd_profiles(args) -> int:
    from ..datasets.pdfs import write_pdf_shard

    write_pdf_shard(args.structures, args.out, args.rejects, randomise_seed=args.randomise_seed)
    return 0


def cmd_dataset(args) -> int:
    from ..datasets.pdfs import build_pdf_dataset
    from ..utils.tables import write_frame

    table, description = build_pdf_dataset(args.pdfs, args.seed, args.test_fraction, args.min_per_group)
    if args.like:  # the randomised-parameter set reuses the standard set's classes and split
        from ..utils.tables import read_frame

        reference, ref_description = read_frame(args.like)
        split = dict(zip(reference["id"] + "|" + reference["source"], reference["split"]))
        keys = table["id"] + "|" + table["source"]
        table = table[keys.isin(split)].reset_index(drop=True)
        table["split"] = (table["id"] + "|" + table["source"]).map(split)
        table["class_index"] = table["spacegroup"].map({g: i for i, g in enumerate(ref_description["spacegroups"])})
        description = dict(ref_description, n_train=int((table["split"] == "train").sum()),
                           n_test=int((table["split"] == "test").sum()), parameters="randomised per structure")
    write_frame(table, description, args.out)
    print(json.dumps({k: v for k, v in description.items() if k != "spacegroups"}))
    return 0


def _train_config(args):
    """The TrainConfig of the training flags shared by `pdf train` and `pdf deploy-train`."""
    from ..training.loop import TrainConfig, set_deterministic

    set_deterministic()
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
                       seed=args.seed, threads=args.threads, device=args.device)


def _training_args(p, *, epochs: int, lr: float, lr_decay: float) -> None:
    """The training flags of `pdf train` and `pdf deploy-train` (read back by :func:`_train_config`)."""
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--lr-decay", type=float, default=lr_decay)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--device", default="auto")


@wants_gpu
def cmd_train(args) -> int:
    from ..training.pdf import train_pdf_model

    cfg = _train_config(args)
    result = train_pdf_model(args.dataset, cfg, args.out)
    print(f"test accuracy after {args.epochs} epochs: {result['history'][-1].get('val_acc', float('nan')):.3f}")
    return 0


def cmd_topk(args) -> int:
    from ..evaluation.pdf_reports import TOPK_FILES, write_topk
    from ..evaluation.report_io import output_paths

    write_topk(args.predictions, output_paths(TOPK_FILES, args.out_dir, csv=args.csv, md=args.md))
    return 0


def cmd_sweep(args) -> int:
    from ..evaluation.pdf_reports import sweep_files, write_sweep
    from ..evaluation.report_io import output_paths

    names = sweep_files(args.parameter)
    paths = output_paths({k: names[k] for k in ("csv", "md")}, args.out_dir, csv=args.csv, md=args.md)
    paths |= output_paths({"figure": names["figure"]}, args.figures, figure=args.figure)
    write_sweep(args.parameter, args.dataset, args.models, args.fraction, args.n_bootstrap, args.seed, paths)
    return 0


def cmd_deploy_profiles(args) -> int:
    from ..datasets.pdf_deploy import Augment, write_deploy_shard

    outputs = {radiation: path for radiation, path in (("x-ray", args.out_xray), ("neutron", args.out_neutron)) if path}
    if not outputs:
        raise ValueError("give --out-xray and/or --out-neutron")
    augment = Augment.from_dict(json.loads(args.augment) if args.augment else None)
    write_deploy_shard(args.structures, outputs, args.rejects, args.copies, args.seed, augment)
    return 0


def cmd_deploy_dataset(args) -> int:
    from ..datasets.pdf_deploy import build_deploy_dataset
    from ..utils.tables import write_frame

    table, description = build_deploy_dataset(args.pdfs, args.radiation, args.min_per_group, args.holdout, args.seed)
    if not description["spacegroups"]:
        raise ValueError(f"no space group has {args.min_per_group} structures with a {args.radiation} PDF")
    write_frame(table, description, args.out)
    print(json.dumps({k: v for k, v in description.items() if k not in ("spacegroups", "group_sizes")}))
    return 0


@wants_gpu
def cmd_deploy_train(args) -> int:
    from ..training.pdf_deploy import train_deploy_model

    cfg = _train_config(args)
    summary = train_deploy_model(args.dataset, cfg, args.out, class_weight_power=args.class_weight_power,
                                 target_accuracy=args.confident_accuracy)
    print(f"{summary['radiation']}: held-out top-1 {summary['heldout_top1']:.3f}, top-6 {summary['heldout_top6']:.3f} "
          f"({summary['n_groups']} groups, {summary['n_heldout']} held-out items)")
    return 0


def cmd_deploy_report(args) -> int:
    from ..evaluation.pdf_deploy_report import write_deploy_report

    write_deploy_report(args.summaries, args.md, args.json)
    return 0


def cmd_predict(args) -> int:
    from ..prediction.pdf import predict_pdf
    from ..prediction.outputs import output_paths

    for path in output_paths(args.out, args.json).values():
        check_output_path(path)
    result = predict_pdf(args.file, args.models, top=args.top, radiation=args.radiation)
    print(result.text)
    if args.out or args.json:
        result.write(args.out, args.json)
    return 0


def register(sub) -> None:
    pdf = sub.add_parser("pdf", help="spacegroupMining: PDFs, data set, training, robustness sweeps")
    psub = pdf.add_subparsers(dest="pdf_command", required=True)

    p = psub.add_parser("profiles", help="209-point PDF inputs of one structure shard")
    p.add_argument("--structures", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.add_argument("--randomise-seed", type=int, default=None, help="draw rmax/Qmax/Qdamp/Uiso per structure")
    p.set_defaults(func=cmd_profiles)

    p = psub.add_parser("dataset", help="45 groups, stratified 80/20 split")
    p.add_argument("--pdfs", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--min-per-group", type=int, default=2)
    p.add_argument("--like", default=None, help="reuse the classes and split of this data set")
    p.set_defaults(func=cmd_dataset)

    p = psub.add_parser("train", help="train the PDF classifier")
    p.add_argument("--dataset", required=True)
    _training_args(p, epochs=30, lr=5e-4, lr_decay=0.025)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train)

    p = psub.add_parser("topk", help="top-1 / top-6 table from saved predictions")
    p.add_argument("--predictions", nargs="+", required=True)
    p.add_argument("--out-dir", default=None, help="folder for topk.csv and topk.md (unless given one by one)")
    p.add_argument("--csv", default=None)
    p.add_argument("--md", default=None)
    p.set_defaults(func=cmd_topk)

    p = psub.add_parser("sweep", help="robustness to one PDF parameter (no retraining)")
    p.add_argument("parameter", choices=list(SWEEPS))
    p.add_argument("--dataset", required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--n-bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=None, help="folder for table{N}_{parameter}.{csv,md} (unless given)")
    p.add_argument("--figures", default=None, help="folder for figure{N}_{parameter}.png (unless given)")
    p.add_argument("--csv", default=None, help="the sweep's table (CSV)")
    p.add_argument("--md", default=None, help="the sweep's table (Markdown)")
    p.add_argument("--figure", default=None, help="the sweep's figure (PNG)")
    p.set_defaults(func=cmd_sweep)

    p = psub.add_parser("deploy-profiles", help="deploy-model inputs of one structure shard (X-ray and neutron)")
    p.add_argument("--structures", required=True)
    p.add_argument("--out-xray", default=None)
    p.add_argument("--out-neutron", default=None)
    p.add_argument("--rejects", required=True)
    p.add_argument("--copies", type=positive_int, default=3, help="measured-like PDFs per structure and radiation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", default=None, help='JSON: {"qmax": [14, 30], "noise": 0.05, "scale": [0.5, 2]}')
    p.set_defaults(func=cmd_deploy_profiles)

    p = psub.add_parser("deploy-dataset", help="one radiation's deploy data: groups with enough structures, held-out split")
    p.add_argument("--pdfs", nargs="+", required=True)
    p.add_argument("--radiation", choices=["x-ray", "neutron"], required=True)
    p.add_argument("--min-per-group", type=positive_int, default=20)
    p.add_argument("--holdout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_deploy_dataset)

    p = psub.add_parser("deploy-train", help="train one deploy model (held-out curve, logits for calibration)")
    p.add_argument("--dataset", required=True)
    _training_args(p, epochs=12, lr=1e-3, lr_decay=0.1)
    p.add_argument("--class-weight-power", type=float, default=0.5, help="CE weights (N/N_class)^power")
    p.add_argument("--confident-accuracy", type=float, default=0.9,
                   help="held-out top-1 accuracy the 'confident' threshold is chosen for")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_deploy_train)

    p = psub.add_parser("deploy-report", help="the deploy models' held-out accuracy and validation curves")
    p.add_argument("--summaries", nargs="+", required=True)
    p.add_argument("--md", required=True)
    p.add_argument("--json", required=True)
    p.set_defaults(func=cmd_deploy_report)

    p = sub.add_parser("predict-pdf", help="space group from a measured G(r) (.gr or two columns)")
    p.add_argument("file")
    p.add_argument("--models", default=None,
                   help="default: the deploy models (results/pdf/deploy/{xray,neutron}/model.pt, chosen by the "
                        "radiation); another folder: every <name>/model.pt in it (results/pdf/models: the paper's)")
    p.add_argument("--top", type=positive_int, default=6)
    p.add_argument("--radiation", choices=["x-ray", "neutron"], default=None,
                   help="the PDF's radiation when its header does not say (or says wrongly); picks the deploy "
                        "model (not stated anywhere: x-ray, with a note)")
    p.add_argument("--out", default=None, help="write the ranking (CSV, with the verdict) here, the crystal-system "
                                               "ranking beside it (<stem>_crystal_systems.csv) and a JSON document "
                                               "(<stem>.json, unless --json)")
    p.add_argument("--json", default=None, help="write the prediction as JSON here (ranking, crystal systems, verdict)")
    p.set_defaults(func=cmd_predict)
