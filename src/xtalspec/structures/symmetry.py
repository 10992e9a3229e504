"""Space group (spglib) and the Setyawan–Curtarolo standard primitive cell."""

from __future__ import annotations

import dataclasses

from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

#: spglib tolerances of the relabelling (the workflow's structures.symprec / angle_tolerance)
SYMPREC = 0.01  # Å
ANGLE_TOLERANCE = 5.0  # degrees


@dataclasses.dataclass
class SymmetryInfo:
    number: int
    symbol: str
    primitive: Structure  # standard primitive cell (Setyawan & Curtarolo 2010)


def analyse_symmetry(structure: Structure, symprec: float = SYMPREC,
                     angle_tolerance: float = ANGLE_TOLERANCE) -> SymmetryInfo:
    """spglib space group of ``structure`` (disordered sites are distinct 'virtual atom'
    types, as pymatgen passes them to spglib) and its standard primitive cell.
    Raises ValueError when spglib finds no symmetry dataset."""
    analyzer = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)
    number = analyzer.get_space_group_number()
    if number is None:
        raise ValueError("spglib returned no dataset")
    primitive = analyzer.get_primitive_standard_structure(international_monoclinic=True)
    return SymmetryInfo(int(number), analyzer.get_space_group_symbol(), primitive)
