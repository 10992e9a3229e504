"""Train one SpgNet/SpgVolNet member (model × range × fold × seed) and save its predictions
on its validation fold, so every table and figure is rebuilt from saved predictions. The member is
read back by :func:`xtalspec.models.checkpoints.load_member`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..datasets.spgnet import densify, training_rows, validation_rows
from ..models.checkpoints import load_member  # noqa: F401  (its reader)
from ..models.spgnet import build_model
from ..provenance import code_version
from ..utils.atomic import atomic_path, atomic_write_text
from ..utils.tables import read_frame
from .loop import ArrayData, TrainConfig, pick_device, predict, run_fingerprint, train
from ..utils.torch_io import save_torch

log = logging.getLogger("xtalspec.training.xrd")


def array_data(table: pd.DataFrame, rows: np.ndarray, with_volume: bool) -> ArrayData:
    bins = table["bins"].to_numpy()[rows]
    values = table["values"].to_numpy()[rows]
    return ArrayData(
        make_inputs=lambda r: densify(bins, values, r),
        labels=table["class_index"].to_numpy()[rows].astype(np.int64),
        volume=table["volume_z"].to_numpy()[rows].astype(np.float32) if with_volume else None,
    )


def train_member(dataset: str | Path, model_name: str, range_name: str, fold: int, cfg: TrainConfig,
                 out_dir: str | Path) -> dict:
    table, description = read_frame(dataset)
    out_dir = Path(out_dir)
    train_idx, val_idx = training_rows(table, range_name, fold), validation_rows(table, fold)
    model = build_model(model_name, len(description["spacegroups"]))
    with_volume = model.has_volume_head
    log.info("%s %s fold %d seed %d: %d training, %d validation items, %d classes", model_name, range_name, fold,
             cfg.seed, len(train_idx), len(val_idx), len(description["spacegroups"]))
    val = array_data(table, val_idx, with_volume)
    settings = {k: v for k, v in cfg.__dict__.items() if k not in ("epochs", "threads", "checkpoint_every", "device")}
    fingerprint = run_fingerprint(dataset, model=model_name, range=range_name, fold=fold, settings=settings)
    history = train(model, array_data(table, train_idx, with_volume), cfg, out_dir, val_data=val,
                    fingerprint=fingerprint)
    out = predict(model, val, pick_device(cfg.device), amp=cfg.amp)
    meta = {
        "model": model_name, "range": range_name, "fold": fold, "seed": cfg.seed,
        "spacegroups": description["spacegroups"], "u_mean": description["u_mean"], "u_std": description["u_std"],
        "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
        "n_train": len(train_idx), "code_version": code_version(),
    }
    write_predictions(table, val_idx, out, meta, out_dir / "predictions.parquet")
    save_torch({"state_dict": model.state_dict(), "meta": meta}, out_dir / "model.pt")
    atomic_write_text(out_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
    return {"history": history, "meta": meta}


def write_predictions(table, rows, out, meta, path) -> None:
    """A member's validation predictions (one row per item; the metadata in the Parquet schema)."""
    frame = pd.DataFrame({
        "id": table["id"].to_numpy()[rows],
        "source": table["source"].to_numpy()[rows],
        "spacegroup": table["spacegroup"].to_numpy()[rows],
        "class_index": table["class_index"].to_numpy()[rows],
        "volume": table["volume"].to_numpy()[rows],
        "n_atoms": table["n_atoms"].to_numpy()[rows],
        "probabilities": list(out["probabilities"].astype(np.float32)),
    })
    if "volume" in out:
        u_pred = out["volume"] * meta["u_std"] + meta["u_mean"]
        frame["volume_pred"] = np.exp(u_pred) * frame["n_atoms"].to_numpy()
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    arrow = arrow.replace_schema_metadata({"xtalspec": json.dumps(meta)})
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)
