"""Absorbing sites for the XANES classifier: candidates, ChemEnv labels, per-class quotas.

For one absorbing element: the ordered structures of the structure shards that contain O and
that element (optionally at most ``max_elements`` elements and ``max_atoms`` atoms in the
standard primitive cell) are visited in a seeded hash order; each visited structure's
symmetry-inequivalent sites of the element are labelled T4 / S5 / O6 / None by ChemEnv
(:mod:`xtalspec.spectra.xanes_labels`) at the configured distance factor, and also at the
comparison factor (ChemEnv's usual 1.4) to count how many labels would change. Labelled sites
are kept until each class has ``max_per_class[label]`` sites (``None`` = no limit, the paper's
"all sites"), or ``max_structures`` structures were visited.

Every visited site is a row (label None = outside the three classes, not fed to FEFF); a
structure whose labelling fails is a reject with its reason. Sites refer to the *standard
primitive cell* stored in the shard (``primitive``), which is what FEFF is run on.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ..spectra.xanes_labels import COMPARE_DISTANCE_FACTOR, DEFAULT_DISTANCE_FACTOR, LABELS as CLASSES
from ..structures.records import structure_from_json
from ..utils.tables import write_frame

log = logging.getLogger(__name__)

LIGHT_COLUMNS = ["id", "source", "url", "elements", "disordered", "n_atoms"]


def site_key(source: str, ident: str, index: int) -> str:
    return f"{source}:{ident}:{index}"


def candidates(shards, element: str, max_elements: int | None, max_atoms: int | None,
               seed: int, include_disordered: bool = False) -> pd.DataFrame:
    """Rows (id, source, url, shard, disordered) of structures that qualify, in seeded hash order
    (structures with partial occupancies only when ``include_disordered``, and after all ordered ones)."""
    frames = []
    for shard in shards:
        frame = pq.read_table(shard, columns=LIGHT_COLUMNS).to_pandas()
        frame["shard"] = str(shard)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=LIGHT_COLUMNS + ["shard"])
    table = pd.concat(frames, ignore_index=True)
    elements = table["elements"].apply(lambda e: set(e))
    keep = elements.apply(lambda e: "O" in e and element in e)
    if not include_disordered:
        keep &= ~table["disordered"].astype(bool)
    if max_elements:
        keep &= elements.apply(len) <= max_elements
    if max_atoms:
        keep &= table["n_atoms"] <= max_atoms
    table = table[keep].copy()
    table["order"] = [hashlib.sha256(f"{seed}:{s}:{i}".encode()).hexdigest()
                      for s, i in zip(table["source"], table["id"])]
    # structures as published first, then those that need the majority-occupant model
    return table.sort_values(["disordered", "order"]).reset_index(drop=True)


def primitive_texts(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``{(source, id): primitive-cell JSON}`` for the rows' structures, each shard read once
    (only its rows' structures kept)."""
    texts: dict[tuple[str, str], str] = {}
    for shard, part in rows.groupby("shard"):
        wanted = set(zip(part["source"], part["id"]))
        table = pq.read_table(shard, columns=["id", "source", "primitive"]).to_pandas()
        texts.update({(s, i): p for s, i, p in zip(table["source"], table["id"], table["primitive"])
                      if (s, i) in wanted})
    return texts


def select_sites(shards, element: str, *, distance_factor: float = DEFAULT_DISTANCE_FACTOR,
                 compare_factor: float = COMPARE_DISTANCE_FACTOR,
                 max_per_class: dict | None = None, max_structures: int | None = None,
                 max_elements: int | None = None, max_atoms: int | None = None,
                 seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(sites, rejects, summary) for one absorbing element (rules in the module docstring)."""
    from ..spectra.xanes_labels import absorber_sites, site_environments

    quota = {c: (None if not max_per_class else max_per_class.get(c)) for c in CLASSES}
    todo = candidates(shards, element, max_elements, max_atoms, seed)
    counts, rows, rejects = Counter(), [], []
    limit = len(todo) if max_structures is None else max_structures
    texts = primitive_texts(todo.head(limit))
    visited = 0
    start = time.monotonic()
    factors = (float(distance_factor), float(compare_factor))
    for cand in todo.itertuples():
        if max_structures is not None and visited >= max_structures:
            break
        if all(q is not None and counts[c] >= q for c, q in quota.items()):
            break
        visited += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = structure_from_json(texts[(cand.source, cand.id)])
                sites = absorber_sites(structure, [element])
                if not sites:
                    continue
                envs = site_environments(structure, [i for i, _ in sites], factors)
        except Exception as exc:  # ChemEnv / spglib failure on this structure
            rejects.append({"id": cand.id, "source": cand.source, "url": cand.url, "site_key": None,
                            "element": element, "reason": "labelling_failed",
                            "detail": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        for rec, alt in zip(envs[factors[0]], envs[factors[1]]):
            label = rec["label"]
            wanted = label is not None and (quota[label] is None or counts[label] < quota[label])
            if wanted:
                counts[label] += 1
            rows.append({"site_key": site_key(cand.source, cand.id, rec["index"]), "id": cand.id,
                         "source": cand.source, "url": cand.url, "shard": cand.shard,
                         "element": element, "site_index": int(rec["index"]), "label": label,
                         "selected": bool(wanted), "cn": rec["cn"], "geometry": rec["geometry"],
                         "csm": rec["csm"], "label_compare": alt["label"]})
    sites = pd.DataFrame(rows, columns=["site_key", "id", "source", "url", "shard", "element",
                                        "site_index", "label", "selected", "cn", "geometry", "csm",
                                        "label_compare"])
    changed = int((sites["label"].fillna("none") != sites["label_compare"].fillna("none")).sum())
    summary = {
        "element": element, "candidates": len(todo), "structures_visited": visited,
        "sites_labelled": len(sites), "selected": {c: int(counts[c]) for c in CLASSES},
        "unlabelled_sites": int(sites["label"].isna().sum()), "rejects": len(rejects),
        "distance_factor": factors[0], "compare_factor": factors[1],
        "labels_changed_at_compare_factor": changed,
        "transitions": {f"{a}->{b}": int(n) for (a, b), n in Counter(
            zip(sites["label"].fillna("none"), sites["label_compare"].fillna("none"))).items() if a != b},
        "max_per_class": quota, "max_structures": max_structures, "max_elements": max_elements,
        "max_atoms": max_atoms, "seed": seed, "seconds": round(time.monotonic() - start, 1),
    }
    log.info("%s: %d structures visited of %d candidates, selected %s, %d labels change at %.1f",
             element, visited, len(todo), summary["selected"], changed, factors[1])
    reject_columns = ["id", "source", "url", "site_key", "element", "reason", "detail"]
    return sites, pd.DataFrame(rejects, columns=reject_columns), summary


def write_sites(shards, element: str, out: str | Path, rejects_out: str | Path, **options) -> dict:
    sites, rejects, summary = select_sites(shards, element, **options)
    write_frame(sites, {"summary": summary}, out)
    write_frame(rejects, {"element": element, "stage": "xanes_sites"}, rejects_out)
    return summary
