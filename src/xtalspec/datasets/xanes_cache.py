"""A verified cache of FEFF K-edge spectra, shipped in ``resources/xanes/``.

FEFF is deterministic: the spectrum of a given ``feff.inp`` under a given FEFF version never
changes, so a spectrum computed once can be shipped and reused by every run. The cache is one
Parquet file; a row is one absorbing site:

* where it comes from: ``site_key`` (``source:id:site_index``), ``source``, ``id``, ``url``,
  ``cif_sha256`` (of the structure's CIF), ``site_index`` (in the standard primitive cell),
  ``element``;
* the structure model: ``structure_model`` — ``as_published`` or ``majority_occupant`` (the
  ordered approximation of a structure with partial occupancies,
  :mod:`xtalspec.structures.ordering`; ``site_index`` then counts in that model);
* its ChemEnv labels: ``label`` (at the distance factor, 1.2 in the paper), ``label_compare``
  (at 1.4), ``cn``, ``geometry``, ``csm``;
* how it was computed: ``preset``, ``feff_input_sha256`` (sha256 of the ``feff.inp`` bytes),
  ``feff_version`` (the ``feff10-rs`` package), ``code_version`` (xtalspec version + commit),
  ``feff_seconds``;
* the spectrum: ``energy`` (eV, absolute; float64 as FEFF prints it) and ``mu`` (float32).

Sites that FEFF could not compute go to a rejects file beside it (same keys, ``reason``,
``detail``), so they are not retried on every batch either.

:func:`build_cache` fills the cache site by site (resumable: a site already in the cache or its
rejects is never recomputed; the file is rewritten atomically after every site). It visits the
elements in turn and, per element, asks for the class it holds fewest of, labelling candidate
structures lazily (seeded hash order, as :mod:`xtalspec.datasets.xanes_sites`), so that every
batch, however short, adds to every element and to the rare classes first.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter, deque
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from ..provenance import code_version
from ..spectra.xanes_labels import COMPARE_DISTANCE_FACTOR, DEFAULT_DISTANCE_FACTOR
from ..structures.ordering import AS_PUBLISHED, MAJORITY_OCCUPANT, majority_occupant, structure_model
from ..utils.paths import safe_filename
from ..utils.tables import read_frame, write_frame
from .xanes_sites import CLASSES, candidates, primitive_texts, site_key

log = logging.getLogger(__name__)

#: sites per class and element that :func:`build_cache` aims for when given no quota
DEFAULT_QUOTA = {"T4": 20, "S5": 20, "O6": 25}

CACHE_COLUMNS = ["site_key", "source", "id", "url", "cif_sha256", "element", "site_index", "structure_model", "label",
                 "label_compare", "cn", "geometry", "csm", "preset", "feff_input_sha256", "feff_version",
                 "code_version", "feff_seconds", "energy", "mu"]
REJECT_COLUMNS = ["site_key", "source", "id", "url", "element", "site_index", "label", "preset",
                  "reason", "detail", "code_version"]


def feff_version() -> str:
    try:
        return f"feff10-rs {metadata.version('feff10-rs')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - FEFF is a dependency
        return "feff10-rs unknown"


def rejects_path_for(cache_path) -> Path:
    """The rejects file that goes with a cache: ``<stem>_rejects.parquet`` beside it."""
    cache_path = Path(cache_path)
    return cache_path.with_name(f"{cache_path.stem}_rejects{cache_path.suffix}")


def read_cache(path) -> pd.DataFrame:
    """The cache's rows (an empty frame with the cache's columns when the file does not exist)."""
    if path is None or not Path(path).exists():
        return pd.DataFrame(columns=CACHE_COLUMNS)
    frame = read_frame(path)[0]
    if "structure_model" not in frame:  # caches written before the column existed
        frame.insert(CACHE_COLUMNS.index("structure_model"), "structure_model", AS_PUBLISHED)
    return frame


def _read_rejects(path) -> pd.DataFrame:
    if path is None or not Path(path).exists():
        return pd.DataFrame(columns=REJECT_COLUMNS)
    return read_frame(path)[0]


def cache_meta(frame: pd.DataFrame) -> dict:
    counts = {el: {c: int(((frame["element"] == el) & (frame["label"] == c)).sum()) for c in CLASSES}
              for el in sorted(frame["element"].unique())}
    return {"kind": "xtalspec FEFF spectra cache", "n_spectra": len(frame), "counts": counts,
            "feff_cpu_seconds": round(float(frame["feff_seconds"].sum()), 1) if len(frame) else 0.0}


def write_cache(frame: pd.DataFrame, path) -> None:
    frame = frame.sort_values("site_key").reset_index(drop=True)
    write_frame(frame[CACHE_COLUMNS], cache_meta(frame), path)


def merge_caches(cache_paths, out_path) -> dict:
    """One cache from several (e.g. batches run side by side on disjoint elements), and their
    rejects (``rejects_path_for`` each) into ``rejects_path_for(out_path)``. A site in two inputs
    must hold the same ``feff.inp`` hash and the same spectrum, else ValueError; it is kept once."""
    frames = [read_cache(p) for p in cache_paths]
    merged = pd.concat([f for f in frames if len(f)], ignore_index=True)
    for key, group in merged.groupby("site_key"):
        if len(group) > 1:
            first = group.iloc[0]
            for _, other in group.iloc[1:].iterrows():
                if (other["feff_input_sha256"] != first["feff_input_sha256"]
                        or not np.array_equal(np.asarray(other["mu"]), np.asarray(first["mu"]))
                        or not np.array_equal(np.asarray(other["energy"]), np.asarray(first["energy"]))):
                    raise ValueError(f"{key}: two caches hold different spectra for this site")
    merged = merged.drop_duplicates("site_key").reset_index(drop=True)
    rejects = pd.concat([_read_rejects(rejects_path_for(p)) for p in cache_paths], ignore_index=True)
    rejects = rejects[~rejects["site_key"].isin(set(merged["site_key"]))].drop_duplicates("site_key")
    write_cache(merged, out_path)
    write_frame(rejects.sort_values("site_key")[REJECT_COLUMNS].reset_index(drop=True),
                {"kind": "xtalspec FEFF cache rejects"}, rejects_path_for(out_path))
    return {"spectra": len(merged), "rejects": len(rejects), **cache_meta(merged)}


class _SiteStream:
    """Labelled sites of one element, structure by structure, in seeded candidate order."""

    def __init__(self, shards, element, *, distance_factor, compare_factor, max_elements, max_atoms, seed,
                 skip: set[str], include_disordered: bool = False):
        self.element = element
        self.todo = candidates(shards, element, max_elements, max_atoms, seed, include_disordered)
        self.position = 0
        self.queues: dict[str, deque] = {c: deque() for c in CLASSES}
        self.factors = (float(distance_factor), float(compare_factor))
        self.skip = skip
        self.visited = 0
        self.label_failures = 0
        self._texts: dict = {}
        self._cif_sha: dict = {}

    @property
    def exhausted(self) -> bool:
        return self.position >= len(self.todo)

    def _load_texts(self, rows: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        missing = rows[[(s, i) not in self._texts for s, i in zip(rows["source"], rows["id"])]]
        if not len(missing):
            return
        self._texts.update(primitive_texts(missing))
        for shard, part in missing.groupby("shard"):
            wanted = set(zip(part["source"], part["id"]))
            table = pq.read_table(shard, columns=["id", "source", "cif_sha256"]).to_pandas()
            self._cif_sha.update({(s, i): h for s, i, h in zip(table["source"], table["id"], table["cif_sha256"])
                                  if (s, i) in wanted})

    def label_next(self) -> bool:
        """Label the next candidate structure's sites into the class queues; False when none is left."""
        from ..spectra.xanes_labels import absorber_sites, site_environments
        from ..structures.records import structure_from_json

        if self.exhausted:
            return False
        cand = self.todo.iloc[self.position]
        self.position += 1
        self.visited += 1
        self._load_texts(self.todo.iloc[self.position - 1:self.position + 49])
        key = (cand["source"], cand["id"])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = structure_from_json(self._texts[key])
                model = AS_PUBLISHED if structure.is_ordered else MAJORITY_OCCUPANT
                structure = majority_occupant(structure) if model == MAJORITY_OCCUPANT else structure
                sites = absorber_sites(structure, [self.element])
                if not sites:
                    return True
                envs = site_environments(structure, [i for i, _ in sites], self.factors)
        except Exception as exc:  # ChemEnv / spglib failure on this structure
            self.label_failures += 1
            log.warning("%s %s: labelling failed: %s: %s", self.element, cand["id"], type(exc).__name__, exc)
            return True
        for rec, alt in zip(envs[self.factors[0]], envs[self.factors[1]]):
            label = rec["label"]
            skey = site_key(cand["source"], cand["id"], rec["index"])
            if label is None or skey in self.skip:
                continue
            self.queues[label].append({
                "site_key": skey, "source": cand["source"], "id": cand["id"], "url": cand["url"],
                "cif_sha256": self._cif_sha.get(key), "element": self.element, "site_index": int(rec["index"]),
                "structure_model": model, "label": label, "label_compare": alt["label"], "cn": rec["cn"], "geometry": rec["geometry"],
                "csm": rec["csm"], "structure": structure})
        return True

    def next_site(self, wanted: list[str], lookahead: int) -> dict | None:
        """A queued site of the first class in ``wanted`` that has one, labelling up to ``lookahead``
        more structures to find one of the first class; None when the stream is dry."""
        for _ in range(lookahead):
            if self.queues[wanted[0]] or not self.label_next():
                break
        for label in wanted:
            if self.queues[label]:
                return self.queues[label].popleft()
        while self.label_next():
            for label in wanted:
                if self.queues[label]:
                    return self.queues[label].popleft()
        return None


def _wanted_classes(counts: Counter, quota: dict) -> list[str]:
    """Classes still under quota, the one held fewest of first (ties in T4, S5, O6 order)."""
    open_ = [c for c in CLASSES if quota.get(c) is None or counts[c] < quota[c]]
    return sorted(open_, key=lambda c: (counts[c], CLASSES.index(c)))


def build_cache(shards, elements, cache_path, rejects_path, workroot, *, preset: str = "fast",
                quota: dict | None = None, distance_factor: float = DEFAULT_DISTANCE_FACTOR,
                compare_factor: float = COMPARE_DISTANCE_FACTOR,
                max_elements: int | None = 5, max_atoms: int | None = 80, seed: int = 0,
                timeout_s: float = 900.0, max_seconds: float | None = None, max_sites: int | None = None,
                lookahead: int = 20, max_per_element: int | None = None,
                include_disordered: bool = False) -> dict:
    """Extend the cache at ``cache_path`` with FEFF spectra of the elements' labelled sites.

    Per element the classes are filled towards ``quota`` (sites per class; ``None`` = no
    limit), the rarest first; an element stops once it holds ``max_per_element`` spectra.
    ``include_disordered`` also visits structures with partial occupancies, in their
    majority-occupant approximation (:mod:`xtalspec.structures.ordering`). Stops when every
    element is full or dry, after ``max_sites`` new sites, or once ``max_seconds`` have passed
    (the site under way is finished first).
    """
    from ..spectra.feff import compute_site
    from .xanes_spectra import prune_workdir

    quota = quota or dict(DEFAULT_QUOTA)
    cache, rejects = read_cache(cache_path), _read_rejects(rejects_path)
    done = set(cache["site_key"]) | set(rejects["site_key"])
    counts = {el: Counter(cache.loc[cache["element"] == el, "label"]) for el in elements}
    streams = {el: _SiteStream(shards, el, distance_factor=distance_factor, compare_factor=compare_factor,
                               max_elements=max_elements, max_atoms=max_atoms, seed=seed, skip=done,
                               include_disordered=include_disordered)
               for el in elements}
    active = list(elements)
    start, new_rows, new_rejects = time.monotonic(), [], []
    version, fversion = code_version(), feff_version()
    while active:
        for element in list(active):
            if max_seconds is not None and time.monotonic() - start > max_seconds:
                active = []
                break
            if max_sites is not None and len(new_rows) + len(new_rejects) >= max_sites:
                active = []
                break
            wanted = _wanted_classes(counts[element], quota)
            if max_per_element is not None and sum(counts[element].values()) >= max_per_element:
                wanted = []
            site = streams[element].next_site(wanted, lookahead) if wanted else None
            if site is None:
                active.remove(element)
                log.info("%s: done (%s)", element, dict(counts[element]))
                continue
            structure = site.pop("structure")
            workdir = Path(workroot) / element / safe_filename(site["site_key"])
            result = compute_site(structure, site["site_index"], preset, workdir, timeout_s)
            if result.ok:
                prune_workdir(workdir)
                counts[element][site["label"]] += 1
                new_rows.append(site | {"preset": preset, "feff_input_sha256": result.input_sha256,
                                        "feff_version": fversion, "code_version": version,
                                        "feff_seconds": round(float(result.seconds), 2),
                                        "energy": np.asarray(result.energy, dtype=np.float64),
                                        "mu": np.asarray(result.mu, dtype=np.float32)})
                cache = pd.concat([cache, pd.DataFrame([new_rows[-1]])], ignore_index=True)
                write_cache(cache, cache_path)
            else:
                new_rejects.append({k: site[k] for k in ("site_key", "source", "id", "url", "element",
                                                         "site_index", "label")}
                                   | {"preset": preset, "reason": f"feff_{result.status}",
                                      "detail": result.reason[:300], "code_version": version})
                rejects = pd.concat([rejects, pd.DataFrame([new_rejects[-1]])], ignore_index=True)
                write_frame(rejects[REJECT_COLUMNS], {"kind": "xtalspec FEFF cache rejects"}, rejects_path)
            log.info("%s %s %s: %s in %.0f s; %s", element, site["label"], site["site_key"], result.status,
                     result.seconds, dict(counts[element]))
    return {"new_spectra": len(new_rows), "new_rejects": len(new_rejects),
            "seconds": round(time.monotonic() - start, 1), "counts": {el: dict(c) for el, c in counts.items()},
            "structures_visited": {el: s.visited for el, s in streams.items()},
            "labelling_failures": {el: s.label_failures for el, s in streams.items()}}


# --------------------------------------------------------------------------- the cache in a run

#: what a fresh FEFF run may differ from its cached spectrum: energies (eV; FEFF prints 4
#: decimals) and mu (relative to the spectrum's largest |mu|; the cache stores float32)
ENERGY_TOL_EV = 1e-3
MU_REL_TOL = 1e-4


class CacheMismatch(RuntimeError):
    """A fresh FEFF run does not reproduce its cached spectrum."""


def element_spectra(cache: pd.DataFrame, element: str) -> pd.DataFrame:
    """The cache's rows of one element in the columns of a FEFF shard
    (:func:`xtalspec.datasets.xanes_spectra.write_feff_shard`), ``cached`` = True."""
    rows = cache[cache["element"] == element].sort_values("site_key").reset_index(drop=True)
    return pd.DataFrame({
        "id": rows["id"], "source": rows["source"], "url": rows["url"], "site_key": rows["site_key"],
        "element": rows["element"], "site_index": rows["site_index"].astype(int), "label": rows["label"],
        "energy": [np.asarray(e, dtype=np.float64) for e in rows["energy"]],
        "mu": [np.asarray(m, dtype=np.float64) for m in rows["mu"]],
        "feff_seconds": rows["feff_seconds"].astype(float), "cached": True,
        "feff_input_sha256": rows["feff_input_sha256"], "workdir": "cache",
    })


def sample_sites(cache: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` cache rows chosen by ``seed`` (hash order of the site keys: stable as the cache grows)."""
    import hashlib

    order = sorted(cache["site_key"], key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    chosen = set(order[:n])
    return cache[cache["site_key"].isin(chosen)].sort_values("site_key").reset_index(drop=True)


def compare_spectrum(row, energy: np.ndarray, mu: np.ndarray) -> dict:
    """How far a fresh spectrum is from a cached row (max |ΔE|, max |Δμ|, relative Δμ)."""
    cached_e, cached_mu = np.asarray(row["energy"], float), np.asarray(row["mu"], float)
    if len(cached_e) != len(energy):
        return {"same_grid": False, "n_cached": len(cached_e), "n_fresh": len(energy)}
    d_mu = float(np.abs(cached_mu - mu).max())
    return {"same_grid": True, "max_abs_d_energy": float(np.abs(cached_e - energy).max()), "max_abs_d_mu": d_mu,
            "max_rel_d_mu": d_mu / max(float(np.abs(mu).max()), 1e-12)}


def verify_cache(cache_path, structure_shards, n_sites: int, seed: int, workroot, timeout_s: float = 900.0,
                 energy_tol: float = ENERGY_TOL_EV, mu_rel_tol: float = MU_REL_TOL) -> dict:
    """Recompute ``n_sites`` cached spectra (chosen by ``seed``) with FEFF in fresh work
    directories and compare them with the cache: same ``feff.inp`` (sha256), same energies
    (within ``energy_tol``), μ within ``mu_rel_tol`` of its maximum. Returns the comparison;
    raises :class:`CacheMismatch` naming every site that differs."""
    import pyarrow.parquet as pq

    from ..spectra.feff import compute_site
    from ..structures.records import structure_from_json

    cache = read_cache(cache_path)
    chosen = sample_sites(cache, n_sites, seed)
    wanted = set(zip(chosen["source"], chosen["id"]))
    texts, cif_sha = {}, {}
    for shard in structure_shards:
        table = pq.read_table(shard, columns=["id", "source", "primitive", "cif_sha256"]).to_pandas()
        for s, i, p, h in zip(table["source"], table["id"], table["primitive"], table["cif_sha256"]):
            if (s, i) in wanted:
                texts[(s, i)], cif_sha[(s, i)] = p, h
    results, problems = [], []
    for _, row in chosen.iterrows():
        key = (row["source"], row["id"])
        record = {"site_key": row["site_key"], "element": row["element"], "label": row["label"]}
        if key not in texts:
            problems.append(f"{row['site_key']}: its structure is not in the structure shards")
            results.append(record | {"status": "structure_missing"})
            continue
        if row["cif_sha256"] != cif_sha[key]:
            problems.append(f"{row['site_key']}: the structure's CIF differs from the one the cache was made from")
        structure = structure_model(structure_from_json(texts[key]), row.get("structure_model"))
        workdir = Path(workroot) / safe_filename(row["site_key"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = compute_site(structure, int(row["site_index"]), row["preset"], workdir, timeout_s)
        record |= {"status": result.status, "feff_seconds": round(float(result.seconds), 1),
                   "same_input": result.input_sha256 == row["feff_input_sha256"]}
        if not result.ok:
            problems.append(f"{row['site_key']}: FEFF {result.status}: {result.reason[:200]}")
        else:
            record |= compare_spectrum(row, result.energy, result.mu)
            if not record["same_input"]:
                problems.append(f"{row['site_key']}: feff.inp differs from the one the cache was made from")
            if not record["same_grid"] or record["max_abs_d_energy"] > energy_tol:
                problems.append(f"{row['site_key']}: energies differ from the cache's")
            elif record["max_rel_d_mu"] > mu_rel_tol:
                problems.append(f"{row['site_key']}: mu differs from the cache by {record['max_rel_d_mu']:.2e} of its "
                                f"maximum (tolerance {mu_rel_tol:g})")
        results.append(record)
        log.info("cache check %s: %s", row["site_key"], record)
    summary = {"cache": str(cache_path), "n_checked": len(results), "seed": seed, "energy_tol_ev": energy_tol,
               "mu_rel_tol": mu_rel_tol, "sites": results,
               "max_abs_d_mu": max((r.get("max_abs_d_mu", 0.0) for r in results), default=0.0),
               "max_rel_d_mu": max((r.get("max_rel_d_mu", 0.0) for r in results), default=0.0),
               "problems": problems}
    if n_sites == 0:
        summary["note"] = "no cached site recomputed (cache_check_sites: 0): the cache was trusted, not checked"
    if problems:
        raise CacheMismatch("the FEFF spectra cache is not reproduced by a fresh FEFF run:\n  " + "\n  ".join(problems))
    return summary



def write_element_from_cache(cache_path, rejects_path, element: str, sites_out, spectra_out, rejects_out) -> dict:
    """One element's part of a run that takes its spectra from the cache: the sites table
    (every cached site, ``selected``; labels as cached), the spectra in FEFF-shard form and the
    cache's FEFF rejects of the element (reasons as recorded), so the data set, its rejects
    table and the report count them as if FEFF had just run."""
    from .xanes_spectra import REJECT_COLUMNS as FEFF_REJECT_COLUMNS

    cache = read_cache(cache_path)
    mine = cache[cache["element"] == element].sort_values("site_key").reset_index(drop=True)
    sites = pd.DataFrame({
        "site_key": mine["site_key"], "id": mine["id"], "source": mine["source"], "url": mine["url"],
        "shard": "cache", "element": element, "site_index": mine["site_index"].astype(int), "label": mine["label"],
        "selected": True, "cn": mine["cn"], "geometry": mine["geometry"], "csm": mine["csm"],
        "label_compare": mine["label_compare"]})
    failed = _read_rejects(rejects_path)
    failed = failed[failed["element"] == element]
    rejects = pd.DataFrame({c: failed[c] if c in failed else None for c in FEFF_REJECT_COLUMNS})
    counts = {c: int((sites["label"] == c).sum()) for c in CLASSES}
    meta = {"from_cache": str(cache_path), "element": element, "counts": counts,
            "cache_code_versions": sorted(set(mine["code_version"]))}
    changed = int((sites["label"].fillna("none") != sites["label_compare"].fillna("none")).sum())
    write_frame(sites, {"summary": meta | {"selected": counts, "labels_changed_at_compare_factor": changed}}, sites_out)
    write_frame(element_spectra(cache, element), meta, spectra_out)
    write_frame(rejects, meta | {"stage": "xanes_feff_cache"}, rejects_out)
    return meta | {"rejects": len(rejects)}
