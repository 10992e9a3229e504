"""Train one PDF deploy model (one radiation) on :func:`xtalspec.datasets.pdf_deploy.build_deploy_dataset`'s
data set: PDFNet, Adam with the paper's exponential decay, cross-entropy weighted by
(N / N_class)^power (``class_weight_power``: 1 = the paper's weights, 0 = none; the default 0.5
softens them, so rare groups are not over-predicted on measured data; scaled to a mean weight of
1 per training item, so the loss reads like a plain cross-entropy), the held-out structures
scored after every epoch (top-1 and top-6: the validation curve).

Written to ``out_dir``: ``model.pt`` (weights + meta: spacegroups, radiation, ``deploy: true``,
the training summary, ``temperature``), ``history.csv`` (per epoch), ``heldout.parquet`` (the
held-out items' logits and probabilities, for calibration) and ``summary.json``.

Calibration (:func:`calibrate_on_heldout`) stores what predict-pdf's verdicts need
(``calibrate_members``: a temperature fitted on half of the held-out items, verdict thresholds —
the confident one for ``target_accuracy`` held-out top-1 — and the ECE before/after on the other
half, an out-of-distribution reference of training features); ``calibration_note`` sums it up.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..datasets.pdfs import class_weights
from ..models.pdfnet import N_POINTS, PDFNet
from ..provenance import code_version
from ..utils.atomic import atomic_path, atomic_write_text
from ..utils.tables import read_frame
from ..utils.torch_io import save_torch
from .loop import ArrayData, Classifier, TrainConfig, autocast, initialise, pick_device, run, run_fingerprint, setup

log = logging.getLogger("xtalspec.training.pdf_deploy")

TOPK = (1, 6)
RMAX_BINS = [10.0, 15.0, 20.0, 25.0, 30.0 + 1e-9]  # held-out accuracy by the data's rmax


def _inputs(frame: pd.DataFrame) -> np.ndarray:
    return np.stack(frame["x"].to_numpy()).astype(np.float32) if len(frame) else np.zeros((0, N_POINTS), np.float32)


@torch.no_grad()
def logits_of(model, x: np.ndarray, device: torch.device, batch_size: int = 512, amp: bool = True) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        with autocast(device, amp):
            out.append(model(torch.from_numpy(x[start:start + batch_size]).to(device))["logits"].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class HeldOutCurve(Classifier):
    """PDFNet's classifier family with top-1 *and* top-6 on the held-out items after each epoch."""

    def end_epoch(self, model, epoch, means, seen, seconds, device):
        record = {"epoch": epoch, **means, "samples_per_s": seen / max(seconds, 1e-9), "seconds": seconds}
        if self.val is not None and len(self.val) > 0:
            x = self.val.make_inputs(np.arange(len(self.val)))
            scores = logits_of(model, x, device, amp=self.cfg.amp)
            record.update({f"heldout_top{k}": topk_accuracy(scores, self.val.labels, k) for k in TOPK})
            record["val_acc"] = record["heldout_top1"]
        self.history.append(record)
        log.info("epoch %d/%d %s", epoch, self.cfg.epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"))
        return False


@torch.no_grad()
def logits_and_features(model, x: np.ndarray, device: torch.device, batch_size: int = 512
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Logits and penultimate features (the input of the last Linear layer) of every row of ``x``."""
    from ..evaluation.verdicts import forward_with_features

    model.eval()
    logits, features = [], []
    for start in range(0, len(x), batch_size):
        out, f = forward_with_features(model, torch.from_numpy(x[start:start + batch_size]).to(device))
        logits.append(out["logits"].float().cpu().numpy())
        features.append(f.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(features)


def calibrate_on_heldout(logits: np.ndarray, labels: np.ndarray, features_heldout: np.ndarray | None = None,
                         features_train: np.ndarray | None = None, seed: int = 0,
                         target_accuracy: float = 0.9) -> tuple[dict, str]:
    """(entries for the checkpoint meta, note): temperature, verdict thresholds (the confident one
    for ``target_accuracy`` held-out top-1), ECE/NLL before and after and the OOD reference
    (:func:`~xtalspec.evaluation.verdicts.member_meta`)."""
    from ..evaluation.verdicts import calibrate_members, member_meta

    if len(labels) == 0:
        return {"temperature": None}, "not calibrated: no held-out items"
    with_features = features_heldout is not None and features_train is not None and len(features_train) > 0
    calibration = calibrate_members(logits[None], labels, [features_heldout] if with_features else None,
                                    [features_train] if with_features else None, target_accuracy=target_accuracy,
                                    seed=seed)
    note = (f"temperature {calibration['temperature']:.3g} ({calibration['split']}); ECE "
            f"{calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}")
    return member_meta(calibration, 0), note


def train_deploy_model(dataset: str | Path, cfg: TrainConfig, out_dir: str | Path,
                       class_weight_power: float = 0.5, n_reference: int = 3000,
                       target_accuracy: float = 0.9) -> dict:
    table, description = read_frame(dataset)
    out_dir = Path(out_dir)
    groups = [int(g) for g in description["spacegroups"]]
    radiation = description["radiation"]
    train_part = table[table["split"] == "train"].reset_index(drop=True)
    held_part = table[table["split"] == "heldout"].reset_index(drop=True)
    y_train = train_part["class_index"].to_numpy().astype(np.int64)
    weights = class_weights(y_train, len(groups)) ** class_weight_power
    weights /= max(float(weights[y_train].mean()), 1e-12) if len(y_train) else 1.0  # mean 1 per item: CE's scale
    cfg.class_weights = weights.tolist()
    x_train, x_held = _inputs(train_part), _inputs(held_part)
    train_data = ArrayData(make_inputs=lambda rows: x_train[rows], labels=y_train)
    held_data = ArrayData(make_inputs=lambda rows: x_held[rows],
                          labels=held_part["class_index"].to_numpy().astype(np.int64))

    model = PDFNet(len(groups))
    device = setup(cfg.threads, cfg.device)
    initialise(model, cfg.seed)
    family = HeldOutCurve(train_data, held_data, cfg, device)
    settings = {k: v for k, v in cfg.__dict__.items() if k not in ("epochs", "threads", "checkpoint_every", "device")}
    history = run(model, family, len(train_data), cfg.loop(), out_dir,
                  run_fingerprint(dataset, model="pdfnet-deploy", settings=settings,
                                  class_weight_power=class_weight_power))

    device = pick_device(cfg.device)
    labels = held_data.labels
    logits, features_held = logits_and_features(model, x_held, device)
    sample = np.sort(np.random.default_rng(cfg.seed).permutation(len(x_train))[:n_reference])
    _, features_train = logits_and_features(model, x_train[sample], device)
    probabilities = softmax(logits) if len(logits) else logits
    calibration_meta, calibration = calibrate_on_heldout(logits, labels, features_held, features_train, cfg.seed,
                                                         target_accuracy)
    temperature = calibration_meta.get("temperature")
    rmax = np.array([json.loads(p)["rmax"] for p in held_part["params"]]) if len(held_part) else np.zeros(0)
    by_rmax = []
    for lo, hi in zip(RMAX_BINS[:-1], RMAX_BINS[1:]):
        mask = (rmax >= lo) & (rmax < hi)
        by_rmax.append({"rmax_from": lo, "rmax_to": round(hi), "items": int(mask.sum()),
                        "top1": topk_accuracy(logits[mask], labels[mask], 1) if mask.any() else None,
                        "top6": topk_accuracy(logits[mask], labels[mask], 6) if mask.any() else None})
    summary = {"radiation": radiation, "n_groups": len(groups), "spacegroups": groups,
               "n_structures": description["n_structures"], "n_train": int(len(train_part)),
               "n_heldout": int(len(held_part)), "n_heldout_structures": description["n_heldout_structures"],
               "copies": description["copies"], "epochs": cfg.epochs,
               "heldout_top1": topk_accuracy(logits, labels, 1), "heldout_top6": topk_accuracy(logits, labels, 6),
               "heldout_by_rmax": by_rmax, "temperature": temperature, "calibration": calibration,
               "ece_before": calibration_meta.get("calibration", {}).get("ece_before"),
               "ece_after": calibration_meta.get("calibration", {}).get("ece_after"),
               "confidence_threshold": _finite((calibration_meta.get("verdict_thresholds") or {}).get("confidence_threshold")),
               "confident_coverage": _finite((calibration_meta.get("verdict_thresholds") or {}).get("coverage")),
               "class_weight_power": class_weight_power,
               "groups_outside_paper": description["groups_outside_paper"],
               "paper_groups_missing": description["paper_groups_missing"],
               "train_seconds": float(sum(h.get("seconds", 0.0) for h in history)),
               "curve": [{"epoch": h["epoch"], "loss": h.get("loss"), "heldout_top1": h.get("heldout_top1"),
                          "heldout_top6": h.get("heldout_top6")} for h in history]}
    meta = {"model": "pdfnet", "deploy": True, "radiation": radiation, "spacegroups": groups, "seed": cfg.seed,
            "n_train": int(len(train_part)), "dataset": str(dataset), "code_version": code_version(),
            **calibration_meta, "calibration_note": calibration,
            "augment": description.get("augment"), "min_per_group": description["min_per_group"],
            "training": {k: v for k, v in summary.items() if k not in ("spacegroups", "curve")},
            "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()
                             if k != "class_weights"}}

    frame = pd.DataFrame({"id": held_part["id"].to_numpy(), "source": held_part["source"].to_numpy(),
                          "spacegroup": held_part["spacegroup"].to_numpy(),
                          "class_index": held_part["class_index"].to_numpy(), "copy": held_part["copy"].to_numpy(),
                          "params": held_part["params"].to_numpy(),
                          "logits": list(logits.astype(np.float32)),
                          "probabilities": list(probabilities.astype(np.float32))})
    arrow = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(
        {"xtalspec": json.dumps({k: meta[k] for k in ("radiation", "spacegroups", "temperature", "code_version")})})
    with atomic_path(out_dir / "heldout.parquet") as tmp:
        pq.write_table(arrow, tmp, compression="zstd")
    save_torch({"state_dict": model.state_dict(), "meta": meta}, out_dir / "model.pt")
    atomic_write_text(out_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
