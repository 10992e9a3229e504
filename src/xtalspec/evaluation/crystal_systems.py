"""The seven crystal systems and the space-group numbers that belong to each.

Kept in this small module (no pymatgen import) so that validation, prediction and the
crystal-system ranking of :mod:`xtalspec.evaluation.verdicts` share one copy.
"""

from __future__ import annotations

#: the highest space-group number of each crystal system, in order of increasing symmetry
SYSTEMS = ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"), (167, "trigonal"),
           (194, "hexagonal"), (230, "cubic"))
SYSTEM_NAMES = tuple(name for _, name in SYSTEMS)


def crystal_system(spacegroup) -> str | None:
    """The crystal system of a space-group number (1–230); None for anything else."""
    try:
        number = int(spacegroup)
    except (TypeError, ValueError):
        return None
    if isinstance(spacegroup, float) and spacegroup != number:
        return None
    return next((name for top, name in SYSTEMS if 1 <= number <= top), None)
