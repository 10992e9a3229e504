"""Shared test helpers: small real CIFs written by the tests themselves."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", module="pymatgen")

CELL_CUBIC = """_cell_length_a {a}
_cell_length_b {a}
_cell_length_c {a}
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
"""

NACL = """data_NaCl
_chemical_formula_sum 'Na Cl'
_cell_length_a 5.6402
_cell_length_b 5.6402
_cell_length_c 5.6402
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
_space_group_IT_number 225
loop_
_space_group_symop_operation_xyz
x,y,z
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na 0 0 0 1
Na2 Na 0 0.5 0.5 1
Na3 Na 0.5 0 0.5 1
Na4 Na 0.5 0.5 0 1
Cl1 Cl 0.5 0.5 0.5 1
Cl2 Cl 0.5 0 0 1
Cl3 Cl 0 0.5 0 1
Cl4 Cl 0 0 0.5 1
"""

# Rutile TiO2 (P4_2/mnm, 136), written out in full with only the identity operation and
# stated as P1: the label is a subgroup of the real symmetry, so spglib must relabel it.
RUTILE_AS_P1 = """data_rutile_P1
_cell_length_a 4.5937
_cell_length_b 4.5937
_cell_length_c 2.9587
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
_symmetry_Int_Tables_number 1
loop_
_symmetry_equiv_pos_as_xyz
x,y,z
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Ti1 Ti 0 0 0
Ti2 Ti 0.5 0.5 0.5
O1 O 0.3053 0.3053 0
O2 O 0.6947 0.6947 0
O3 O 0.8053 0.1947 0.5
O4 O 0.1947 0.8053 0.5
"""


def nacl_with(sites: str | None = None, header: str | None = None, cell: str | None = None) -> str:
    """NaCl variants: replace the site rows, the header lines, or the cell block."""
    text = NACL
    if sites is not None:
        head, _, _ = text.partition("Na1 Na")
        text = head + sites.strip() + "\n"
    if cell is not None:
        start = text.index("_cell_length_a")
        end = text.index("_symmetry_space_group_name_H-M")
        text = text[:start] + cell + text[end:]
    if header is not None:
        text = text.replace("data_NaCl\n", "data_NaCl\n" + header + "\n")
    return text


def cif_dir_only(cifs: Path, n_shards: int = 2) -> dict:
    """The `structures` config section for a workflow run on one CIF folder (no shipped sources)."""
    return {"sources": {
        "amcsd": {"enabled": False, "n_shards": 1},
        "coremof": {"enabled": False, "n_shards": 1},
        "cif_dir": {"enabled": True, "n_shards": n_shards, "path": str(cifs)},
    }}


@pytest.fixture
def write_cifs(tmp_path):
    def _write(files: dict[str, str | bytes], folder: str = "cifs") -> Path:
        root = tmp_path / folder
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return root

    return _write


@pytest.fixture(scope="module")
def torch_one_thread():
    """Torch on one thread for a test module (the machine is shared; timings and results stable)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
