"""X-ray atomic scattering factors f0(s) from the 9-parameter International Tables fit.

    f0(s) = sum_{i=1..4} a_i exp(-b_i s^2) + c,     s = sin(theta)/lambda = 1/(2d)  [1/Angstrom]

Coefficients: International Tables for X-ray Crystallography Vol. IV (Ibers & Hamilton 1974),
Table 2.2B = International Tables for Crystallography Vol. C, Table 6.1.1.4, neutral atoms
Z = 1..97, shipped as ``xtalspec/data/xray_form_factors_it.csv`` (provenance in its header).
Ions use the neutral element's coefficients (as the papers do).
"""

from __future__ import annotations

import csv
import functools
import re
from importlib import resources

import numpy as np

RESOURCE = "xray_form_factors_it.csv"
_ISOTOPES = {"D": "H", "T": "H"}
_SYMBOL = re.compile(r"^([A-Z][a-z]?)")


@functools.lru_cache(maxsize=1)
def coefficient_table() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Element symbol -> (a[4], b[4], c), read once from the packaged CSV."""
    text = resources.files("xtalspec").joinpath("data", RESOURCE).read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    table = {}
    for row in rows:
        a = np.array([float(row[f"a{i}"]) for i in range(1, 5)])
        b = np.array([float(row[f"b{i}"]) for i in range(1, 5)])
        table[row["symbol"]] = (a, b, float(row["c"]))
    return table


def element_symbol(species) -> str:
    """Neutral element symbol of a pymatgen Element/Species or a string such as 'Fe2+' or 'D'."""
    return _neutral_symbol(str(getattr(species, "symbol", species)))


@functools.lru_cache(maxsize=None)
def _neutral_symbol(text: str) -> str:
    match = _SYMBOL.match(text)
    if match is None:
        raise KeyError(f"not an element: {text!r}")
    return _ISOTOPES.get(match.group(1), match.group(1))


def form_factor_coefficients(symbols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients for a sequence of elements/species: a[n, 4], b[n, 4], c[n]."""
    table = coefficient_table()
    try:
        rows = [table[element_symbol(sym)] for sym in symbols]
    except KeyError as exc:
        raise KeyError(f"no International Tables form factor for {exc.args[0]} (Z = 1..97 only)") from None
    if not rows:
        return np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0)
    a, b, c = zip(*rows)
    return np.stack(a), np.stack(b), np.array(c)


def form_factors(coeffs, s) -> np.ndarray:
    """f0 of every element at every s: array [n_elements, *s.shape] (s = sin(theta)/lambda)."""
    a, b, c = coeffs
    s2 = np.square(np.asarray(s, dtype=np.float64)).reshape(-1)
    gauss = np.exp(-b[:, None, :] * s2[None, :, None])  # [n, m, 4]
    f = np.einsum("ni,nmi->nm", a, gauss) + c[:, None]
    return f.reshape((len(c),) + np.shape(s))
