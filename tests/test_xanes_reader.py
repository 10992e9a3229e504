"""Reading measured K-edge XANES files as XAS users have them, and finding E0 near the K edge.

One test per kind of file on the real file in ``resources/measured/xanes`` (LABELS.csv describes
each file's columns), then synthetic files for the rules that the real ones do not pin down.
The E0 windows are the physically expected main-edge positions: the tabulated edges are those
of the metals (Fe 7112, Ti 4966, V 5465, Mn 6539 eV) and oxides sit a few eV above them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from xtalspec.prediction.xanes import predict_xanes
from xtalspec.spectra.xanes_measured import K_EDGES, XanesFileError, find_edge, normalise, read_xanes

MEASURED = Path(__file__).resolve().parents[1] / "resources" / "measured" / "xanes"


def read(name: str, element: str):
    energy, mu, info = read_xanes(MEASURED / name, element)
    assert info["n_points"] == energy.size and np.all(np.diff(energy) > 0)
    return energy, mu, info


# --------------------------------------------------------------------------- the real files


def test_named_header_three_columns_demeter_xmu():
    """'#%cols: 348 E XMU I0' plus '#   energy xmu i0': xmu is μ already. Pyrite (low-spin Fe2+)."""
    energy, mu, info = read("demeter_fes2_rt01_mar02.xmu", "Fe")
    assert info["columns"] == ["e", "xmu", "i0"] and info["labels_from"] == "cols line"
    assert info["mu_source"] == "mu" and info["mu_from"] == "column 2 (xmu)"
    assert 7113.0 <= info["e0"] <= 7121.0
    assert not info["edge_search"]["widened"]


@pytest.mark.parametrize("name, element, lo, hi", [
    # V2O5: V5+ main edge ~5480 eV; its pre-edge peak (~5470 eV) must not be taken for the edge
    ("demeter_v2o5.stan", "V", 5476.0, 5486.0),
    # PbTiO3: this file's pre-edge peak is at 4966 eV and the main edge rises over 4974–4979 eV
    ("demeter_tipb.305", "Ti", 4972.0, 4980.0),
])
def test_raw_transmission_with_falling_background(name, element, lo, hi):
    energy, mu, info = read(name, element)
    assert info["mu_source"] == "transmission" and info["mu_from"].startswith("ln(i0/itrans) (columns 2, 3")
    assert info["columns"][:3] == ["energy", "i0", "itrans"]
    search = info["edge_search"]
    assert search["pre_edge_slope"] < 0  # ln(I0/It) falls over the pre-edge…
    assert mu[-1] < mu[0] + 0.5 * (mu.max() - mu.min())  # …so strongly that a global rule fails
    assert lo <= info["e0"] <= hi, info["e0"]
    norm, step_info = normalise(energy, mu, info["e0"])
    assert step_info["edge_step"] > 0
    assert abs(np.median(norm[energy < info["e0"] - 40])) < 0.05
    post = (energy > info["e0"] + 50) & (energy < info["e0"] + 200)
    assert np.median(norm[post]) == pytest.approx(1.0, abs=0.15)  # EXAFS wiggles around the step


def test_beamline_counter_names_via_the_mrcat_map():
    """MRCAT 10-ID 'energy mcs3 mcs4 mcs6 mcs5': mcs3 = I0, mcs4 = It. Lepidocrocite, Fe3+."""
    energy, mu, info = read("demeter_lepidocrocite.stan", "Fe")
    assert info["columns"] == ["energy", "mcs3", "mcs4", "mcs6", "mcs5"] and info["labels_from"] == "header line"
    assert info["counter_map"] == "MRCAT (APS 10-ID)"
    assert info["mu_source"] == "transmission" and info["mu_from"].startswith("ln(mcs3/mcs4) (columns 2, 3")
    assert 7120.0 <= info["e0"] <= 7129.0


def test_xdi_like_p65_file():
    """PETRA III P65, 16 columns labelled by the comment line right before the data; energy is
    enc_energy, I0 = VFC01 (column 11), It = VFC02 (column 12). Goethite at 20 K, Fe3+."""
    energy, mu, info = read("araucaria_20K_GOE_Fe_K_240.00000.xdi", "Fe")
    assert len(info["columns"]) == 16 and info["columns"][0] == "encenergy"
    assert info["labels_from"] == "comment line" and info["counter_map"] == "PETRA III P65"
    assert info["mu_source"] == "transmission" and info["mu_from"].startswith("ln(vfc01/vfc02) (columns 11, 12")
    assert energy[0] == pytest.approx(6963.888, abs=1e-3)
    assert 7120.0 <= info["e0"] <= 7129.0


def test_athena_nor_export():
    """Athena .nor (XDI header, e norm nbkg flat fbkg nder nsec): the norm column. Rutile, Ti4+."""
    energy, mu, info = read("pyfitit_LC12_Rutile.nor", "Ti")
    assert info["format"] == "xdi" and info["labels_from"] == "xdi"
    assert info["columns"] == ["energy", "norm", "nbkg", "flat", "fbkg", "nder", "nsec"]
    assert info["mu_source"] == "normalised" and info["mu_from"] == "column 2 (norm)"
    assert info["element"] == "Ti" and info["edge"] == "K"
    assert 4975.0 <= info["e0"] <= 4985.0  # Athena's own e0 in the header: 4979.0


def test_tetrahedral_ti_pre_edge_peak_is_not_the_edge():
    """TS-1: the 4970 eV pre-edge peak reaches 0.8 of the step and is steeper than the edge."""
    _, _, info = read("pyfitit_LC43_TS-1_dehyd.nor", "Ti")
    assert 4976.0 <= info["e0"] <= 4988.0, info["e0"]


def test_decimal_comma_file():
    """'6862,267 -0,0012602885': a comma is the decimal mark, not a separator. FeO, Fe2+."""
    energy, mu, info = read("pyfitit_FeO.dat", "Fe")
    assert info["decimal_comma"] and info["columns"] is None
    assert info["mu_source"] == "mu" and info["mu_from"] == "column 2"
    assert energy[0] == pytest.approx(6862.267) and mu[0] == pytest.approx(-0.0012602885)
    assert info["n_points"] == 377
    assert 7116.0 <= info["e0"] <= 7124.0


def test_tab_separated_decimal_comma_with_a_title_line():
    """'\\tMnO' then 'energy<TAB>μ' with decimal commas and CRLF line ends. MnO, Mn2+."""
    energy, mu, info = read("pyfitit_002_MnO.dat", "Mn")
    assert info["decimal_comma"] and info["n_points"] == 400 and info["n_skipped_lines"] == 0
    assert info["mu_source"] == "mu"
    assert energy[0] == 6520.0 and energy[1] == pytest.approx(6520.25062656642)
    assert 6540.0 <= info["e0"] <= 6548.0


def test_normalised_two_columns():
    """'# data from ifeffit' / '#   energy norm': normalised μ. Hematite, Fe3+."""
    energy, mu, info = read("xafsfun_fe2o3.dat", "Fe")
    assert info["columns"] == ["energy", "norm"] and info["labels_from"] == "comment line"
    assert info["mu_source"] == "normalised"
    assert 7120.0 <= info["e0"] <= 7129.0


def development_set() -> list[dict]:
    with open(MEASURED / "LABELS.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("row", development_set(), ids=lambda row: row["file"])
def test_every_development_file_reads_with_e0_near_its_k_edge(row):
    """All 27 files: read, E0 in the first window and within 25 eV of the tabulated edge, edge step
    positive after normalisation."""
    energy, mu, info = read(row["file"], row["element"])
    assert info["mu_source"] in ("normalised", "mu", "transmission")
    assert not info["edge_search"]["widened"]
    assert abs(info["e0"] - K_EDGES[row["element"]]) < 25.0, info["e0"]
    assert normalise(energy, mu, info["e0"])[1]["edge_step"] > 0


# --------------------------------------------------------------------------- synthetic files


def edge_curve(energy, e0, step=1.0, background=0.0, slope=0.0):
    x = np.asarray(energy, dtype=float) - e0
    return step * (0.5 + np.arctan(x / 1.5) / np.pi + 0.2 * np.exp(-0.5 * ((x - 6) / 3) ** 2)) + background + slope * x


def transmission_rows(e0=7122.0):
    energy = np.concatenate([np.arange(6950.0, 7100.0, 5.0), np.arange(7100.0, 7160.0, 0.5),
                             np.arange(7160.0, 7400.0, 3.0)])
    i0 = 5e4 * (1 + 0.02 * np.sin(energy / 50))
    mu = edge_curve(energy, e0, step=0.4, background=1.0, slope=-8e-4)
    return energy, i0, i0 * np.exp(-mu), mu


@pytest.mark.parametrize("comments", [
    ["# E mu I0", "# FeO powder, 4 layers of tape"],  # labels-like, but not right before the data
    ["# mu of FeO"],  # right before the data and three tokens, but names no energy column
    ["# Fe K edge 20 K"],  # a title
])
def test_a_comment_line_that_is_not_labels_is_not_used(tmp_path, comments):
    energy, i0, it, mu = transmission_rows()
    lines = comments + [f"{e:.2f} {a:.3f} {b:.3f}" for e, a, b in zip(energy, i0, it)]
    path = tmp_path / "scan.dat"
    path.write_text("\n".join(lines) + "\n")
    e, m, info = read_xanes(path, "Fe")
    assert info["columns"] is None and info["labels_from"] is None
    assert info["mu_source"] == "transmission" and info["mu_from"].startswith("ln(I0/It) (columns 2, 3")
    assert m == pytest.approx(mu, abs=1e-4)
    assert abs(info["e0"] - 7122.0) < 1.0


def test_leading_lines_with_another_column_count_are_skipped(tmp_path):
    energy, i0, it, mu = transmission_rows()
    lines = ["Fe K-edge scan", "1 2", "3 4", "Energy I0 It"] + [f"{e:.2f}\t{a:.3f}\t{b:.3f}"
                                                              for e, a, b in zip(energy, i0, it)]
    path = tmp_path / "scan.txt"
    path.write_text("\n".join(lines) + "\n")
    _, m, info = read_xanes(path, "Fe")
    assert info["n_skipped_lines"] == 2 and info["columns"] == ["energy", "i0", "itrans"]
    assert info["labels_from"] == "header line" and m == pytest.approx(mu, abs=1e-4)
    with pytest.raises(XanesFileError, match="line 40: 2 columns, the data have 3"):
        path.write_text("\n".join(lines[:39] + ["7000.0 1.0"] + lines[39:]) + "\n")
        read_xanes(path)


def test_energy_in_kev_is_converted(tmp_path):
    energy = np.arange(7000.0, 7400.0, 0.5) / 1000.0
    mu = edge_curve(energy * 1000, 7118.0, step=0.8, background=0.2)
    path = tmp_path / "kev.dat"
    np.savetxt(path, np.column_stack([energy, mu]), fmt="%.4f %.6f", header="energy mu")
    e, m, info = read_xanes(path, "Fe")
    assert info["energy_unit"] == "keV" and e == pytest.approx(energy * 1000, abs=1e-6)
    assert info["mu_source"] == "mu" and info["mu_from"] == "column 2 (mu)"
    assert abs(info["e0"] - 7118.0) < 0.5


def test_steeply_falling_background_is_subtracted_before_the_search():
    """A heavy matrix (Ti in a Pb compound): ln(I0/It) falls by twice the edge step over 100 eV,
    so μ above the edge window is lower than below it until the pre-edge line is subtracted."""
    energy = np.concatenate([np.arange(4800.0, 4950.0, 5.0), np.arange(4950.0, 5030.0, 0.3),
                             np.arange(5030.0, 5300.0, 4.0)])
    mu = edge_curve(energy, 4980.0, step=0.3, background=3.0, slope=-0.006)
    e0, info = find_edge(energy, mu, "Ti")
    assert info["pre_edge_slope"] == pytest.approx(-0.006, rel=0.05)
    assert abs(e0 - 4980.0) < 0.5 and not info["widened"]


def test_calibration_offset_widens_the_window(tmp_path):
    energy = np.arange(6950.0, 7400.0, 0.5)
    e0, info = find_edge(energy, edge_curve(energy, K_EDGES["Fe"] + 70.0), "Fe")
    assert info["widened"] and abs(e0 - K_EDGES["Fe"] - 70.0) < 0.5
    e0, info = find_edge(energy, edge_curve(energy, K_EDGES["Fe"] + 30.0), "Fe")
    assert not info["widened"] and abs(e0 - K_EDGES["Fe"] - 30.0) < 0.5


@pytest.mark.parametrize("lo, hi, element", [(4900.0, 5250.0, "Fe"), (6900.0, 7100.0, "Fe"), (7140.0, 7600.0, "Fe")])
def test_a_file_missing_the_edge_window_is_one_line_error(tmp_path, lo, hi, element):
    energy = np.arange(lo, hi, 0.5)
    path = tmp_path / "no_edge.dat"
    np.savetxt(path, np.column_stack([energy, edge_curve(energy, 0.5 * (lo + hi))]), header="energy mu")
    read_xanes(path)  # readable without an element
    with pytest.raises(XanesFileError, match=r"do not reach the Fe K edge \(7112 eV; E0 search window 7092–7152 eV\)") as err:
        read_xanes(path, element)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    with pytest.raises(XanesFileError, match="do not reach the Fe K edge"):
        predict_xanes(path, element, tmp_path / "no_models")
