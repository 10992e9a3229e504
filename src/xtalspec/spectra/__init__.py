"""Spectra of crystal structures: XRD (:mod:`.xrd` delta-profile and powder patterns, :mod:`.radiation`
wavelengths and Lorentz-polarisation, :mod:`.measured` measured patterns), PDF (:mod:`.pdf`) and XANES
(:mod:`.feff`, :mod:`.xanes_grid`, :mod:`.xanes_labels`, :mod:`.xanes_measured`).

The delta-profile grid (:data:`N_BINS` bins of 1/d between :data:`INV_D_MIN` and :data:`INV_D_MAX`,
Debye-Waller :data:`B_ISO`) is defined once, in :mod:`.xrd`, and re-exported here."""

from .form_factors import form_factor_coefficients, form_factors
from .xrd import (
    B_ISO,
    BIN_EDGES,
    INV_D_MAX,
    INV_D_MIN,
    N_BINS,
    bin_profile,
    delta_profile,
    delta_profile_sparse,
    delta_profiles,
    from_sparse,
    reflections,
    to_sparse,
)

__all__ = [
    "B_ISO",
    "BIN_EDGES",
    "INV_D_MAX",
    "INV_D_MIN",
    "N_BINS",
    "bin_profile",
    "delta_profile",
    "delta_profile_sparse",
    "delta_profiles",
    "form_factor_coefficients",
    "form_factors",
    "from_sparse",
    "reflections",
    "to_sparse",
]
