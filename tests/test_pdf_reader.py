"""Reading the PDF files users have: real PDFgetX2, PDFgetX3, xPDFsuite and Mantid (neutron)
files of the measured-data development set (resources/measured/pdf, provenance in its
PROVENANCE.csv), and RMCProfile, g(r) and plain layouts made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xtalspec.prediction.pdf import PDFFileError, read_pdf_file

MEASURED = Path(__file__).resolve().parents[1] / "resources" / "measured" / "pdf"


@pytest.mark.parametrize("name, layout_start, radiation, n, r_last, header", [
    # PDFgetX2: a long Get_XPDF header with numeric table rows, then '##### start data', '#S', '#L' and
    # four columns r G dr dG
    ("srmise_Ag-nyquist-qmax30.gr", "start-data", "x-ray", 334, 34.98, {"qmax": 30.0}),
    ("srmise_TiO2-fine-qmax26.gr", "start-data", "x-ray", 1999, 59.97, {"qmax": 26.0}),
    # PDFgetX3 configuration header
    ("Ni_bulk_xray_diffpymorph.gr", "start-data", "x-ray", 6001, 60.0, {"qmax": 25.0, "rstep": 0.01}),
    # xPDFsuite
    ("SrFe2As2_150K.gr", "start-data", "x-ray", 10001, 100.0, {"qmax": 25.0, "qmin": 0.4}),
    # Mantid (NOMAD): '#Comment: neutron, Qmin=0.32, Qmax=40', four columns
    ("addie_NOM_127827.gr", "start-data", "neutron", 2501, 50.02, {"qmax": 40.0, "qmin": 0.32}),
])
def test_real_files_of_each_kind_are_read(name, layout_start, radiation, n, r_last, header):
    measured = read_pdf_file(MEASURED / name)
    assert measured.layout.startswith(layout_start) and measured.radiation == radiation
    assert len(measured.r) == len(measured.g) == n and measured.r[-1] == pytest.approx(r_last, abs=0.01)
    assert np.all(np.diff(measured.r) > 0) and np.ptp(measured.g) > 0
    for key, value in header.items():
        assert measured.header[key] == pytest.approx(value)


def test_every_development_file_is_read():
    names = [line.split(",")[0] for line in (MEASURED / "LABELS.csv").read_text().splitlines()[1:] if line.strip()]
    assert len(names) >= 15
    for name in names:
        assert len(read_pdf_file(MEASURED / name).r) > 100


def test_rmcprofile_layout(tmp_path):
    r = np.arange(0.05, 20, 0.05)
    path = tmp_path / "sample.dat"
    path.write_text(f"{len(r)}\nRMCProfile output  G(r) of something\n"
                    + "\n".join(f"{x:.3f} {np.sin(2 * x):.5f}" for x in r) + "\n")
    measured = read_pdf_file(path)
    assert measured.layout.startswith("RMCProfile") and len(measured.r) == len(r)


def test_pair_distribution_g_is_converted_to_reduced_g(tmp_path):
    r = np.arange(0.5, 20, 0.02)
    g_small = 1 + 0.5 * np.sin(3 * r) * np.exp(-0.1 * r)
    path = tmp_path / "gofr.gr"
    path.write_text("#### start data\n#S 1\n#L r g(r)\n" + "\n".join(f"{a:.3f} {b:.6f}" for a, b in zip(r, g_small)))
    measured = read_pdf_file(path)
    assert measured.normalisation.startswith("r(g(r)-1)")
    assert np.allclose(measured.g, r * (g_small - 1), atol=1e-5)


def test_numeric_header_lines_without_a_marker_are_not_data(tmp_path):
    r = np.arange(0.01, 30, 0.01)
    path = tmp_path / "plain.gr"
    path.write_text("numRpoints=2999 maxR=30.0 qmax=22\n  0    1    0    1    2    0.7    36.0\n"
                    "some words\n" + "\n".join(f"{a:.2f} {np.sin(3 * a):.5f}" for a in r) + "\n")
    measured = read_pdf_file(path)
    assert len(measured.r) == len(r) and measured.header["qmax"] == 22.0


def test_start_data_with_junk_after_it_fails_clearly(tmp_path):
    path = tmp_path / "bad.gr"
    path.write_text("#### start data\n1.0 2.0\n1.1 2.1\nabc def\n")
    with pytest.raises(PDFFileError, match="non-numeric"):
        read_pdf_file(path)
