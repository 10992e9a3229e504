"""The fixed numbers of the spacegroupMining paper (Lan, Liu, Du & Billinge; after Liu et al. 2019),
each defined once here (or, for the PDF physics of Table 1, in :mod:`xtalspec.spectra.pdf`) and
imported everywhere else: the 45 space groups, the Table-1 parameters of the training PDFs, the
robustness sweeps of Tables 2–5 with the paper's accuracies, and its headline result.

Light on purpose (no pandas, pyarrow or torch), so the command-line parser and the workflow can
read the sweep names and table numbers without importing the data-set code.
"""

from __future__ import annotations

from ..spectra.pdf import QBROAD, QDAMP, QMAX, QMIN, RMAX, RMIN, UISO

# The 45 space groups of the paper (its code), the most common in the ICSD.
PAPER_GROUPS = [2, 4, 9, 11, 12, 13, 14, 15, 19, 33, 36, 47, 55, 58, 60, 61, 62, 63, 64, 65, 71, 87, 88, 122, 123,
                129, 136, 139, 140, 141, 148, 160, 164, 166, 167, 176, 186, 191, 194, 205, 216, 221, 225, 227, 230]
# Table 1 of the paper: the parameters of the training PDFs (the values live in spectra/pdf.py).
PAPER_PARAMS = {"rmin": RMIN, "rmax": RMAX, "qmin": QMIN, "qmax": QMAX, "qdamp": QDAMP, "qbroad": QBROAD, "uiso": UISO}
# The sweeps of Tables 2–5 and the paper's top-6 / top-1 accuracies at each value.
SWEEPS = {
    "rmax": {"table": 2, "values": [10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30], "unit": "Å",
             "top6": [0.648, 0.717, 0.747, 0.778, 0.820, 0.871, 0.882, 0.890, 0.901, 0.901, 0.902],
             "top1": [0.285, 0.367, 0.433, 0.449, 0.511, 0.552, 0.600, 0.617, 0.652, 0.671, 0.677]},
    "qmax": {"table": 3, "values": [12, 15, 18, 21, 23, 24, 27, 30], "unit": "Å⁻¹",
             "top6": [0.777, 0.795, 0.811, 0.822, 0.902, 0.900, 0.805, 0.84],
             "top1": [0.516, 0.591, 0.597, 0.604, 0.677, 0.663, 0.598, 0.610]},
    "qdamp": {"table": 4, "values": [0.0, 0.03, 0.04, 0.06, 0.09, 0.12, 0.15], "unit": "Å⁻¹",
              "top6": [0.861, 0.897, 0.902, 0.879, 0.741, 0.648, 0.578],
              "top1": [0.602, 0.659, 0.677, 0.579, 0.390, 0.294, 0.234]},
    "uiso": {"table": 5, "values": [0.005, 0.006, 0.007, 0.008, 0.009, 0.010], "unit": "Å²",
             "top6": [0.873, 0.895, 0.904, 0.902, 0.900, 0.900],
             "top1": [0.618, 0.649, 0.664, 0.677, 0.666, 0.641]},
}
#: swept parameter -> its table (and figure) number in the paper: {"rmax": 2, "qmax": 3, "qdamp": 4, "uiso": 5}
SWEEP_TABLES = {parameter: sweep["table"] for parameter, sweep in SWEEPS.items()}
PAPER_RESULT = {"top1": 0.677, "top6": 0.902, "original_top1": 0.700, "original_top6": 0.919}
