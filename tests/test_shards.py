"""Shards: atomic writes, deterministic layout, kill-and-resume gives byte-identical files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xtalspec.structures import load_structures
from xtalspec.structures.ingest import ids_for_shard, select_ids
from xtalspec.utils.atomic import atomic_path, atomic_write_text
from xtalspec.utils.paths import path_inside, safe_filename

N_SHARDS = 4
CMD = [sys.executable, "-m", "xtalspec.cli", "ingest", "--source", "amcsd", "--max-structures", "160",
       "--n-shards", str(N_SHARDS), "--no-summary", "--out"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_safe_names_stay_inside(tmp_path):
    assert safe_filename("1000041") == "1000041"
    for bad in ["../../x", "/etc/passwd", "..", "a/../../b", "x\x00y", ""]:
        name = safe_filename(bad)
        assert "/" not in name and not name.startswith(".") and name
        assert path_inside(tmp_path, bad).parent == tmp_path.resolve()
    assert safe_filename("a/b") != safe_filename("a_b")  # distinct ids stay distinct


def test_subset_and_shard_layout_are_deterministic():
    ids = [f"{i:05d}" for i in range(1000)]
    subset = select_ids(ids, 100, seed=3)
    assert subset == select_ids(list(reversed(ids)), 100, seed=3) and len(subset) == 100
    assert subset != select_ids(ids, 100, seed=4)
    assert subset != ids[:100]  # spread over the source, not its head
    parts = [ids_for_shard(subset, s, 7) for s in range(7)]
    assert sorted(sum(parts, [])) == subset


def _run(out: Path) -> None:
    subprocess.run(CMD + [str(out)], check=True, capture_output=True, timeout=600)


def test_killed_ingestion_resumes_to_byte_identical_shards(tmp_path):
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    _run(clean)
    proc = subprocess.Popen(CMD + [str(resumed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (resumed / "shard-000.parquet").exists():
        assert proc.poll() is None, "ingestion ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # now in the middle of shard 1
    proc.wait()
    finished = sorted(p.name for p in resumed.glob("shard-*.parquet"))
    assert len(finished) < N_SHARDS, "the kill came too late to test a resume"
    _run(resumed)
    names = sorted(p.name for p in clean.glob("*.parquet"))
    assert len(names) == 2 * N_SHARDS
    for name in names:
        assert (clean / name).read_bytes() == (resumed / name).read_bytes(), name
    assert not list(resumed.glob("*.tmp")) or all(p.name.startswith(".") for p in resumed.glob("*.tmp"))
    records = list(load_structures(sorted(clean.glob("shard-*.parquet"))))
    assert len(records) > 140
    first = records[0]
    assert first.source == "amcsd" and len(first.structure) == first.n_atoms_cif
