"""Laboratory X-ray physics shared by simulated and measured powder patterns.

* :data:`WAVELENGTHS` and :func:`parse_wavelength`: anode lines by name ("CuKa", "MoKa1", ...)
  or a number in Angstrom;
* the Lorentz-polarisation factor of a powder reflection: :func:`lorentz_polarisation` from
  2 theta in degrees (used on measured patterns, :mod:`xtalspec.spectra.measured`), and the one
  formula behind it, :func:`lorentz_polarisation_from_trig`, which the structure-factor engine
  (:func:`xtalspec.spectra.xrd.powder_peaks`) calls with the trigonometric values it already has.

Both :mod:`xtalspec.spectra.xrd` and :mod:`xtalspec.spectra.measured` import this module, and it
imports neither of them.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = [
    "WavelengthError", "WAVELENGTHS", "WAVELENGTH_RANGE", "parse_wavelength", "lorentz_polarisation",
    "lorentz_polarisation_from_trig",
]


class WavelengthError(ValueError):
    """An X-ray wavelength name or number that is not understood."""


# --------------------------------------------------------------------------- wavelengths

# K-alpha1 / K-alpha2 lines (Bearden 1967, the values pymatgen also uses). "<X>Ka" is the
# intensity-weighted mean (2 Ka1 + Ka2) / 3, the usual value for an unresolved doublet.
_KA_LINES = {
    "Cu": (1.54056, 1.54439),
    "Mo": (0.70930, 0.71359),
    "Co": (1.78896, 1.79285),
    "Cr": (2.28970, 2.29361),
    "Fe": (1.93604, 1.93998),
    "Ag": (0.559421, 0.563813),
}


def _wavelength_table() -> dict[str, float]:
    table: dict[str, float] = {}
    for element, (ka1, ka2) in _KA_LINES.items():
        table[f"{element}Ka"] = round((2.0 * ka1 + ka2) / 3.0, 5)
        table[f"{element}Ka1"] = ka1
        table[f"{element}Ka2"] = ka2
    return table


#: Anode lines in Angstrom, e.g. ``WAVELENGTHS["CuKa"] == 1.54184``, ``["MoKa"] == 0.71073``.
WAVELENGTHS: dict[str, float] = _wavelength_table()
_BY_KEY = {name.lower(): value for name, value in WAVELENGTHS.items()}
WAVELENGTH_RANGE = (0.1, 5.0)  # plausible numeric wavelengths, Angstrom


def _wavelength_key(text: str) -> str:
    """'Cu K-alpha1', 'cu_ka', 'CuKα' -> 'cuka1' / 'cuka' (case, spaces, '-', '_' ignored)."""
    key = re.sub(r"[\s\-_]", "", text).lower()
    return key.replace("alpha", "a").replace("α", "a")


def parse_wavelength(text) -> float:
    """Wavelength in Angstrom from a line name ("CuKa", "MoKa1", case-insensitive) or a number.

    Numbers (or numeric strings, optionally ending in "A"/"Å") are taken as Angstrom and must lie
    in 0.1-5 Angstrom. Anything else raises :class:`WavelengthError` listing the accepted names.
    """
    if isinstance(text, (int, float, np.floating, np.integer)) and not isinstance(text, bool):
        return _check_number(float(text), text)
    key = _wavelength_key(str(text))
    if key in _BY_KEY:
        return _BY_KEY[key]
    try:
        value = float(re.sub(r"\s*(angstrom|å|a)$", "", str(text).strip(), flags=re.IGNORECASE))
    except ValueError:
        names = ", ".join(WAVELENGTHS)
        raise WavelengthError(
            f"unknown X-ray wavelength {text!r}; use one of {names} or a number in Angstrom") from None
    return _check_number(value, text)


def _check_number(value: float, text) -> float:
    low, high = WAVELENGTH_RANGE
    if not np.isfinite(value) or not low <= value <= high:
        raise WavelengthError(f"wavelength {text!r} is not a plausible X-ray wavelength ({low}-{high} Angstrom)")
    return value


# --------------------------------------------------------------------------- Lorentz-polarisation


def lorentz_polarisation_from_trig(sin_theta, cos_theta, cos_two_theta,
                                   monochromator_two_theta_deg: float | None = None):
    """The Lorentz-polarisation factor from sin(theta), cos(theta) and cos(2 theta).

    ``LP = (1 + cos^2 2theta) / (sin^2 theta cos theta)`` (unpolarised source, no monochromator:
    the factor pymatgen applies); with a monochromator at ``2theta_M``
    ``(1 + cos^2 2theta_M cos^2 2theta) / (sin^2 theta cos theta) / (1 + cos^2 2theta_M)``.
    Callers pass the trigonometric values they hold, so each keeps its own round-off.
    """
    lorentz = sin_theta * sin_theta * cos_theta
    cos2_2t = cos_two_theta * cos_two_theta
    if monochromator_two_theta_deg is None:
        return (1.0 + cos2_2t) / lorentz
    cos2_m = np.cos(np.radians(monochromator_two_theta_deg)) ** 2
    return (1.0 + cos2_m * cos2_2t) / lorentz / (1.0 + cos2_m)


def lorentz_polarisation(two_theta_deg, monochromator_two_theta_deg: float | None = None) -> np.ndarray:
    """Lorentz-polarisation factor of a powder (Bragg-Brentano) reflection at 2 theta (degrees).

    Default, unpolarised laboratory source and no monochromator:
    ``LP = (1 + cos^2 2theta) / (sin^2 theta cos theta)`` (the factor pymatgen applies). With a
    monochromator at ``2theta_M``: ``(1 + cos^2 2theta_M cos^2 2theta) / (sin^2 theta cos theta)
    / (1 + cos^2 2theta_M)``. Only ratios matter here, since profiles are scaled to a maximum of 1.
    """
    theta = np.radians(np.asarray(two_theta_deg, dtype=np.float64)) / 2.0
    return lorentz_polarisation_from_trig(np.sin(theta), np.cos(theta), np.cos(2.0 * theta),
                                          monochromator_two_theta_deg)
