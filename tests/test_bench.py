"""``xtalspec bench``: every section in the json and the markdown, positive finite ratios, a
failing section recorded without stopping the run, and the per-rule collector of Snakemake's
benchmark files."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from test_xrd_training import dataset_path  # noqa: F401,E402  (fixture)

from xtalspec import bench
from xtalspec.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_tsv(path: Path, *seconds: float, rss: str = "400.50") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{s:.2f}\t0:00:{int(s):02d}\t{rss}\t2427.05\t267.28\t322.62\t0.00\t1.48\t77.07\t2.50\n"
                   for s in seconds)
    path.write_text(HEADER + rows)


def synthetic_rules(root: Path) -> Path:
    write_tsv(root / "structures/amcsd/ingest-000.tsv", 2.0)
    write_tsv(root / "structures/amcsd/ingest-001.tsv", 4.0, rss="512.00")
    write_tsv(root / "structures/cod/ingest-000.tsv", 9.0)
    write_tsv(root / "structures/summary.tsv", 1.0)
    write_tsv(root / "xrd/train/spgnet-inf-fold1-seed1.tsv", 10.0, 20.0)  # repeat(): one job, mean 15
    write_tsv(root / "xrd/train/spgvolnet-inf-fold2-seed3.tsv", 5.0)
    write_tsv(root / "xrd/dataset.tsv", 1.5, rss="NA")
    write_tsv(root / "thesis/cv-janaf-elemnet.tsv", 30.0)
    write_tsv(root / "thesis/cv-janaf-irnet17.tsv", 50.0)
    write_tsv(root / "thesis/padnet-train-padnet.tsv", 7.0)
    write_tsv(root / "thesis/padnet-evaluate.tsv", 3.0)
    write_tsv(root / "extra/foo-001.tsv", 1.0)
    write_tsv(root / "extra/foo-002.tsv", 3.0)
    (root / "broken.tsv").write_text("garbage\n")
    return root


def by_rule(result: dict) -> dict:
    return {row["rule"]: row for row in result["rules"]}


def test_rule_collector_groups_wildcard_instances_by_workflow_rule(tmp_path):
    result = bench.collect_rule_benchmarks(synthetic_rules(tmp_path / "rules"))
    rules = by_rule(result)
    ingest = rules["ingest_shard"]  # two sources, three shards: one rule
    assert (ingest["stage"], ingest["count"]) == ("structures", 3)
    assert ingest["total_s"] == pytest.approx(15.0)
    assert ingest["median_s"] == pytest.approx(4.0)
    assert ingest["max_s"] == pytest.approx(9.0)
    assert ingest["max_rss_mb"] == pytest.approx(512.0)
    train = rules["xrd_train"]
    assert (train["count"], train["total_s"], train["median_s"]) == (2, pytest.approx(20.0), pytest.approx(10.0))
    assert rules["xrd_dataset"]["count"] == 1 and rules["xrd_dataset"]["max_rss_mb"] is None
    assert rules["compositions_cv"]["count"] == 2 and rules["compositions_cv"]["median_s"] == pytest.approx(40.0)
    assert rules["padnet_train"]["count"] == 1 and rules["padnet_evaluate"]["count"] == 1
    assert rules["structures_summary"]["total_s"] == pytest.approx(1.0)
    foo = rules["extra/foo"]  # no workflow rule writes there: grouped by its path
    assert (foo["count"], foo["total_s"], foo["grouped_by"]) == (2, pytest.approx(4.0), "path")
    stages = {row["stage"]: row for row in result["stages"]}
    assert stages["structures"]["total_s"] == pytest.approx(16.0)
    assert (stages["xrd"]["rules"], stages["xrd"]["count"]) == (2, 3)
    assert stages["xrd"]["total_s"] == pytest.approx(21.5)
    assert stages["thesis"]["total_s"] == pytest.approx(90.0)
    assert result["n_jobs"] == 13 and result["total_s"] == pytest.approx(131.5)
    assert [u["file"] for u in result["unreadable"]] == ["broken.tsv"]


def test_rule_collector_without_workflow_groups_by_path(tmp_path):
    result = bench.collect_rule_benchmarks(synthetic_rules(tmp_path / "rules"), rules_dir=None)
    rules = by_rule(result)
    assert rules["structures/amcsd/ingest"]["count"] == 2
    assert rules["structures/amcsd/ingest"]["total_s"] == pytest.approx(6.0)
    assert rules["structures/cod/ingest"]["count"] == 1
    assert rules["thesis/cv"]["median_s"] == pytest.approx(40.0)


def test_benchmark_tsv_reader(tmp_path):
    write_tsv(tmp_path / "a.tsv", 1.25, 3.5, rss="NA")
    rows = bench.read_benchmark_tsv(tmp_path / "a.tsv")
    assert [r["s"] for r in rows] == [1.25, 3.5]
    assert rows[0]["max_rss"] is None and rows[0]["h:m:s"] == "0:00:01" and rows[0]["cpu_time"] == 2.5
    (tmp_path / "b.tsv").write_text(HEADER)
    with pytest.raises(ValueError):
        bench.read_benchmark_tsv(tmp_path / "b.tsv")


def test_quick_bench_has_every_section_and_positive_ratios(tmp_path):
    out = tmp_path / "bench"
    synthetic_rules(out / "rules")
    missing = tmp_path / "no-such-dataset.parquet"
    assert main(["bench", "--quick", "--out-dir", str(out), "--xrd-dataset", str(missing)]) == 0
    record = json.loads((out / "benchmarks.json").read_text())
    md = (out / "benchmarks.md").read_text()
    sections = record["sections"]
    assert list(sections) == list(bench.SECTIONS)
    assert record["code_version"] and record["machine"]["threads"] == 1 and record["options"]["quick"]
    for name in ("xrd", "powder", "pdf", "training", "rules"):
        assert sections[name]["status"] == "ok", (name, sections[name])
        assert sections[name]["parameters"], name
    assert sections["feff"]["status"] == "skipped" and "--feff" in sections["feff"]["note"]
    assert sections["ensemble"]["status"] in ("ok", "not available"), sections["ensemble"]
    assert sections["ensemble_jobs"]["status"] == "not available" and str(missing) in sections["ensemble_jobs"]["note"]
    for name, entry in sections.items():
        for key, value in entry.get("ratios", {}).items():
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, key, value)
    assert set(sections["xrd"]["ratios"]) == {"pymatgen_over_delta_profile"}
    assert set(sections["powder"]["ratios"]) == {"pymatgen_over_sticks", "pymatgen_over_pattern",
                                                 "pymatgen_over_sticks_blas_defaults",
                                                 "pymatgen_over_pattern_blas_defaults",
                                                 "pymatgen_over_pattern_all",
                                                 "pymatgen_one_thread_over_pattern_blas_defaults_all",
                                                 "pattern_defaults_over_one_thread"}
    powder = sections["powder"]
    assert powder["ratios"]["pattern_defaults_over_one_thread"] == pytest.approx(
        powder["ratios"]["pymatgen_one_thread_over_pattern_blas_defaults_all"]
        / powder["ratios"]["pymatgen_over_pattern_all"])
    assert isinstance(powder["results"]["defaults_within_20_percent_of_one_thread"], bool)
    assert powder["parameters"]["blas_default_threads"] and record["machine"]["blas_default_threads"]
    assert "BLAS defaults" in md
    if sections["pdf"]["parameters"]["pdffit2"]:
        assert set(sections["pdf"]["ratios"]) == {"pdffit2_over_ours"}
    assert sections["pdf"]["results"]["structures_per_s_ours"] > 0
    if sections["ensemble"]["status"] == "ok":
        assert sections["ensemble"]["ratios"]
    models = sections["training"]["results"]
    assert set(models) == set(bench.TRAINING_MODELS)
    assert all(row["samples_per_s"] > 0 and math.isfinite(row["samples_per_s"]) for row in models.values())
    assert models["mofnet"]["input_shape"] == [128, 2251] and models["spgnet"]["input_shape"] == [32, 10001]
    assert len(sections["training"]["ratios"]) == len(bench.TRAINING_MODELS) - 1
    rules = by_rule(sections["rules"]["results"])
    assert rules["ingest_shard"]["count"] == 3 and rules["ingest_shard"]["total_s"] == pytest.approx(15.0)
    for name in bench.SECTIONS:
        assert f"| {name} |" in md, name
    assert "## Training" in md and "## Pipeline rules" in md and "| ingest_shard | 3 |" in md
    assert "| padnet |" in md and "| xanes_cnn |" in md


def test_a_failing_section_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("deliberately broken")

    monkeypatch.setattr(bench, "section_xrd", broken)
    out = tmp_path / "bench"
    write_tsv(out / "rules/xrd/dataset.tsv", 2.5)
    skip = ["powder", "pdf", "training", "ensemble", "ensemble_jobs"]
    assert main(["bench", "--quick", "--out-dir", str(out), "--skip", *skip]) == 0
    record = json.loads((out / "benchmarks.json").read_text())
    assert record["sections"]["xrd"]["status"] == "error"
    assert "deliberately broken" in record["sections"]["xrd"]["error"]
    assert all(record["sections"][name]["status"] == "skipped" for name in skip)
    assert record["sections"]["rules"]["status"] == "ok"
    assert by_rule(record["sections"]["rules"]["results"])["xrd_dataset"]["total_s"] == pytest.approx(2.5)
    md = (out / "benchmarks.md").read_text()
    assert "deliberately broken" in md and "| xrd |" in md


def test_snakemake_benchmark_target_dry_run():
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "benchmark", "--forcerun", "bench"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "bench" in out and "benchmarks.json" in out


def test_ensemble_jobs_runs_the_real_commands_and_compares_their_losses(dataset_path, tmp_path):  # noqa: F811
    entry = bench.section_ensemble_jobs(dataset_path, members=2, epochs=1, threads=1, work_dir=tmp_path / "work")
    res = entry["results"]
    assert res["n_members"] == 2 and res["n_train"] > 0
    assert res["sequential_s"] > 0 and res["together_s"] > 0
    assert entry["ratios"]["sequential_over_together"] == pytest.approx(res["sequential_s"] / res["together_s"])
    assert res["max_loss_difference"] < 1e-4  # the same two members, trained alone and together
    assert not (tmp_path / "work").exists()  # the models it trained are removed
