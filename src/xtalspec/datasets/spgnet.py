"""SpgNet/SpgVolNet data sets (Ozaki et al. 2025, sections 2.3–2.4).

* space groups with at least ``min_per_group`` members (the paper keeps 57);
* seven ranges on U = ln(V/n_atoms) and η = ln(density): D(∞), D(2σU), D(2ση), D(2σU+η),
  D(σU), D(ση), D(σU+η) — σ and μ taken over the selected groups;
* five disjoint validation folds drawn from the narrowest range D(σU+η), the same number per
  space group in each fold (paper: 16), with the leakage guard: a candidate never enters a
  validation fold when another structure of its space group has all its (strong) peaks within
  ``leakage_bins`` bins of the candidate's peaks;
* training set of (range r, fold i) = D(r) minus validation fold i.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spectra.xrd import N_BINS

RANGES = {  # name -> (sigma multiple on U or None, on eta or None)
    "inf": (None, None),
    "2sigmaU": (2.0, None),
    "2sigmaEta": (None, 2.0),
    "2sigmaU_eta": (2.0, 2.0),
    "sigmaU": (1.0, None),
    "sigmaEta": (None, 1.0),
    "sigmaU_eta": (1.0, 1.0),
}
RANGE_LABELS = {
    "inf": "D(∞)", "2sigmaU": "D(2σU)", "2sigmaEta": "D(2ση)", "2sigmaU_eta": "D(2σU+η)",
    "sigmaU": "D(σU)", "sigmaEta": "D(ση)", "sigmaU_eta": "D(σU+η)",
}
VALIDATION_RANGE = "sigmaU_eta"


def select_groups(spacegroups: pd.Series, min_per_group: int, max_groups: int | None = None) -> list[int]:
    """Space groups with at least ``min_per_group`` members (the ``max_groups`` largest when
    capped), sorted by number."""
    counts = spacegroups.value_counts()
    counts = counts[counts >= min_per_group].sort_values(ascending=False, kind="stable")
    if max_groups:
        counts = counts.head(max_groups)
    return sorted(int(g) for g in counts.index)


def range_masks(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Boolean membership of each row in the seven outlier-excluded ranges."""
    u, eta = table["log_volume_per_atom"].to_numpy(), table["log_density"].to_numpy()
    zu = np.abs(u - u.mean()) / u.std()
    ze = np.abs(eta - eta.mean()) / eta.std()
    masks = {}
    for name, (ku, ke) in RANGES.items():
        mask = np.ones(len(table), dtype=bool)
        if ku is not None:
            mask &= zu <= ku
        if ke is not None:
            mask &= ze <= ke
        masks[name] = mask
    return masks


def strong_peaks(bins: np.ndarray, values: np.ndarray, threshold: float) -> np.ndarray:
    return np.asarray(bins)[np.asarray(values) >= threshold]


def leaks(candidate: np.ndarray, others: list[np.ndarray], n_bins: int, tolerance: int) -> bool:
    """True when some structure in ``others`` has all its peaks within ``tolerance`` bins of
    the candidate's peaks."""
    near = np.zeros(n_bins + 2 * tolerance + 1, dtype=bool)
    for shift in range(-tolerance, tolerance + 1):
        near[candidate + shift + tolerance] = True
    near = near[tolerance: tolerance + n_bins]
    return any(len(peaks) and near[peaks].all() for peaks in others)


def validation_folds(
    table: pd.DataFrame,
    eligible: np.ndarray,
    n_folds: int,
    per_fold: int,
    seed: int,
    leakage_bins: int = 5,
    peak_threshold: float = 0.01,
    n_bins: int = N_BINS,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Fold number (1..n_folds, 0 = never validation) per row, and a per-group report.

    Candidates of each space group are drawn from the eligible rows in a seeded random order;
    a leaking candidate is skipped. A group without enough clean candidates fills fewer slots
    (reported, never silently)."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(table), dtype=np.int8)
    peaks = [strong_peaks(b, v, peak_threshold) for b, v in zip(table["bins"], table["values"])]
    report = []
    for group, rows in table.groupby("spacegroup").indices.items():
        candidates = [r for r in rng.permutation(rows) if eligible[r]]
        need = n_folds * per_fold
        chosen, skipped = [], 0
        for r in candidates:
            if len(chosen) == need:
                break
            others = [peaks[o] for o in rows if o != r]
            if leaks(peaks[r], others, n_bins, leakage_bins):
                skipped += 1
                continue
            chosen.append(r)
        for k, r in enumerate(chosen):
            folds[r] = 1 + k % n_folds
        report.append({"spacegroup": int(group), "members": len(rows), "eligible": int(eligible[rows].sum()),
                       "validation": len(chosen), "excluded_by_leakage_guard": skipped,
                       "complete": len(chosen) == need})
    return folds, pd.DataFrame(report)


def build_dataset(
    profiles: pd.DataFrame,
    min_per_group: int,
    n_folds: int,
    per_fold: int,
    seed: int,
    max_groups: int | None = None,
    leakage_bins: int = 5,
    peak_threshold: float = 0.01,
    max_train_per_group: int | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The data-set table (one row per structure of the selected groups, with class index,
    z-score of U, range membership and validation fold) and a description of the sets."""
    groups = select_groups(profiles["spacegroup"], min_per_group, max_groups)
    table = profiles[profiles["spacegroup"].isin(groups)].sort_values(["spacegroup", "source", "id"])
    table = table.reset_index(drop=True)
    table["class_index"] = table["spacegroup"].map({g: i for i, g in enumerate(groups)}).astype(np.int16)
    masks = range_masks(table)
    for name, mask in masks.items():
        table[f"in_{name}"] = mask
    u = table["log_volume_per_atom"]
    u_mean, u_std = float(u.mean()), float(u.std(ddof=0))
    table["volume_z"] = (u - u_mean) / u_std
    folds, fold_report = validation_folds(table, masks[VALIDATION_RANGE], n_folds, per_fold, seed,
                                          leakage_bins, peak_threshold)
    table["fold"] = folds
    table["train_pool"] = training_pool(table, max_train_per_group, seed)
    description = {
        "spacegroups": groups,
        "u_mean": u_mean,
        "u_std": u_std,
        "n_folds": n_folds,
        "per_fold": per_fold,
        "range_sizes": {name: int(mask.sum()) for name, mask in masks.items()},
        "fold_sizes": {int(f): int((folds == f).sum()) for f in range(1, n_folds + 1)},
        "max_train_per_group": max_train_per_group,
        "fold_report": fold_report.to_dict(orient="records"),
    }
    return table, description


def training_pool(table: pd.DataFrame, cap: int | None, seed: int) -> np.ndarray:
    """Items that may be used for training: all of them, or (to fit a small machine) at most
    ``cap`` non-validation items per space group, chosen by a seeded permutation."""
    pool = np.ones(len(table), dtype=bool)
    if not cap:
        return pool
    rng = np.random.default_rng(seed + 1)
    pool[:] = False
    for _, rows in table.groupby("spacegroup").indices.items():
        candidates = rng.permutation([r for r in rows if table["fold"].iat[r] == 0])
        pool[candidates[:cap]] = True
    pool[table["fold"].to_numpy() > 0] = True  # the other folds' validation items train too
    return pool


def training_rows(table: pd.DataFrame, range_name: str, fold: int) -> np.ndarray:
    mask = table[f"in_{range_name}"].to_numpy() & (table["fold"].to_numpy() != fold)
    if "train_pool" in table:
        mask &= table["train_pool"].to_numpy()
    return np.flatnonzero(mask)


def validation_rows(table: pd.DataFrame, fold: int) -> np.ndarray:
    return np.flatnonzero(table["fold"].to_numpy() == fold)


def densify(bins_column, values_column, rows: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Dense float32 profiles [len(rows), n_bins] from the sparse (bins, values) columns."""
    out = np.zeros((len(rows), n_bins), dtype=np.float32)
    for k, r in enumerate(rows):
        out[k, bins_column[r]] = values_column[r]
    return out
