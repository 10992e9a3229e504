"""Standard formation enthalpies of crystalline compounds from the NIST-JANAF tables.

The tables come from the PyPI package ``janaf`` (offline copy of the NIST-JANAF
Thermochemical Tables; index ``janaf.db``, one ``janaf.Table(index)`` per table).
For every crystalline table (JANAF phase label ``cr`` or ``cr,l``) of a compound
of at least two elements, the formation enthalpy ΔfH° at 298.15 K (kJ/mol of the
formula unit) is converted to eV per atom.

Every table that is not used is listed in a rejects table
(columns ``id, source, url, reason, detail``) with one of these reasons, checked
in this order (the first that applies wins):

``ion``                  formula carries a charge (``+``/``-``), incl. the electron ``e-``
``single_element``       one element only (elements, their reference states, allotropes)
``not_crystalline``      phase is not crystalline (``g``, ``l``, ``l,g``, ``fl``, ``ref``)
``unparseable_formula``  pymatgen cannot parse the formula, it holds an unknown symbol
                         (pymatgen would make a dummy species), or it names deuterium
                         (pymatgen would fold D into H and merge D2O with H2O)
``missing_dHf``          no ΔfH° value at 298.15 K (row absent, a note instead of a
                         number, or the table could not be read)
``non_finite``           ΔfH° at 298.15 K is ±inf or NaN

Note: JANAF has both a ``cr`` and a combined ``cr,l`` table for many compounds; at
298.15 K they list the same crystal value. Both are kept here (distinct table ids);
:func:`lowest_per_composition` reduces them to one row per reduced formula.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

KJ_PER_MOL_TO_EV = 0.010364269  # 1 kJ/mol in eV per particle
T_REF = 298.15
SOURCE = "janaf"
URL_TEMPLATE = "https://janaf.nist.gov/tables/{id}.html"
CRYSTALLINE_PHASES = frozenset({"cr", "cr,l"})

JANAF_REJECT_REASONS = (
    "ion",
    "single_element",
    "not_crystalline",
    "unparseable_formula",
    "missing_dHf",
    "non_finite",
)

COLUMNS = [
    "id", "formula", "reduced_formula", "phase", "n_atoms",
    "dHf_298_kJ_per_mol", "formation_enthalpy_eV_per_atom", "source", "origin",
]
REJECT_COLUMNS = ["id", "source", "url", "reason", "detail"]

_ION = re.compile(r"[+-]$")
_DEUTERIUM = re.compile(r"D(?![a-z])")  # "D" not followed by a lower-case letter (Dy is fine)


def _parse(formula: str):
    """Return (Composition or None, error detail or None)."""
    from pymatgen.core import Composition, Element

    if _DEUTERIUM.search(formula):
        return None, f"{formula!r} contains deuterium; pymatgen folds D into H"
    try:
        comp = Composition(formula)
    except Exception as exc:  # pymatgen raises ValueError/CompositionError/KeyError
        return None, f"{type(exc).__name__}: {exc}"[:300]
    unknown = [str(el) for el in comp.elements if not isinstance(el, Element)]
    if unknown:  # pymatgen turns unknown symbols into dummy species instead of failing
        return None, f"{formula!r} has unknown element symbol(s) {unknown}"
    if comp.num_atoms <= 0:
        return None, f"{formula!r} parses to an empty composition"
    return comp, None


def _dhf_298(index: str):
    """ΔfH° at 298.15 K in kJ/mol, or (None, detail) when the table has none."""
    import janaf
    import polars as pl

    try:
        df = janaf.Table(index).df
    except Exception as exc:
        return None, f"table unreadable: {type(exc).__name__}: {exc}"[:300]
    rows = df.filter((pl.col("T(K)") - T_REF).abs() < 1e-6)
    if rows.height == 0:
        return None, f"no row at T = {T_REF} K"
    value = rows["delta-f H"][0]
    if value is None:
        note = rows["Note"][0] if "Note" in rows.columns else None
        return None, f"no delta-f H number at {T_REF} K" + (f" (note: {note})" if note else "")
    return float(value), None


def janaf_formation_enthalpies() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Formation enthalpies (eV/atom) of the crystalline JANAF compounds, and the rejects."""
    import janaf

    origin = f"janaf {janaf.__version__}"
    db = janaf.db.to_pandas()
    rows, rejects = [], []

    def reject(tid, reason, detail):
        rejects.append({"id": tid, "source": SOURCE, "url": URL_TEMPLATE.format(id=tid),
                        "reason": reason, "detail": detail})

    for rec in db.itertuples(index=False):
        tid, formula, phase = str(rec.index), str(rec.formula), str(rec.phase)
        label = f"{rec.display}"
        if _ION.search(formula):
            reject(tid, "ion", f"charged species {formula!r} ({label})")
            continue
        comp, err = _parse(formula)
        if comp is not None and len(comp.elements) == 1:
            reject(tid, "single_element", f"{formula!r} is a single element ({label})")
            continue
        if phase not in CRYSTALLINE_PHASES:
            reject(tid, "not_crystalline", f"phase {phase!r} ({label})")
            continue
        if comp is None:
            reject(tid, "unparseable_formula", err)
            continue
        dhf, err = _dhf_298(tid)
        if dhf is None:
            reject(tid, "missing_dHf", err)
            continue
        if not math.isfinite(dhf):
            reject(tid, "non_finite", f"delta-f H at {T_REF} K is {dhf!r}")
            continue
        n_atoms = float(comp.num_atoms)
        rows.append({
            "id": tid,
            "formula": formula,
            "reduced_formula": comp.reduced_formula,
            "phase": phase,
            "n_atoms": n_atoms,
            "dHf_298_kJ_per_mol": dhf,
            "formation_enthalpy_eV_per_atom": dhf * KJ_PER_MOL_TO_EV / n_atoms,
            "source": SOURCE,
            "origin": origin,
        })

    frame = pd.DataFrame(rows, columns=COLUMNS)
    rejected = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    return frame, rejected


def lowest_per_composition(frame: pd.DataFrame, *, key: str = "reduced_formula",
                           column: str = "formation_enthalpy_eV_per_atom") -> pd.DataFrame:
    """Keep the lowest-``column`` row per ``key`` (most stable polymorph).

    Adds ``n_entries`` (rows seen for that composition) and ``n_dropped``
    (``n_entries - 1``). Ties are broken by ``id`` so the result is deterministic.
    """
    if frame.empty:
        out = frame.copy()
        out["n_entries"] = pd.Series(dtype="int64")
        out["n_dropped"] = pd.Series(dtype="int64")
        return out
    sort_cols = [key, column] + (["id"] if "id" in frame.columns else [])
    ordered = frame.sort_values(sort_cols, kind="mergesort")
    counts = ordered.groupby(key, sort=False)[key].transform("size").astype("int64")
    ordered = ordered.assign(n_entries=counts, n_dropped=counts - 1)
    return ordered.drop_duplicates(key, keep="first").reset_index(drop=True)


def remove_outliers(frame: pd.DataFrame, column: str, n_sigma: float = 5.0
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into (kept, removed) by the ±``n_sigma`` rule on ``column``.

    A row is removed when ``|x - mean| > n_sigma * std`` (population std, one pass,
    computed over the finite values). Non-finite values are removed too.
    """
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    if finite.sum() == 0:
        return frame.iloc[0:0].copy(), frame.copy()
    mean = values[finite].mean()
    std = values[finite].std()
    keep = finite & (np.abs(values - mean) <= n_sigma * std)
    return frame[keep].copy(), frame[~keep].copy()
