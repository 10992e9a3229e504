"""A verified cache of FEFF K-edge spectra, shipped in ``resources/xanes/``.

FEFF is deterministic: the spectrum of a given ``feff.inp`` under a given FEFF version never
changes, so a spectrum computed once can be shipped and reused by every run. The cache is one
Parquet file; a row is one absorbing site:

* where it comes from: ``site_key`` (``source:id:site_index``), ``source``, ``id``, ``url``,
  ``cif_sha256`` (of the structure's CIF), ``site_index`` (in the standard primitive cell),
  ``element``;
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
from ..utils.paths import safe_filename
from ..utils.tables import read_frame, write_frame
from .xanes_sites import CLASSES, candidates, primitive_texts, site_key

log = logging.getLogger(__name__)

#: sites per class and element that :func:`build_cache` aims for when given no quota
DEFAULT_QUOTA = {"T4": 20, "S5": 20, "O6": 25}

CACHE_COLUMNS = ["site_key", "source", "id", "url", "cif_sha256", "element", "site_index", "label",
                 "label_compare", "cn", "geometry", "csm", "preset", "feff_input_sha256", "feff_version",
                 "code_version", "feff_seconds", "energy", "mu"]
REJECT_COLUMNS = ["site_key", "source", "id", "url", "element", "site_index", "label", "preset",
                  "reason", "detail", "code_version"]


def feff_version() -> str:
    try:
        return f"feff10-rs {metadata.version('feff10-rs')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - FEFF is a dependency
        return "feff10-rs unknown"


def read_cache(path) -> pd.DataFrame:
    """The cache's rows (an empty frame with the cache's columns when the file does not exist)."""
    if path is None or not Path(path).exists():
        return pd.DataFrame(columns=CACHE_COLUMNS)
    return read_frame(path)[0]


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


class _SiteStream:
    """Labelled sites of one element, structure by structure, in seeded candidate order."""

    def __init__(self, shards, element, *, distance_factor, compare_factor, max_elements, max_atoms, seed,
                 skip: set[str]):
        self.element = element
        self.todo = candidates(shards, element, max_elements, max_atoms, seed)
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
                "label": label, "label_compare": alt["label"], "cn": rec["cn"], "geometry": rec["geometry"],
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
                lookahead: int = 20) -> dict:
    """Extend the cache at ``cache_path`` with FEFF spectra of the elements' labelled sites.

    Per element the classes are filled towards ``quota`` (sites per class; ``None`` = no
    limit), the rarest first. Stops when every element is full or dry, after ``max_sites``
    new sites, or once ``max_seconds`` have passed (the site under way is finished first).
    """
    from ..spectra.feff import compute_site
    from .xanes_spectra import prune_workdir

    quota = quota or dict(DEFAULT_QUOTA)
    cache, rejects = read_cache(cache_path), _read_rejects(rejects_path)
    done = set(cache["site_key"]) | set(rejects["site_key"])
    counts = {el: Counter(cache.loc[cache["element"] == el, "label"]) for el in elements}
    streams = {el: _SiteStream(shards, el, distance_factor=distance_factor, compare_factor=compare_factor,
                               max_elements=max_elements, max_atoms=max_atoms, seed=seed, skip=done)
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
