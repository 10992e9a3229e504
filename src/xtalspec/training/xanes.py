"""Training and evaluation of the XANES classifiers (paper 004), one element and model at a time.

Protocol (config ``xanes.train``; paper values are the defaults):

* **Folds** — ``n_folds`` (10) bootstrap folds: each a seeded, stratified random 90/10 split
  (every class with ≥ 2 spectra has ≥ 1 test spectrum; a class with a single spectrum trains
  only). Fold f uses ``numpy.random.default_rng([seed, f])``.
* **Variants** trained per fold: ``(full, shift)`` — the paper's main models, full spectrum,
  training set augmented with ±1, ±2 eV shifts (5×); ``(pre, shift)`` — the same on the
  pre-edge region only; ``(full, none)`` — no augmentation; ``(full, noise)`` — Gaussian noise
  σ = 0.03 added to 4 copies (5×).
* **Inputs** — spectra scaled to max 1 (data set), then standardised per point with the
  training fold's base (un-augmented) mean and standard deviation (floored at
  :data:`STD_FLOOR` = 0.01, so that points where the FEFF spectra hardly vary do not turn
  measurement noise into many standard deviations).
* **Optimisation** — Adam (lr 1e-3, Keras' default), batch 32, 50 epochs, cross-entropy,
  dropout 0.3, Glorot init, seeded; CUDA when present, else CPU with ``threads`` threads; no
  autocast. Trained by the shared loop (:func:`xtalspec.training.loop.run`), settings in
  :class:`XanesConfig`.
* **Tests** — every variant on its fold's base test set; ``(full, shift)`` and ``(full, none)``
  on the test set shifted by −3…3 eV (Fig. 5); ``(full, none)`` and ``(full, noise)`` with
  Gaussian noise σ ∈ ``noise_levels`` (Fig. 6, noise drawn with its own seed).

Every prediction is a row of the predictions table (columns in :data:`PREDICTION_COLUMNS`).
:func:`train_bundle` trains the final MLP and CNN on all spectra of an element for
``xtalspec predict-xanes``.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..models.xanes import CLASSES, build_model
from ..spectra.xanes_grid import shift_on_grid
from .loop import Family, LoopConfig, run, seeded, setup

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["element", "model", "features", "augmentation", "fold", "test", "perturbation",
                      "site_key", "y_true", "y_pred"]


@dataclasses.dataclass
class XanesConfig:
    """The XANES training settings (config ``xanes.train``; paper values are the defaults)."""

    n_folds: int = 10
    test_fraction: float = 0.1
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    shifts_ev: list = dataclasses.field(default_factory=lambda: [-2.0, -1.0, 1.0, 2.0])
    noise_sigma: float = 0.03
    noise_copies: int = 4
    test_shifts_ev: list = dataclasses.field(default_factory=lambda: [-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5,
                                                                      1.0, 1.5, 2.0, 2.5, 3.0])
    noise_levels: list = dataclasses.field(default_factory=lambda: [0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1])
    seed: int = 0
    threads: int = 1
    device: str = "auto"
    extra: dict = dataclasses.field(default_factory=dict)  # other settings of the config block, kept in summaries

    @classmethod
    def from_dict(cls, options: dict) -> "XanesConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in options.items() if k in names},
                   extra={k: v for k, v in options.items() if k not in names})

    def as_dict(self) -> dict:
        """The settings as the summary and the bundle record them: the fields, then the extra keys."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"} | self.extra

    def loop(self) -> LoopConfig:
        return LoopConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, threads=int(self.threads),
                          device=self.device, amp=False)


def _config(cfg) -> XanesConfig:
    return cfg if isinstance(cfg, XanesConfig) else XanesConfig.from_dict(cfg or {})


DEFAULTS = XanesConfig().as_dict()
#: floor of the per-point standard deviation used to standardise inputs: where FEFF spectra
#: hardly vary (the flat foot of the pre-edge) measured noise would otherwise be blown up
STD_FLOOR = 0.01
VARIANTS = (("full", "shift"), ("pre", "shift"), ("full", "none"), ("full", "noise"))


def fold_split(labels: np.ndarray, fold: int, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of one stratified bootstrap fold."""
    rng = np.random.default_rng([seed, fold])
    test = []
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        if len(rows) < 2:
            continue
        n_test = max(1, int(round(test_fraction * len(rows))))
        test.extend(rng.choice(rows, n_test, replace=False).tolist())
    test = np.sort(np.array(test, dtype=int))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def augment(x: np.ndarray, y: np.ndarray, kind: str, step: float, cfg: XanesConfig | dict,
            rng) -> tuple[np.ndarray, np.ndarray]:
    """Base spectra plus their augmented copies (5× for the paper's settings)."""
    cfg = _config(cfg)
    if kind == "none":
        return x, y
    if kind == "shift":
        copies = [shift_on_grid(x, s, step) for s in cfg.shifts_ev]
    elif kind == "noise":
        copies = [x + rng.normal(0.0, cfg.noise_sigma, x.shape) for _ in range(cfg.noise_copies)]
    else:
        raise ValueError(f"unknown augmentation {kind!r}")
    return np.concatenate([x, *copies]), np.concatenate([y] * (1 + len(copies)))


class XanesFamily(Family):
    """The XANES classifiers' parts of the loop: cross-entropy on the logits; no history."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int):
        super().__init__(seed)
        self.x, self.y = x, y

    def batch(self, device, rows):
        rows = rows.to(device)
        return self.x[rows], self.y[rows]

    def loss(self, logits, y, size):
        return nn.functional.cross_entropy(logits, y), {}

    def end_epoch(self, model, epoch, means, seen, seconds, device):
        return False


def fit(kind: str, x: np.ndarray, y: np.ndarray, cfg: XanesConfig | dict, seed: int, device) -> nn.Module:
    """Train one classifier on standardised inputs ``x`` (n, points), labels ``y`` (class index)."""
    cfg = _config(cfg)
    model = seeded(seed, lambda: build_model(kind, x.shape[1], len(CLASSES))).to(device)
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    run(model, XanesFamily(xt, yt, seed), len(xt), dataclasses.replace(cfg.loop(), device=str(device)))
    return model.eval()


@torch.no_grad()
def predict_classes(model: nn.Module, x: np.ndarray, device) -> np.ndarray:
    return model(torch.as_tensor(x, dtype=torch.float32, device=device)).argmax(1).cpu().numpy()


def _scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = x.std(axis=0)
    return x.mean(axis=0), np.maximum(std, STD_FLOOR)


def element_arrays(dataset: pd.DataFrame, meta: dict, element: str):
    """(spectra (n, points), class indices, site keys, element info) of one element."""
    part = dataset[dataset["element"] == element].sort_values("site_key").reset_index(drop=True)
    if part.empty:
        raise ValueError(f"no {element} spectra in the data set")
    x = np.stack(part["mu"].to_numpy()).astype(np.float64)
    y = part["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    return x, y, part["site_key"].to_numpy(), meta["elements"][element]


def train_element(dataset: pd.DataFrame, meta: dict, element: str, kind: str, cfg: dict | None = None,
                  variants=VARIANTS) -> tuple[pd.DataFrame, dict]:
    """(predictions, summary) of every fold and variant for one element and model kind."""
    cfg = _config(cfg)
    device = setup(cfg.threads, cfg.device)
    x_all, y_all, keys, info = element_arrays(dataset, meta, element)
    step, n_pre = float(info["step"]), int(info["pre_edge_index"])
    rows, start = [], time.monotonic()

    def record(fold, features, aug, test, perturbation, test_rows, pred):
        rows.extend(
            (element, kind, features, aug, fold, test, float(perturbation), keys[r], CLASSES[y_all[r]],
             CLASSES[p]) for r, p in zip(test_rows, pred))

    for fold in range(int(cfg.n_folds)):
        train, test = fold_split(y_all, fold, int(cfg.seed), float(cfg.test_fraction))
        if len(test) == 0:
            raise ValueError(f"{element}: too few spectra for a test split")
        noise_rng = np.random.default_rng([int(cfg.seed), fold, 7])
        test_rng = np.random.default_rng([int(cfg.seed), fold, 11])
        for features, aug in variants:
            width = n_pre if features == "pre" else x_all.shape[1]
            x_tr, y_tr = augment(x_all[train], y_all[train], aug, step, cfg, noise_rng)
            mean, std = _scaler(x_all[train][:, :width])
            seed = int(cfg.seed) * 1000 + fold * 10 + VARIANTS.index((features, aug))
            model = fit(kind, (x_tr[:, :width] - mean) / std, y_tr, cfg, seed, device)

            def classify(x):
                return predict_classes(model, (x[:, :width] - mean) / std, device)

            record(fold, features, aug, "base", 0.0, test, classify(x_all[test]))
            if features == "full" and aug in ("shift", "none"):
                for s in cfg.test_shifts_ev:
                    record(fold, features, aug, "shift", s, test, classify(shift_on_grid(x_all[test], s, step)))
            if features == "full" and aug in ("none", "noise"):
                for sigma in cfg.noise_levels:
                    noisy = x_all[test] + test_rng.normal(0.0, sigma, x_all[test].shape)
                    record(fold, features, aug, "noise", sigma, test, classify(noisy))
    predictions = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
    base = predictions[(predictions["test"] == "base") & (predictions["features"] == "full")
                       & (predictions["augmentation"] == "shift")]
    summary = {"element": element, "model": kind, "n_spectra": int(len(y_all)),
               "counts": {c: int((y_all == i).sum()) for i, c in enumerate(CLASSES)},
               "accuracy_full_shift": float((base["y_true"] == base["y_pred"]).mean()),
               "seconds": round(time.monotonic() - start, 1), "device": str(device),
               "config": cfg.as_dict()}
    log.info("%s %s: %d spectra, %d folds, accuracy %.3f, %.1f s", element, kind, len(y_all),
             cfg.n_folds, summary["accuracy_full_shift"], summary["seconds"])
    return predictions, summary


def train_bundle(dataset: pd.DataFrame, meta: dict, element: str, cfg: dict | None = None):
    """(bundle meta, {kind: model}) trained on all spectra of an element (full, shift-augmented)."""
    from ..spectra.xanes_grid import edge_energy  # noqa: F401  (E0 convention of the bundle)

    cfg = _config(cfg)
    device = setup(cfg.threads, cfg.device)
    x_all, y_all, _, info = element_arrays(dataset, meta, element)
    rng = np.random.default_rng([int(cfg.seed), 999])
    x_tr, y_tr = augment(x_all, y_all, "shift", float(info["step"]), cfg, rng)
    mean, std = _scaler(x_all)
    models = {kind: fit(kind, (x_tr - mean) / std, y_tr, cfg, int(cfg.seed) + i, device).cpu()
              for i, kind in enumerate(("mlp", "cnn"))}
    part = dataset[dataset["element"] == element]
    bundle = {"element": element, "classes": list(CLASSES), "grid": info["grid"],
              "e0": float(info["e0_median"]), "pre_edge_index": int(info["pre_edge_index"]),
              "features": "full", "scaler_mean": mean.tolist(), "scaler_std": std.tolist(),
              "n_train": int(len(y_all)), "counts": {c: int((y_all == i).sum()) for i, c in enumerate(CLASSES)},
              "training": cfg.as_dict(),
              "e0_definition": "xtalspec.spectra.xanes_grid.edge_energy (max slope on the main edge)",
              "spectrum_scaling": "FEFF mu (edge step ~1) on the grid, divided by its maximum",
              "sites": sorted(part["site_key"].tolist()), "templates": x_all}
    return bundle, models
