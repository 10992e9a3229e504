"""``xtalspec padnet …`` and ``xtalspec thesis report``: the thesis' PADNet comparison and the
report of every thesis experiment (paper 002).

``padnet train`` fits one model of the comparison (PADNet or a plain SpgNet with a background
treatment) on rendered laboratory patterns of the SpgNet data set; ``padnet evaluate`` renders the
held-out structures at increasing background strengths and scores every approach; ``thesis
report`` writes the tables and figures from saved predictions only
(:func:`xtalspec.evaluation.thesis_reports.write_thesis_report`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..utils.gpu_slots import wants_gpu
from .main import config_device

log = logging.getLogger("xtalspec.thesis")


def _json(text: str | None) -> dict:
    return json.loads(text) if text else {}


def _settings(args):
    from ..training.padnet import PadnetSettings

    options = _json(args.config)
    return PadnetSettings.from_dict(options | {"seed": args.seed}), options


@wants_gpu(device_of=config_device)
def cmd_padnet_train(args) -> int:
    import pandas as pd
    import torch

    from ..provenance import code_version
    from ..training.loop import TrainConfig, run_fingerprint
    from ..training.padnet import train_variant
    from ..utils.atomic import atomic_path, atomic_write_text
    from ..utils.tables import read_frame

    settings, options = _settings(args)
    train_opts = options.get("train", {})
    cfg = TrainConfig(epochs=int(train_opts.get("epochs", 6)), batch_size=int(train_opts.get("batch_size", 32)),
                      lr=float(train_opts.get("lr", 1e-3)), seed=args.seed,
                      threads=int(args.threads or train_opts.get("threads", 1)),
                      device=train_opts.get("device", "auto"))
    table, description = read_frame(args.dataset)
    out = Path(args.out_dir)
    fingerprint = run_fingerprint(args.dataset, model=args.model, settings=options, seed=args.seed)
    model, history = train_variant(table, len(description["spacegroups"]), args.model, settings, cfg, out,
                                   fingerprint=fingerprint)
    meta = {"model": args.model, "spacegroups": description["spacegroups"], "settings": options, "seed": args.seed,
            "dataset": str(args.dataset), "code_version": code_version(),
            "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}}
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))
    print(json.dumps({"model": args.model, "final_ce": history[-1].get("ce") if history else None}))
    return 0


def cmd_padnet_evaluate(args) -> int:
    from ..training.padnet import accuracy_table, evaluate, load_padnet_member
    from ..utils.tables import read_frame, write_frame

    settings, options = _settings(args)
    table, description = read_frame(args.dataset)
    models, metas = {}, {}
    for path in args.models:
        model, meta = load_padnet_member(path)
        models[meta["model"]] = model
        metas[meta["model"]] = {k: meta[k] for k in ("seed", "code_version", "train_config")}
    predictions = evaluate(table, models, settings)
    meta = {"kind": "padnet_predictions", "dataset": str(args.dataset), "spacegroups": description["spacegroups"],
            "settings": options, "models": metas}
    write_frame(predictions, meta, args.out)
    acc = accuracy_table(predictions).pivot(index="approach", columns="strength", values="accuracy")
    print(acc.round(3).to_string())
    return 0


def cmd_report(args) -> int:
    from ..evaluation.thesis_reports import write_thesis_report

    summary = write_thesis_report(args.out_dir, cv=args.cv, learning_curve=args.learning_curve,
                                  learning_curve_source=args.learning_curve_source, transfer=args.transfer,
                                  padnet=args.padnet)
    print(json.dumps({k: (len(v) if isinstance(v, list) else "…") for k, v in summary.items() if k != "code_version"}))
    return 0


def register(sub) -> None:
    group = sub.add_parser("padnet", help="PADNet-style background-robust XRD vs background removal (thesis ch. 7)")
    commands = group.add_subparsers(dest="padnet_command", required=True)
    p = commands.add_parser("train", help="one model of the comparison on rendered laboratory patterns")
    p.add_argument("--dataset", required=True, help="the SpgNet data set (results/xrd/dataset/dataset.parquet)")
    p.add_argument("--model", required=True, choices=["padnet", "spgnet_min", "spgnet_min_mean", "spgnet_raw",
                                                      "spgnet_clean"])
    p.add_argument("--config", help="JSON: rendering, background removal and train settings")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_padnet_train)

    p = commands.add_parser("evaluate", help="accuracy vs background strength of every approach")
    p.add_argument("--dataset", required=True)
    p.add_argument("--models", nargs="+", required=True, help="model.pt files from 'padnet train'")
    p.add_argument("--config")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_padnet_evaluate)

    group = sub.add_parser("thesis", help="reports of the thesis experiments (paper 002)")
    commands = group.add_subparsers(dest="thesis_command", required=True)
    p = commands.add_parser("report", help="tables and figures from saved predictions (no training)")
    p.add_argument("--cv", nargs="*", default=[], help="cross-validation predictions (one per source and model)")
    p.add_argument("--learning-curve", nargs="*", default=[])
    p.add_argument("--learning-curve-source")
    p.add_argument("--transfer")
    p.add_argument("--padnet")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_report)
