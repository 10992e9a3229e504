"""The deploy models' data: every δ-profile of a profile shard rendered as ``copies`` measured-like
scans and run through the front end of ``predict-xrd`` (:mod:`xtalspec.spectra.lab_scans`).

One output shard per profile shard (sparse bins/values, like the profiles, plus the drawn
conditions), so Snakemake renders shards in parallel and never renders a shard twice. A copy the
front end finds no peak in goes to the shard's rejects with its reason. Each structure's draws
come from its own generator, seeded by (seed, structure id, copy), so a shard's output does not
depend on which other structures it holds.

The augmentation ablation renders only a seeded share of the structures (``fraction``; the same
structures in every variant, :func:`in_subset`), so that the nine ablated renderings at 0.25 cost
about as much as two full ones.
"""

from __future__ import annotations

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
from ..spectra.lab_scans import AUGMENTATIONS, measured_like_profile
from ..spectra.measured import PatternError
from ..utils.atomic import atomic_path

log = logging.getLogger("xtalspec.xrd_deploy")

RENDERED_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("spacegroup", pa.int16()), ("copy", pa.int16()),
    ("bins", pa.list_(pa.int32())), ("values", pa.list_(pa.float32())), ("conditions", pa.string()),
])
REJECT_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("copy", pa.int16()),
                           ("reason", pa.string()), ("detail", pa.string())])


def _hash64(text: str) -> int:
    """A 64-bit integer from ``text`` (sha256): the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def copy_rng(seed: int, structure_id: str, copy: int) -> np.random.Generator:
    return np.random.default_rng(_hash64(f"{seed}|{structure_id}|{copy}"))


def in_subset(seed: int, structure_id: str, fraction: float) -> bool:
    """Whether a structure belongs to the seeded ``fraction`` of all structures (decided by a hash
    of seed and id alone, so every shard, variant and data set agrees); always true at 1."""
    if fraction >= 1.0:
        return True
    return _hash64(f"subset|{seed}|{structure_id}") / 2.0 ** 64 < fraction


def render_shard(profile_shard: str | Path, out_path: str | Path, rejects_path: str | Path, *, copies: int,
                 seed: int, spacegroups: list[int] | None = None, disabled: tuple[str, ...] = (),
                 fraction: float = 1.0) -> dict:
    """Render ``copies`` measured-like front-end profiles of every profile in the shard (only of
    ``spacegroups`` when given; only of the :func:`in_subset` share when ``fraction`` < 1) with
    the augmentations in ``disabled`` switched off."""
    table = pq.read_table(profile_shard, columns=["id", "source", "spacegroup", "bins", "values"]).to_pandas()
    if spacegroups is not None:
        table = table[table["spacegroup"].isin(spacegroups)]
    if fraction < 1.0:
        table = table[[in_subset(seed, i, fraction) for i in table["id"]]]
    rows, rejects = [], []
    start = time.monotonic()
    for record in table.itertuples(index=False):
        for copy in range(copies):
            rng = copy_rng(seed, record.id, copy)
            try:
                bins, values, cond = measured_like_profile(record.bins, record.values, rng, disabled)
            except PatternError as exc:
                rejects.append({"id": record.id, "source": record.source, "copy": copy, "reason": "no_peaks",
                                "detail": str(exc)})
                continue
            rows.append({"id": record.id, "source": record.source, "spacegroup": int(record.spacegroup),
                         "copy": copy, "bins": bins, "values": values,
                         "conditions": json.dumps(cond.as_dict(), sort_keys=True)})
    seconds = time.monotonic() - start
    meta = {"code_version": code_version(), "profile_shard": str(profile_shard), "copies": copies, "seed": seed,
            "fraction": fraction, "disabled": list(disabled),
            "augmentations": [a for a in AUGMENTATIONS if a not in disabled], "seconds": round(seconds, 1)}
    _write(pa.Table.from_pylist(rows, schema=RENDERED_SCHEMA), out_path, meta)
    _write(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), rejects_path, meta)
    n = max(len(table) * copies, 1)
    log.info("%s: %d rendered, %d rejected in %.0f s (%.0f ms a copy)", out_path, len(rows), len(rejects), seconds,
             1000 * seconds / n)
    return {"rendered": len(rows), "rejects": len(rejects), "seconds": seconds}


def _write(table: pa.Table, path, meta: dict) -> None:
    table = table.replace_schema_metadata({"xtalspec": json.dumps(meta, sort_keys=True)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_rendered(paths) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else RENDERED_SCHEMA.empty_table().to_pandas()


def held_out_ids(ids: pd.Series, spacegroups: pd.Series, fraction: float, seed: int) -> set[str]:
    """A seeded, per-group share of the structures kept out of training (calibration and the
    validation curve); at least one per group."""
    rng = np.random.default_rng(seed)
    held = set()
    frame = pd.DataFrame({"id": ids.to_numpy(), "g": spacegroups.to_numpy()}).drop_duplicates("id")
    for _, members in frame.groupby("g", sort=True):
        chosen = sorted(members["id"])
        k = max(1, int(round(fraction * len(chosen))))
        held.update(rng.choice(chosen, size=k, replace=False).tolist())
    return held
