"""An ordered stand-in for a structure with partial occupancies: each site's majority occupant.

FEFF and ChemEnv need one element per position. Many minerals in AMCSD have mixed cation sites
(e.g. ``Co0.6Mg0.4``) or split positions; the XANES spectra cache uses their *majority-occupant*
approximation, the simplest ordered model of such a structure:

* every position takes the species with the largest occupancy there (ties: alphabetical order
  of the element symbols, so the result never depends on how the CIF listed them);
* a position whose total occupancy is below ``min_occupancy`` (mostly empty) is dropped;
* of positions closer than ``min_distance`` Å (split positions of one atom), the one with the
  larger majority occupancy is kept (ties: the lower site index).

The absorbing site of a cached spectrum is then an atom whose element *is* the majority occupant
of its position, with the neighbours the approximation gives it. Rows of the cache made this way
say so (``structure_model`` = ``majority_occupant``), and the cache check rebuilds the same model.
"""

from __future__ import annotations

import numpy as np

#: the ``structure_model`` of a structure used as published (ordered) and of its majority-occupant approximation
AS_PUBLISHED = "as_published"
MAJORITY_OCCUPANT = "majority_occupant"


def majority_occupant(structure, min_occupancy: float = 0.5, min_distance: float = 0.7):
    """The majority-occupant ordered approximation of ``structure`` (a pymatgen Structure; an
    ordered structure comes back as an equal copy)."""
    from pymatgen.core import Structure

    if structure.is_ordered:
        return structure.copy()
    species, occupancy, frac = [], [], []
    for site in structure:
        occ = {el.symbol: float(amount) for el, amount in site.species.items()}
        total = sum(occ.values())
        if total < min_occupancy - 1e-9:
            continue
        best = max(sorted(occ), key=lambda el: occ[el])
        species.append(best)
        occupancy.append(occ[best])
        frac.append(site.frac_coords)
    if not species:
        raise ValueError("no position is at least half occupied")
    frac = np.asarray(frac, dtype=float)
    order = sorted(range(len(species)), key=lambda i: (-occupancy[i], i))
    dist = structure.lattice.get_all_distances(frac, frac)
    kept: list[int] = []
    for i in order:
        if all(dist[i, j] >= min_distance for j in kept):
            kept.append(i)
    kept.sort()
    return Structure(structure.lattice, [species[i] for i in kept], frac[kept])


def structure_model(structure, model: str):
    """``structure`` under the named model (:data:`AS_PUBLISHED` or :data:`MAJORITY_OCCUPANT`)."""
    if model in (None, AS_PUBLISHED) or (isinstance(model, float) and np.isnan(model)):
        return structure
    if model == MAJORITY_OCCUPANT:
        return majority_occupant(structure)
    raise ValueError(f"unknown structure model {model!r}")
