"""The Snakemake workflow: lint-clean, paper-scale DAG offline, and a real run on a CIF folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import NACL, RUTILE_AS_P1

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(*args, timeout=300):
    return subprocess.run(SNAKEMAKE + list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_lint_is_clean():
    result = run_snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_paper_dag_builds_offline():
    result = run_snakemake("-n", "--configfile", "config/paper.yaml", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "fetch_structures" in out and "ingest_shard" in out


def test_structures_target_on_a_user_folder(tmp_path):
    cifs = tmp_path / "mine"
    cifs.mkdir()
    (cifs / "nacl.cif").write_text(NACL)
    (cifs / "rutile.cif").write_text(RUTILE_AS_P1)
    (cifs / "broken.cif").write_text("data_x\n_cell_length_a 3\n")
    config = {
        "results": str(tmp_path / "results"),
        "structures": {"sources": {
            "amcsd": {"enabled": False, "n_shards": 1},
            "coremof": {"enabled": False, "n_shards": 1},
            "cif_dir": {"enabled": True, "n_shards": 2, "path": str(cifs)},
        }},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake("structures", "--cores", "1", "--configfile", str(tmp_path / "c.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "results/structures/summary.json").read_text())
    assert summary["sources"]["cif_dir"] == {"seen": 3, "accepted": 2, "rejected": 1, "relabelled": 1,
                                             "relabelled_pct": 50.0, "cif_label_missing": 0}
    assert (tmp_path / "results/structures/spacegroup_histogram.png").stat().st_size > 1000
    assert list((tmp_path / "results/logs/structures/cif_dir").glob("ingest-*.log"))
    assert list((tmp_path / "results/benchmarks/rules/structures/cif_dir").glob("ingest-*.tsv"))
