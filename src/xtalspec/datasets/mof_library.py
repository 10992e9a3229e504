"""The MOF library of paper 001 (one-to-one MOF identification from powder XRD) and the data every
model of one run sees: theoretical patterns, measured patterns, augmented training data, the test set.

Library (:func:`build_library`, CLI ``xtalspec mof patterns``)
---------------------------------------------------------------
One theoretical pattern per MOF: :func:`xtalspec.spectra.xrd.powder_pattern` of the structure's
CIF cell (Cu Kα, 2θ 5–50°, 2,251 points, pseudo-Voigt FWHM 0.1°, B = 2 Å²), max-normalised,
float32. The MOFs are taken in a *seeded hash order* of their ids (``sha1(f"{seed}:{id}")``, the
rule of :func:`xtalspec.structures.ingest.select_ids`), so the library of N MOFs is a fixed,
reproducible sample spread over the whole source, and the library of a smaller size n is the
prefix of the first n rows (column ``rank``). MOFs named in a measured-test list are *pinned*:
they come first, so that every library size contains the MOFs the user measured. Structures whose
pattern cannot be made go to a rejects table (``id, source, url, reason, detail``) with one of the
reasons in :data:`REJECT_REASONS`; the next MOF in the order takes the place, until ``max_mofs``
patterns exist or the structures run out.

Measured patterns (:func:`load_measured`)
-----------------------------------------
Read with :func:`xtalspec.spectra.measured.read_pattern`, checked to cover 2θ 5–50° (within
:data:`COVERAGE_TOL`), linearly resampled onto the 2,251-point axis and max-normalised. Every
problem raises a :class:`~xtalspec.spectra.measured.PatternError` (a ``ValueError``) whose message
starts with the file: an empty file, non-numeric content, too few points, or a 2θ range that does
not cover 5–50° (:class:`MeasuredRangeError`).

Run data (:func:`build_run_data`)
---------------------------------
For library size n: the first n library patterns are the classes; the noise pool is the baselines
of the user's measured patterns when a folder of them is given, else the synthetic fallback of
:mod:`xtalspec.datasets.mof_patterns` (``noise_source`` "synthetic noise", which every output then
states); the training data are :func:`~xtalspec.datasets.mof_patterns.augmented_split` (4:1);
the test set is the user's measured patterns with their labels when given, else
:func:`~xtalspec.datasets.mof_patterns.perturbed_test_patterns` of every library MOF, drawn
with a generator separate from the training augmentation. Test patterns are FFT-denoised as in
the paper (:func:`~xtalspec.datasets.mof_patterns.fft_denoise`) and max-normalised again. Seeds:
augmentation ``[seed, 1]``, perturbed tests ``[seed, 2]``, synthetic noise pool ``[seed, 3]``;
the CNN and the baselines rebuild exactly the same arrays from the same settings, and
:attr:`RunData.test_digest` lets the report check that they did.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..provenance import code_version
from ..spectra.measured import PatternError, read_pattern
from ..spectra.xrd import B_ISO, POWDER_ETA, POWDER_FWHM, powder_pattern
from ..structures.records import REJECT_SCHEMA, load_structures
from ..utils.atomic import atomic_path
from . import mof_patterns as mp

log = logging.getLogger(__name__)

TWO_THETA = mp.TWO_THETA
N_POINTS = mp.N_POINTS
WAVELENGTH = "CuKa"
COVERAGE_TOL = 0.1  # degrees: a measured scan may start/end this much inside 5-50 deg (edge value held)
MEASURED_SUFFIXES = (".xy", ".xye", ".csv", ".txt", ".dat", ".asc")
SHARD_COLUMNS = ("id", "source", "url", "formula", "spacegroup", "n_atoms_cif", "structure")
TOP_STORED = 10  # ranked classes kept per test pattern in the predictions tables

#: why a structure has no library pattern
REJECT_REASONS = {
    "unreadable_structure": "the stored structure could not be rebuilt",
    "pattern_failed": "the structure-factor engine raised (e.g. an element without form factors)",
    "non_finite_pattern": "the pattern holds NaN or infinite values",
    "no_peaks": "no reflection falls in 2θ 5–50° (all-zero pattern)",
    "duplicate_id": "an id already in the library (from another source)",
}

LIBRARY_SCHEMA = pa.schema(
    [
        ("rank", pa.int32()),  # position in the library order: size n = rows with rank < n
        ("id", pa.string()),
        ("source", pa.string()),
        ("url", pa.string()),
        ("formula", pa.string()),
        ("spacegroup", pa.int16()),
        ("n_atoms_cif", pa.int32()),
        ("pinned", pa.bool_()),  # named in the measured-test list: placed first
        ("n_peaks", pa.int32()),  # local maxima above 1 % of the strongest point
        ("pattern", pa.list_(pa.float32())),  # 2,251 points, max 1
    ]
)


# --------------------------------------------------------------------------- tables


def _write_table(rows: list[dict], schema: pa.Schema, meta: dict, path) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    table = table.replace_schema_metadata({"xtalspec": json.dumps(meta | {"code_version": code_version()})})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def load_library(path) -> tuple[pd.DataFrame, dict]:
    """(library table in rank order, its metadata)."""
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"xtalspec"])
    return table.to_pandas().sort_values("rank", kind="stable").reset_index(drop=True), meta


def library_patterns(library: pd.DataFrame) -> np.ndarray:
    """(n, 2251) float32 patterns of a library table, in its row order."""
    if not len(library):
        return np.zeros((0, N_POINTS), np.float32)
    return np.stack(library["pattern"].to_numpy()).astype(np.float32)


# --------------------------------------------------------------------------- library order


def hash_key(ident: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{ident}".encode()).hexdigest()


def library_order(ids, seed: int = 0, pinned=()) -> list[str]:
    """``ids`` in library order: the ``pinned`` ids first, then the rest, each part sorted by
    ``sha1(f"{seed}:{id}")`` (ties by id)."""
    pinned = set(pinned)
    key = lambda i: (i not in pinned, hash_key(i, seed), i)  # noqa: E731
    return sorted(dict.fromkeys(ids), key=key)


def refcode(ident: str) -> str:
    """The CSD refcode part of a CoRE MOF id ("ABAVIJ_clean" -> "ABAVIJ")."""
    return str(ident).split("_", 1)[0]


def match_ids(wanted, available, where: str) -> dict[str, str]:
    """{wanted id: library id}: an exact id, else a unique id with the same refcode. Raises a
    ValueError naming ``where`` (the file that asked) for ids found nowhere or ambiguous."""
    available = list(dict.fromkeys(available))
    exact = set(available)
    by_ref: dict[str, list[str]] = {}
    for ident in available:
        by_ref.setdefault(refcode(ident), []).append(ident)
    out, missing, ambiguous = {}, [], []
    for w in dict.fromkeys(wanted):
        if w in exact:
            out[w] = w
        elif len(by_ref.get(refcode(w), [])) == 1:
            out[w] = by_ref[refcode(w)][0]
        elif by_ref.get(refcode(w)):
            ambiguous.append(f"{w} ({', '.join(by_ref[refcode(w)])})")
        else:
            missing.append(w)
    if missing or ambiguous:
        parts = []
        if missing:
            parts.append(f"MOF ids not in the structures: {', '.join(missing[:10])}")
        if ambiguous:
            parts.append(f"ambiguous MOF ids: {'; '.join(ambiguous[:10])}")
        raise ValueError(f"{where}: {'; '.join(parts)}")
    return out


# --------------------------------------------------------------------------- library


def count_peaks(pattern: np.ndarray, rel_height: float = 0.01) -> int:
    """Local maxima of a max-normalised pattern above ``rel_height``."""
    x = np.asarray(pattern)
    inner = (x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > rel_height)
    return int(inner.sum())


def theoretical_pattern(structure, fwhm: float = POWDER_FWHM, wavelength=WAVELENGTH) -> np.ndarray:
    """The library pattern of one structure (float64, max 1); raises ValueError with a reason."""
    pattern = powder_pattern(structure, wavelength=wavelength, two_theta=mp.TWO_THETA_RANGE, n_points=N_POINTS,
                             fwhm=fwhm)
    if not np.isfinite(pattern).all():
        raise _Reject("non_finite_pattern", f"{int((~np.isfinite(pattern)).sum())} non-finite points")
    if not pattern.max() > 0:
        raise _Reject("no_peaks", "no reflection in 2θ 5–50° (Cu Kα)")
    return pattern


class _Reject(ValueError):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def build_library(shards, max_mofs: int | None = None, seed: int = 0, fwhm: float = POWDER_FWHM,
                  wavelength=WAVELENGTH, pinned=(), pinned_from: str = "measured-test list"):
    """(library rows, reject rows, metadata) for the structures of ``shards`` (see the module
    docstring). ``pinned``: ids (or CSD refcodes) placed first; a pinned MOF without a pattern
    is an error (its measured patterns could not be scored)."""
    records = []
    for shard in shards:  # the optional columns may be missing from hand-made shards
        present = set(pq.read_schema(shard).names)
        records += load_structures([str(shard)], columns=[c for c in SHARD_COLUMNS if c in present])
    by_id: dict[str, object] = {}
    rejects: list[dict] = []
    for record in records:
        if record.id in by_id:
            rejects.append({"id": record.id, "source": record.row.get("source"), "url": record.row.get("url"),
                            "reason": "duplicate_id", "detail": f"also in {by_id[record.id].row.get('source')}"})
            continue
        by_id[record.id] = record
    pin_map = match_ids(pinned, by_id, pinned_from) if pinned else {}
    pinned_ids = set(pin_map.values())
    order = library_order(by_id, seed, pinned_ids)
    limit = len(order) if max_mofs is None else int(max_mofs)
    rows: list[dict] = []
    start = time.monotonic()
    for ident in order:
        if len(rows) >= limit:
            break
        record = by_id[ident]
        base = {"id": record.id, "source": record.row.get("source"), "url": record.row.get("url")}
        try:
            try:
                structure = record.structure
            except Exception as exc:  # noqa: BLE001 - any parse failure is a reject
                raise _Reject("unreadable_structure", f"{type(exc).__name__}: {exc}") from exc
            try:
                pattern = theoretical_pattern(structure, fwhm, wavelength)
            except _Reject:
                raise
            except Exception as exc:  # noqa: BLE001 - the engine's failure on one structure
                raise _Reject("pattern_failed", f"{type(exc).__name__}: {exc}") from exc
        except _Reject as exc:
            if ident in pinned_ids:
                raise ValueError(f"{pinned_from}: MOF {ident} has no theoretical pattern ({exc})") from None
            rejects.append(base | {"reason": exc.reason, "detail": str(exc.detail)[:300]})
            continue
        rows.append(base | {"rank": len(rows), "formula": record.row.get("formula"),
                            "spacegroup": record.row.get("spacegroup"), "n_atoms_cif": record.row.get("n_atoms_cif"),
                            "pinned": ident in pinned_ids,
                            "n_peaks": count_peaks(pattern), "pattern": pattern.astype(np.float32)})
    seconds = time.monotonic() - start
    patterns = np.stack([r["pattern"] for r in rows]) if rows else np.zeros((0, N_POINTS), np.float32)
    meta = {
        "stage": "mof_patterns", "structure_shards": [str(s) for s in shards], "seed": int(seed),
        "max_mofs": max_mofs, "n_structures": len(records), "n_library": len(rows), "n_rejects": len(rejects),
        "rejects_by_reason": pd.Series([r["reason"] for r in rejects], dtype=object).value_counts().to_dict(),
        "pinned": sorted(pinned_ids), "order": "pinned first, then sha1(f'{seed}:{id}') ascending",
        "pattern": {"engine": "xtalspec.spectra.xrd.powder_pattern", "cell": "CIF cell (structure column)",
                    "wavelength": wavelength, "two_theta": list(mp.TWO_THETA_RANGE), "n_points": N_POINTS,
                    "fwhm": fwhm, "shape": "pseudo-voigt", "eta": POWDER_ETA, "b_iso": B_ISO, "normalise": "max = 1"},
        "near_duplicates": near_duplicates(patterns, [r["id"] for r in rows]),
        "seconds": round(seconds, 2),
    }
    if len(rows) < limit and max_mofs is not None:
        log.warning("only %d of the %d requested MOFs have patterns", len(rows), limit)
    return rows, rejects, meta


def near_duplicates(patterns: np.ndarray, ids, threshold: float = 0.999, limit: int = 50) -> list[list]:
    """Pairs of library patterns with cosine similarity above ``threshold`` (they cannot be told
    apart by any model): ``[[id_a, id_b, cosine], ...]``, at most ``limit``."""
    if len(patterns) < 2:
        return []
    x = np.asarray(patterns, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out = []
    for start in range(0, len(x), 1024):
        sim = x[start : start + 1024] @ x.T
        i, j = np.nonzero(sim > threshold)
        for a, b in zip(i + start, j):
            if a < b:
                out.append([ids[a], ids[b], round(float(sim[a - start, b]), 5)])
    return out[:limit]


def write_library(shards, out, rejects_path, max_mofs: int | None = None, seed: int = 0,
                  fwhm: float = POWDER_FWHM, measured_test=None) -> dict:
    """:func:`build_library` into ``out`` (library) and ``rejects_path``; returns a summary."""
    pinned, where = (), "measured-test list"
    if measured_test:
        pinned = [mof for _, mof in read_measured_test(measured_test)]
        where = str(measured_test)
    rows, rejects, meta = build_library(shards, max_mofs, seed, fwhm, pinned=pinned, pinned_from=where)
    if not rows:
        raise ValueError(f"no MOF of {', '.join(map(str, shards))} has a theoretical pattern")
    meta["measured_test"] = str(measured_test) if measured_test else None
    _write_table(rows, LIBRARY_SCHEMA, meta, out)
    _write_table(rejects, REJECT_SCHEMA, {"stage": "mof_patterns"}, rejects_path)
    summary = {k: meta[k] for k in ("n_structures", "n_library", "n_rejects", "rejects_by_reason", "seconds")}
    log.info("MOF library: %s", summary)
    return summary


# --------------------------------------------------------------------------- measured patterns


class MeasuredRangeError(PatternError):
    """A measured pattern that does not cover the model's 2θ range (5–50°)."""


def load_measured(path, two_theta: np.ndarray = TWO_THETA, tol: float = COVERAGE_TOL) -> np.ndarray:
    """A measured pattern on the model axis: (2251,) float64, max 1 (see the module docstring).

    Raises :class:`PatternError` ("<file>: <problem>") for a missing, empty or non-numeric file and
    :class:`MeasuredRangeError` when its 2θ range does not cover ``two_theta`` (5–50°).
    """
    x, y = read_pattern(path)  # PatternError names the file: missing, empty, non-numeric, too short
    low, high = float(two_theta[0]), float(two_theta[-1])
    if x[0] > low + tol or x[-1] < high - tol:
        raise MeasuredRangeError(path, f"2theta runs from {x[0]:g} to {x[-1]:g} degrees; the MOF model needs "
                                       f"{low:g}-{high:g} degrees (Cu K-alpha) covered")
    inside = (x >= low - tol) & (x <= high + tol)
    if inside.sum() < 20:
        raise MeasuredRangeError(path, f"only {int(inside.sum())} points between {low:g} and {high:g} degrees")
    pattern = np.interp(two_theta, x, y)
    pattern = pattern - min(0.0, float(pattern.min()))  # no negative counts after background removal
    if not pattern.max() > 0:
        raise PatternError(path, f"no positive intensity between {low:g} and {high:g} degrees")
    return mp.normalise_max(pattern)


def measured_files(folder, exclude=()) -> list[Path]:
    """The pattern files (:data:`MEASURED_SUFFIXES`) of a folder, searched recursively, sorted;
    ``exclude``: files to leave out (the measured-test list, when it lies in the same folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: measured-noise folder not found")
    skip = {Path(e).resolve() for e in exclude if e}
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in MEASURED_SUFFIXES and p.resolve() not in skip)
    if not files:
        raise ValueError(f"{folder}: no measured patterns ({', '.join(MEASURED_SUFFIXES)}) in this folder")
    return files


def read_measured_test(path) -> list[tuple[Path, str]]:
    """[(pattern file, MOF id)] from a CSV with columns ``file,mof_id`` (relative files are
    relative to the CSV's folder). Errors name the CSV."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: measured-test list not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(row for row in fh if row.strip() and not row.lstrip().startswith("#"))
        fields = [f.strip() for f in reader.fieldnames or []]
        if not {"file", "mof_id"} <= set(fields):
            raise ValueError(f"{path}: needs the columns file,mof_id (found {', '.join(fields) or 'none'})")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    out = []
    for lineno, row in enumerate(rows, start=2):
        if not row["file"] or not row["mof_id"]:
            raise ValueError(f"{path}: row {lineno} lacks a file or a mof_id")
        file = Path(row["file"])
        out.append((file if file.is_absolute() else path.parent / file, row["mof_id"]))
    if not out:
        raise ValueError(f"{path}: lists no measured patterns")
    return out


# --------------------------------------------------------------------------- run data

# Defaults of the settings (the workflow passes config.yaml's `mof` values); the numbers are
# defined once, in mof_patterns.py.
AUGMENT_DEFAULTS = {"n_variants": mp.N_VARIANTS, "n_keep": mp.N_KEEP, "val_fraction": mp.VAL_FRACTION,
                    "noise_pool_size": mp.NOISE_POOL_SIZE}
TEST_DEFAULTS = {"per_mof": mp.TEST_PER_MOF, "shift_deg": mp.SHIFT_DEG, "scale": list(mp.SCALE),
                 "broadening": list(mp.BROADENING)}
DENOISE_DEFAULTS = {"keep_bins": mp.KEEP_BINS, "threshold": mp.FFT_THRESHOLD, "check_from": mp.CHECK_FROM}


@dataclasses.dataclass
class RunData:
    ids: list  # class index -> MOF id
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray  # FFT-denoised, max-normalised
    y_test: np.ndarray
    test_source: list  # per test pattern: the measured file, or "perturbed"
    test_kind: str  # "measured" | "perturbed"
    noise_source: str  # mof_patterns.MEASURED_NOISE | SYNTHETIC_NOISE
    noise_model: dict
    denoised: int  # test patterns the FFT rule filtered
    settings: dict

    @property
    def test_digest(self) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.x_test, dtype=np.float32).tobytes())
        h.update(np.asarray(self.y_test, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    @property
    def test_description(self) -> str:
        if self.test_kind == "measured":
            return f"{len(self.y_test)} measured patterns of {len(set(self.y_test.tolist()))} MOFs"
        return (f"{len(self.y_test)} perturbed simulated patterns ({self.settings['test']['per_mof']} per MOF: "
                "peak shift, broadening, intensity scaling, synthetic background + Poisson noise)")

    def meta(self) -> dict:
        """What the predictions tables record about the data."""
        model = {k: v for k, v in self.noise_model.items() if k != "drawn"}
        return {"library_size": len(self.ids), "class_ids": list(self.ids), "n_train": int(len(self.y_train)),
                "n_val": int(len(self.y_val)), "n_test": int(len(self.y_test)), "test_kind": self.test_kind,
                "test_description": self.test_description, "test_digest": self.test_digest,
                "noise_source": self.noise_source, "noise_model": model, "fft_denoised": int(self.denoised),
                "settings": self.settings}


def _noise_pool(measured_noise, size: int, seed: int, exclude=()):
    if measured_noise:
        files = measured_files(measured_noise, exclude)
        patterns = np.stack([load_measured(f) for f in files])
        pool = mp.noise_pool(patterns)
        return pool._replace(model=pool.model | {"folder": str(measured_noise), "files": [f.name for f in files]})
    return mp.noise_pool(None, n=size, rng=np.random.default_rng([seed, 3]))


def build_run_data(library: pd.DataFrame, size: int, settings: dict | None = None, measured_noise=None,
                   measured_test=None, seed: int = 0) -> RunData:
    """Training, validation and test arrays of one library size (see the module docstring).

    ``settings``: ``{"augment": ..., "test": ..., "denoise": ...}`` overriding
    :data:`AUGMENT_DEFAULTS`, :data:`TEST_DEFAULTS`, :data:`DENOISE_DEFAULTS`.
    """
    settings = settings or {}
    aug = AUGMENT_DEFAULTS | (settings.get("augment") or {})
    test = TEST_DEFAULTS | (settings.get("test") or {})
    den = DENOISE_DEFAULTS | (settings.get("denoise") or {})
    size = int(size)
    if size < 2:
        raise ValueError(f"a library needs at least 2 MOFs, got size {size}")
    if size > len(library):
        raise ValueError(f"library size {size} requested, but the library holds only {len(library)} MOFs "
                         "(raise mof.library_sizes' largest value only as far as the structures allow)")
    subset = library.sort_values("rank", kind="stable").iloc[:size]
    ids = subset["id"].tolist()
    patterns = library_patterns(subset)
    if measured_test:  # the user's inputs are checked before any work is done
        listed = read_measured_test(measured_test)
        mapping = match_ids([m for _, m in listed], ids, f"{measured_test} (library of {size} MOFs)")
        index = {ident: i for i, ident in enumerate(ids)}
        x_te = np.stack([load_measured(f) for f, _ in listed])
        y_te = np.array([index[mapping[m]] for _, m in listed], dtype=np.int64)
        sources, kind = [str(f) for f, _ in listed], "measured"
    pool = _noise_pool(measured_noise, int(aug["noise_pool_size"]), seed, exclude=[measured_test])
    x_tr, y_tr, x_va, y_va = mp.augmented_split(patterns, pool.values, int(aug["n_variants"]), int(aug["n_keep"]),
                                                float(aug["val_fraction"]), rng=np.random.default_rng([seed, 1]))
    if not measured_test:
        x_te, y_te = mp.perturbed_test_patterns(patterns, int(test["per_mof"]), np.random.default_rng([seed, 2]),
                                                shift_deg=float(test["shift_deg"]), scale=tuple(test["scale"]),
                                                broadening=tuple(test["broadening"]))
        sources, kind = ["perturbed"] * len(y_te), "perturbed"
    fired = sum(mp.fft_would_denoise(row, float(den["threshold"]), int(den["check_from"])) for row in x_te)
    x_te = mp.normalise_max(mp.fft_denoise(x_te, int(den["keep_bins"]), float(den["threshold"]),
                                           int(den["check_from"]))).astype(np.float32)
    used = {"augment": aug, "test": test, "denoise": den, "seed": int(seed),
            "measured_noise": str(measured_noise) if measured_noise else None,
            "measured_test": str(measured_test) if measured_test else None}
    return RunData(ids, x_tr, y_tr, x_va, y_va, x_te, np.asarray(y_te, dtype=np.int64), sources, kind,
                   pool.noise_source, pool.model, int(fired), used)


# --------------------------------------------------------------------------- predictions


def true_ranks(probabilities: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """1-based rank of the true class, ties counted against it (rank = classes with p ≥ p_true):
    a true class tied with others (e.g. a probability of 0 from kNN) is not ranked by luck."""
    p = np.asarray(probabilities)
    p_true = p[np.arange(len(p)), np.asarray(y_true)]
    return (p >= p_true[:, None]).sum(axis=1).astype(np.int32)


def top_classes(probabilities: np.ndarray, top: int = TOP_STORED) -> np.ndarray:
    """(n, min(top, n_classes)) class indices by falling probability (ties: lower index first)."""
    p = np.asarray(probabilities)
    top = min(int(top), p.shape[1])
    if top < p.shape[1]:  # the candidates first (cheap for thousands of classes), then sorted
        candidates = np.sort(np.argpartition(-p, top - 1, axis=1)[:, :top], axis=1)
    else:
        candidates = np.broadcast_to(np.arange(p.shape[1]), p.shape)
    values = np.take_along_axis(p, candidates, axis=1)
    return np.take_along_axis(candidates, np.argsort(-values, axis=1, kind="stable"), axis=1)


def predictions_frame(probabilities: np.ndarray, data: RunData, model: str, top: int = TOP_STORED) -> pd.DataFrame:
    """One row per test pattern: the true MOF, the rank of its class, and the ``top`` best classes
    with their probabilities (compact float32 / int32 arrays)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(data.y_test)
    order = top_classes(p, top)
    ids = np.asarray(data.ids, dtype=object)
    return pd.DataFrame({
        "model": model,
        "row": np.arange(len(y), dtype=np.int32),
        "test_source": data.test_source,
        "true_class": y.astype(np.int32),
        "true_id": ids[y],
        "true_rank": true_ranks(p, y),
        "p_true": p[np.arange(len(y)), y].astype(np.float32),
        "predicted_id": ids[order[:, 0]],
        "top_classes": list(order.astype(np.int32)),
        "top_ids": [list(ids[row]) for row in order],
        "top_probs": list(np.take_along_axis(p, order, axis=1).astype(np.float32)),
        "noise_source": data.noise_source,
    })


def topk_from_ranks(ranks, ks=(1, 2, 3, 4, 5)) -> dict[int, float]:
    ranks = np.asarray(ranks)
    return {int(k): float((ranks <= k).mean()) if len(ranks) else float("nan") for k in ks}


def rank_scores(ranks, k_max: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n, k_max + 1), labels (n,)) whose top-k (k ≤ ``k_max``) holds the label exactly
    when the stored rank is ≤ k, for the top-k helpers of :mod:`xtalspec.evaluation.mof_reports`
    without the full probability matrix: the true class is the last column (score 0.5, or 0 when
    its rank is beyond ``k_max``), and the first rank − 1 (at most ``k_max``) other columns score 1."""
    ranks = np.asarray(ranks, dtype=np.int64)
    k_max = int(k_max)
    scores = np.zeros((len(ranks), k_max + 1), dtype=np.float32)
    scores[:, :k_max] = np.arange(k_max)[None, :] < np.minimum(ranks - 1, k_max)[:, None]
    scores[:, k_max] = np.where(ranks <= k_max, 0.5, 0.0)
    return scores, np.full(len(ranks), k_max, dtype=np.int64)
