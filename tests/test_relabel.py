"""spglib relabelling: a CIF whose stated space group is a subgroup of its real symmetry."""

from __future__ import annotations

import pytest

from xtalspec.structures.cleaning import CleaningSettings, cif_spacegroup, parse_and_check
from xtalspec.structures.ingest import process_entry
from xtalspec.structures.records import structure_from_json
from xtalspec.structures.sources.amcsd import AMCSDSource
from xtalspec.structures.sources.base import Provenance, RawEntry

from conftest import NACL, RUTILE_AS_P1, nacl_with

PROV = Provenance("cif_dir", "test", "memory", "test")


def row_for(text: str) -> dict:
    row = process_entry(RawEntry("x", text.encode(), PROV), CleaningSettings(), 0.01, 5.0)
    assert isinstance(row, dict), row
    return row


def test_rutile_stated_p1_is_relabelled_to_p42_mnm():
    row = row_for(RUTILE_AS_P1)
    assert (row["spacegroup_cif"], row["spacegroup"], row["relabelled"]) == (1, 136, True)
    assert row["n_atoms"] == 6 and row["volume"] == pytest.approx(4.5937**2 * 2.9587, rel=1e-6)


def test_real_amcsd_entry_stated_as_subgroup_is_relabelled():
    # AMCSD 0011566, CrS (NiAs type) is stated in P6_3mc (186), a polar subgroup of its
    # real symmetry P6_3/mmc (194).
    entry = next(AMCSDSource().iter_entries(["0011566"]))
    row = process_entry(entry, CleaningSettings(), 0.01, 5.0)
    assert row["spacegroup_cif_symbol"] == "P 63 m c"
    assert (row["spacegroup_cif"], row["spacegroup"], row["relabelled"]) == (186, 194, True)


def test_consistent_label_is_not_relabelled_and_primitive_is_standard():
    row = row_for(NACL)
    assert (row["spacegroup_cif"], row["spacegroup"], row["relabelled"]) == (225, 225, False)
    primitive = structure_from_json(row["primitive"])
    assert len(primitive) == 2
    assert primitive.volume == pytest.approx(5.6402**3 / 4, rel=1e-6)
    assert row["log_volume_per_atom"] == pytest.approx(__import__("math").log(5.6402**3 / 8), rel=1e-9)


def test_cif_label_from_operations_or_hermann_mauguin_name():
    ops_only = NACL.replace("_symmetry_space_group_name_H-M 'F m -3 m'\n_space_group_IT_number 225\n", "")
    parsed = parse_and_check(ops_only.encode(), CleaningSettings())
    assert cif_spacegroup(parsed.block, parsed.structure.lattice) == (1, None)  # only x,y,z listed
    asymmetric_unit = nacl_with(sites="Na1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1")
    hm_only = asymmetric_unit.replace("_space_group_IT_number 225\n", "").replace(
        "loop_\n_space_group_symop_operation_xyz\nx,y,z\n", "")
    parsed = parse_and_check(hm_only.encode(), CleaningSettings())
    assert cif_spacegroup(parsed.block, parsed.structure.lattice) == (225, "F m -3 m")
