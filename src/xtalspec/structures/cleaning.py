"""From raw CIF bytes to a validated pymatgen Structure, or a reject with its reason.

Every way a CIF can fail to serve as a training structure has a short reason code (see
``REASONS``) and a human-readable detail. Nothing raises out of :func:`parse_and_check`:
the caller gets either a :class:`ParsedCIF` or a :class:`Reject`.

Partial occupancies are kept (pymatgen's disordered sites = the papers' "virtual atoms").
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.core.periodic_table import DummySpecies
from pymatgen.io.cif import CifBlock, CifFile, CifParser

# reason code -> what it means (written into the summary so users can read the table)
REASONS: dict[str, str] = {
    "unreadable": "the file or archive member could not be read",
    "download_failed": "the download was refused, failed after retries, or did not verify as a CIF",
    "empty_file": "the file holds no text",
    "file_too_large": "the file is larger than structures.max_file_bytes",
    "binary_content": "the file is not text (NUL bytes)",
    "cif_syntax": "the CIF grammar could not be parsed, or no data_ block",
    "missing_cell": "a cell length or angle is absent",
    "invalid_cell": "cell lengths/angles are non-numeric, non-positive or give no volume",
    "no_sites": "no atom-site loop, or it yields no atoms",
    "bad_coordinates": "an atom-site coordinate is missing, non-numeric or not finite",
    "invalid_occupancy": "an occupancy is non-numeric, <= 0, or sites on one position sum to > 1",
    "unknown_element": "a site's type symbol / label is not a chemical element",
    "unassigned_site": "the parser could not assign an element to some sites and would drop them",
    "element_z_ge_98": "an element with Z >= 98 (no form factors in the papers' tables)",
    "too_many_atoms": "more sites in the cell than structures.max_atoms (counted from the CIF text before "
                      "parsing where the atom-site rows × lattice centrings already exceed it)",
    "overlapping_atoms": "two sites closer than structures.min_distance whose occupancies sum to > 1",
    "implausible_density": "density outside structures.density_range (g/cm^3)",
    "parse_error": "pymatgen could not build a structure from the CIF",
    "parse_timeout": "parsing the CIF took longer than the per-file time limit (the parser was stopped)",
    "parse_out_of_memory": "parsing the CIF needed more than the per-file memory limit",
    "symmetry_failed": "spglib could not determine the space group",
    "duplicate_id": "the same id appeared twice in one source",
}

_CELL_KEYS = (
    "_cell_length_a",
    "_cell_length_b",
    "_cell_length_c",
    "_cell_angle_alpha",
    "_cell_angle_beta",
    "_cell_angle_gamma",
)
_IT_NUMBER_KEYS = ("_space_group_IT_number", "_symmetry_Int_Tables_number", "_space_group.IT_number")
_HM_KEYS = (
    "_symmetry_space_group_name_H-M",
    "_space_group_name_H-M_alt",
    "_space_group.name_H-M_alt",
    "_space_group_name_H-M",
)
_SYMOP_KEYS = (
    "_symmetry_equiv_pos_as_xyz",
    "_space_group_symop_operation_xyz",
    "_space_group_symop.operation_xyz",
)
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclasses.dataclass(frozen=True)
class CleaningSettings:
    max_atoms: int = 1000
    min_distance: float = 0.5  # Å
    density_range: tuple[float, float] = (0.1, 25.0)  # g/cm^3
    max_z: int = 97
    max_file_bytes: int = 20_000_000
    occupancy_tolerance: float = 0.01

    @classmethod
    def from_config(cls, cfg: dict) -> "CleaningSettings":
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in cfg.items() if k in fields}
        if "density_range" in kwargs:
            kwargs["density_range"] = tuple(kwargs["density_range"])
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class Reject:
    reason: str
    detail: str

    def __post_init__(self):
        assert self.reason in REASONS, self.reason


@dataclasses.dataclass
class ParsedCIF:
    structure: Structure
    block: CifBlock
    spacegroup_cif: int | None
    spacegroup_cif_symbol: str | None
    parser_warnings: list[str]


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reject = Reject(reason, detail)


def cif_number(value) -> float | None:
    """Parse a CIF numeric value such as ``5.431(2)``; None for ``?``/``.``/garbage."""
    if value is None:
        return None
    text = str(value).strip()
    m = _NUMBER.match(text)
    if not m:
        return None
    rest = text[m.end():]
    if rest and not re.fullmatch(r"\(\d+\)", rest):
        return None
    return float(m.group(0))


def decode_cif(data: bytes | None, settings: CleaningSettings) -> str:
    if data is None:
        raise _Rejected("unreadable", "no data")
    if len(data) > settings.max_file_bytes:
        raise _Rejected("file_too_large", f"{len(data)} bytes > {settings.max_file_bytes}")
    if not data.strip():
        raise _Rejected("empty_file", "file is empty or whitespace only")
    if b"\x00" in data:
        raise _Rejected("binary_content", "NUL bytes found: not a text CIF")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _first(block: CifBlock, keys) -> str | None:
    for key in keys:
        if key in block.data:
            value = block.data[key]
            return value[0] if isinstance(value, list) else value
    return None


def _structure_block(text: str) -> CifBlock:
    try:
        cif = CifFile.from_str(text)
    except Exception as exc:  # pymatgen raises many kinds on bad grammar
        raise _Rejected("cif_syntax", f"{type(exc).__name__}: {exc}") from None
    if not cif.data:
        raise _Rejected("cif_syntax", "no data_ block")
    for block in cif.data.values():
        if "_atom_site_fract_x" in block.data or "_atom_site_Cartn_x" in block.data:
            return block
    block = next(iter(cif.data.values()))
    _check_cell(block)  # a block without atoms but also without a cell says the cell first
    raise _Rejected("no_sites", "no _atom_site_fract_x / _atom_site_Cartn_x loop")


def _check_cell(block: CifBlock) -> None:
    missing = [k for k in _CELL_KEYS if k not in block.data]
    if missing:
        raise _Rejected("missing_cell", "missing " + ", ".join(missing))
    values = [cif_number(block.data[k]) for k in _CELL_KEYS]
    bad = [k for k, v in zip(_CELL_KEYS, values) if v is None or not math.isfinite(v)]
    if bad:
        raise _Rejected("invalid_cell", "non-numeric " + ", ".join(bad))
    a, b, c, al, be, ga = values
    if min(a, b, c) <= 0:
        raise _Rejected("invalid_cell", f"non-positive cell length ({a}, {b}, {c})")
    cosines = np.cos(np.radians([al, be, ga]))
    gram = 1 - (cosines**2).sum() + 2 * cosines.prod()
    if not (0 < al < 180 and 0 < be < 180 and 0 < ga < 180) or gram <= 1e-6:
        raise _Rejected("invalid_cell", f"angles ({al}, {be}, {ga}) give no volume")


def _check_sites(block: CifBlock, settings: CleaningSettings) -> None:
    frac = "_atom_site_fract_x" in block.data
    axes = ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z") if frac else (
        "_atom_site_Cartn_x", "_atom_site_Cartn_y", "_atom_site_Cartn_z")
    columns = [block.data.get(k) for k in axes]
    if any(col is None for col in columns):
        raise _Rejected("bad_coordinates", "incomplete coordinate columns")
    labels = block.data.get("_atom_site_label") or block.data.get("_atom_site_type_symbol")
    labels = labels if isinstance(labels, list) else [labels]
    for i, xyz in enumerate(zip(*[c if isinstance(c, list) else [c] for c in columns])):
        values = [cif_number(v) for v in xyz]
        if any(v is None or not math.isfinite(v) for v in values):
            label = labels[i] if labels and i < len(labels) else f"#{i}"
            raise _Rejected("bad_coordinates", f"site {label}: coordinates {list(xyz)}")
    occupancies = block.data.get("_atom_site_occupancy")
    if occupancies is not None:
        for i, occ in enumerate(occupancies if isinstance(occupancies, list) else [occupancies]):
            if occ in ("?", "."):
                continue
            value = cif_number(occ)
            if value is None or not math.isfinite(value) or value <= 0:
                raise _Rejected("invalid_occupancy", f"site #{i}: occupancy {occ!r}")
            if value > 1 + settings.occupancy_tolerance:
                raise _Rejected("invalid_occupancy", f"site #{i}: occupancy {value} > 1")


def _symops(block: CifBlock) -> list[str] | None:
    ops = next((block.data[k] for k in _SYMOP_KEYS if k in block.data), None)
    if ops is None:
        return None
    return ops if isinstance(ops, list) else [ops]


def _centrings(block: CifBlock) -> int:
    """How many lattice translations the cell has: symmetry operations / distinct rotations,
    else from the Hermann–Mauguin symbol's lattice letter. Every site of the asymmetric unit
    has at least this many copies in the cell."""
    ops = _symops(block)
    if ops:
        from pymatgen.core.operations import SymmOp

        try:
            rotations = {tuple(SymmOp.from_xyz_str(op.replace(" ", "")).rotation_matrix.round().astype(int).ravel())
                         for op in ops}
        except Exception:
            return 1
        return max(1, len(ops) // max(1, len(rotations)))
    symbol = (_first(block, _HM_KEYS) or "").strip().strip("'\"").upper()
    return {"F": 4, "I": 2, "A": 2, "B": 2, "C": 2, "R": 3}.get(symbol[:1], 1)


def _check_size(block: CifBlock, settings: CleaningSettings) -> None:
    """Reject at once, from the CIF text, a cell that must hold more than ``max_atoms`` sites:
    distinct atom-site positions × lattice centrings (a lower bound on what the parser would
    generate, whatever the sites' multiplicities), so no such file reaches the parser's site
    merging, whose cost grows with the square of the atom count."""
    frac = "_atom_site_fract_x" in block.data
    axes = ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z") if frac else (
        "_atom_site_Cartn_x", "_atom_site_Cartn_y", "_atom_site_Cartn_z")
    columns = [block.data[k] if isinstance(block.data[k], list) else [block.data[k]] for k in axes]
    positions = len(set(zip(*columns)))
    if positions * 4 <= settings.max_atoms:
        return  # cannot exceed the limit with any centring: no need to look at the operations
    centrings = _centrings(block)
    if positions * centrings > settings.max_atoms:
        raise _Rejected("too_many_atoms", f"{positions} atom-site positions × {centrings} lattice centring(s) = "
                        f"at least {positions * centrings} sites > max_atoms {settings.max_atoms} "
                        "(counted from the CIF text, before parsing)")


def cif_spacegroup(block: CifBlock, lattice=None) -> tuple[int | None, str | None]:
    """The space group the CIF itself states: IT number, else the group of its symmetry
    operations (via spglib), else its Hermann–Mauguin name. (None, None) when absent."""
    symbol = _first(block, _HM_KEYS)
    symbol = symbol.strip() if symbol and symbol not in ("?", ".") else None
    number = cif_number(_first(block, _IT_NUMBER_KEYS))
    if number is not None and 1 <= number <= 230 and float(number).is_integer():
        return int(number), symbol
    ops = _symops(block)
    if ops is not None and lattice is not None:
        found = _group_from_symops(ops, lattice)
        if found is not None:
            return found, symbol
    if symbol:
        from pymatgen.symmetry.groups import SpaceGroup

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return int(SpaceGroup(symbol.replace("_", "")).int_number), symbol
        except Exception:
            return None, symbol
    return None, None


def _group_from_symops(ops: list[str], lattice) -> int | None:
    import spglib
    from pymatgen.core.operations import SymmOp

    try:
        matrices = [SymmOp.from_xyz_str(op.replace(" ", "")).affine_matrix for op in ops]
        rotations = np.array([m[:3, :3] for m in matrices]).round().astype(int)
        translations = np.array([m[:3, 3] for m in matrices]) % 1.0
        found = spglib.get_spacegroup_type_from_symmetry(rotations, translations, lattice.matrix)
        return int(found.number) if found is not None else None
    except Exception:
        return None


def _build_structure(text: str, settings: CleaningSettings) -> tuple[Structure, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser = CifParser.from_str(text, occupancy_tolerance=1.0 + settings.occupancy_tolerance)
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:
            messages = [str(w.message) for w in caught]
            raise _Rejected(*_diagnose_parse_failure(exc, messages)) from None
    messages = [str(w.message) for w in caught]
    if not structures:
        raise _Rejected("parse_error", "; ".join(messages)[:500] or "no structure parsed")
    dropped = [m.split(" parsed as")[0] for m in messages if m.endswith(" parsed as ")]
    if dropped:  # pymatgen maps labels such as "OH" to no element and silently drops the site
        raise _Rejected("unassigned_site", f"site label(s) {sorted(set(dropped))} map to no element")
    return structures[0], messages


def _diagnose_parse_failure(exc: Exception, messages: list[str]) -> tuple[str, str]:
    joined = " | ".join([*messages, str(exc)])
    if "sum to > 1" in joined or "exceeded tolerance" in joined:
        return "invalid_occupancy", joined[:500]
    if "could not convert string to float" in joined:
        return "bad_coordinates", joined[:300]
    return "parse_error", f"{type(exc).__name__}: {exc}; {joined}"[:500]


def _check_structure(structure: Structure, settings: CleaningSettings) -> None:
    if len(structure) == 0:
        raise _Rejected("no_sites", "structure has no sites")
    for site in structure:
        for species in site.species:
            if isinstance(species, DummySpecies) or not isinstance(getattr(species, "element", species), Element):
                raise _Rejected("unknown_element", f"site {site.label}: {species} is not an element")
            if species.Z > 103:  # no such atom is in a crystal structure: a misread label
                raise _Rejected("unknown_element", f"site {site.label}: read as {species.symbol} (Z={species.Z}); "
                                "a label such as 'NH4' that the parser took for a superheavy element")
            if species.Z > settings.max_z:
                raise _Rejected("element_z_ge_98", f"{species.symbol} (Z={species.Z}) > Z {settings.max_z}")
    if len(structure) > settings.max_atoms:
        raise _Rejected("too_many_atoms", f"{len(structure)} sites > max_atoms {settings.max_atoms}")
    if not np.isfinite(structure.frac_coords).all() or not np.isfinite(structure.lattice.matrix).all():
        raise _Rejected("bad_coordinates", "non-finite coordinates")
    if structure.volume <= 1e-3:
        raise _Rejected("invalid_cell", f"cell volume {structure.volume:.3g} Å^3")
    density = float(structure.density)
    lo, hi = settings.density_range
    if not lo <= density <= hi:
        raise _Rejected("implausible_density", f"{density:.4g} g/cm^3 outside [{lo}, {hi}]")
    _check_overlaps(structure, settings)


def close_pairs(structure: Structure, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All site pairs (i, j, distance) closer than ``cutoff`` under periodic boundaries,
    including a site and its own periodic image (i == j). A k-d tree over the 27 neighbouring
    cell images: linear in the number of sites, independent of the cell size (pymatgen's cell
    list becomes very slow for huge cells with a small cutoff)."""
    from scipy.spatial import cKDTree

    n = len(structure)
    matrix = structure.lattice.matrix
    frac = structure.frac_coords % 1.0
    shifts = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=float)
    images = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3) @ matrix
    found = cKDTree(frac @ matrix).sparse_distance_matrix(cKDTree(images), cutoff, output_type="coo_matrix")
    i, k, d = found.row, found.col, found.data
    j = k % n
    zero_shift = k // n == 13  # the (0, 0, 0) image
    keep = ~(zero_shift & (i == j)) & (i <= j)  # drop self, count each pair once
    return i[keep], j[keep], d[keep]


def _check_overlaps(structure: Structure, settings: CleaningSettings) -> None:
    """Sites closer than min_distance are positional disorder when their occupancies sum to
    at most 1 (kept), and overlapping atoms otherwise (rejected)."""
    centers, neighbours, distances = close_pairs(structure, settings.min_distance)
    if len(centers) == 0:
        return
    occ = np.array([site.species.num_atoms for site in structure])
    clash = occ[centers] + occ[neighbours] > 1 + settings.occupancy_tolerance
    if clash.any():
        k = int(np.flatnonzero(clash)[0])
        i, j = int(centers[k]), int(neighbours[k])
        raise _Rejected(
            "overlapping_atoms",
            f"sites {i} ({structure[i].species_string}) and {j} ({structure[j].species_string}) "
            f"{distances[k]:.3f} Å apart, occupancies {occ[i]:.2f}+{occ[j]:.2f}",
        )


def parse_and_check(data: bytes | None, settings: CleaningSettings) -> ParsedCIF | Reject:
    """Decode, parse and validate one CIF. Never raises for bad input."""
    try:
        text = decode_cif(data, settings)
        block = _structure_block(text)
        _check_cell(block)
        _check_sites(block, settings)
        _check_size(block, settings)
        structure, messages = _build_structure(text, settings)
        _check_structure(structure, settings)
        number, symbol = cif_spacegroup(block, structure.lattice)
        return ParsedCIF(structure, block, number, symbol, messages)
    except _Rejected as rejected:
        return rejected.reject
