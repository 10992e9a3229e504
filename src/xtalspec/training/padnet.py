"""PADNet-style background-robust XRD (thesis ch. 7) on rendered laboratory patterns.

Data: the SpgNet data set's δ-profiles (:mod:`xtalspec.datasets.spgnet`) rendered as laboratory
patterns (:mod:`xtalspec.spectra.lab_patterns`: line broadening, counting noise, random smooth
backgrounds). Training items are the SpgNet training pool outside every validation fold; test
items are the validation folds' structures, so no structure is in both.

Models (one rule each), all on the same rendered training patterns (background strength drawn
uniformly from [0, max_strength]) unless said otherwise:
  ``padnet``            slope-filter front end + SpgNet trunk, on the raw patterns;
  ``spgnet_min``        the plain SpgNet on the patterns after minimum-filter background removal;
  ``spgnet_min_mean``   the plain SpgNet after minimum- then mean-filter background removal
                        (the thesis trained and tested its plain models on I, I−MF and I−CS alike);
  ``spgnet_raw``        the plain SpgNet on the raw patterns — the control separating the front end
                        from the background augmentation;
  ``spgnet_clean``      (optional) the plain SpgNet trained without any background, used after
                        min+mean-filter removal: what one trains from ideal simulations alone.

Evaluation: the test items rendered at each background strength of ``test_strengths`` (for a
given item the same seed at every strength, so peak widths, count level and background shape
are fixed and only the strength changes); each model sees the test patterns with its own
pre-processing; AdaBoost (decision trees, Bunn et al.'s baseline in the thesis) is trained on
the min+mean-filtered training patterns pooled to a few hundred features.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import torch

from ..models.checkpoints import COMPARISON_MODELS, build_comparison_model, load_padnet_member  # noqa: F401
from ..spectra.lab_patterns import render_lab_pattern, subtract_background
from .loop import ArrayData, TrainConfig, pick_device, predict, train

log = logging.getLogger("xtalspec.training.padnet")

VARIANTS = dict(zip(COMPARISON_MODELS, (None, "min", "min_mean", None, "min_mean")))
"""model -> background removal applied to its training and test patterns"""
APPROACHES = {  # name in tables -> (model or "adaboost", background removal at test time)
    "padnet_raw": ("padnet", None),
    "spgnet_min_filter": ("spgnet_min", "min"),
    "spgnet_min_mean_filter": ("spgnet_min_mean", "min_mean"),
    "spgnet_raw": ("spgnet_raw", None),
    "spgnet_clean_min_mean_filter": ("spgnet_clean", "min_mean"),
    "adaboost_min_mean_filter": ("adaboost", "min_mean"),
}


@dataclasses.dataclass
class PadnetSettings:
    max_train_per_group: int | None = 50
    copies: int = 2                 # rendered patterns per training structure
    max_strength: float = 2.0       # training backgrounds: strength ~ U(0, max_strength)
    test_strengths: tuple = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    fwhm_bins: tuple = (6.0, 20.0)
    counts: tuple = (2e3, 2e4)
    background_size: int = 100      # min-filter window (bins)
    background_smooth: int = 100    # mean-filter window (bins)
    filter_size: int = 50           # PADNet slope filters (bins), the thesis' f
    softmax: str = "orientations"
    adaboost_estimators: int = 100
    adaboost_depth: int = 3
    adaboost_learning_rate: float = 0.5
    adaboost_pool: int = 20         # max-pool width (bins) of the AdaBoost features
    seed: int = 1

    @classmethod
    def from_dict(cls, options: dict) -> "PadnetSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in options.items() if k in names}
        return cls(**values)


def split_items(table: pd.DataFrame, max_train_per_group: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, test rows): test = every validation fold; training = the training pool
    outside them, at most ``max_train_per_group`` per space group (seeded)."""
    test = np.flatnonzero(table["fold"].to_numpy() > 0)
    pool = (table["fold"].to_numpy() == 0) & table.get("train_pool", pd.Series(True, index=table.index)).to_numpy()
    rows = np.flatnonzero(pool)
    if max_train_per_group:
        rng = np.random.default_rng(seed)
        keep = []
        classes = table["class_index"].to_numpy()
        for c in np.unique(classes[rows]):
            members = rows[classes[rows] == c]
            keep.append(np.sort(rng.permutation(members)[:max_train_per_group]))
        rows = np.sort(np.concatenate(keep))
    return rows, test


def render_rows(table: pd.DataFrame, rows: np.ndarray, strengths: np.ndarray, seeds: np.ndarray,
                s: PadnetSettings) -> np.ndarray:
    """(len(rows), N) float32 rendered patterns, item k drawn from ``np.random.default_rng(seeds[k])``."""
    bins, values = table["bins"].to_numpy(), table["values"].to_numpy()
    out = None
    for k, (row, strength, seed) in enumerate(zip(rows, strengths, seeds)):
        pattern = render_lab_pattern(bins[row], values[row], np.random.default_rng(int(seed)),
                                     fwhm_bins=s.fwhm_bins, background_strength=float(strength), counts=s.counts)
        if out is None:
            out = np.empty((len(rows), len(pattern)), dtype=np.float32)
        out[k] = pattern
    return out


def training_patterns(table: pd.DataFrame, variant: str, s: PadnetSettings) -> tuple[np.ndarray, np.ndarray]:
    """The rendered training set of one variant, with its background removal: (patterns, classes)."""
    rows, _ = split_items(table, s.max_train_per_group, s.seed)
    rows = np.repeat(rows, s.copies)
    rng = np.random.default_rng([s.seed, 7])
    strengths = rng.uniform(0, s.max_strength, len(rows))
    if variant == "spgnet_clean":
        strengths[:] = 0.0
    seeds = rng.integers(0, 2**63 - 1, len(rows))
    x = render_rows(table, rows, strengths, seeds, s)
    method = VARIANTS.get(variant) if variant != "adaboost" else "min_mean"
    if method:
        x = remove_background(x, method, s)
    return x, table["class_index"].to_numpy()[rows].astype(np.int64)


def remove_background(x: np.ndarray, method: str, s: PadnetSettings) -> np.ndarray:
    return subtract_background(x, method, s.background_size, s.background_smooth).astype(np.float32)


def build_variant(variant: str, n_classes: int, s: PadnetSettings) -> torch.nn.Module:
    if variant not in VARIANTS:
        raise ValueError(f"unknown PADNet-comparison model {variant!r}; choose from {VARIANTS}")
    return build_comparison_model(variant, n_classes, filter_size=s.filter_size, softmax=s.softmax)


def train_variant(table: pd.DataFrame, n_classes: int, variant: str, s: PadnetSettings, cfg: TrainConfig,
                  out_dir, fingerprint: str = "") -> tuple[torch.nn.Module, list[dict]]:
    x, y = training_patterns(table, variant, s)
    log.info("%s: %d rendered training patterns, %d classes", variant, len(y), n_classes)
    model = build_variant(variant, n_classes, s)
    history = train(model, ArrayData(make_inputs=lambda r: x[r], labels=y), cfg, out_dir, fingerprint=fingerprint)
    return model.eval(), history


def _pool(patterns: np.ndarray, width: int) -> np.ndarray:
    n = patterns.shape[1] // width * width
    return patterns[:, :n].reshape(len(patterns), -1, width).max(axis=2)


def fit_adaboost(table: pd.DataFrame, s: PadnetSettings):
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.tree import DecisionTreeClassifier

    x, y = training_patterns(table, "adaboost", s)  # the augmented training patterns, min+mean filtered
    x = _pool(x, s.adaboost_pool)
    booster = AdaBoostClassifier(DecisionTreeClassifier(max_depth=s.adaboost_depth, random_state=s.seed),
                                 n_estimators=s.adaboost_estimators, learning_rate=s.adaboost_learning_rate,
                                 random_state=s.seed)
    return booster.fit(x, y)


def _probabilities(model: torch.nn.Module, x: np.ndarray, device: str) -> np.ndarray:
    data = ArrayData(make_inputs=lambda r: x[r], labels=np.zeros(len(x), dtype=np.int64))
    return predict(model, data, pick_device(device), amp=False)["probabilities"]


def evaluate(table: pd.DataFrame, models: dict[str, torch.nn.Module], s: PadnetSettings, device: str = "cpu",
             approaches: list[str] | None = None) -> pd.DataFrame:
    """One row per (approach, strength, test item): true and predicted class, top-1 hit."""
    _, test = split_items(table, s.max_train_per_group, s.seed)
    seeds = np.random.default_rng([s.seed, 11]).integers(0, 2**63 - 1, len(test))
    wanted = approaches or [a for a, (m, _) in APPROACHES.items() if m in models or m == "adaboost"]
    booster = fit_adaboost(table, s) if any(APPROACHES[a][0] == "adaboost" for a in wanted) else None
    y = table["class_index"].to_numpy()[test]
    frames = []
    for strength in s.test_strengths:
        raw = render_rows(table, test, np.full(len(test), strength), seeds, s)
        cleaned = {m: remove_background(raw, m, s) for m in ("min", "min_mean")}
        for approach in wanted:
            variant, method = APPROACHES[approach]
            x = raw if method is None else cleaned[method]
            if variant == "adaboost":
                probs = booster.predict_proba(_pool(x, s.adaboost_pool))
                full = np.zeros((len(x), int(table["class_index"].max()) + 1))
                full[:, booster.classes_] = probs
                probs = full
            else:
                probs = _probabilities(models[variant], x, device)
            predicted = probs.argmax(axis=1)
            frames.append(pd.DataFrame({"approach": approach, "strength": float(strength), "id": table["id"].to_numpy()[test],
                                        "class_index": y, "predicted": predicted, "correct": predicted == y,
                                        "p_true": probs[np.arange(len(y)), y]}))
        log.info("strength %.2f: %s", strength, {a: round(float(f["correct"].mean()), 3) for a, f in
                                                   ((f["approach"].iloc[0], f) for f in frames[-len(wanted):])})
    return pd.concat(frames, ignore_index=True)


def accuracy_table(predictions: pd.DataFrame) -> pd.DataFrame:
    return predictions.groupby(["approach", "strength"], as_index=False).agg(
        accuracy=("correct", "mean"), n=("correct", "size"))
