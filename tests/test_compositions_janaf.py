"""JANAF formation-enthalpy source: counts, known values, reject reasons, reductions."""

import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("janaf")

from xtalspec.compositions import (  # noqa: E402
    JANAF_REJECT_REASONS,
    janaf_formation_enthalpies,
    lowest_per_composition,
    remove_outliers,
)
from xtalspec.compositions.janaf import (  # noqa: E402
    COLUMNS,
    KJ_PER_MOL_TO_EV,
    REJECT_COLUMNS,
    _parse,
)


@pytest.fixture(scope="module")
def janaf_tables():
    return janaf_formation_enthalpies()


def test_counts_and_columns(janaf_tables):
    import janaf

    frame, rejects = janaf_tables
    assert list(frame.columns) == COLUMNS
    assert list(rejects.columns) == REJECT_COLUMNS
    # every table of the index ends up exactly once, accepted or rejected
    assert len(frame) + len(rejects) == len(janaf.db)
    assert not set(frame["id"]) & set(rejects["id"])
    assert frame["id"].is_unique and rejects["id"].is_unique
    # several hundred crystalline compounds (542 tables / 337 compositions in janaf 1.4.0)
    assert 300 <= len(frame) <= 1000
    assert 250 <= frame["reduced_formula"].nunique() <= len(frame)
    assert set(frame["phase"]) <= {"cr", "cr,l"}
    assert (frame["source"] == "janaf").all()
    assert (frame["origin"] == f"janaf {janaf.__version__}").all()
    assert set(rejects["reason"]) <= set(JANAF_REJECT_REASONS)
    assert (rejects["source"] == "janaf").all()
    assert rejects["url"].str.startswith("https://janaf.nist.gov/tables/").all()
    assert np.isfinite(frame["formation_enthalpy_eV_per_atom"]).all()
    # unit conversion is consistent row by row
    expect = frame["dHf_298_kJ_per_mol"] * KJ_PER_MOL_TO_EV / frame["n_atoms"]
    np.testing.assert_allclose(frame["formation_enthalpy_eV_per_atom"], expect)
    # every accepted row has at least two elements
    assert (frame["n_atoms"] > 1).all()


@pytest.mark.parametrize("tid, formula, reduced, n_atoms, dhf_kj, ev_atom", [
    ("Al-096", "Al2O3", "Al2O3", 5, -1675.692, -3.4735),  # corundum (alpha)
    ("Mg-008", "MgO", "MgO", 2, -601.241, -3.1157),       # periclase
    ("Fe-030", "Fe2O3", "Fe2O3", 5, -825.503, -1.7111),   # hematite
    ("Ca-014", "CaF2", "CaF2", 3, -1225.912, -4.2352),    # fluorite
])
def test_known_values(janaf_tables, tid, formula, reduced, n_atoms, dhf_kj, ev_atom):
    frame, _ = janaf_tables
    row = frame.set_index("id").loc[tid]
    assert row["formula"] == formula
    assert row["reduced_formula"] == reduced
    assert row["n_atoms"] == n_atoms
    assert row["dHf_298_kJ_per_mol"] == pytest.approx(dhf_kj, abs=1e-3)
    assert row["formation_enthalpy_eV_per_atom"] == pytest.approx(ev_atom, abs=1e-3)


def test_known_values_match_package_tables(janaf_tables):
    """The numbers are the tables' own 298.15 K row, read independently."""
    import janaf

    frame, _ = janaf_tables
    by_id = frame.set_index("id")
    for tid in ("Al-096", "Mg-008", "Al-101", "Fe-030", "Ca-014"):
        table = janaf.Table(tid)
        line = next(ln for ln in table.body.splitlines() if ln.startswith("298.15\t"))
        dhf = float(line.split("\t")[5])
        assert by_id.loc[tid, "dHf_298_kJ_per_mol"] == pytest.approx(dhf)


def test_rejects_reasons(janaf_tables):
    _, rejects = janaf_tables
    reason = rejects.set_index("id")["reason"]
    assert reason["Al-013"] == "not_crystalline"   # AlBr3 (g)
    assert reason["Al-011"] == "not_crystalline"   # AlBr3 (l)
    assert reason["H-064"] == "not_crystalline"    # H2O (g)
    assert reason["H-068"] == "not_crystalline"    # H2O, 500 bar (fl)
    assert reason["Al-006"] == "ion"               # Al+ (g)
    assert reason["D-020"] == "ion"                # e- (ref)
    for tid in ("Al-001", "Al-002", "Al-003", "Al-004", "Al-005", "O-029"):
        assert reason[tid] == "single_element", tid   # Al ref/cr/l/cr,l/g, O2 ref
    counts = rejects["reason"].value_counts()
    assert counts["not_crystalline"] > 500
    assert counts["ion"] > 100
    assert counts["single_element"] > 100


def test_parse_rejects_deuterium_and_garbage():
    comp, err = _parse("D2O")
    assert comp is None and "deuterium" in err
    comp, err = _parse("DyO")  # Dy is not deuterium
    assert comp is not None and err is None
    comp, err = _parse("Xq2O")
    assert comp is None and err


def test_lowest_per_composition_small_frame():
    frame = pd.DataFrame({
        "id": ["a", "b", "c", "d", "e"],
        "reduced_formula": ["Al2O3", "Al2O3", "Al2O3", "MgO", "SiO2"],
        "formation_enthalpy_eV_per_atom": [-3.43, -3.47, -3.45, -3.12, -3.0],
    })
    out = lowest_per_composition(frame).set_index("reduced_formula")
    assert list(out.index) == ["Al2O3", "MgO", "SiO2"]
    assert out.loc["Al2O3", "id"] == "b"
    assert out.loc["Al2O3", "n_entries"] == 3 and out.loc["Al2O3", "n_dropped"] == 2
    assert out.loc["MgO", "n_dropped"] == 0
    assert out["n_dropped"].sum() == len(frame) - len(out)


def test_lowest_per_composition_real(janaf_tables):
    frame, _ = janaf_tables
    low = lowest_per_composition(frame)
    assert low["reduced_formula"].is_unique
    assert len(low) == frame["reduced_formula"].nunique()
    assert low["n_dropped"].sum() == len(frame) - len(low)
    al2o3 = low.set_index("reduced_formula").loc["Al2O3"]
    assert al2o3["formation_enthalpy_eV_per_atom"] == pytest.approx(-3.4735, abs=1e-3)
    assert al2o3["n_entries"] == 5  # alpha, delta, gamma, kappa, cr,l


def test_remove_outliers_five_sigma():
    values = [0.0] * 50 + [1.0] * 50 + [100.0]  # 100 lies > 5 sigma from the mean
    frame = pd.DataFrame({"id": range(len(values)), "x": values})
    kept, removed = remove_outliers(frame, "x", n_sigma=5)
    assert list(removed["x"]) == [100.0]
    assert len(kept) == 100
    # with a looser bound nothing is removed
    kept, removed = remove_outliers(frame, "x", n_sigma=20)
    assert removed.empty and len(kept) == len(frame)
    # non-finite values are removed, never kept
    frame.loc[0, "x"] = math.nan
    kept, removed = remove_outliers(frame, "x", n_sigma=5)
    assert kept["x"].notna().all() and removed["x"].isna().sum() == 1


def test_remove_outliers_real_data_keeps_everything(janaf_tables):
    frame, _ = janaf_tables
    kept, removed = remove_outliers(lowest_per_composition(frame),
                                    "formation_enthalpy_eV_per_atom")
    assert removed.empty  # JANAF values span -4.24 .. +0.33 eV/atom: no 5 sigma outliers
    assert len(kept) == frame["reduced_formula"].nunique()
