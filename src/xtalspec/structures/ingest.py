"""Ingestion: source → cleaned, relabelled structures in N Parquet shards + rejects.

Entry k of the (sorted, optionally subsampled) id list goes to shard ``k % n_shards``, so the
shard layout is known before any CIF is read and Snakemake can fan out over plain wildcards.
A shard is written atomically; a finished shard is never recomputed; rerunning after a kill
recomputes only unfinished shards and produces byte-identical files (rows are sorted, no
timestamps are stored).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..provenance import code_version
from ..utils.atomic import atomic_path
from .cleaning import CleaningSettings, ParsedCIF, Reject, parse_and_check
from .guarded_parse import DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT_S, GuardedParser
from .records import REJECT_SCHEMA, SHARD_SCHEMA, log_or_nan, structure_to_json
from .sources.base import RawEntry, Source
from .symmetry import ANGLE_TOLERANCE, SYMPREC, analyse_symmetry

log = logging.getLogger("xtalspec.ingest")


def shard_name(shard: int) -> str:
    return f"shard-{shard:03d}.parquet"


def rejects_name(shard: int) -> str:
    return f"rejects-{shard:03d}.parquet"


def select_ids(ids: list[str], max_structures: int | None, seed: int) -> list[str]:
    """Deterministic subset: the ``max_structures`` ids with the smallest hash(seed, id),
    returned sorted. A hash spreads the subset over the whole source (not the first N)."""
    unique = sorted(set(ids))
    if not max_structures or max_structures >= len(unique):
        return unique
    keyed = sorted(unique, key=lambda i: hashlib.sha1(f"{seed}:{i}".encode()).hexdigest())
    return sorted(keyed[:max_structures])


def ids_for_shard(ids: list[str], shard: int, n_shards: int) -> list[str]:
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} outside 0..{n_shards - 1}")
    return ids[shard::n_shards]


def duplicate_ids(ids: list[str]) -> list[str]:
    return sorted(i for i, n in Counter(ids).items() if n > 1)


def build_row(entry: RawEntry, parsed: ParsedCIF, symprec: float, angle_tolerance: float) -> dict:
    structure = parsed.structure
    symmetry = analyse_symmetry(structure, symprec, angle_tolerance)
    primitive = symmetry.primitive
    composition = structure.composition
    density = float(structure.density)
    relabelled = parsed.spacegroup_cif is not None and parsed.spacegroup_cif != symmetry.number
    return {
        "id": entry.id,
        "source": entry.provenance.source,
        "origin": entry.provenance.origin,
        "url": entry.provenance.url,
        "licence": entry.provenance.licence,
        "cif_sha256": hashlib.sha256(entry.data).hexdigest(),
        "spacegroup": symmetry.number,
        "spacegroup_symbol": symmetry.symbol,
        "spacegroup_cif": parsed.spacegroup_cif,
        "spacegroup_cif_symbol": parsed.spacegroup_cif_symbol,
        "relabelled": relabelled,
        "symprec": symprec,
        "formula": composition.formula,
        "reduced_formula": composition.reduced_formula,
        "elements": sorted(el.symbol for el in composition.elements),
        "disordered": not structure.is_ordered,
        "n_atoms": len(primitive),
        "volume": float(primitive.volume),
        "n_atoms_cif": len(structure),
        "volume_cif": float(structure.volume),
        "density": density,
        "log_volume_per_atom": log_or_nan(primitive.volume / len(primitive)),
        "log_density": log_or_nan(density),
        "structure": structure_to_json(structure),
        "primitive": structure_to_json(primitive),
    }


def process_entry(entry: RawEntry, settings: CleaningSettings, symprec: float, angle_tolerance: float,
                  parse=None) -> dict | Reject:
    """A shard row, or a reject. ``parse(data)`` parses and checks the CIF (default: in process;
    ingestion passes a :class:`~.guarded_parse.GuardedParser` with per-file limits)."""
    if entry.data is None:
        return Reject(entry.reason, entry.error or "no data")
    parsed = parse(entry.data) if parse is not None else parse_and_check(entry.data, settings)
    if isinstance(parsed, Reject):
        return parsed
    try:
        return build_row(entry, parsed, symprec, angle_tolerance)
    except Exception as exc:  # spglib / standardisation failure on a pathological cell
        return Reject("symmetry_failed", f"{type(exc).__name__}: {exc}"[:500])


class Progress:
    """A progress bar on a terminal, a log line every ``every_s`` seconds otherwise."""

    def __init__(self, total: int, label: str, every_s: float = 20.0):
        self.total, self.label, self.every_s = total, label, every_s
        self.done = 0
        self.start = self.last = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="cif")

    def step(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done == self.total:
            rate = self.done / max(now - self.start, 1e-9)
            log.info("%s: %d/%d structures (%.1f/s)", self.label, self.done, self.total, rate)
            self.last = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _write_table(rows: list[dict], schema: pa.Schema, path: Path, metadata: dict) -> None:
    rows = sorted(rows, key=lambda r: r["id"])
    table = pa.Table.from_pylist(rows, schema=schema)
    table = table.replace_schema_metadata({"xtalspec": json.dumps(metadata, sort_keys=True)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=2048)


def shard_identity(source: Source, ids: list[str], shard: int, n_shards: int, settings: CleaningSettings,
                   symprec: float, angle_tolerance: float) -> dict:
    """What a shard is made from, stored in its Parquet metadata and checked before reuse."""
    return {
        "code_version": code_version(),
        "source": source.name,
        "origin": getattr(source, "origin", "") or str(getattr(source, "root", "")),
        "shard": shard,
        "n_shards": n_shards,
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "n_ids": len(ids),
        "symprec": symprec,
        "angle_tolerance": angle_tolerance,
        "cleaning": settings.__dict__ | {"density_range": list(settings.density_range)},
    }


def identity_mismatch(identity: dict, *paths: Path) -> str:
    """Empty when every file's stored metadata equals ``identity``; else what differs."""
    for path in paths:
        try:
            stored = json.loads(pq.read_schema(path).metadata[b"xtalspec"])
        except Exception as exc:  # unreadable or foreign file
            return f"{path.name}: metadata unreadable ({type(exc).__name__})"
        keys = [k for k in identity if stored.get(k) != identity[k]]
        if keys:
            return f"{path.name}: " + ", ".join(f"{k} {stored.get(k)!r} != {identity[k]!r}"[:160] for k in keys)
    return ""


def ingest_shard(
    source: Source,
    ids: list[str],
    out_dir: str | Path,
    shard: int,
    n_shards: int,
    settings: CleaningSettings,
    symprec: float = SYMPREC,
    angle_tolerance: float = ANGLE_TOLERANCE,
    duplicates: Iterable[str] = (),
    force: bool = False,
    parse_timeout_s: float = DEFAULT_TIMEOUT_S,
    parse_memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> dict:
    """Clean, relabel and write one shard (and its rejects). Returns its counts.

    An existing shard is reused only when its metadata says it was made from the same request
    (:func:`shard_identity`: source, origin, the shard's id list, cleaning and spglib settings,
    code version); otherwise it is recomputed."""
    out_dir = Path(out_dir)
    shard_path, rejects_path = out_dir / shard_name(shard), out_dir / rejects_name(shard)
    mine = ids_for_shard(ids, shard, n_shards)
    identity = shard_identity(source, mine, shard, n_shards, settings, symprec, angle_tolerance)
    if not force and shard_path.exists() and rejects_path.exists():
        differs = identity_mismatch(identity, shard_path, rejects_path)
        if not differs:
            log.info("%s already complete, not recomputed", shard_path)
            return {"shard": shard, "skipped": True}
        log.warning("%s exists but was made from another request (%s): recomputing it", shard_path, differs)
    rows, rejects = [], []
    progress = Progress(len(mine), f"{source.name} shard {shard}/{n_shards}")
    start = time.monotonic()
    with GuardedParser(settings, parse_timeout_s, parse_memory_bytes) as parse:
        for entry in source.iter_entries(mine):
            result = process_entry(entry, settings, symprec, angle_tolerance, parse)
            if isinstance(result, Reject):
                rejects.append({"id": entry.id, "source": source.name, "url": entry.provenance.url,
                                "reason": result.reason, "detail": result.detail})
            else:
                rows.append(result)
            progress.step()
    progress.close()
    for ident in duplicates:
        rejects.append({"id": ident, "source": source.name, "url": "", "reason": "duplicate_id",
                        "detail": "id listed more than once by the source; the first copy is kept"})
    metadata = identity
    _write_table(rejects, REJECT_SCHEMA, rejects_path, metadata)
    _write_table(rows, SHARD_SCHEMA, shard_path, metadata)
    elapsed = time.monotonic() - start
    log.info("%s: %d accepted, %d rejected in %.1f s (%.1f structures/s)", shard_path, len(rows), len(rejects),
             elapsed, len(mine) / max(elapsed, 1e-9))
    return {"shard": shard, "accepted": len(rows), "rejected": len(rejects), "seconds": elapsed}


def ingest(
    source: Source,
    out_dir: str | Path,
    n_shards: int,
    settings: CleaningSettings,
    max_structures: int | None = None,
    seed: int = 0,
    shards: Iterable[int] | None = None,
    symprec: float = SYMPREC,
    angle_tolerance: float = ANGLE_TOLERANCE,
    parse_timeout_s: float = DEFAULT_TIMEOUT_S,
    parse_memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> list[dict]:
    """Ingest the chosen shards (all by default) of ``source`` into ``out_dir``."""
    all_ids = source.list_ids()
    ids = select_ids(all_ids, max_structures, seed)
    chosen_ids = set(ids)
    duplicates = [i for i in duplicate_ids(all_ids) if i in chosen_ids]  # reported by shard 0
    log.info("%s: %d ids listed, %d selected, %d shards", source.name, len(all_ids), len(ids), n_shards)
    chosen = range(n_shards) if shards is None else shards
    return [
        ingest_shard(source, ids, out_dir, s, n_shards, settings, symprec, angle_tolerance,
                     duplicates=duplicates if s == 0 else (), parse_timeout_s=parse_timeout_s,
                     parse_memory_bytes=parse_memory_bytes)
        for s in chosen
    ]


def iter_shard_paths(out_dir: str | Path, n_shards: int) -> Iterator[Path]:
    for shard in range(n_shards):
        yield Path(out_dir) / shard_name(shard)
