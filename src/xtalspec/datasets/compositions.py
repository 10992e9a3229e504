"""Composition → formation-enthalpy data sets (thesis ch. 3 cleaning, ch. 5 folds).

From one source's records (``xtalspec.compositions.sources``): the lowest entry per reduced
formula (most stable polymorph), single elements removed, entries beyond ±n σ removed (σ over the
cleaned set, as the thesis), the input vector restricted to the elements present (or to a
pretrained model's elements for fine-tuning), and seeded K-fold labels. Every dropped record
is a rejects row with its reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..compositions.features import element_order, fraction_matrix, fractions_of
from ..compositions.janaf import lowest_per_composition, remove_outliers

TARGET = "formation_enthalpy_eV_per_atom"
REJECT_COLUMNS = ["id", "source", "url", "reason", "detail"]


def _reject(rows: pd.DataFrame, reason: str, detail) -> pd.DataFrame:
    details = detail if isinstance(detail, (list, pd.Series, np.ndarray)) else [detail] * len(rows)
    return pd.DataFrame({"id": rows["id"].astype(str).to_numpy(), "source": rows["source"].astype(str).to_numpy(),
                         "url": rows.get("url", pd.Series([""] * len(rows))).astype(str).to_numpy(),
                         "reason": reason, "detail": list(details)}, columns=REJECT_COLUMNS)


def fold_labels(n: int, n_folds: int, seed: int) -> np.ndarray:
    """1…n_folds, balanced, from a seeded permutation."""
    order = np.random.default_rng(seed).permutation(n)
    folds = np.empty(n, dtype=np.int64)
    folds[order] = np.arange(n) % n_folds + 1
    return folds


def build_composition_dataset(records: pd.DataFrame, *, n_folds: int, seed: int, n_sigma: float = 5.0,
                              elements: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(data set, rejects, description). ``elements``: fix the input vector (fine-tuning a
    pretrained model); compositions holding other elements are rejected."""
    records = records.reset_index(drop=True)
    rejects = []
    n_elements = records["reduced_formula"].map(lambda f: len(fractions_of(f)))
    single = records[n_elements < 2]
    if len(single):
        rejects.append(_reject(single, "single_element", "formation enthalpy 0 by definition"))
    kept = records[n_elements >= 2]
    lowest = lowest_per_composition(kept, column=TARGET)
    dropped = kept[~kept["id"].isin(lowest["id"])]
    if len(dropped):
        winner = dict(zip(lowest["reduced_formula"], lowest["id"]))
        rejects.append(_reject(dropped, "higher_energy_polymorph",
                               [f"{f}: lowest entry is {winner[f]}" for f in dropped["reduced_formula"]]))
    cleaned, outliers = remove_outliers(lowest, TARGET, n_sigma)
    if len(outliers):
        mean, std = lowest[TARGET].mean(), lowest[TARGET].std(ddof=0)
        rejects.append(_reject(outliers, f"outlier_{n_sigma:g}sigma",
                               [f"{v:.3f} eV/atom vs mean {mean:.3f} ± {n_sigma:g}×{std:.3f}" for v in outliers[TARGET]]))
    if elements is not None:
        allowed = set(elements)
        outside = cleaned["reduced_formula"].map(lambda f: sorted(set(fractions_of(f)) - allowed))
        mask = outside.map(bool)
        if mask.any():
            rejects.append(_reject(cleaned[mask], "element_outside_model",
                                   [f"{', '.join(o)} not among the pretrained model's inputs" for o in outside[mask]]))
        cleaned = cleaned[~mask]
    else:
        elements = element_order(cleaned["reduced_formula"])
    cleaned = cleaned.sort_values("reduced_formula", kind="mergesort").reset_index(drop=True)
    fractions = fraction_matrix(cleaned["reduced_formula"], elements)
    data = pd.DataFrame({
        "id": cleaned["id"].astype(str), "source": cleaned["source"].astype(str),
        "reduced_formula": cleaned["reduced_formula"].astype(str), TARGET: cleaned[TARGET].astype(float),
        "fold": fold_labels(len(cleaned), n_folds, seed), "fractions": list(fractions),
    })
    description = {
        "target": TARGET, "elements": elements, "n_elements": len(elements), "n_folds": n_folds, "seed": seed,
        "n_sigma": n_sigma, "n_records": int(len(records)), "n_compositions": int(len(data)),
        "mean": float(data[TARGET].mean()) if len(data) else None,
        "mean_absolute_deviation": float((data[TARGET] - data[TARGET].mean()).abs().mean()) if len(data) else None,
    }
    rejects = pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=REJECT_COLUMNS)
    return data, rejects, description


def inputs(data: pd.DataFrame) -> np.ndarray:
    return np.stack(data["fractions"].to_numpy()).astype(np.float32)
