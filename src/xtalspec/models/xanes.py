"""The XANES coordination classifiers of Carbone et al. (paper 004) and their saved bundle.

MLP: 100 standardised points → 90 → 60 → 20 (ReLU, dropout 0.3 after each) → 3 logits.
CNN: the same MLP behind one Conv1d (8 filters, kernel 10, stride 1, Keras 'valid' padding,
ReLU) and MaxPool 2 — 100 points → 8 × 91 → 8 × 45 → 360 inputs to the MLP.
Softmax is applied by the loss / at prediction time.

A trained element is saved as a *bundle* directory::

    bundle.json   element, classes, grid (absolute eV, the model's input energies), e0 (median
                  edge energy of the training spectra, eV), pre_edge_index, features
                  ("full" | "pre"), scaler_mean / scaler_std (per input point), models
                  {"mlp": "mlp.pt", "cnn": "cnn.pt"}, n_train, provenance
    mlp.pt, cnn.pt state dicts (torch.save; loaded with weights_only=True)
    templates.npy the training spectra on the grid, scaled to max 1 (rows in the order of
                  ``sites``; numpy, loaded with allow_pickle=False) — used to align measured
                  spectra (:func:`xtalspec.spectra.xanes_measured.align_to_model`) by bundles
                  of the old absolute grid only

Bundles of the relative grid also hold ``preprocessing`` (the
:class:`xtalspec.spectra.xanes_matching.Preprocessing` their data set was made with: measured
spectra get the same E0, normalisation and grid) and ``grid_relative: true`` (``grid`` in eV
relative to E0). The cross-element bundle (``models/cross/``) also has ``elements``: the order of
the one-hot absorbing-element input appended to the standardised spectrum.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..spectra.xanes_grid import N_POINTS
from ..spectra.xanes_labels import LABELS as CLASSES
from .layers import keras_init
from ..utils.torch_io import load_torch, save_torch

HIDDEN = (90, 60, 20)
DROPOUT = 0.3
MODEL_KINDS = ("mlp", "cnn")
BUNDLE_JSON = "bundle.json"


def _mlp(n_in: int, n_classes: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in HIDDEN:
        layers += [nn.Linear(n_in, width), nn.ReLU(), nn.Dropout(DROPOUT)]
        n_in = width
    return layers + [nn.Linear(n_in, n_classes)]


class XanesMLP(nn.Module):
    """``n_extra`` > 0: the input is the spectrum followed by ``n_extra`` more values (the
    cross-element model's one-hot absorbing element), all fed to the first layer."""

    def __init__(self, n_points: int = N_POINTS, n_classes: int = len(CLASSES), n_extra: int = 0):
        super().__init__()
        self.net = nn.Sequential(*_mlp(n_points + n_extra, n_classes))
        keras_init(self)

    def reset_parameters(self) -> None:
        keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, n_points + n_extra) -> logits
        return self.net(x)


class XanesCNN(nn.Module):
    """``n_extra`` > 0: the last ``n_extra`` input values (the one-hot element) bypass the
    convolution and join its flattened output at the MLP's input."""

    def __init__(self, n_points: int = N_POINTS, n_classes: int = len(CLASSES), filters: int = 8, kernel: int = 10,
                 pool: int = 2, n_extra: int = 0):
        super().__init__()
        if n_points < kernel + pool - 1:
            raise ValueError(f"{n_points} input points are too few for kernel {kernel}")
        self.n_points = n_points
        self.conv = nn.Sequential(nn.Conv1d(1, filters, kernel), nn.ReLU(), nn.MaxPool1d(pool))
        n_flat = filters * ((n_points - kernel + 1) // pool)
        self.head = nn.Sequential(*_mlp(n_flat + n_extra, n_classes))
        keras_init(self)

    def reset_parameters(self) -> None:
        keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x[:, :self.n_points].unsqueeze(1)).flatten(1)
        if x.shape[1] > self.n_points:
            features = torch.cat([features, x[:, self.n_points:]], dim=1)
        return self.head(features)


def build_model(kind: str, n_points: int, n_classes: int = len(CLASSES), n_extra: int = 0) -> nn.Module:
    if kind == "mlp":
        return XanesMLP(n_points, n_classes, n_extra=n_extra)
    if kind == "cnn":
        return XanesCNN(n_points, n_classes, n_extra=n_extra)
    raise ValueError(f"unknown XANES model {kind!r}; known: {MODEL_KINDS}")


def element_onehot(elements, order) -> np.ndarray:
    """(n, len(order)) one-hot rows of the absorbing elements (the cross-element model's extra input)."""
    order = list(order)
    out = np.zeros((len(elements), len(order)), dtype=np.float64)
    for i, element in enumerate(elements):
        if element not in order:
            raise ValueError(f"the cross-element model was not trained on {element}; it knows {', '.join(order)}")
        out[i, order.index(element)] = 1.0
    return out


def save_bundle(directory, meta: dict, models: dict[str, nn.Module]) -> Path:
    """Write ``bundle.json`` and one state dict per model (atomic renames)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, model in models.items():
        save_torch({k: v.detach().cpu() for k, v in model.state_dict().items()}, directory / f"{kind}.pt")
        files[kind] = f"{kind}.pt"
    templates = meta.pop("templates", None)
    if templates is not None:
        tmp = directory / ".templates.npy.tmp"
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(templates, dtype=np.float32), allow_pickle=False)
        tmp.replace(directory / "templates.npy")
        meta["templates_file"] = "templates.npy"
    meta = dict(meta, models=files)
    tmp = directory / f".{BUNDLE_JSON}.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(directory / BUNDLE_JSON)
    return directory / BUNDLE_JSON


def load_bundle(directory) -> tuple[dict, dict[str, nn.Module]]:
    """(meta, {kind: model in eval mode}) from a bundle directory; weights loaded weights_only."""
    directory = Path(directory)
    path = directory / BUNDLE_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no XANES model bundle in {directory} (missing {BUNDLE_JSON})")
    meta = json.loads(path.read_text())
    models = {}
    for kind, name in meta["models"].items():
        model = build_model(kind, len(meta["grid"]), len(meta["classes"]), n_extra=len(meta.get("elements") or []))
        state = load_torch(directory / Path(name).name)
        model.load_state_dict(state)
        models[kind] = model.eval()
    if meta.get("templates_file"):
        meta["templates"] = np.load(directory / Path(meta["templates_file"]).name, allow_pickle=False)
    return meta, models


def standardise(x: np.ndarray, meta: dict, element: str | None = None) -> np.ndarray:
    """Inputs scaled with the bundle's per-point mean and standard deviation (float32); for a
    cross-element bundle (``meta["elements"]``) the one-hot of ``element`` is appended."""
    mean = np.asarray(meta["scaler_mean"], dtype=np.float64)
    std = np.asarray(meta["scaler_std"], dtype=np.float64)
    z = (np.asarray(x, dtype=np.float64) - mean) / std
    if meta.get("elements"):
        if element is None:
            raise ValueError("a cross-element bundle needs the absorbing element")
        z = np.concatenate([np.atleast_2d(z), element_onehot([element] * len(np.atleast_2d(z)), meta["elements"])],
                           axis=1)
    return z.astype(np.float32)


@torch.no_grad()
def class_probabilities(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities (n, n_classes) for standardised inputs ``x`` (n, n_points)."""
    model.eval()
    logits = model(torch.as_tensor(np.asarray(x, dtype=np.float32)))
    return torch.softmax(logits.float(), dim=1).numpy()
