"""Simulated spectra of crystal structures: the paper's delta-function XRD profile (more to come)."""

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
