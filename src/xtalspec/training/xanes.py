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
#: fewest spectra of an element for bootstrap folds (config ``xanes.train.min_spectra``)
MIN_SPECTRA = 6
#: the cross-element models' names in predictions and reports
CROSS = {"mlp": "mlp_x", "cnn": "cnn_x"}
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


def fit(kind: str, x: np.ndarray, y: np.ndarray, cfg: XanesConfig | dict, seed: int, device,
        n_extra: int = 0) -> nn.Module:
    """Train one classifier on standardised inputs ``x`` (n, points [+ n_extra one-hot values]),
    labels ``y`` (class index)."""
    cfg = _config(cfg)
    model = seeded(seed, lambda: build_model(kind, x.shape[1] - n_extra, len(CLASSES), n_extra=n_extra)).to(device)
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


def too_few(y: np.ndarray, min_spectra: int = MIN_SPECTRA) -> str | None:
    """Why an element's spectra (class indices ``y``) cannot be cross-validated, or None: fewer
    than ``min_spectra``, fewer than two classes, or no class with two spectra (no test split)."""
    counts = np.bincount(np.asarray(y, dtype=int), minlength=len(CLASSES))
    if len(y) < min_spectra:
        return f"too few spectra ({len(y)} < {min_spectra})"
    if (counts > 0).sum() < 2:
        return "too few spectra (one class only)"
    if counts.max() < 2:
        return "too few spectra (no class with two spectra for a test split)"
    return None


def _empty_summary(element, kind, y_all, reason, cfg, start) -> dict:
    return {"element": element, "model": kind, "n_spectra": int(len(y_all)), "status": reason,
            "counts": {c: int((y_all == i).sum()) for i, c in enumerate(CLASSES)},
            "accuracy_full_shift": None, "seconds": round(time.monotonic() - start, 1), "config": cfg.as_dict()}


def train_element(dataset: pd.DataFrame, meta: dict, element: str, kind: str, cfg: dict | None = None,
                  variants=VARIANTS) -> tuple[pd.DataFrame, dict]:
    """(predictions, summary) of every fold and variant for one element and model kind. An
    element that cannot be cross-validated (:func:`too_few`) gives no predictions and a summary
    whose ``status`` says why (the report lists it as "too few spectra")."""
    cfg = _config(cfg)
    device = setup(cfg.threads, cfg.device)
    start = time.monotonic()
    part = dataset[dataset["element"] == element]
    if part.empty:
        return (pd.DataFrame(columns=PREDICTION_COLUMNS),
                _empty_summary(element, kind, np.array([], int), "too few spectra (none)", cfg, start))
    x_all, y_all, keys, info = element_arrays(dataset, meta, element)
    reason = too_few(y_all, int(cfg.extra.get("min_spectra", MIN_SPECTRA)))
    if reason:
        log.warning("%s %s: %s; not cross-validated", element, kind, reason)
        return pd.DataFrame(columns=PREDICTION_COLUMNS), _empty_summary(element, kind, y_all, reason, cfg, start)
    step, n_pre = float(info["step"]), int(info["pre_edge_index"])
    rows = []

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
    summary = {"element": element, "model": kind, "n_spectra": int(len(y_all)), "status": "ok",
               "counts": {c: int((y_all == i).sum()) for i, c in enumerate(CLASSES)},
               "accuracy_full_shift": float((base["y_true"] == base["y_pred"]).mean()),
               "seconds": round(time.monotonic() - start, 1), "device": str(device),
               "config": cfg.as_dict()}
    log.info("%s %s: %d spectra, %d folds, accuracy %.3f, %.1f s", element, kind, len(y_all),
             cfg.n_folds, summary["accuracy_full_shift"], summary["seconds"])
    return predictions, summary


def _preprocessing_record(meta: dict, info: dict) -> dict:
    """What a bundle records of its data set's preprocessing (how measured spectra must be treated)."""
    pp = meta.get("preprocessing")
    if info.get("grid_relative") and pp:
        return {"preprocessing": pp, "grid_relative": True,
                "e0_definition": "xtalspec.spectra.xanes_measured.find_edge (max smoothed slope of the main edge), "
                                 "the same for FEFF and measured spectra; grid in eV relative to each spectrum's E0",
                "spectrum_scaling": ("edge step 1 (pre-edge line, post-edge level over E0 + "
                                     f"{pp['post_window'][0]:g}…{pp['post_window'][1]:g} eV)"
                                     + (", divided by the maximum" if pp["normalisation"] == "max" else ""))}
    return {"e0_definition": "xtalspec.spectra.xanes_grid.edge_energy (max slope on the main edge)",
            "spectrum_scaling": "FEFF mu (edge step ~1) on the grid, divided by its maximum"}


def train_bundle(dataset: pd.DataFrame, meta: dict, element: str, cfg: dict | None = None):
    """(bundle meta, {kind: model}) trained on all spectra of an element (full, shift-augmented).
    An element whose spectra hold fewer than two classes gives ``({…, "trained": False, "status":
    why}, {})`` (a bundle needs no test split, so it is trained where folds are not)."""
    cfg = _config(cfg)
    device = setup(cfg.threads, cfg.device)
    part = dataset[dataset["element"] == element]
    y_all = part["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype=int)
    counts = np.bincount(y_all, minlength=len(CLASSES))
    reason = ("too few spectra (none)" if part.empty else
              "too few spectra (one class only)" if (counts > 0).sum() < 2 else None)
    if reason:
        return {"element": element, "classes": list(CLASSES), "trained": False, "status": reason,
                "n_train": int(len(y_all)), "counts": {c: int((y_all == i).sum()) for i, c in enumerate(CLASSES)},
                "training": cfg.as_dict()}, {}
    x_all, y_all, _, info = element_arrays(dataset, meta, element)
    rng = np.random.default_rng([int(cfg.seed), 999])
    x_tr, y_tr = augment(x_all, y_all, "shift", float(info["step"]), cfg, rng)
    mean, std = _scaler(x_all)
    models = {kind: fit(kind, (x_tr - mean) / std, y_tr, cfg, int(cfg.seed) + i, device).cpu()
              for i, kind in enumerate(("mlp", "cnn"))}
    record = _preprocessing_record(meta, info)
    bundle = {"element": element, "classes": list(CLASSES), "trained": True, "grid": info["grid"],
              "e0": float(info["e0_median"]), "pre_edge_index": int(info["pre_edge_index"]),
              "features": "full", "scaler_mean": mean.tolist(), "scaler_std": std.tolist(),
              "n_train": int(len(y_all)), "counts": {c: int((y_all == i).sum()) for i, c in enumerate(CLASSES)},
              "training": cfg.as_dict(), **record, "sites": sorted(part["site_key"].tolist())}
    if not record.get("grid_relative"):
        bundle["templates"] = x_all  # the old absolute grid aligns measured spectra against them
    return bundle, models


# --------------------------------------------------------------------------- one model across elements


def cross_arrays(dataset: pd.DataFrame, meta: dict, elements=None):
    """(spectra, class indices, site keys, element per row, element order, step) of every element
    on the shared relative grid, rows grouped by element (in ``elements`` order) then site key."""
    info = meta["elements"]
    order = [e for e in (elements or sorted(info)) if e in info and (dataset["element"] == e).any()]
    if not order:
        raise ValueError("no spectra for the cross-element model")
    grids = {tuple(info[e]["grid"]) for e in order}
    if len(grids) != 1 or not all(info[e].get("grid_relative") for e in order):
        raise ValueError("the cross-element model needs one relative grid shared by all elements "
                         "(preprocessing energy_axis: relative)")
    parts = [element_arrays(dataset, meta, e) for e in order]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    keys = np.concatenate([p[2] for p in parts])
    rows_element = np.concatenate([[e] * len(p[1]) for e, p in zip(order, parts)])
    return x, y, keys, rows_element, order, float(info[order[0]]["step"])


def _cross_inputs(x, rows_element, order, mean, std):
    from ..models.xanes import element_onehot

    return np.concatenate([(x - mean) / std, element_onehot(rows_element, order)], axis=1)


def train_cross(dataset: pd.DataFrame, meta: dict, kind: str, cfg: dict | None = None,
                elements=None) -> tuple[pd.DataFrame, dict]:
    """(predictions, summary) of the cross-element ``kind`` (MLP or CNN with the one-hot element
    as extra input) on the per-element models' folds: fold f trains on the union over elements
    of their fold-f training rows and tests on each element's fold-f test rows (the same
    :func:`fold_split` as :func:`train_element`). Only the paper's main variant (full spectrum,
    shift augmentation). Elements that cannot be cross-validated (:func:`too_few`) are in every
    fold's training set and never tested. Predictions carry ``model`` = ``mlp_x`` / ``cnn_x``."""
    cfg = _config(cfg)
    device = setup(cfg.threads, cfg.device)
    start = time.monotonic()
    x_all, y_all, keys, rows_element, order, step = cross_arrays(dataset, meta, elements)
    min_spectra = int(cfg.extra.get("min_spectra", MIN_SPECTRA))
    testable = {e: too_few(y_all[rows_element == e], min_spectra) is None for e in order}
    rows = []
    for fold in range(int(cfg.n_folds)):
        test = []
        for e in order:
            idx = np.flatnonzero(rows_element == e)
            if testable[e]:
                test.extend(idx[fold_split(y_all[idx], fold, int(cfg.seed), float(cfg.test_fraction))[1]].tolist())
        test = np.array(sorted(test), dtype=int)
        train = np.setdiff1d(np.arange(len(y_all)), test)
        rng = np.random.default_rng([int(cfg.seed), fold, 17])
        x_tr, y_tr = augment(x_all[train], y_all[train], "shift", step, cfg, rng)
        el_tr = np.concatenate([rows_element[train]] * (len(y_tr) // len(train)))
        mean, std = _scaler(x_all[train])
        seed = int(cfg.seed) * 1000 + fold * 10 + 9
        model = fit(kind, _cross_inputs(x_tr, el_tr, order, mean, std), y_tr, cfg, seed, device, n_extra=len(order))
        pred = predict_classes(model, _cross_inputs(x_all[test], rows_element[test], order, mean, std), device)
        rows.extend((rows_element[r], CROSS[kind], "full", "shift", fold, "base", 0.0, keys[r], CLASSES[y_all[r]],
                     CLASSES[p]) for r, p in zip(test, pred))
    predictions = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
    summary = {"model": CROSS[kind], "elements": order, "n_spectra": int(len(y_all)),
               "tested": [e for e in order if testable[e]],
               "not_tested": {e: too_few(y_all[rows_element == e], min_spectra) for e in order if not testable[e]},
               "accuracy_full_shift": float((predictions["y_true"] == predictions["y_pred"]).mean())
               if len(predictions) else None,
               "seconds": round(time.monotonic() - start, 1), "device": str(device), "config": cfg.as_dict()}
    log.info("cross-element %s: %d spectra of %s, accuracy %s, %.1f s", kind, len(y_all), order,
             summary["accuracy_full_shift"], summary["seconds"])
    return predictions, summary


def train_cross_bundle(dataset: pd.DataFrame, meta: dict, cfg: dict | None = None, elements=None):
    """(bundle meta, {kind: model}) of the cross-element MLP and CNN trained on all spectra of
    all elements (full spectrum, shift-augmented)."""
    cfg = _config(cfg)
    device = setup(cfg.threads, cfg.device)
    x_all, y_all, keys, rows_element, order, step = cross_arrays(dataset, meta, elements)
    rng = np.random.default_rng([int(cfg.seed), 998])
    x_tr, y_tr = augment(x_all, y_all, "shift", step, cfg, rng)
    el_tr = np.concatenate([rows_element] * (len(y_tr) // len(y_all)))
    mean, std = _scaler(x_all)
    models = {kind: fit(kind, _cross_inputs(x_tr, el_tr, order, mean, std), y_tr, cfg, int(cfg.seed) + 100 + i,
                        device, n_extra=len(order)).cpu()
              for i, kind in enumerate(("mlp", "cnn"))}
    info = meta["elements"][order[0]]
    bundle = {"element": "cross", "elements": order, "classes": list(CLASSES), "trained": True,
              "grid": info["grid"], "e0": None, "pre_edge_index": int(info["pre_edge_index"]), "features": "full",
              "scaler_mean": mean.tolist(), "scaler_std": std.tolist(), "n_train": int(len(y_all)),
              "counts": {e: {c: int(((rows_element == e) & (y_all == i)).sum()) for i, c in enumerate(CLASSES)}
                         for e in order},
              "training": cfg.as_dict(), **_preprocessing_record(meta, info), "sites": sorted(keys.tolist())}
    return bundle, models
