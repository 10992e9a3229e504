"""Bad CIFs end in the rejects table with their reason; good ones in the same run land in shards."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from xtalspec.cli import main
from xtalspec.structures.cleaning import CleaningSettings, Reject, cif_number, parse_and_check

from conftest import CELL_CUBIC, NACL, RUTILE_AS_P1, nacl_with

BIG_NACL_SITES = "\n".join(
    f"X{i}{j}{k}{s} {el} {(x + i) / 2} {(y + j) / 2} {(z + k) / 2} 1"
    for i in range(2) for j in range(2) for k in range(2)
    for s, (el, x, y, z) in enumerate([("Na", 0, 0, 0), ("Na", 0, .5, .5), ("Na", .5, 0, .5), ("Na", .5, .5, 0),
                                        ("Cl", .5, .5, .5), ("Cl", .5, 0, 0), ("Cl", 0, .5, 0), ("Cl", 0, 0, .5)])
)

# file name -> (content, expected reason)
BAD_CIFS = {
    "empty.cif": ("   \n", "empty_file"),
    "binary.cif": (b"\x00\x01\x02data_x\x00", "binary_content"),
    "truncated.cif.gz": (gzip.compress(NACL.encode())[:40], "unreadable"),
    "not_a_cif.cif": ("this is not a CIF at all\n'unbalanced quote\n", "cif_syntax"),
    "no_cell.cif": (NACL.replace("_cell_length_c 5.6402\n", ""), "missing_cell"),
    "negative_cell.cif": (nacl_with(cell=CELL_CUBIC.format(a=-5.64)), "invalid_cell"),
    "flat_cell.cif": (NACL.replace("_cell_angle_gamma 90", "_cell_angle_gamma 180"), "invalid_cell"),
    "no_sites.cif": (NACL.split("loop_\n_atom_site_label")[0], "no_sites"),
    "bad_coordinates.cif": (nacl_with(sites="Na1 Na ? 0 0 1\nCl1 Cl 0.5 0.5 0.5 1"), "bad_coordinates"),
    "occupancy.cif": (nacl_with(sites="Na1 Na 0 0 0 1.5\nCl1 Cl 0.5 0.5 0.5 1"), "invalid_occupancy"),
    "unknown_element.cif": (nacl_with(sites="Xx1 Xx 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1"), "unknown_element"),
    "ammonium_label.cif": (nacl_with(sites="NH41 NH4 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1"), "unknown_element"),
    "californium.cif": (nacl_with(sites="Cf1 Cf 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1"), "element_z_ge_98"),
    "overlap.cif": (NACL.replace("Cl4 Cl 0 0 0.5 1", "Cl4 Cl 0.02 0 0 1"), "overlapping_atoms"),
    "nm_not_angstrom.cif": (nacl_with(cell=CELL_CUBIC.format(a=564.02)), "implausible_density"),
    "too_many.cif": (nacl_with(sites=BIG_NACL_SITES, cell=CELL_CUBIC.format(a=11.2804)), "too_many_atoms"),
    "hydroxyl_label.cif": (nacl_with(sites="Na1 Na 0 0 0 1\nOH1 OH 0.5 0.5 0.5 1"), "unassigned_site"),
}
GOOD_CIFS = {"nacl.cif": NACL, "oxides/rutile.cif": RUTILE_AS_P1, "nacl_gz.cif.gz": gzip.compress(NACL.encode())}


def test_cif_number_parses_uncertainties():
    assert cif_number("5.431(2)") == pytest.approx(5.431)
    assert cif_number("-0.25") == -0.25
    assert cif_number("?") is None and cif_number("1.2.3") is None and cif_number("5.4(2") is None


@pytest.mark.parametrize("name", sorted(n for n in BAD_CIFS if not n.endswith(".gz")))  # .gz: the source's job
def test_each_bad_cif_has_its_reason(name):
    content, reason = BAD_CIFS[name]
    data = content if isinstance(content, bytes) else content.encode()
    result = parse_and_check(data, CleaningSettings(max_atoms=8))
    assert isinstance(result, Reject), f"{name} was accepted"
    assert result.reason == reason, (name, result)
    assert result.detail


def test_good_cifs_parse_with_partial_occupancy_kept():
    disordered = nacl_with(sites="Na1 Na 0 0 0 0.5\nK1 K 0 0 0 0.5\nCl1 Cl 0.5 0.5 0.5 1")
    parsed = parse_and_check(disordered.encode(), CleaningSettings())
    assert not isinstance(parsed, Reject)
    assert not parsed.structure.is_ordered
    assert parsed.structure[0].species.get_el_amt_dict() == {"Na": 0.5, "K": 0.5}


def test_one_run_rejects_every_bad_kind_and_keeps_the_good(write_cifs, tmp_path):
    root = write_cifs({**{k: v[0] for k, v in BAD_CIFS.items()}, **GOOD_CIFS})
    out = tmp_path / "out"
    assert main(["ingest", "--source", "cif_dir", "--path", str(root), "--out", str(out),
                 "--n-shards", "3", "--max-atoms", "8"]) == 0
    rejects = pd.read_parquet(out / "rejects.parquet")
    got = dict(zip(rejects["id"], rejects["reason"]))
    expected = {name: reason for name, (_, reason) in BAD_CIFS.items()}
    assert got == expected
    assert len(set(expected.values())) >= 12
    assert rejects["detail"].str.len().min() > 0
    shards = pd.concat(pd.read_parquet(out / f"shard-{i:03d}.parquet") for i in range(3))
    assert sorted(shards["id"]) == sorted(GOOD_CIFS)
    summary = (out / "summary.md").read_text()
    for reason in set(expected.values()):
        assert reason in summary


def test_close_pairs_agrees_with_pymatgen_neighbour_list():
    from pymatgen.core import Lattice, Structure

    from xtalspec.structures.cleaning import close_pairs

    rng = np.random.default_rng(0)
    lattice = Lattice.from_parameters(7.1, 8.3, 9.2, 81, 97, 104)
    structure = Structure(lattice, ["O"] * 60, rng.random((60, 3)))
    i, j, d = close_pairs(structure, 1.7)
    ours = sorted((int(a), int(b), round(float(x), 6)) for a, b, x in zip(i, j, d))
    ci, cj, _, cd = structure.get_neighbor_list(1.7)
    theirs = sorted({(int(min(a, b)), int(max(a, b)), round(float(x), 6)) for a, b, x in zip(ci, cj, cd)})
    assert ours == theirs and len(ours) > 10
