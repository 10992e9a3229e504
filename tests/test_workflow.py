"""The Snakemake workflow: lint-clean, paper-scale DAG offline, and a real run on a CIF folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from conftest import NACL, RUTILE_AS_P1, cif_dir_only

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
    assert "xanes_feff" in out and "xanes_report" in out


def test_structures_target_on_a_user_folder(tmp_path):
    cifs = tmp_path / "mine"
    cifs.mkdir()
    (cifs / "nacl.cif").write_text(NACL)
    (cifs / "rutile.cif").write_text(RUTILE_AS_P1)
    (cifs / "broken.cif").write_text("data_x\n_cell_length_a 3\n")
    config = {
        "results": str(tmp_path / "results"),
        "structures": cif_dir_only(cifs),
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


def test_xrd_system_end_to_end_and_table3_rebuilds_without_training(tmp_path):
    from xrd_fixtures import write_cif_folder

    cifs = write_cif_folder(tmp_path / "structure_types")
    config = {
        "results": str(tmp_path / "results"),
        "structures": cif_dir_only(cifs),
        "xrd": {
            "sources": ["cif_dir"], "min_per_group": 8, "max_groups": None, "n_folds": 2, "per_fold": 1,
            "leakage_bins": 5, "peak_threshold": 0.01, "max_train_per_group": None,
            "members": [{"model": "spgnet", "range": "inf"}, {"model": "spgvolnet", "range": "inf"}],
            "seeds": [1, 2], "table3_range": "inf",
            "train": {"epochs": 1, "batch_size": 8, "lr": 0.001, "volume_weight": 1.0, "threads": 1,
                      "device": "cpu", "gpus_per_job": 0},
        },
    }
    configfile = tmp_path / "c.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = run_snakemake("xrd", "--cores", "2", "--configfile", str(configfile), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "results/xrd"
    table3 = pd.read_csv(out / "tables/table3.csv")
    assert set(zip(table3["model"], table3["kind"])) == {
        ("SpgNet", "specific"), ("SpgNet", "ensemble"), ("SpgVolNet", "specific"), ("SpgVolNet", "ensemble")}
    assert table3["folds"].eq(2).all() and table3["accuracy"].between(0, 1).all()
    for name in ["figures/confusion_spgnet_ensemble.png", "figures/confusion_spgvolnet_II.csv",
                 "figures/volume_error.png", "tables/table2.md", "tables/table_sxi.md", "tables/topk_spgnet.csv"]:
        assert (out / name).exists(), name
    (out / "tables/table3.md").unlink()
    dry = run_snakemake("xrd_table3", "-n", "--configfile", str(configfile))
    assert dry.returncode == 0, dry.stderr
    jobs = dry.stdout + dry.stderr
    assert "xrd_table3_report" in jobs and "xrd_train" not in jobs and "xrd_profiles" not in jobs
