"""δ-profile shards: one output shard per structure shard, profiles stored sparse
(bin indices + values of the non-zero bins). A structure whose profile cannot be computed
(an element without form factors, no reflection in range, a non-finite value) goes to the
shard's rejects with its reason."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..provenance import code_version
from ..spectra.xrd import B_ISO, INV_D_MAX, INV_D_MIN, N_BINS, delta_profile_sparse
from ..structures import load_structures
from ..structures.ingest import Progress
from ..structures.records import REJECT_SCHEMA
from ..utils.atomic import atomic_path

log = logging.getLogger("xtalspec.xrd_profiles")

META_COLUMNS = ["id", "source", "spacegroup", "volume", "n_atoms", "log_volume_per_atom", "log_density"]
PROFILE_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("spacegroup", pa.int16()), ("volume", pa.float64()),
    ("n_atoms", pa.int32()), ("log_volume_per_atom", pa.float64()), ("log_density", pa.float64()),
    ("bins", pa.list_(pa.int32())), ("values", pa.list_(pa.float32())),
])


def profile_or_reason(structure) -> tuple[np.ndarray, np.ndarray] | str:
    try:
        bins, values = delta_profile_sparse(structure)
    except (KeyError, ValueError) as exc:
        return f"profile_failed: {type(exc).__name__}: {exc}"
    if len(bins) == 0:
        return f"no_reflections: no hkl with {INV_D_MIN} < 1/d < {INV_D_MAX} Å⁻¹"
    if not np.isfinite(values).all():
        return "non_finite_profile"
    return bins, values


def write_profile_shard(structure_shard: str | Path, out_path: str | Path, rejects_path: str | Path) -> dict:
    """Compute the δ-profile of every structure (on its standard primitive cell, the paper's
    choice; any cell gives the same profile) and write the sparse profile shard."""
    rows, rejects = [], []
    records = list(load_structures([structure_shard], columns=META_COLUMNS + ["primitive", "url"]))
    progress = Progress(len(records), f"δ-profiles {Path(structure_shard).name}")
    start = time.monotonic()
    for record in records:
        result = profile_or_reason(record.primitive)
        if isinstance(result, str):
            reason, _, detail = result.partition(": ")
            rejects.append({"id": record.id, "source": record.source, "url": record.url, "reason": reason,
                            "detail": detail or reason})
        else:
            rows.append({**{k: record.row[k] for k in META_COLUMNS}, "bins": result[0].astype(np.int32),
                         "values": result[1].astype(np.float32)})
        progress.step()
    progress.close()
    seconds = time.monotonic() - start
    meta = {"code_version": code_version(), "structure_shard": str(structure_shard), "n_bins": N_BINS,
            "inv_d_range": [INV_D_MIN, INV_D_MAX], "b_iso": B_ISO, "cell": "standard primitive"}
    _write(pa.Table.from_pylist(rows, schema=PROFILE_SCHEMA), out_path, meta)
    _write(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), rejects_path, meta)
    log.info("%s: %d profiles, %d rejects in %.1f s (%.2f ms/structure)", out_path, len(rows), len(rejects), seconds,
             1000 * seconds / max(len(records), 1))
    return {"profiles": len(rows), "rejects": len(rejects), "seconds": seconds}


def _write(table: pa.Table, path, meta: dict) -> None:
    table = table.replace_schema_metadata({"xtalspec": json.dumps(meta, sort_keys=True)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_profiles(paths) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    frames = [pq.read_table(p).to_pandas() for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else PROFILE_SCHEMA.empty_table().to_pandas()
