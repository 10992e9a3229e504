"""Model inputs from a composition: element fractions (ElemNet/IRNet, RF-Comp) and simple
physical attributes (RF-Phys).

Element fractions: one column per element present in the cleaned data (ordered by Z), each
row normalised to sum 1 — the thesis' input after dropping elements absent from the data
(86 of 118 for OQMD).

Physical attributes: a compact version of Ward et al.'s (Magpie) composition descriptors, the
"physical attributes" the thesis' RF-Phys used: stoichiometric attributes (number of elements,
Lp norms of the fractions, p = 2, 3, 5, 7, 10) and, for each element property below taken from
pymatgen's element data, the fraction-weighted mean, mean absolute deviation, minimum, maximum
and range. Properties an element lacks in pymatgen are filled with the mean over the elements
that have them (counted in ``attribute_gaps``).
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache

import numpy as np
import pandas as pd

ELEMENT_PROPERTIES = (
    "Z", "atomic_mass", "row", "group", "X", "atomic_radius", "mendeleev_no", "melting_point",
    "molar_volume", "ionization_energy", "electron_affinity",
    "s_valence", "p_valence", "d_valence", "f_valence",
)
STATISTICS = ("mean", "mad", "min", "max", "range")
LP_NORMS = (2, 3, 5, 7, 10)
_SUBSHELL = re.compile(r"\d+([spdf])(\d+)")


def fractions_of(formula: str) -> dict[str, float]:
    """Element -> atomic fraction (sum 1) of a formula."""
    from pymatgen.core import Composition

    amounts = Composition(formula).get_el_amt_dict()
    total = float(sum(amounts.values()))
    return {el: amt / total for el, amt in amounts.items()}


def element_order(formulas) -> list[str]:
    """Elements present in any of ``formulas``, ordered by atomic number."""
    from pymatgen.core.periodic_table import Element

    present = set()
    for formula in formulas:
        present.update(fractions_of(formula))
    return sorted(present, key=lambda el: Element(el).Z)


def fraction_matrix(formulas, elements: list[str]) -> np.ndarray:
    """(n, len(elements)) float32 element fractions; an element outside ``elements`` raises."""
    column = {el: i for i, el in enumerate(elements)}
    out = np.zeros((len(formulas), len(elements)), dtype=np.float32)
    for row, formula in enumerate(formulas):
        for el, frac in fractions_of(formula).items():
            if el not in column:
                raise KeyError(f"{formula}: element {el} is not among the model's inputs")
            out[row, column[el]] = frac
    return out


def _valence_counts(element) -> dict[str, int]:
    """Electrons outside the noble-gas core per subshell type (Magpie's N{s,p,d,f}Valence)."""
    counts = {"s": 0, "p": 0, "d": 0, "f": 0}
    configuration = element.electronic_structure.split(".")
    for part in configuration:
        match = _SUBSHELL.fullmatch(part)
        if match:
            counts[match.group(1)] += int(match.group(2))
    return counts


def _property(element, name: str) -> float:
    if name.endswith("_valence"):
        return float(_valence_counts(element)[name[0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = getattr(element, name)
        except (AttributeError, ValueError, KeyError):
            return np.nan
    try:
        return float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


@lru_cache(maxsize=None)
def element_property_table() -> tuple[list[str], np.ndarray, int]:
    """Symbols H…Pu, their property matrix (gaps filled with the property mean), gaps filled."""
    from pymatgen.core.periodic_table import Element

    elements = [Element.from_Z(z) for z in range(1, 95)]
    table = np.array([[_property(el, name) for name in ELEMENT_PROPERTIES] for el in elements])
    gaps = np.isnan(table)
    table = np.where(gaps, np.nanmean(table, axis=0), table)
    return [el.symbol for el in elements], table, int(gaps.sum())


def attribute_names() -> list[str]:
    names = ["n_elements"] + [f"L{p}_norm" for p in LP_NORMS]
    return names + [f"{stat}_{prop}" for prop in ELEMENT_PROPERTIES for stat in STATISTICS]


def physical_attributes(fractions: np.ndarray, elements: list[str]) -> np.ndarray:
    """(n, n_attributes) float32 attributes from an element-fraction matrix."""
    symbols, table, _ = element_property_table()
    index = {s: i for i, s in enumerate(symbols)}
    props = table[[index[el] for el in elements]]  # (n_elements, n_props)
    present = fractions > 0
    mean = fractions @ props
    mad = np.abs(props[None, :, :] - mean[:, None, :])
    mad = np.einsum("ne,nep->np", fractions, mad)
    big = np.where(present[:, :, None], props[None], np.inf)
    small = np.where(present[:, :, None], props[None], -np.inf)
    low, high = big.min(axis=1), small.max(axis=1)
    stats = np.stack([mean, mad, low, high, high - low], axis=2)  # (n, props, stats)
    stoich = [present.sum(axis=1)] + [np.linalg.norm(fractions, ord=p, axis=1) for p in LP_NORMS]
    return np.concatenate([np.stack(stoich, axis=1), stats.reshape(len(fractions), -1)], axis=1).astype(np.float32)


def attributes_frame(fractions: np.ndarray, elements: list[str]) -> pd.DataFrame:
    return pd.DataFrame(physical_attributes(fractions, elements), columns=attribute_names())
