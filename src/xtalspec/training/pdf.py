"""Train the PDF space-group classifier and save its test-split predictions (read back by
:func:`xtalspec.models.checkpoints.load_pdf_model`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..datasets.pdfs import class_weights
from ..models.checkpoints import load_pdf_model  # noqa: F401  (its reader)
from ..models.checkpoints import pdf_probabilities as probabilities  # noqa: F401
from ..models.pdfnet import N_POINTS, PDFNet
from ..provenance import code_version
from ..utils.atomic import atomic_path, atomic_write_text
from ..utils.tables import read_frame
from .loop import ArrayData, TrainConfig, pick_device, predict, run_fingerprint, train
from ..utils.torch_io import save_torch

log = logging.getLogger("xtalspec.training.pdf")


def inputs(frame: pd.DataFrame) -> np.ndarray:
    return np.stack(frame["x"].to_numpy()).astype(np.float32) if len(frame) else np.zeros((0, N_POINTS), np.float32)


def array_data(x: np.ndarray, labels: np.ndarray) -> ArrayData:
    return ArrayData(make_inputs=lambda rows: x[rows], labels=labels.astype(np.int64))


def train_pdf_model(dataset: str | Path, cfg: TrainConfig, out_dir: str | Path) -> dict:
    table, description = read_frame(dataset)
    out_dir = Path(out_dir)
    groups = description["spacegroups"]
    train_part, test_part = table[table["split"] == "train"], table[table["split"] == "test"]
    y_train = train_part["class_index"].to_numpy()
    cfg.class_weights = class_weights(y_train, len(groups)).tolist()
    model = PDFNet(len(groups))
    test = array_data(inputs(test_part), test_part["class_index"].to_numpy())
    settings = {k: v for k, v in cfg.__dict__.items() if k not in ("epochs", "threads", "checkpoint_every", "device")}
    history = train(model, array_data(inputs(train_part), y_train), cfg, out_dir, val_data=test,
                    fingerprint=run_fingerprint(dataset, model="pdfnet", settings=settings))
    meta = {"model": "pdfnet", "spacegroups": groups, "seed": cfg.seed, "n_train": len(train_part),
            "dataset": str(dataset), "code_version": code_version(),
            "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()
                             if k != "class_weights"}}
    out = predict(model, test, pick_device(cfg.device), amp=cfg.amp)
    frame = pd.DataFrame({"id": test_part["id"].to_numpy(), "spacegroup": test_part["spacegroup"].to_numpy(),
                          "class_index": test_part["class_index"].to_numpy(),
                          "probabilities": list(out["probabilities"].astype(np.float32))})
    arrow = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata({"xtalspec": json.dumps(meta)})
    with atomic_path(out_dir / "predictions.parquet") as tmp:
        pq.write_table(arrow, tmp)
    save_torch({"state_dict": model.state_dict(), "meta": meta}, out_dir / "model.pt")
    atomic_write_text(out_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
    return {"history": history, "meta": meta}
