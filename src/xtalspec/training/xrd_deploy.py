"""Deploy models for ``predict-xrd``: SpgNet/SpgVolNet on every structure of every space group with
at least ``min_per_group`` members, trained on the clean δ-profiles *and* on what the front end
of ``predict-xrd`` makes of measured-like scans rendered from them (:mod:`xtalspec.datasets.xrd_deploy`).

A seeded share of the structures of each group (``holdout``) is kept out of training: the
validation curve (accuracy on their front-end profiles, per epoch), the calibration of the
probabilities (temperature scaling) and the verdict thresholds come from it. The member is saved
where :func:`xtalspec.prediction.xrd.find_members` finds it
(``<out>/<model>/all/fold0/seed<seed>/model.pt``), with ``deploy: true`` in its metadata.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets.spgnet import densify, select_groups
from ..datasets.xrd_deploy import held_out_ids, in_subset
from ..models.spgnet import build_model
from ..provenance import code_version
from ..utils.atomic import atomic_write_text
from ..utils.tables import read_frame, write_frame
from ..utils.torch_io import save_torch
from ..evaluation.calibration import expected_calibration_error
from .loop import ArrayData, TrainConfig, pick_device, predict, run_fingerprint, train

log = logging.getLogger("xtalspec.training.xrd_deploy")

KINDS = ("clean", "front_end")


def build_deploy_dataset(profiles: pd.DataFrame, rendered: pd.DataFrame, *, min_per_group: int,
                         holdout: float, seed: int, train_fraction: float = 1.0) -> tuple[pd.DataFrame, dict]:
    """One row per training item: the clean δ-profile of every structure of the kept groups and
    each of its rendered front-end copies, with class index, volume z-score and ``held_out``.

    ``train_fraction`` < 1 (the ablation) keeps only the :func:`in_subset` share of the training
    structures; the held-out structures, and so the groups and the split, stay those of the full set."""
    groups = select_groups(profiles["spacegroup"], min_per_group)
    profiles = profiles[profiles["spacegroup"].isin(groups)].reset_index(drop=True)
    held = held_out_ids(profiles["id"], profiles["spacegroup"], holdout, seed)
    if train_fraction < 1.0:
        keep = [i in held or in_subset(seed, i, train_fraction) for i in profiles["id"]]
        profiles = profiles[keep].reset_index(drop=True)
    train_mask = ~profiles["id"].isin(held)
    u = profiles["log_volume_per_atom"].to_numpy(np.float64)
    u_mean, u_std = float(u[train_mask].mean()), float(u[train_mask].std() or 1.0)
    by_id = profiles.set_index("id")
    clean = pd.DataFrame({"id": profiles["id"], "spacegroup": profiles["spacegroup"], "kind": "clean", "copy": -1,
                          "bins": profiles["bins"], "values": profiles["values"]})
    rendered = rendered[rendered["id"].isin(by_id.index)]
    copies = pd.DataFrame({"id": rendered["id"], "spacegroup": rendered["spacegroup"], "kind": "front_end",
                           "copy": rendered["copy"], "bins": rendered["bins"], "values": rendered["values"]})
    items = pd.concat([clean, copies], ignore_index=True)
    index = {g: i for i, g in enumerate(groups)}
    items["class_index"] = items["spacegroup"].map(index).astype(np.int64)
    items["volume_z"] = ((by_id.loc[items["id"], "log_volume_per_atom"].to_numpy() - u_mean) / u_std).astype(np.float32)
    items["held_out"] = items["id"].isin(held)
    description = {"spacegroups": groups, "u_mean": u_mean, "u_std": u_std, "min_per_group": min_per_group,
                   "holdout": holdout, "train_fraction": train_fraction, "seed": seed,
                   "n_structures": int(len(profiles)), "n_held_out": len(held),
                   "items": {kind: int((items["kind"] == kind).sum()) for kind in KINDS}}
    return items, description


def _array(items: pd.DataFrame, with_volume: bool) -> ArrayData:
    bins, values = items["bins"].to_numpy(), items["values"].to_numpy()
    return ArrayData(make_inputs=lambda r: densify(bins, values, r),
                     labels=items["class_index"].to_numpy(np.int64),
                     volume=items["volume_z"].to_numpy(np.float32) if with_volume else None)


def logits_and_features(model, data: ArrayData, device, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The model's logits and penultimate features for every row of ``data`` (eval mode, float32)."""
    import torch

    from ..evaluation.verdicts import forward_with_features

    model.eval()
    logits, features = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x, _, _ = data.batch(np.arange(start, min(start + batch_size, len(data))), device)
            out, f = forward_with_features(model, x)
            logits.append(out["logits"].float().cpu().numpy())
            features.append(f.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(features)


def train_deploy(dataset: str | Path, model_name: str, cfg: TrainConfig, out_dir: str | Path,
                 target_accuracy: float = 0.9, n_reference: int = 3000) -> dict:
    """Train one deploy member; calibrate it on the held-out front-end items (temperature, verdict
    thresholds, an out-of-distribution reference of training features); write ``model.pt``,
    ``history.csv``, ``heldout.parquet`` (held-out probabilities), ``calibration.md`` /
    ``reliability.png`` and ``summary.json`` into ``out_dir``."""
    from ..evaluation.calibration import ensemble_probabilities
    from ..evaluation.verdicts import calibrate_members, member_meta, write_calibration_report

    items, description = read_frame(dataset)
    out_dir = Path(out_dir)
    model = build_model(model_name, len(description["spacegroups"]))
    with_volume = model.has_volume_head
    train_items = items[~items["held_out"]].reset_index(drop=True)
    held = items[items["held_out"]].reset_index(drop=True)
    val_front = held[held["kind"] == "front_end"].reset_index(drop=True)
    log.info("%s deploy: %d training items (%s), %d held-out items, %d classes", model_name, len(train_items),
             train_items["kind"].value_counts().to_dict(), len(held), len(description["spacegroups"]))
    settings = {k: v for k, v in cfg.__dict__.items() if k not in ("epochs", "threads", "checkpoint_every", "device")}
    fingerprint = run_fingerprint(dataset, model=model_name, deploy=True, settings=settings)
    history = train(model, _array(train_items, with_volume), cfg, out_dir,
                    val_data=_array(val_front, with_volume) if len(val_front) else None, fingerprint=fingerprint)
    device = pick_device(cfg.device)
    logits, features = logits_and_features(model, _array(held, with_volume), device)
    labels = held["class_index"].to_numpy()
    sample = np.random.default_rng(cfg.seed).permutation(len(train_items))[:n_reference]
    _, train_features = logits_and_features(model, _array(train_items.iloc[np.sort(sample)].reset_index(drop=True),
                                                           with_volume), device)
    front = (held["kind"] == "front_end").to_numpy()
    calibrate_on = front if front.any() else np.ones(len(held), bool)
    calibration = calibrate_members(logits[calibrate_on][None], labels[calibrate_on], [features[calibrate_on]],
                                    [train_features], target_accuracy=target_accuracy, seed=cfg.seed)
    write_calibration_report(calibration, out_dir / "calibration.md", out_dir / "reliability.png")
    probs = ensemble_probabilities(logits[None])
    scaled = ensemble_probabilities(logits[None], calibration["temperature"])
    metrics = {}
    for kind in KINDS:
        mask = (held["kind"] == kind).to_numpy()
        if mask.any():
            metrics[kind] = {"n": int(mask.sum()),
                             "top1": float((probs[mask].argmax(1) == labels[mask]).mean()),
                             "top3": _top_k(probs[mask], labels[mask], 3),
                             "ece_before": expected_calibration_error(probs[mask], labels[mask]),
                             "ece_after": expected_calibration_error(scaled[mask], labels[mask])}
    meta = {
        "model": model_name, "range": "all", "fold": 0, "seed": cfg.seed, "deploy": True,
        "spacegroups": description["spacegroups"], "u_mean": description["u_mean"], "u_std": description["u_std"],
        "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
        "n_train": int(len(train_items)), "dataset": {k: v for k, v in description.items() if k != "spacegroups"},
        "code_version": code_version(),
    } | member_meta(calibration, 0)
    frame = pd.DataFrame({"id": held["id"], "kind": held["kind"], "spacegroup": held["spacegroup"],
                          "class_index": labels, "probabilities": list(probs.astype(np.float32))})
    write_frame(frame, {"member": {k: v for k, v in meta.items() if k != "ood_reference"}}, out_dir / "heldout.parquet")
    save_torch({"state_dict": model.state_dict(), "meta": meta}, out_dir / "model.pt")
    atomic_write_text(out_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
    summary = {"model": model_name, "temperature": float(calibration["temperature"]), "held_out": metrics,
               "verdict_thresholds": calibration["verdict_thresholds"], "history": history,
               "n_classes": len(description["spacegroups"]), "code_version": meta["code_version"]}
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, default=float))
    return summary


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _top_k(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-probs, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def score_member(model_path: str | Path, dataset: str | Path, device: str = "cpu") -> dict:
    """Top-1/top-3 of a trained member on another data set's held-out items (the ablation: every
    variant is scored on the full-augmentation held-out items). The member's classes must match."""
    from ..models.checkpoints import load_member

    model, meta = load_member(model_path, device)
    items, description = read_frame(dataset)
    if list(meta["spacegroups"]) != list(description["spacegroups"]):
        raise ValueError(f"{model_path}: its space groups differ from those of {dataset}")
    held = items[items["held_out"]].reset_index(drop=True)
    out = predict(model, _array(held, False), pick_device(device), amp=False)
    probs, labels = out["probabilities"], held["class_index"].to_numpy()
    scores = {}
    for kind in KINDS:
        mask = (held["kind"] == kind).to_numpy()
        if mask.any():
            scores[kind] = {"n": int(mask.sum()), "top1": float((probs[mask].argmax(1) == labels[mask]).mean()),
                            "top3": _top_k(probs[mask], labels[mask], 3)}
    return scores
