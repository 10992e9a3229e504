"""Local-coordination-environment labels (T4 / S5 / O6) of XANES absorbing sites.

Reproduces the labelling of Carbone, Yoo, Topsakal & Lu (Phys. Rev. Materials 2019): the
continuous symmetry measure (CSM, Pinsky & Avnir) computed by pymatgen's ChemEnv for the
absorbing site, neighbours within ``distance_factor`` x the nearest-neighbour distance
(paper: 1.2), "the polyhedron with the lowest CSM value was chosen as the site LCE label",
labels restricted to tetrahedral (T4), square-pyramidal (S5) and octahedral (O6).

How ChemEnv is driven (the standard two-step ChemEnv recipe)
-------------------------------------------------------------
1. ``LocalGeometryFinder`` (no structure refinement, so indices are the caller's; centroid
   centring, ChemEnv's defaults) -> ``compute_structure_environments(only_indices=[the
   requested sites], only_cations=False, additional_conditions=[ONLY_ELEMENT_TO_OXYGEN_BONDS],
   maximum_distance_factor=max(distance factors) + 0.25)``. Environments are computed only for
   the requested sites (one Voronoi analysis + the CSMs of each candidate neighbour set).
2. ``SimplestChemenvStrategy(distance_cutoff=distance_factor, angle_cutoff=angle_factor,
   additional_condition=ONLY_ELEMENT_TO_OXYGEN_BONDS)`` picks ONE neighbour set per site, and
   ChemEnv's ``ChemicalEnvironments`` of that set holds the CSM of every model polyhedron with
   that coordination number.

Neighbours
----------
* Candidates are the site's Voronoi neighbours. Distances are normalised by the nearest
  Voronoi neighbour of ANY element (the paper's "nearest-neighbour distance"; in an oxide that
  is the shortest M-O bond). ChemEnv groups normalised distances that lie within 0.05 of each
  other, and a cutoff takes a whole group whose smallest member is <= the cutoff (so a
  neighbour at 1.21-1.24 that belongs to a group starting below 1.2 is kept).
* Only metal-oxygen bonds count: ChemEnv's additional condition ``ONLY_E2OB`` (value 4) keeps
  a neighbour only when exactly one of the two sites contains O. No oxidation states or
  bond-valence analysis are needed.
* ``angle_factor`` is ChemEnv's normalised-solid-angle cutoff; 0.3 is the default of
  ``SimplestChemenvStrategy`` (the paper names only the distance cutoff, so ChemEnv's default
  is kept). For every test structure 0.3 and 0.05 give the same labels.

Label rule
----------
Among all model polyhedra ChemEnv knows for the chosen neighbour set's coordination number,
take the one with the lowest CSM. The label is ``"T4"`` if that is ``T:4`` (tetrahedron),
``"S5"`` if ``S:5`` (square pyramid; ChemEnv's symbol, not "SP:5"), ``"O6"`` if ``O:6``
(octahedron), else ``None``. So a site is ``None`` when its coordination number is not 4-6,
or when another polyhedron of the same CN fits better (e.g. see-saw ``SS:4``, trigonal
bipyramid ``T:5``, trigonal prism ``T:6``). With ``max_csm`` set, a best CSM above it also
gives ``None`` (the paper uses no such cap: default ``None``).

Only one of T4 / S5 / O6 can be compared per site, because the distance cutoff fixes the
neighbour set (and so the CN); the per-geometry CSMs reported by :func:`label_sites` are those
of the chosen neighbour set (``None`` for the two geometries of other CNs).

pymatgen's ChemEnv is imported inside the functions, keeping this module cheap to import.
"""

from __future__ import annotations

import logging
from collections import Counter
from functools import lru_cache
from typing import Iterable, Sequence

log = logging.getLogger("xtalspec.xanes_labels")

#: the paper's absorbing elements (3d transition metals)
ABSORBERS: tuple[str, ...] = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
#: ChemEnv model-polyhedron symbol -> the paper's class label
GEOMETRY_LABELS: dict[str, str] = {"T:4": "T4", "S:5": "S5", "O:6": "O6"}
#: The classes of the XANES system, in this order everywhere (data sets, models, reports): defined
#: here only and imported elsewhere (as ``CLASSES``).
LABELS: tuple[str, ...] = ("T4", "S5", "O6")
DEFAULT_DISTANCE_FACTOR = 1.2  # paper
COMPARE_DISTANCE_FACTOR = 1.4  # ChemEnv's usual cutoff: labels recomputed at it to count changes
DEFAULT_ANGLE_FACTOR = 0.3  # ChemEnv SimplestChemenvStrategy default
#: how far beyond the largest requested distance factor ChemEnv builds neighbour sets, so
#: that distance groups straddling the cutoff are not truncated
DISTANCE_MARGIN = 0.25
_ONLY_E2OB = 4  # AdditionalConditions.ONLY_ELEMENT_TO_OXYGEN_BONDS


@lru_cache(maxsize=1)
def _geometry_finder():
    from pymatgen.analysis.chemenv.coordination_environments.coordination_geometry_finder import (
        LocalGeometryFinder,
    )

    lgf = LocalGeometryFinder()
    lgf.setup_parameters(
        centering_type="centroid",
        include_central_site_in_centroid=True,
        structure_refinement=LocalGeometryFinder.STRUCTURE_REFINEMENT_NONE,
    )
    return lgf


def _structure_environments(structure, indices: Sequence[int], max_distance_factor: float):
    lgf = _geometry_finder()
    lgf.setup_structure(structure)
    return lgf.compute_structure_environments(
        only_indices=list(indices),
        only_cations=False,
        maximum_distance_factor=max_distance_factor,
        additional_conditions=[_ONLY_E2OB],
    )


def _o_neighbour_count(se, isite: int, distance_factor: float, angle_factor: float) -> int:
    """CN of the strategy's neighbour set when ChemEnv has no environment for it (e.g. no O)."""
    try:
        nbs = se.voronoi.neighbors(isite, distance_factor, angle_factor)
    except ValueError:
        return 0
    return sum(1 for nb in nbs if any(sp.symbol == "O" for sp in nb["site"].species))


def _site_record(structure, se, strategy, isite, distance_factor, angle_factor, max_csm) -> dict:
    site = structure[isite]
    rec = {
        "index": int(isite),
        "element": site.species.elements[0].symbol if site.is_ordered else site.species_string,
        "distance_factor": float(distance_factor),
        "label": None,
        "cn": 0,
        "geometry": None,
        "csm": None,
        **{f"csm_{lab}": None for lab in LABELS},
    }
    found = strategy.get_site_coordination_environment(site, isite=isite, return_map=True)
    if found is None:  # no neighbour set (no O within the cutoff) or none computed
        rec["cn"] = _o_neighbour_count(se, isite, distance_factor, angle_factor)
        return rec
    _, (cn, inb) = found
    rec["cn"] = int(cn)
    ce = se.ce_list[isite][cn][inb]
    if ce is None or not ce.coord_geoms:
        return rec
    for symbol, lab in GEOMETRY_LABELS.items():
        if symbol in ce.coord_geoms:
            rec[f"csm_{lab}"] = float(ce.coord_geoms[symbol]["symmetry_measure"])
    best_symbol, best = min(ce.coord_geoms.items(), key=lambda kv: kv[1]["symmetry_measure"])
    rec["geometry"] = best_symbol
    rec["csm"] = float(best["symmetry_measure"])
    if max_csm is None or rec["csm"] <= max_csm:
        rec["label"] = GEOMETRY_LABELS.get(best_symbol)
    return rec


def site_environments(
    structure,
    indices: Sequence[int],
    distance_factors: Sequence[float] = (DEFAULT_DISTANCE_FACTOR,),
    angle_factor: float = DEFAULT_ANGLE_FACTOR,
    max_csm: float | None = None,
) -> dict[float, list[dict]]:
    """One ChemEnv run for ``indices``, read out at each distance factor.

    Returns ``{distance_factor: [record per index]}``; a record has ``index``, ``element``,
    ``distance_factor``, ``label`` ("T4"/"S5"/"O6"/None), ``cn`` (O neighbours in the chosen
    set), ``geometry`` (best ChemEnv symbol, e.g. "SS:4"), ``csm`` (its CSM) and
    ``csm_T4``/``csm_S5``/``csm_O6`` (CSM of that polyhedron for the chosen set, None when
    the set's CN differs)."""
    from pymatgen.analysis.chemenv.coordination_environments.chemenv_strategies import (
        SimplestChemenvStrategy,
    )

    indices = [int(i) for i in indices]
    factors = [float(f) for f in distance_factors]
    if not indices:
        return {f: [] for f in factors}
    for i in indices:
        if not 0 <= i < len(structure):
            raise IndexError(f"site index {i} out of range for {len(structure)} sites")
    se = _structure_environments(structure, sorted(set(indices)), max(factors) + DISTANCE_MARGIN)
    out = {}
    for f in factors:
        strategy = SimplestChemenvStrategy(
            distance_cutoff=f, angle_cutoff=angle_factor, additional_condition=_ONLY_E2OB
        )
        strategy.set_structure_environments(se)
        out[f] = [_site_record(structure, se, strategy, i, f, angle_factor, max_csm) for i in indices]
    return out


def coordination_label(
    structure,
    site_index: int,
    distance_factor: float = DEFAULT_DISTANCE_FACTOR,
    angle_factor: float = DEFAULT_ANGLE_FACTOR,
    max_csm: float | None = None,
) -> str | None:
    """"T4" | "S5" | "O6" | None for one site (rule in the module docstring)."""
    return site_environments(structure, [site_index], (distance_factor,), angle_factor, max_csm)[
        float(distance_factor)
    ][0]["label"]


def absorber_sites(
    structure, elements: Iterable[str] = ABSORBERS, symprec: float = 0.01
) -> list[tuple[int, str]]:
    """Symmetry-inequivalent sites of ``elements``: ``[(index, element), ...]`` by index.

    One representative (spglib's ``equivalent_atoms``, i.e. the first site of each orbit) per
    orbit. Empty for disordered structures (partial occupancies / mixed sites) and for
    structures without oxygen. If spglib finds no symmetry every site counts as inequivalent."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    wanted = set(elements)
    if not structure.is_ordered or "O" not in {el.symbol for el in structure.composition.elements}:
        return []
    symbols = [site.specie.symbol for site in structure]
    if not wanted.intersection(symbols):
        return []
    try:
        dataset = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_dataset()
        equivalent = (
            dataset["equivalent_atoms"] if isinstance(dataset, dict) else dataset.equivalent_atoms
        )
        representatives = sorted({int(i) for i in equivalent})
    except Exception as exc:  # spglib gave no dataset
        log.warning("no symmetry dataset (%s): every site treated as inequivalent", exc)
        representatives = list(range(len(structure)))
    return [(i, symbols[i]) for i in representatives if symbols[i] in wanted]


def label_sites(
    structure,
    distance_factor: float = DEFAULT_DISTANCE_FACTOR,
    angle_factor: float = DEFAULT_ANGLE_FACTOR,
    max_csm: float | None = None,
    elements: Iterable[str] = ABSORBERS,
) -> list[dict]:
    """Records (see :func:`site_environments`) for every :func:`absorber_sites` site."""
    sites = absorber_sites(structure, elements)
    if not sites:
        return []
    return site_environments(
        structure, [i for i, _ in sites], (distance_factor,), angle_factor, max_csm
    )[float(distance_factor)]


def relabel_counts(
    structures_and_sites: Iterable,
    factors: Sequence[float] = (DEFAULT_DISTANCE_FACTOR, COMPARE_DISTANCE_FACTOR),
    angle_factor: float = DEFAULT_ANGLE_FACTOR,
    max_csm: float | None = None,
) -> dict:
    """How labels move between distance factors.

    ``structures_and_sites``: structures, or ``(structure, site_indices)`` pairs
    (``site_indices`` None -> :func:`absorber_sites`). Each structure costs one ChemEnv run.
    Returns ``{"factors", "n_sites", "counts": {factor: Counter(label)},
    "changed": {(f_a, f_b): n}, "transitions": {(f_a, f_b): Counter((label_a, label_b))}}``
    over consecutive factor pairs (labels include None)."""
    factors = tuple(float(f) for f in factors)
    pairs = list(zip(factors, factors[1:]))
    counts = {f: Counter() for f in factors}
    changed = {p: 0 for p in pairs}
    transitions = {p: Counter() for p in pairs}
    n_sites = 0
    for item in structures_and_sites:
        structure, indices = (item, None) if hasattr(item, "lattice") else item
        if indices is None:
            indices = [i for i, _ in absorber_sites(structure)]
        if not len(indices):
            continue
        records = site_environments(structure, indices, factors, angle_factor, max_csm)
        n_sites += len(indices)
        for f in factors:
            counts[f].update(r["label"] for r in records[f])
        for a, b in pairs:
            for ra, rb in zip(records[a], records[b]):
                if ra["label"] != rb["label"]:
                    changed[(a, b)] += 1
                transitions[(a, b)][(ra["label"], rb["label"])] += 1
    return {
        "factors": factors,
        "n_sites": n_sites,
        "counts": counts,
        "changed": changed,
        "transitions": transitions,
    }
