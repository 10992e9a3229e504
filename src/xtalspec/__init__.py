"""xtalspec: crystal structures -> simulated spectra -> models that read structure from spectra."""

__version__ = "0.1.0"
