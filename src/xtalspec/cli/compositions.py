"""``xtalspec compositions …``: formation enthalpy from composition (thesis ch. 3–5).

``fetch`` reads one source (janaf offline; oqmd, mp over their REST APIs, cached) into records and
rejects, ``dataset`` cleans them into a K-fold data set, ``cv`` cross-validates one model,
``learning-curve`` trains on growing subsets, ``pretrain`` fits a network on a large (DFT) set and
``transfer`` compares, on the target set's folds, training from scratch, the pretrained model as
is, and fine-tuning it. Every output is a Parquet table that carries its provenance.
"""

from __future__ import annotations

import json
import logging

from ..utils.gpu_slots import wants_gpu
from .main import config_device

log = logging.getLogger("xtalspec.compositions")


def _json(text: str | None) -> dict:
    return json.loads(text) if text else {}


def _fit_config(args):
    from ..training.compositions import FitConfig

    options = _json(args.config)
    if getattr(args, "threads", None):
        options["threads"] = args.threads
    options["seed"] = int(args.seed)
    return FitConfig.from_dict(options), options


def _device(args) -> tuple[str, int | None]:
    """Random forests use no GPU; the networks: the --config JSON's device and gpus_per_job."""
    if str(getattr(args, "model", "")).startswith("rf_"):
        return "cpu", 0
    return config_device(args)


def _load_dataset(path):
    from ..utils.tables import read_frame

    return read_frame(path)


def cmd_fetch(args) -> int:
    from ..compositions.sources import fetch_source
    from ..utils.tables import write_frame

    records, rejects = fetch_source(args.source, _json(args.options), args.cache)
    provenance = dict(records.attrs.get("provenance", {})) | {"source": args.source}
    write_frame(records.reset_index(drop=True), {"kind": "composition_records", "provenance": provenance}, args.out)
    write_frame(rejects.reset_index(drop=True).astype(str), {"kind": "rejects", "stage": "fetch", "source": args.source},
                args.rejects)
    counts = rejects["reason"].value_counts().to_dict() if len(rejects) else {}
    print(json.dumps({"source": args.source, "records": len(records), "rejects": counts}))
    return 0


def cmd_dataset(args) -> int:
    from ..datasets.compositions import build_composition_dataset
    from ..utils.tables import read_frame, write_frame

    records, meta = read_frame(args.records)
    data, rejects, description = build_composition_dataset(records, n_folds=args.n_folds, seed=args.seed,
                                                           n_sigma=args.n_sigma)
    description |= {"records": str(args.records), "provenance": meta.get("provenance", {})}
    write_frame(data, description, args.out)
    write_frame(rejects.astype(str), {"kind": "rejects", "stage": "dataset"}, args.rejects)
    print(json.dumps({k: description[k] for k in ("n_records", "n_compositions", "n_elements")}
                     | {"rejects": rejects["reason"].value_counts().to_dict()}))
    return 0


@wants_gpu(device_of=_device)
def cmd_cv(args) -> int:
    from ..training.compositions import cross_validate
    from ..utils.tables import write_frame

    data, description = _load_dataset(args.dataset)
    cfg, options = _fit_config(args)
    folds = [int(f) for f in args.folds] if args.folds else None
    predictions, summary = cross_validate(data, description["elements"], args.model, cfg, folds=folds)
    meta = {"kind": "cv_predictions", "model": args.model, "dataset": str(args.dataset), "config": options,
            "source": data["source"].iloc[0] if len(data) else None, "n_compositions": len(data),
            "folds": json.loads(summary.to_json(orient="records"))}
    write_frame(predictions, meta, args.out)
    print(json.dumps({"model": args.model, "mae_mean": float(summary["mae"].mean()),
                      "mae_sd": float(summary["mae"].std(ddof=1)) if len(summary) > 1 else 0.0}))
    return 0


@wants_gpu(device_of=_device)
def cmd_learning_curve(args) -> int:
    from ..training.compositions import learning_curve
    from ..utils.tables import write_frame

    data, description = _load_dataset(args.dataset)
    cfg, options = _fit_config(args)
    curve = learning_curve(data, description["elements"], args.model, cfg, [float(f) for f in args.fractions],
                           [int(f) for f in args.folds])
    write_frame(curve, {"kind": "learning_curve", "model": args.model, "dataset": str(args.dataset),
                        "config": options}, args.out)
    print(curve.groupby("fraction")["mae"].mean().to_json())
    return 0


@wants_gpu(device_of=_device)
def cmd_pretrain(args) -> int:
    import torch

    from ..provenance import code_version
    from ..training.compositions import pretrain
    from ..utils.atomic import atomic_path

    data, description = _load_dataset(args.dataset)
    cfg, options = _fit_config(args)
    model, result = pretrain(data, description["elements"], args.model, cfg)
    meta = {"model": args.model, "elements": description["elements"], "dataset": str(args.dataset),
            "source": data["source"].iloc[0], "n_compositions": len(data), "config": options,
            "best_epoch": result["best_epoch"], "best_val_mae": result["best_val_mae"],
            "n_fit": result["n_fit"], "n_val": result["n_val"], "code_version": code_version()}
    with atomic_path(args.out) as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    print(json.dumps({k: meta[k] for k in ("model", "source", "n_compositions", "best_epoch", "best_val_mae")}))
    return 0


def load_pretrained(path):
    """A pretrained composition network and its metadata (weights_only: no code runs from the file)."""
    import torch

    from ..models.elemnet import build_regressor

    state = torch.load(path, map_location="cpu", weights_only=True)
    meta = state["meta"]
    model = build_regressor(meta["model"], len(meta["elements"]))
    model.load_state_dict(state["state_dict"])
    return model.eval(), state["state_dict"], meta


@wants_gpu(device_of=_device)
def cmd_transfer(args) -> int:
    import numpy as np
    import pandas as pd

    from ..datasets.compositions import TARGET, build_composition_dataset, inputs
    from ..training.compositions import cross_validate, predict_network
    from ..utils.tables import read_frame, write_frame

    model, state, pre_meta = load_pretrained(args.pretrained)
    records, rec_meta = read_frame(args.records)
    data, rejects, description = build_composition_dataset(records, n_folds=args.n_folds, seed=args.split_seed,
                                                           n_sigma=args.n_sigma, elements=pre_meta["elements"])
    cfg, options = _fit_config(args)
    name = pre_meta["model"]
    scratch, _ = cross_validate(data, pre_meta["elements"], name, cfg, label=f"{name}-SC")
    transfer, _ = cross_validate(data, pre_meta["elements"], name, cfg, init_state=state, label=f"{name}-TL")
    source_sc = pd.DataFrame({"id": data["id"], "reduced_formula": data["reduced_formula"], "fold": data["fold"],
                              "y_true": data[TARGET].to_numpy(dtype=np.float64),
                              "y_pred": predict_network(model, inputs(data)),
                              "model": f"{pre_meta['source'].upper()}-SC"})
    predictions = pd.concat([scratch, source_sc, transfer], ignore_index=True)
    meta = {"kind": "transfer_predictions", "pretrained": {k: v for k, v in pre_meta.items() if k != "elements"},
            "target": rec_meta.get("provenance", {}), "config": options, "dataset": description}
    write_frame(predictions, meta, args.out)
    write_frame(rejects.astype(str), {"kind": "rejects", "stage": "transfer_dataset"}, args.rejects)
    maes = predictions.assign(err=(predictions.y_pred - predictions.y_true).abs()).groupby("model")["err"].mean()
    print(json.dumps({"n_compositions": len(data), "mae": maes.round(4).to_dict()}))
    return 0


def register(sub) -> None:
    group = sub.add_parser("compositions", help="formation enthalpy from composition: ElemNet, IRNet, RF (thesis)")
    commands = group.add_subparsers(dest="compositions_command", required=True)

    p = commands.add_parser("fetch", help="read one source (janaf | oqmd | mp) into records and rejects")
    p.add_argument("--source", required=True, choices=["janaf", "oqmd", "mp"])
    p.add_argument("--options", help="JSON source options (base_url, page_size, max_results, ...)")
    p.add_argument("--cache", required=True, help="download cache folder (REST pages)")
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.set_defaults(func=cmd_fetch)

    p = commands.add_parser("dataset", help="lowest entry per composition, ±nσ outliers, K folds")
    p.add_argument("--records", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.add_argument("--n-folds", type=int, default=10)
    p.add_argument("--n-sigma", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_dataset)

    def training_args(p):
        p.add_argument("--dataset", required=True)
        p.add_argument("--model", required=True, choices=["elemnet", "irnet17", "irnet24", "irnet48", "rf_comp", "rf_phys"])
        p.add_argument("--config", help="JSON training settings (lr, batch_size, max_epochs, patience, ...)")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--threads", type=int)
        p.add_argument("--out", required=True)

    p = commands.add_parser("cv", help="K-fold cross-validation of one model")
    training_args(p)
    p.add_argument("--folds", nargs="*", help="only these folds (default: all)")
    p.set_defaults(func=cmd_cv)

    p = commands.add_parser("learning-curve", help="test MAE vs training-set size")
    training_args(p)
    p.add_argument("--fractions", nargs="+", required=True)
    p.add_argument("--folds", nargs="+", required=True)
    p.set_defaults(func=cmd_learning_curve)

    p = commands.add_parser("pretrain", help="fit a network on a whole (DFT) data set for transfer learning")
    training_args(p)
    p.set_defaults(func=cmd_pretrain)

    p = commands.add_parser("transfer", help="scratch vs pretrained-as-is vs fine-tuned, on the target's folds")
    p.add_argument("--pretrained", required=True)
    p.add_argument("--records", required=True, help="target records (the experimental set)")
    p.add_argument("--config")
    p.add_argument("--seed", type=int, default=1, help="training seed")
    p.add_argument("--split-seed", dest="split_seed", type=int, default=0)
    p.add_argument("--n-folds", type=int, default=10)
    p.add_argument("--n-sigma", type=float, default=5.0)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--rejects", required=True)
    p.set_defaults(func=cmd_transfer)
