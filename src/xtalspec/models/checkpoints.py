"""Trained models read back for prediction, beside the models they rebuild.

Each loader rebuilds the architecture that the checkpoint's metadata names and loads the weights
with ``weights_only=True``, so no code runs from the file. The files are written by
:mod:`xtalspec.training.xrd` and :mod:`xtalspec.training.ensemble` (SpgNet/SpgVolNet members),
:mod:`xtalspec.training.pdf` (PDFNet) and the ``thesis padnet train`` command (the PADNet
comparison's models); XANES bundles are read by :func:`xtalspec.models.xanes.load_bundle`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .padnet import FILTER_SIZE, build_padnet
from .pdfnet import PDFNet
from .spgnet import SpgNet, build_model
from ..utils.torch_io import load_torch

#: the models of the PADNet comparison (thesis ch. 7): PADNet and four plain SpgNets that differ
#: only in their training patterns (:data:`xtalspec.training.padnet.VARIANTS`)
COMPARISON_MODELS = ("padnet", "spgnet_min", "spgnet_min_mean", "spgnet_raw", "spgnet_clean")


def load_member(path: str | Path, device: str = "cpu"):
    """A trained SpgNet/SpgVolNet member and its metadata."""
    state = load_torch(path, map_location=device)
    meta = state["meta"]
    model = build_model(meta["model"], len(meta["spacegroups"]))
    model.load_state_dict(state["state_dict"])
    return model.eval(), meta


def load_pdf_model(path: str | Path, device: str = "cpu"):
    """A trained PDFNet and its metadata."""
    state = load_torch(path, map_location=device)
    model = PDFNet(len(state["meta"]["spacegroups"]))
    model.load_state_dict(state["state_dict"])
    return model.eval(), state["meta"]


@torch.no_grad()
def pdf_probabilities(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """PDFNet's class probabilities for model inputs ``x`` (n, points), float32, on the CPU."""
    out = [torch.softmax(model(torch.from_numpy(x[i:i + batch_size]))["logits"], dim=1).numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def build_comparison_model(variant: str, n_classes: int, filter_size: int = FILTER_SIZE,
                           softmax: str = "orientations") -> torch.nn.Module:
    """One model of the PADNet comparison: PADNet (``filter_size``, ``softmax``) or a plain SpgNet."""
    if variant == "padnet":
        return build_padnet(n_classes, filter_size=filter_size, softmax=softmax)
    if variant in COMPARISON_MODELS:
        return SpgNet(n_classes)
    raise ValueError(f"unknown PADNet-comparison model {variant!r}; choose from {list(COMPARISON_MODELS)}")


def load_padnet_member(path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A trained model of the PADNet comparison (``thesis padnet train``) and its metadata."""
    state = load_torch(path, map_location=device)
    meta = state["meta"]
    settings = meta["settings"]
    model = build_comparison_model(meta["model"], len(meta["spacegroups"]),
                                   filter_size=settings.get("filter_size", FILTER_SIZE),
                                   softmax=settings.get("softmax", "orientations"))
    model.load_state_dict(state["state_dict"])
    return model.eval(), meta
