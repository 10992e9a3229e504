"""Parquet tables that carry their provenance: a JSON document under the ``xtalspec`` key of
the schema metadata (code version always added), written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..provenance import code_version
from .atomic import atomic_path


def write_frame(frame: pd.DataFrame, meta: dict, path: str | Path, compression: str = "zstd") -> None:
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    arrow = arrow.replace_schema_metadata({"xtalspec": json.dumps(meta | {"code_version": code_version()})})
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp, compression=compression)


def read_frame(path: str | Path) -> tuple[pd.DataFrame, dict]:
    arrow = pq.read_table(path)
    return arrow.to_pandas(), json.loads(arrow.schema.metadata[b"xtalspec"])
