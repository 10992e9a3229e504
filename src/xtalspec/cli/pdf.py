"""``xtalspec pdf …`` and ``xtalspec predict-pdf``: the spacegroupMining system's commands."""

from __future__ import annotations

import json
from pathlib import Path

from ..utils.gpu_slots import wants_gpu


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


@wants_gpu()
def cmd_train(args) -> int:
    from ..training.loop import TrainConfig, set_deterministic
    from ..training.pdf import train_pdf_model

    set_deterministic()
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
                      seed=args.seed, threads=args.threads, device=args.device)
    result = train_pdf_model(args.dataset, cfg, args.out)
    print(f"test accuracy after {args.epochs} epochs: {result['history'][-1].get('val_acc', float('nan')):.3f}")
    return 0


def cmd_topk(args) -> int:
    import numpy as np
    import pyarrow.parquet as pq

    from ..datasets.pdfs import PAPER_RESULT
    from ..evaluation.classification import top_k_accuracy
    from ..utils.atomic import atomic_write_text

    lines = ["# Top-1 / top-6 accuracy on the test split", "", "| model | test items | classes | top-1 | top-6 |",
             "|---|---:|---:|---:|---:|"]
    rows = []
    for path in args.predictions:
        frame = pq.read_table(path).to_pandas()
        p, y = np.stack(frame["probabilities"].to_numpy()), frame["class_index"].to_numpy()
        name = Path(path).parent.name
        row = {"model": name, "n_test": len(y), "classes": p.shape[1], "top1": top_k_accuracy(p, y, 1),
               "top6": top_k_accuracy(p, y, 6)}
        rows.append(row)
        lines.append(f"| ours ({name}) | {len(y)} | {p.shape[1]} | {row['top1']:.3f} | {row['top6']:.3f} |")
    lines.append(f"| paper (rebuilt model, ICSD) | ~19,800 | 45 | {PAPER_RESULT['top1']:.3f} | {PAPER_RESULT['top6']:.3f} |")
    lines.append(f"| Liu et al. 2019 (original) | | 45 | {PAPER_RESULT['original_top1']:.3f} | "
                 f"{PAPER_RESULT['original_top6']:.3f} |")
    import pandas as pd

    out = Path(args.out_dir)
    atomic_write_text(out / "topk.csv", pd.DataFrame(rows).to_csv(index=False))
    atomic_write_text(out / "topk.md", "\n".join(lines) + "\n")
    return 0


def cmd_sweep(args) -> int:
    from ..datasets.pdfs import SWEEPS
    from ..evaluation.pdf_robustness import plot_sweep, run_sweep, sweep_items, sweep_markdown
    from ..training.pdf import load_pdf_model, probabilities
    from ..utils.tables import read_frame
    from ..utils.atomic import atomic_write_text

    table, _ = read_frame(args.dataset)
    items = sweep_items(table, args.fraction, args.seed)
    models = {}
    for path in args.models:
        model, _ = load_pdf_model(path)
        models[Path(path).parent.name] = lambda x, m=model: probabilities(m, x)
    result = run_sweep(args.parameter, items, models, args.n_bootstrap, args.seed)
    number = SWEEPS[args.parameter]["table"]
    out = Path(args.out_dir)
    atomic_write_text(out / f"table{number}_{args.parameter}.csv",
                      result.drop(columns="top6_bootstrap").to_csv(index=False))
    atomic_write_text(out / f"table{number}_{args.parameter}.md", sweep_markdown(result, args.parameter))
    plot_sweep(result, args.parameter, Path(args.figures) / f"figure{number}_{args.parameter}.png")
    return 0


def cmd_predict(args) -> int:
    from ..prediction.pdf import predict_pdf

    result = predict_pdf(args.file, args.models, top=args.top)
    print(result.text)
    if args.out:
        result.write(args.out)
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
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--lr-decay", type=float, default=0.025)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train)

    p = psub.add_parser("topk", help="top-1 / top-6 table from saved predictions")
    p.add_argument("--predictions", nargs="+", required=True)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_topk)

    p = psub.add_parser("sweep", help="robustness to one PDF parameter (no retraining)")
    p.add_argument("parameter", choices=["rmax", "qmax", "qdamp", "uiso"])
    p.add_argument("--dataset", required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--n-bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--figures", required=True)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("predict-pdf", help="space group from a measured G(r) (.gr or two columns)")
    p.add_argument("file")
    p.add_argument("--models", default="results/pdf/models", help="folder holding <name>/model.pt")
    p.add_argument("--top", type=int, default=6)
    p.add_argument("--out", default=None, help="write the ranking (CSV) here")
    p.set_defaults(func=cmd_predict)
