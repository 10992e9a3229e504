"""spacegroupMining data (Lan, Liu, Du & Billinge; after Liu et al. 2019): the 209-point PDF
model inputs of structures in the 45 most common space groups, split 80/20 stratified by space
group with a seed. The paper's fixed numbers (its 45 groups, Table 1, the sweeps of Tables 2–5
with its reported values) live in :mod:`xtalspec.datasets.pdf_paper` and are re-exported here."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..provenance import code_version
from ..structures import load_structures
from ..structures.ingest import Progress
from ..structures.records import REJECT_SCHEMA
from ..utils.atomic import atomic_path
from .pdf_paper import PAPER_GROUPS, PAPER_PARAMS, PAPER_RESULT, SWEEPS  # noqa: F401  (the paper's numbers)

log = logging.getLogger("xtalspec.pdfs")

PDF_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("spacegroup", pa.int16()),
                        ("structure_shard", pa.string()), ("params", pa.string()), ("x", pa.list_(pa.float32()))])


def sample_params(ident: str, seed: int) -> dict:
    """Beyond the paper: PDF parameters drawn per structure from the swept ranges (uniform between
    the smallest and largest value of each sweep in :data:`SWEEPS`: rmax 10–30 Å, Qmax 12–30 Å⁻¹,
    Qdamp 0–0.15 Å⁻¹, Uiso 0.005–0.010 Å²), reproducibly from (seed, id)."""
    import hashlib

    rng = np.random.default_rng(int(hashlib.sha1(f"{seed}:{ident}".encode()).hexdigest()[:15], 16))
    params = dict(PAPER_PARAMS)
    for parameter, sweep in SWEEPS.items():  # rmax, qmax, qdamp, uiso: the order of the draws
        params[parameter] = float(rng.uniform(min(sweep["values"]), max(sweep["values"])))
    return params


def model_input_for(structure, params: dict) -> np.ndarray:
    """The 209-point input at ``params`` (zero beyond rmax, as the paper zero-pads)."""
    from ..spectra.pdf import model_input, pdf

    r, g = pdf(structure, **params)
    return model_input(r, g, data_rmax=params["rmax"])


def write_pdf_shard(structure_shard: str | Path, out_path: str | Path, rejects_path: str | Path,
                    groups: list[int] = PAPER_GROUPS, randomise_seed: int | None = None) -> dict:
    """Model inputs for the structures of one shard that belong to ``groups`` (on their standard
    primitive cells); failures go to the rejects with their reason."""
    from ..spectra.pdf import PDFError

    wanted = set(groups)
    records = [r for r in load_structures([structure_shard], columns=["id", "source", "url", "spacegroup",
                                                                      "primitive"]) if r.spacegroup in wanted]
    rows, rejects = [], []
    progress = Progress(len(records), f"PDFs {Path(structure_shard).name}")
    start = time.monotonic()
    for record in records:
        params = PAPER_PARAMS if randomise_seed is None else sample_params(record.id, randomise_seed)
        try:
            x = model_input_for(record.primitive, params)
            if not np.isfinite(x).all():
                raise PDFError("non-finite PDF")
            rows.append({"id": record.id, "source": record.source, "spacegroup": record.spacegroup,
                         "structure_shard": str(structure_shard), "params": json.dumps(params, sort_keys=True),
                         "x": x.astype(np.float32)})
        except (PDFError, ValueError, KeyError) as exc:
            rejects.append({"id": record.id, "source": record.source, "url": record.url,
                            "reason": getattr(exc, "reason", "pdf_failed"), "detail": str(exc)[:300]})
        progress.step()
    progress.close()
    seconds = time.monotonic() - start
    meta = {"code_version": code_version(), "structure_shard": str(structure_shard),
            "params": "random per structure" if randomise_seed is not None else PAPER_PARAMS,
            "randomise_seed": randomise_seed}
    for rows_, schema, path in ((rows, PDF_SCHEMA, out_path), (rejects, REJECT_SCHEMA, rejects_path)):
        table = pa.Table.from_pylist(rows_, schema=schema).replace_schema_metadata({"xtalspec": json.dumps(meta)})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
    log.info("%s: %d PDFs, %d rejects, %.1f structures/s", out_path, len(rows), len(rejects),
             len(records) / max(seconds, 1e-9))
    return {"pdfs": len(rows), "rejects": len(rejects), "seconds": seconds}


def build_pdf_dataset(paths: list[str | Path], seed: int, test_fraction: float = 0.2,
                      min_per_group: int = 2) -> tuple[pd.DataFrame, dict]:
    """All PDFs of the given shards, the groups with at least ``min_per_group`` members, and a
    stratified seeded split (``split`` = "train" / "test")."""
    frames = [pq.read_table(p).to_pandas() for p in paths]
    table = pd.concat(frames, ignore_index=True) if frames else PDF_SCHEMA.empty_table().to_pandas()
    counts = table["spacegroup"].value_counts()
    groups = sorted(int(g) for g in counts[counts >= min_per_group].index)
    table = table[table["spacegroup"].isin(groups)].sort_values(["spacegroup", "source", "id"]).reset_index(drop=True)
    table["class_index"] = table["spacegroup"].map({g: i for i, g in enumerate(groups)}).astype(np.int16)
    rng = np.random.default_rng(seed)
    split = np.full(len(table), "train", dtype=object)
    for _, rows in table.groupby("spacegroup").indices.items():
        rows = rng.permutation(rows)
        n_test = int(round(test_fraction * len(rows)))
        split[rows[:n_test]] = "test"
    table["split"] = split
    description = {"spacegroups": groups, "missing_paper_groups": sorted(set(PAPER_GROUPS) - set(groups)),
                   "n_train": int((split == "train").sum()), "n_test": int((split == "test").sum()),
                   "test_fraction": test_fraction, "seed": seed}
    return table, description


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """w_i = N_train / N_i (the paper's weighted cross-entropy); classes absent get weight 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    return np.divide(len(labels), counts, out=np.zeros(n_classes), where=counts > 0)
