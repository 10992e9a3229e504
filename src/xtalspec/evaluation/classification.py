"""Classification metrics from a confusion matrix, and intervals over folds."""

from __future__ import annotations

import numpy as np
from scipy import stats


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """M[i, j] = number of items of true class i predicted as class j."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def metrics(matrix: np.ndarray) -> dict[str, float]:
    """Accuracy, macro precision and recall (classes never predicted have precision 0), and the
    F-score as the harmonic mean of macro precision and macro recall (Ozaki et al. eq. 19–22)."""
    tp = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    present = actual > 0
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)[present].mean()
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)[present].mean()
    f_score = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"accuracy": float(tp.sum() / max(matrix.sum(), 1)), "precision": float(precision),
            "recall": float(recall), "f_score": float(f_score)}


def top_k_accuracy(probabilities: np.ndarray, y_true: np.ndarray, k: int) -> float:
    top = np.argsort(-probabilities, axis=1)[:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(axis=1).mean())


def mean_and_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided t-interval of the mean (NaN bounds for fewer than two values)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half
