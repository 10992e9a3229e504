"""The offline sources read what the packages ship; the user's folder; MP's key check."""

from __future__ import annotations

import gzip

import pytest

from xtalspec.cli import main
from xtalspec.structures.sources import make_source
from xtalspec.structures.sources.mp import MissingAPIKey, api_key, fetch_mp

from conftest import NACL


def test_amcsd_lists_the_shipped_minerals_and_yields_cif_text():
    source = make_source("amcsd")
    ids = source.list_ids()
    assert len(ids) > 9000 and ids == sorted(ids)
    entry = next(source.iter_entries(["0000008"]))  # marcasite
    assert entry.error is None and b"_cell_length_a" in entry.data and b"Marcasite" in entry.data
    assert entry.provenance.source == "amcsd" and "larixite" in entry.provenance.origin


def test_coremof_lists_2019_asr_and_reads_members():
    source = make_source("coremof", {"dataset": "2019-ASR"})
    ids = source.list_ids()
    assert len(ids) > 12000
    wanted = ["ABAVIJ_clean", "not-a-mof"]
    entries = list(source.iter_entries(wanted))
    assert [e.id for e in entries] == wanted
    assert entries[0].data.startswith(b"data_ABAVIJ")
    assert entries[1].data is None and "absent" in entries[1].error
    with pytest.raises(ValueError):
        make_source("coremof", {"dataset": "1999"})


def test_cif_dir_is_recursive_with_relative_ids(write_cifs):
    root = write_cifs({"a.cif": NACL, "deep/er/b.CIF": NACL, "c.cif.gz": gzip.compress(NACL.encode()),
                       "notes.txt": "not a cif"})
    source = make_source("cif_dir", {"path": str(root)})
    assert source.list_ids() == ["a.cif", "c.cif.gz", "deep/er/b.CIF"]
    entries = list(source.iter_entries(source.list_ids()))
    assert all(e.data == NACL.encode() for e in entries)
    bad = next(source.iter_entries(["../outside.cif"]))
    assert bad.data is None and "outside" in bad.error
    with pytest.raises(FileNotFoundError):
        make_source("cif_dir", {"path": str(root / "missing")})


def test_materials_project_without_key_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="MP_API_KEY"):
        api_key()
    with pytest.raises(MissingAPIKey):
        fetch_mp({}, tmp_path)
    assert main(["ingest", "--source", "mp", "--out", str(tmp_path / "out")]) == 2


def test_ingest_cli_shard_columns(write_cifs, tmp_path):
    import pandas as pd

    root = write_cifs({"nacl.cif": NACL})
    assert main(["ingest", "--source", "cif_dir", "--path", str(root), "--out", str(tmp_path / "o"),
                 "--n-shards", "1"]) == 0
    row = pd.read_parquet(tmp_path / "o" / "shard-000.parquet").iloc[0]
    assert row["id"] == "nacl.cif" and row["source"] == "cif_dir" and row["formula"] == "Na4 Cl4"
    assert row["spacegroup"] == 225 and row["spacegroup_cif"] == 225 and not row["relabelled"]
    assert row["n_atoms"] == 2 and row["volume"] > 0
    assert (tmp_path / "o" / "rejects.parquet").exists() and (tmp_path / "o" / "summary.json").exists()
