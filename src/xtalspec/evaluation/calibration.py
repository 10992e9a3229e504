"""Calibrated probabilities: temperature scaling, expected calibration error, reliability diagrams.

A classifier trained with cross-entropy is usually over-confident: among the predictions it gives
0.9, fewer than 90 % are right. Temperature scaling (Guo et al. 2017) divides the logits by one
scalar T > 0 fitted on held-out data by minimising the negative log-likelihood; the ranking is
unchanged, only the probabilities move. For an ensemble one T is shared by all members and fitted
so that the *ensemble mean* of the members' softmax(logits / T) — the probability that is reported
— has the smallest NLL.

The expected calibration error (ECE) bins the top-1 confidence into equal-width bins on [0, 1]
and averages |accuracy − confidence| over the bins, weighted by their counts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import log_softmax, logsumexp

#: the search interval for the temperature
T_BOUNDS = (0.02, 50.0)


def _logits_array(logits) -> np.ndarray:
    """(members, n, classes) float64 from one model's (n, classes) or several members' logits."""
    if hasattr(logits, "detach"):
        logits = logits.detach().cpu().numpy()
    array = np.asarray(logits, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] == 0 or array.shape[2] < 2:
        raise ValueError(f"logits must be (items, classes) or (members, items, classes) with at least one item "
                         f"and two classes; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("logits contain non-finite values")
    return array


def _labels_array(labels, n: int, n_classes: int) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{len(labels)} labels for {n} items")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must be class indices 0…{n_classes - 1}")
    return labels.astype(np.int64)


def ensemble_log_probabilities(logits, temperature: float | None = None) -> np.ndarray:
    """log of the ensemble mean of softmax(logits / T) over members: (n, classes)."""
    array = _logits_array(logits)
    t = 1.0 if temperature is None else float(temperature)
    if not t > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return logsumexp(log_softmax(array / t, axis=2), axis=0) - math.log(array.shape[0])


def ensemble_probabilities(logits, temperature: float | None = None) -> np.ndarray:
    """The ensemble mean of the members' softmax(logits / T), (n, classes); one model's logits
    (n, classes) give its softmax(logits / T)."""
    return np.exp(ensemble_log_probabilities(logits, temperature))


def negative_log_likelihood(logits, labels, temperature: float | None = None) -> float:
    """Mean NLL of the true labels under the (ensemble-mean) softmax(logits / T)."""
    logp = ensemble_log_probabilities(logits, temperature)
    labels = _labels_array(labels, logp.shape[0], logp.shape[1])
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits, labels, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) on (held-out) data.

    ``logits`` is (items, classes) for one model or (members, items, classes) for an ensemble
    (then one T for all members, fitted on the NLL of the members' mean probability). A bounded
    Brent search on log T within ``bounds`` (the NLL is convex in 1/T for one model, and
    unimodal in practice for an ensemble); deterministic."""
    from scipy.optimize import minimize_scalar

    array = _logits_array(logits)
    labels = _labels_array(labels, array.shape[1], array.shape[2])
    index = np.arange(len(labels))

    def nll(log_t: float) -> float:
        logp = logsumexp(log_softmax(array / math.exp(log_t), axis=2), axis=0)
        return float(-logp[index, labels].mean())

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    best = float(result.x)
    # Brent may stop at an interior point when the minimum is on an edge; keep the better of the three
    candidates = [(nll(best), best), (nll(lo), lo), (nll(0.0), 0.0), (nll(hi), hi)]
    return float(math.exp(min(candidates)[1]))


def _confidences(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(probs, "detach"):
        probs = probs.detach().cpu().numpy()
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (items, classes); got shape {probs.shape}")
    labels = _labels_array(labels, probs.shape[0], probs.shape[1])
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins on [0, 1]: bin b holds (b/n, (b+1)/n]; a confidence of 0 goes to bin 0."""
    return np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)


def reliability_table(probs, labels, n_bins: int = 15) -> pd.DataFrame:
    """One row per equal-width confidence bin: ``bin``, ``lower``, ``upper``, mean top-1
    ``confidence``, top-1 ``accuracy`` and ``count`` (empty bins: count 0, NaN means)."""
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    confidence, correct = _confidences(probs, labels)
    index = _bin_index(confidence, n_bins)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({"bin": np.arange(n_bins), "lower": edges[:-1], "upper": edges[1:],
                         "confidence": mean_conf, "accuracy": accuracy, "count": count})


def ece_from_table(table: pd.DataFrame) -> float:
    """The ECE of a :func:`reliability_table`."""
    filled = table[table["count"] > 0]
    total = filled["count"].sum()
    if not total:
        return float("nan")
    return float((filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / total)


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """Σ_b (n_b / N) |accuracy_b − confidence_b| over equal-width bins of the top-1 confidence."""
    return ece_from_table(reliability_table(probs, labels, n_bins))


def plot_reliability(table_before: pd.DataFrame, table_after: pd.DataFrame | None, path,
                     title: str = "Reliability diagram") -> Path:
    """A reliability diagram (accuracy against mean confidence per bin, the diagonal is perfect
    calibration) before and after calibration, with each ECE in the legend, and the share of
    items per bin below. PNG or SVG by the file's suffix, written atomically."""
    from matplotlib.figure import Figure

    from ..utils.atomic import atomic_path

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in ("png", "svg"):
        raise ValueError(f"{path}: a reliability diagram is written as .png or .svg")
    fig = Figure(figsize=(5.2, 6.0))
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    tables = [("before", table_before, "tab:red")] + ([("after", table_after, "tab:blue")]
                                                       if table_after is not None else [])
    width = float(table_before["upper"].iloc[0] - table_before["lower"].iloc[0])
    for i, (name, table, colour) in enumerate(tables):
        filled = table[table["count"] > 0]
        ax.plot(filled["confidence"], filled["accuracy"], marker="o", color=colour, lw=1.5,
                label=f"{name} calibration (ECE {100 * ece_from_table(table):.1f} %)")
        centres = (table["lower"] + table["upper"]) / 2
        shift = (i - (len(tables) - 1) / 2) * width / len(tables)
        hist.bar(centres + shift, table["count"] / max(table["count"].sum(), 1), width=width / len(tables),
                 color=colour, alpha=0.7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("top-1 confidence")
    hist.set_ylabel("share of items")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110)
    return path


__all__ = ["ece_from_table", "ensemble_log_probabilities", "ensemble_probabilities", "expected_calibration_error",
           "fit_temperature", "negative_log_likelihood", "plot_reliability", "reliability_table"]
