"""Measured-pattern file formats (xtalspec.spectra.pattern_formats): each format read from the
real file of the development set resources/measured/xrd (points, 2theta grid, wavelength, a
known reflection found where the structure puts it), and hostile variants of each format ending
in a one-line PatternError naming the file."""

from __future__ import annotations

import bz2
import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from xtalspec.spectra import measured as m
from xtalspec.spectra import pattern_formats as pf
from xtalspec.spectra.measured import PatternError

DATA = Path(__file__).resolve().parents[1] / "resources" / "measured" / "xrd"
CUKA = m.WAVELENGTHS["CuKa"]


def two_theta_of(d: float, wavelength: float) -> float:
    return float(np.degrees(2.0 * np.arcsin(wavelength / (2.0 * d))))


def d_hexagonal(h, k, l, a, c):
    return 1.0 / np.sqrt(4.0 / 3.0 * (h * h + h * k + k * k) / a**2 + l * l / c**2)


def d_orthorhombic(h, k, l, a, b, c):
    return 1.0 / np.sqrt((h / a) ** 2 + (k / b) ** 2 + (l / c) ** 2)


def d_cubic(h, k, l, a):
    return a / np.sqrt(h * h + k * k + l * l)


def read(name):
    return m.read_pattern_with_meta(DATA / name)


def assert_grid(x, n, start, end, step, tol=1e-6):
    assert len(x) == n
    assert x[0] == pytest.approx(start, abs=tol) and x[-1] == pytest.approx(end, abs=tol)
    assert np.allclose(np.diff(x), step, atol=1e-6)


def assert_peak(name, expected_two_theta, wavelength=None, tol=0.1):
    """A peak is found within ``tol`` degrees of ``expected_two_theta`` (wavelength: the file's)."""
    result = m.profile_from_pattern(DATA / name, wavelength)
    found = result.peaks["two_theta"].to_numpy()
    nearest = found[np.argmin(np.abs(found - expected_two_theta))]
    assert abs(nearest - expected_two_theta) < tol, (name, expected_two_theta, nearest)
    return result


def one_line_error(path, call=m.read_pattern) -> str:
    with pytest.raises(PatternError) as err:
        call(path)
    text = str(err.value)
    assert text.startswith(str(path)) and "\n" not in text, text
    return text


# --------------------------------------------------------------------------- the development set


def test_every_file_of_the_development_set_is_read():
    rows = list(csv.DictReader(open(DATA / "LABELS.csv")))
    assert len(rows) == 25
    for row in rows:
        x, y, meta = read(row["file"])
        assert len(x) > 1000 and np.all(np.diff(x) > 0) and y.max() > 0, row["file"]
        assert meta["format"].split("+")[0] in pf.FORMATS


@pytest.mark.parametrize("name, expected", [
    ("pdcifplotter_row_Cu_676a.xy", "columns"), ("autofp_dsmo.dat", "columns"),
    ("autofp_pbsox.dat", "fullprof"), ("objcryst_fox_cime.dat", "fullprof"),
    ("bborietveld_LiCoO2.UXD", "uxd"), ("rietan2000_BaSO4E.int", "igor"),
    ("rietan2000_FapatiteE.int", "rietan-general"), ("dash_Tutorial_01.xye", "dash-xye"),
    ("maud_CPD-Y2O3.PRN", "columns"), ("rbm2o5f_RbNb2O5F.xrdml", "xrdml"),
    ("objcryst_fox_ktartrate.xml", "fox-xml"), ("xrayutilities_LaB6_d500_si_psd.xye.bz2", "columns+bz2"),
])
def test_format_detected(name, expected):
    assert read(name)[2]["format"] == expected


def test_format_is_detected_on_content_not_extension(tmp_path):
    for name, kind in (("rbm2o5f_RbNb2O5F.xrdml", "xrdml"), ("autofp_pbsox.dat", "fullprof"),
                       ("bborietveld_LiCoO2.UXD", "uxd"), ("xrayutilities_LaB6_d500_si_psd.xye.bz2", "columns+bz2")):
        renamed = tmp_path / "scan.xy"
        shutil.copy(DATA / name, renamed)
        x, _, meta = m.read_pattern_with_meta(renamed)
        assert meta["format"] == kind and np.array_equal(x, read(name)[0])


def test_columns_corundum():
    x, y, meta = read("pdcifplotter_row_Cu_676a.xy")
    assert meta == {"format": "columns", "wavelength": None, "notes": []}
    assert len(x) == 7790 and x[0] == 10.0 and x[-1] == pytest.approx(135.00488)
    result = assert_peak("pdcifplotter_row_Cu_676a.xy", 35.15, "CuKa")  # corundum (104)
    assert_peak("pdcifplotter_row_Cu_676a.xy", 43.36, "CuKa")  # (113)
    assert result.file_wavelength is None and result.format == "columns"


def test_xrdml():
    x, y, meta = read("rbm2o5f_RbNb2O5F.xrdml")
    assert_grid(x, 8758, 5.00656514, 119.98845054, (119.98845054 - 5.00656514) / 8757)
    assert y[:3].tolist() == [27110, 27849, 27247]  # counts, not divided by the counting time
    # Ka1 1.5405980, Ka2 1.5444260 weighted 1 : 0.5, as radiation.WAVELENGTHS["CuKa"] does
    assert meta["wavelength"] == pytest.approx((1.5405980 + 0.5 * 1.5444260) / 1.5, abs=1e-9)
    assert meta["wavelength"] == pytest.approx(CUKA, abs=1e-4)
    # pyrochlore (Fd-3m): (222) and (440) of one cubic cell
    result = assert_peak("rbm2o5f_RbNb2O5F.xrdml", 29.42)
    found = result.peaks["two_theta"].to_numpy()
    p222 = found[np.argmin(np.abs(found - 29.42))]
    a = result.wavelength / (2 * np.sin(np.radians(p222 / 2))) / d_cubic(2, 2, 2, 1.0)
    assert 10.3 < a < 10.7
    assert np.min(np.abs(found - two_theta_of(d_cubic(4, 4, 0, a), result.wavelength))) < 0.05


def test_xrdml_other_files_of_the_series():
    x, _, meta = read("namo2f2_NaNbO2F2_rt.xrdml")
    assert len(x) == 9900 and x[0] == pytest.approx(5.01676514) and x[-1] == pytest.approx(134.99343336)
    x, _, meta = read("namo2f2_NaTaO2F2_300C.xrdml")
    assert len(x) == 6855 and x[0] == pytest.approx(9.99846514) and meta["format"] == "xrdml"


def test_fullprof_free_format():
    x, y, meta = read("autofp_pbsox.dat")
    assert_grid(x, 6001, 10.0, 160.0, 0.025)
    assert y[:3].tolist() == [179, 147, 165] and y[-1] == 368 and meta["wavelength"] is None
    assert "PbSO4" in meta["notes"][0]  # the title after start/step/end
    # anglesite PbSO4 (Pnma, a 8.482 b 5.398 c 6.959): its three strongest lines (011), (210), (211)
    for hkl in ((0, 1, 1), (2, 1, 0), (2, 1, 1)):
        assert_peak("autofp_pbsox.dat", two_theta_of(d_orthorhombic(*hkl, 8.482, 5.398, 6.959), CUKA), "CuKa")
    x, _, _ = read("objcryst_fox_cime.dat")
    assert_grid(x, 7699, 8.01, 84.99, 0.01)
    x, _, _ = read("autofp_tbbaco.dat")
    assert_grid(x, 5253, 15.0, 120.04, 0.02)


def test_uxd():
    x, y, meta = read("bborietveld_LiCoO2.UXD")
    assert_grid(x, 4001, 15.985, 135.985, 0.03)
    assert y[:3].tolist() == [649, 609, 622] and y[-1] == 401
    assert meta["wavelength"] == pytest.approx((1.5406 + 0.514 * 1.54443) / 1.514, abs=1e-9)
    # LiCoO2 (R-3m, a 2.8156 c 14.0542): (003) and (104)
    assert_peak("bborietveld_LiCoO2.UXD", two_theta_of(d_hexagonal(0, 0, 3, 2.8156, 14.0542), CUKA), tol=0.15)
    assert_peak("bborietveld_LiCoO2.UXD", two_theta_of(d_hexagonal(1, 0, 4, 2.8156, 14.0542), CUKA), tol=0.15)


def test_rietan_general():
    x, y, meta = read("rietan2000_FapatiteE.int")
    assert_grid(x, 5751, 15.0, 130.0, 0.02)
    assert y[:2].tolist() == [609, 612] and meta["wavelength"] is None
    # fluorapatite (P6_3/m, a 9.3684 c 6.8841): (211), (300)
    for hkl in ((2, 1, 1), (3, 0, 0)):
        assert_peak("rietan2000_FapatiteE.int", two_theta_of(d_hexagonal(*hkl, 9.3684, 6.8841), CUKA), "CuKa")


def test_igor_text_wave():
    x, y, meta = read("rietan2000_BaSO4E.int")
    assert_grid(x, 6050, 14.018, 134.998, 0.02)
    assert y[0] == pytest.approx(18.029055360538) and meta["format"] == "igor"
    # barite (Pnma, a 8.8842 b 5.4559 c 7.1569), Cu Ka1: (211), (102)
    for hkl in ((2, 1, 1), (1, 0, 2)):
        assert_peak("rietan2000_BaSO4E.int", two_theta_of(d_orthorhombic(*hkl, 8.8842, 5.4559, 7.1569), 1.540593),
                    1.540593)


def test_dash_xye():
    x, y, meta = read("dash_Tutorial_01.xye")
    assert_grid(x, 9751, 5.0, 44.0, 0.004)
    assert meta["wavelength"] == 1.1294 and y[0] == 81.96
    # hydrochlorothiazide P2_1, b = 8.498: (020), at the file's own wavelength
    result = assert_peak("dash_Tutorial_01.xye", two_theta_of(8.498 / 2, 1.1294), None, tol=0.05)
    assert result.wavelength == 1.1294 and result.format == "dash-xye"


def test_maud_prn_cr_line_ends():
    raw = (DATA / "maud_CPD-Y2O3.PRN").read_bytes()
    assert b"\r" in raw and b"\n" not in raw  # old-Mac line ends
    x, y, meta = read("maud_CPD-Y2O3.PRN")
    assert_grid(x, 7251, 5.0, 150.0, 0.02)
    assert_peak("maud_CPD-Y2O3.PRN", two_theta_of(d_cubic(2, 2, 2, 10.604), CUKA), "CuKa")  # Y2O3 (222)


def test_xy_pairs_several_per_line(tmp_path):
    x = np.round(np.arange(20.0, 30.0, 0.05), 3)
    y = 100 + 900 * np.exp(-0.5 * ((x - 25.0) / 0.1) ** 2)
    pairs = np.column_stack([x, y]).reshape(-1, 8)  # four pairs per line
    path = tmp_path / "scan.prn"
    path.write_bytes("\r".join(" ".join(f"{v:.3f}" for v in row) for row in pairs).encode())
    rx, ry, meta = m.read_pattern_with_meta(path)
    assert meta["format"] == "xy-pairs" and np.allclose(rx, x) and np.allclose(ry, y, atol=1e-3)


def test_fox_xml_listed_two_theta():
    x, y, meta = read("objcryst_fox_ktartrate.xml")
    assert len(x) == 7517 and x[0] == 5.0358 and x[-1] == 59.151 and np.allclose(np.diff(x), 0.0072, atol=1e-6)
    assert y[0] == 5609 and meta["wavelength"] == 1.54056
    assert not any("radians" in note for note in meta["notes"])
    # KH tartrate P2_12_12_1, a 7.78447 b 10.6468 c 7.61401 (the file's own Crystal): (210), (130)
    for hkl in ((2, 1, 0), (1, 3, 0)):
        assert_peak("objcryst_fox_ktartrate.xml",
                    two_theta_of(d_orthorhombic(*hkl, 7.78447, 10.6468, 7.61401), 1.54056), tol=0.06)


def test_fox_xml_regular_grid():
    x, y, meta = read("objcryst_fox_brucite-textured.xml")
    assert_grid(x, 7251, 5.0, 150.0, 0.02)  # TThetaMin="5" TThetaStep="0.02": degrees
    assert y[:2].tolist() == [198, 201] and meta["wavelength"] == 1.54184
    # brucite P-3m1, a 3.148 c 4.76862 (the file's Crystal): (001) and (101)
    for hkl in ((0, 0, 1), (1, 0, 1)):
        assert_peak("objcryst_fox_brucite-textured.xml", two_theta_of(d_hexagonal(*hkl, 3.148, 4.76862), 1.54184))


def test_bz2_three_columns_lab6():
    x, y, meta = read("xrayutilities_LaB6_d500_si_psd.xye.bz2")
    assert len(x) == 17381 and x[0] == pytest.approx(4.57, abs=0.01) and x[-1] == pytest.approx(150.58, abs=0.01)
    assert meta["wavelength"] is None
    for hkl in ((1, 0, 0), (1, 1, 0), (1, 1, 1)):  # LaB6 a 4.15692, Cu Ka
        assert_peak("xrayutilities_LaB6_d500_si_psd.xye.bz2", two_theta_of(d_cubic(*hkl, 4.15692), CUKA), "CuKa")
    one_line_error(DATA / "xrayutilities_LaB6_d500_si_psd.xye.bz2", m.profile_from_pattern)  # states none


def test_gzip_reads_as_the_plain_file(tmp_path):
    path = tmp_path / "pbsox.gz"
    path.write_bytes(gzip.compress((DATA / "autofp_pbsox.dat").read_bytes()))
    x, y, meta = m.read_pattern_with_meta(path)
    assert meta["format"] == "fullprof+gzip" and np.array_equal(y, read("autofp_pbsox.dat")[1])


# --------------------------------------------------------------------------- wavelength: given or the file's


def test_given_wavelength_wins_over_the_files():
    mo = m.profile_from_pattern(DATA / "rbm2o5f_RbNb2O5F.xrdml", "MoKa")
    assert mo.wavelength == m.WAVELENGTHS["MoKa"] and mo.file_wavelength == pytest.approx(1.541874, abs=1e-6)
    own = m.profile_from_pattern(DATA / "rbm2o5f_RbNb2O5F.xrdml", "file")
    assert own.wavelength == own.file_wavelength == pytest.approx(1.541874, abs=1e-6)
    raw = m.raw_profile_from_pattern(DATA / "objcryst_fox_ktartrate.xml")
    assert raw.wavelength == 1.54056 and raw.format == "fox-xml"


def test_no_wavelength_anywhere_is_a_clear_error():
    text = one_line_error(DATA / "autofp_pbsox.dat", m.profile_from_pattern)
    assert "no wavelength given" in text and "fullprof" in text
    text = one_line_error(DATA / "autofp_Y2O3.dat", lambda p: m.raw_profile_from_pattern(p, None))
    assert "no wavelength given" in text


def test_cli_takes_the_files_wavelength_when_none_is_given(tmp_path, capsys):
    from xtalspec.cli import main

    assert main(["predict-xrd", str(DATA / "autofp_pbsox.dat"), "--models", str(tmp_path)]) == 2
    assert "no wavelength given" in capsys.readouterr().err
    # read with the file's wavelength; stops only because there are no trained members here
    assert main(["predict-xrd", str(DATA / "objcryst_fox_ktartrate.xml"), "--models", str(tmp_path)]) == 2
    assert "no trained spgvolnet members" in capsys.readouterr().err


def test_prediction_text_says_when_the_given_wavelength_overrode_the_files():
    import pandas as pd

    from xtalspec.prediction.xrd import XRDPrediction

    ranking = pd.DataFrame({"rank": [1], "spacegroup": [227], "p_ensemble": [0.9]})
    measured = m.profile_from_pattern(DATA / "rbm2o5f_RbNb2O5F.xrdml", "MoKa")
    assert "the file (xrdml) states λ = 1.54187 Å; the given 0.71073 Å was used" in \
        XRDPrediction(measured, ranking, None, ["m"]).text
    measured = m.profile_from_pattern(DATA / "rbm2o5f_RbNb2O5F.xrdml", "CuKa")  # 1.54184 vs 1.54187: no note
    assert "states" not in XRDPrediction(measured, ranking, None, ["m"]).text


# --------------------------------------------------------------------------- hostile files

XRDML = """<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5">
 <xrdMeasurement measurementType="Scan">
  <usedWavelength intended="K-Alpha 1"><kAlpha1 unit="Angstrom">1.5405980</kAlpha1>
   <kAlpha2 unit="Angstrom">1.5444260</kAlpha2><ratioKAlpha2KAlpha1>0</ratioKAlpha2KAlpha1></usedWavelength>
  <scan><dataPoints>
   <positions axis="2Theta" unit="deg">{positions}</positions>
   <commonCountingTime unit="seconds">1.0</commonCountingTime>
   <{tag} unit="counts">{counts}</{tag}>
  </dataPoints></scan>
 </xrdMeasurement>
</xrdMeasurements>
"""
COUNTS = " ".join(str(100 + (i % 7) + (900 if 40 <= i <= 42 else 0)) for i in range(100))


def xrdml(positions="<startPosition>20.0</startPosition><endPosition>29.9</endPosition>", tag="intensities",
          counts=COUNTS):
    return XRDML.format(positions=positions, tag=tag, counts=counts)


def test_xrdml_variants(tmp_path):
    path = tmp_path / "a.xrdml"
    path.write_text(xrdml())
    x, y, meta = m.read_pattern_with_meta(path)
    assert_grid(x, 100, 20.0, 29.9, 0.1)
    assert meta["wavelength"] == 1.540598  # ratio 0: Ka1 alone
    listed = " ".join(f"{v:.2f}" for v in np.arange(100) * 0.1 + 20.0)
    path.write_text(xrdml(positions=f"<listPositions>{listed}</listPositions>", tag="counts"))
    assert np.allclose(m.read_pattern(path)[0], x)


@pytest.mark.parametrize("content, phrase", [
    (xrdml()[:700], "not well-formed XML"),  # truncated
    (xrdml().replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                     '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'),
     "DOCTYPE"),  # entity-expansion bomb
    (xrdml().replace("<xrdMeasurements", '<!ENTITY x SYSTEM "file:///etc/passwd">\n<xrdMeasurements'), "ENTITY"),
    (xrdml(counts=""), "no <intensities>"),
    (xrdml(counts="1 2 three"), "'three' is not a number"),
    (xrdml(positions="<startPosition>20</startPosition>"), "endPosition> is missing"),
    (xrdml(positions="<listPositions>20 21 22</listPositions>"), "3 2Theta positions for 100 intensities"),
    (xrdml(positions="<startPosition>30</startPosition><endPosition>20</endPosition>"), "is not a scan"),
    (xrdml().replace("<kAlpha1 unit=\"Angstrom\">1.5405980", "<kAlpha1 unit=\"Angstrom\">154.0"), "plausible"),
    ("<?xml version='1.0'?><svg><g/></svg>", "root <svg>"),
])
def test_hostile_xrdml(tmp_path, content, phrase):
    path = tmp_path / "bad.xrdml"
    path.write_text(content)
    assert phrase in one_line_error(path)


FULLPROF_COUNTS = "\n".join(" ".join(f"{100 + (i + j) % 9:8d}" for j in range(10)) for i in range(0, 100, 10))


@pytest.mark.parametrize("header, counts, phrase", [
    ("10.0 0.0 20.0 title", FULLPROF_COUNTS, "step of 0"),
    ("10.0 -0.1 0.1", FULLPROF_COUNTS, "step of -0.1"),
    ("20.0 0.1 10.0 title", FULLPROF_COUNTS, "not after its start"),
    ("10.0 0.1 30.0 title", FULLPROF_COUNTS, "means 201 points, but 100 counts follow"),
    ("10.0 1e-12 1e6 title", FULLPROF_COUNTS, "but 100 counts follow"),  # no 10^18-point grid is made
    ("10.0 0.1 19.9 title", FULLPROF_COUNTS + "\n 12 x3 14", "'x3' is not a number"),
    ("10.0 0.1 19.9 title", FULLPROF_COUNTS.replace("100", "nan", 1), "non-finite"),
])
def test_hostile_fullprof(tmp_path, header, counts, phrase):
    path = tmp_path / "bad.dat"
    path.write_text(header + "\n" + counts + "\n")
    assert phrase in one_line_error(path)


def test_fullprof_synthetic_is_read(tmp_path):
    path = tmp_path / "good.dat"
    path.write_text("10.0 0.1 19.9 my title\n" + FULLPROF_COUNTS + "\n")
    x, y, meta = m.read_pattern_with_meta(path)
    assert meta["format"] == "fullprof" and len(x) == 100 and x[-1] == pytest.approx(19.9) and y[0] == 100


@pytest.mark.parametrize("content, phrase", [
    ("_WL1=1.5406\n_START=10\n_COUNTS\n 1 2 3\n", "without _STEPSIZE"),
    ("_WL1=1.5406\n_START=10\n_STEPSIZE=0\n_COUNTS\n" + " 1 2 3 4\n" * 20, "must be positive"),
    ("_WL1=1.5406\n_START=10\n_STEPSIZE=0.1\n", "no _COUNTS"),
    ("_WL1=1.5406\n12 13\n", "outside a _COUNTS"),
    ("_WL1=1.5406\n_2THETACOUNTS\n10 1\n10.1 2\n10.2\n", "rows of 2"),
    ("_WL1=99\n_START=10\n_STEPSIZE=0.1\n_COUNTS\n" + " 1 2 3 4\n" * 20, "plausible"),
    ("_START=10\n_STEPSIZE=0.1\n_COUNTS\n" + " 1 2 3 4\n" * 20 + "_START=11\n_STEPSIZE=0.1\n_COUNTS\n"
     + " 1 2 3 4\n" * 20, "overlap"),
])
def test_hostile_uxd(tmp_path, content, phrase):
    path = tmp_path / "bad.uxd"
    path.write_text(content)
    assert phrase in one_line_error(path)


def test_uxd_pairs_and_anode(tmp_path):
    path = tmp_path / "pairs.uxd"
    path.write_text("_ANODE='Mo'\n_2THETACOUNTS\n" + "".join(f"{10 + 0.1 * i:.1f} {100 + i}\n" for i in range(50)))
    x, y, meta = m.read_pattern_with_meta(path)
    assert meta["wavelength"] == m.WAVELENGTHS["MoKa"] and len(x) == 50 and y[-1] == 149


@pytest.mark.parametrize("name, content, phrase", [
    ("g.int", "GENERAL\n 5751\n 15.00 609\n 15.02 612\n" + "".join(f" {15.04 + 0.02 * i:.2f} 600\n" for i in range(30)),
     "announces 5,751 points, the file holds 32"),
    ("g.int", "GENERAL\n many\n 15.00 609\n", "number of points"),
    ("i.int", "IGOR\nWAVES/D wave0 wave1\nBEGIN\n" + "".join(f"\t{10 + 0.1 * i:.1f}\t{i}\n" for i in range(30)),
     "no END"),
    ("i.int", "IGOR\nWAVES/D wave0\nBEGIN\n 1\n 2\nEND\n", "need 2theta and intensity"),
    ("i.int", "IGOR\nBEGIN\n 1 2\nEND\n", "without a WAVES"),
    ("i.int", "IGOR\nWAVES/D a b\nBEGIN\n 10 1 7\nEND\n", "3 values for 2 waves"),
    ("d.xye", "1000\n 5.0 81.96 10.9\n 5.004 71.25 10.2\n", "plausible"),
    ("p.prn", " 5.000 484 5.020 484\n 5.040 484 5.060 457 5.080\n", "even number"),
])
def test_hostile_rietan_igor_dash_pairs(tmp_path, name, content, phrase):
    path = tmp_path / name
    path.write_text(content)
    assert phrase in one_line_error(path)


FOX = """<ObjCryst Date="2008-04-28T20:32:08GMT">
  <Crystal Name="X" SpaceGroup="P 1"><Par Name="a">5</Par></Crystal>
  <PowderPattern Name="p">
    <Radiation>
      <Option Name="Radiation" Choice="1" ChoiceName="{kind}"/>
      <Par Refined="0" Limited="1" Min="0.05" Max="20" Name="Wavelength">1.54056</Par>
    </Radiation>
    {data}
  </PowderPattern>
</ObjCryst>
"""


def test_fox_radians_are_converted(tmp_path):
    x = np.radians(np.arange(10.0, 20.0, 0.05))
    rows = "\n".join(f"{v:.8f} {100 + (i % 5)} 10 0.01" for i, v in enumerate(x))
    path = tmp_path / "rad.xml"
    path.write_text(FOX.format(kind="X-Ray", data=f"<XIobsSigmaWeightList>\n{rows}\n</XIobsSigmaWeightList>"))
    two_theta, _, meta = m.read_pattern_with_meta(path)
    assert np.allclose(two_theta, np.arange(10.0, 20.0, 0.05), atol=1e-5)
    assert any("radians" in note for note in meta["notes"]) and meta["wavelength"] == 1.54056
    grid = "\n".join(f"{100 + (i % 5)} 10 0.01" for i in range(200))
    path.write_text(FOX.format(kind="X-Ray", data=f'<IobsSigmaWeightList TThetaMin="0.1745329" '
                                                  f'TThetaStep="0.000872665">\n{grid}\n</IobsSigmaWeightList>'))
    assert m.read_pattern(path)[0][0] == pytest.approx(10.0, abs=1e-5)


@pytest.mark.parametrize("kind, data, phrase", [
    ("X-Ray", "", "none with observed data"),
    ("Neutron", "<XIobsSigmaWeightList>10 1 1 1\n10.1 2 1 1</XIobsSigmaWeightList>", "only X-ray"),
    ("X-Ray", "<XIobsSigmaWeightList>10 1 1 1\n10.1 2 1</XIobsSigmaWeightList>", "rows of 4"),
    ("X-Ray", '<IobsSigmaWeightList TThetaMin="5" TThetaStep="-1">1 1 1</IobsSigmaWeightList>', "must be positive"),
    ("X-Ray", '<IobsSigmaWeightList TThetaStep="0.02">1 1 1</IobsSigmaWeightList>', "not a number"),
])
def test_hostile_fox(tmp_path, kind, data, phrase):
    path = tmp_path / "bad.xml"
    path.write_text(FOX.format(kind=kind, data=data))
    assert phrase in one_line_error(path)


def test_bz2_bomb_larger_than_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("XTALSPEC_MAX_INPUT_BYTES", str(2**20))
    path = tmp_path / "bomb.xy.bz2"
    payload = b"10.0 1\n" * (2**20 // 7 + 10)  # a little over the cap unpacked
    path.write_bytes(bz2.compress(payload))
    assert path.stat().st_size < 2**20 // 100
    assert "unpacks to more than the 1,048,576-byte limit" in one_line_error(path)
    path.write_bytes(gzip.compress(payload))
    assert "unpacks to more than" in one_line_error(path)
    path.write_bytes(bz2.compress(payload[: 7 * 70000]))  # under the cap: unpacked, refused for its content
    assert "only 1 distinct 2theta" in one_line_error(path)


def test_bz2_bomb_with_the_default_cap_is_not_unpacked_whole(tmp_path):
    path = tmp_path / "bomb.bz2"
    with open(path, "wb") as handle:  # 200 MB of zeros in ~150 bytes per MB
        compressor = bz2.BZ2Compressor(9)
        for _ in range(200):
            handle.write(compressor.compress(b"0" * 2**20))
        handle.write(compressor.flush())
    assert "unpacks to more than" in one_line_error(path)


@pytest.mark.parametrize("make, phrase", [
    (lambda data: bz2.compress(data)[:-20], "truncated bz2"),
    (lambda data: gzip.compress(data)[:-30], "truncated gzip"),
    (lambda data: b"BZh9" + b"\x00garbage" * 10, "corrupt bz2"),
    (lambda data: gzip.compress(bz2.compress(data)), "compressed twice"),
    (lambda data: bz2.compress(data) + b"trailing junk", "unknown data after"),
])
def test_broken_compressed_files(tmp_path, make, phrase):
    path = tmp_path / "scan.xye.bz2"
    path.write_bytes(make((DATA / "autofp_dsmo.dat").read_bytes()))
    assert phrase in one_line_error(path)


def test_concatenated_bz2_streams_are_read_whole(tmp_path):
    data = (DATA / "autofp_dsmo.dat").read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 1
    path = tmp_path / "two.bz2"
    path.write_bytes(bz2.compress(data[:cut]) + bz2.compress(data[cut:]))
    assert np.array_equal(m.read_pattern(path)[1], read("autofp_dsmo.dat")[1])
