"""MOF identification system (paper 001) end to end: the library CLI on a real CoRE MOF shard (with
structures the engine cannot use landing in the rejects), the measured-pattern checks, the
Snakemake DAG, and a tiny train + baselines + report run through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from xtalspec.cli import main
from xtalspec.datasets import mof_library as ml
from xtalspec.datasets import mof_patterns as mp
from xtalspec.spectra.measured import PatternError

ROOT = Path(__file__).resolve().parents[1]
N_MOFS = 6


@pytest.fixture(scope="module", autouse=True)
def _one_thread(torch_one_thread):
    """Every test here runs torch on one thread (conftest.torch_one_thread)."""


@pytest.fixture(scope="module")
def shard(tmp_path_factory) -> Path:
    """A structure shard of six small CoRE MOFs, one Cf compound (no form factor) and a 1 Å cell
    (no reflection below 2θ = 50°)."""
    from pymatgen.core import Lattice, Structure

    from xtalspec.bench.powder import SMALL_MOF_IDS, small_mofs
    from xtalspec.structures.records import SHARD_SCHEMA, structure_to_json

    structures = dict(small_mofs(SMALL_MOF_IDS[:N_MOFS]))
    assert len(structures) == N_MOFS
    structures["CF_TEST"] = Structure(Lattice.cubic(5.0), ["Cf", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    structures["TINY_TEST"] = Structure(Lattice.cubic(1.0), ["H"], [[0, 0, 0]])
    names = ["id", "source", "url", "formula", "spacegroup", "n_atoms_cif", "structure", "primitive"]
    rows = [{"id": ident, "source": "coremof" if ident.endswith("_clean") else "test", "url": f"x://{ident}",
             "formula": s.composition.reduced_formula, "spacegroup": 1, "n_atoms_cif": len(s),
             "structure": structure_to_json(s), "primitive": structure_to_json(s)} for ident, s in structures.items()]
    path = tmp_path_factory.mktemp("structures") / "shard-000.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([SHARD_SCHEMA.field(n) for n in names])), path)
    return path


@pytest.fixture(scope="module")
def library(shard, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mof")
    assert main(["mof", "patterns", "--structures", str(shard), "--out", str(out / "lib.parquet"),
                 "--rejects", str(out / "rej.parquet"), "--seed", "3"]) == 0
    return out / "lib.parquet"


def write_measured(path: Path, pattern: np.ndarray, seed: int, two_theta=(4.0, 52.0), step=0.02) -> Path:
    """A fake measurement of a library pattern: wider 2θ range, background, counting noise."""
    rng = np.random.default_rng(seed)
    x = np.arange(two_theta[0], two_theta[1] + step / 2, step)
    y = np.interp(x + rng.uniform(-0.04, 0.04), mp.TWO_THETA, pattern)
    counts = rng.poisson(3000 * (y + 0.05 + 0.1 * np.exp(-(x - 4) / 6)))
    np.savetxt(path, np.column_stack([x, counts]), fmt="%.3f %d", header="2theta counts")
    return path


# --------------------------------------------------------------------------- library


def test_library_cli_builds_patterns_and_rejects_what_the_engine_cannot_use(library):
    lib, meta = ml.load_library(library)
    rejects = pd.read_parquet(library.with_name("rej.parquet"))
    assert len(lib) == N_MOFS and lib["rank"].tolist() == list(range(N_MOFS))
    assert lib["id"].str.endswith("_clean").all()
    patterns = ml.library_patterns(lib)
    assert patterns.shape == (N_MOFS, 2251) and patterns.dtype == np.float32
    np.testing.assert_allclose(patterns.max(axis=1), 1.0)
    assert (lib["n_peaks"] > 5).all()
    assert dict(zip(rejects["id"], rejects["reason"])) == {"CF_TEST": "pattern_failed", "TINY_TEST": "no_peaks"}
    assert list(rejects.columns) == ["id", "source", "url", "reason", "detail"]
    assert "Cf" in rejects.set_index("id").loc["CF_TEST", "detail"]
    # the seeded hash order, provenance in the metadata
    assert lib["id"].tolist() == [i for i in ml.library_order(lib["id"], 3)]
    assert meta["seed"] == 3 and meta["n_rejects"] == 2 and meta["pattern"]["n_points"] == 2251
    assert meta["code_version"] and meta["structure_shards"]


def test_library_prefixes_and_pinned_measured_mofs(shard, library, tmp_path):
    lib, _ = ml.load_library(library)
    out = tmp_path / "small.parquet"
    assert main(["mof", "patterns", "--structures", str(shard), "--out", str(out), "--rejects",
                 str(tmp_path / "r.parquet"), "--seed", "3", "--max-mofs", "3"]) == 0
    assert ml.load_library(out)[0]["id"].tolist() == lib["id"].tolist()[:3]  # a prefix of the same order
    last = lib["id"].iloc[-1]
    csv = tmp_path / "measured.csv"
    csv.write_text(f"file,mof_id\na.xy,{last.split('_')[0]}\n")  # the CSD refcode is enough
    assert main(["mof", "patterns", "--structures", str(shard), "--out", str(out), "--rejects",
                 str(tmp_path / "r.parquet"), "--seed", "3", "--max-mofs", "3", "--measured-test", str(csv)]) == 0
    pinned = ml.load_library(out)[0]
    assert pinned["id"].tolist()[0] == last and pinned["pinned"].tolist() == [True, False, False]
    csv.write_text("file,mof_id\na.xy,NOSUCH\n")
    with pytest.raises(ValueError, match=r"measured\.csv: MOF ids not in the structures: NOSUCH"):
        ml.write_library([shard], out, tmp_path / "r.parquet", measured_test=csv)


# --------------------------------------------------------------------------- measured patterns


def test_measured_pattern_errors_name_the_file(tmp_path, library):
    empty = tmp_path / "empty.xy"
    empty.write_text("")
    text = tmp_path / "words.xy"
    text.write_text("2theta intensity\nfive ten\nsix eleven\n")
    narrow = tmp_path / "narrow.xy"
    x = np.arange(10.0, 40.0, 0.02)
    np.savetxt(narrow, np.column_stack([x, 100 + x]))
    high = tmp_path / "high.xy"
    np.savetxt(high, np.column_stack([x + 50, 100 + x]))
    for path, problem in [(empty, "empty"), (text, "not numeric"), (narrow, "needs 5-50 degrees"),
                          (high, "runs from 60 to")]:
        with pytest.raises(ValueError, match=problem) as err:
            ml.load_measured(path)
        assert str(err.value).startswith(str(path)), err.value
        assert isinstance(err.value, PatternError)
    assert isinstance(pytest.raises(ValueError, ml.load_measured, narrow).value, ml.MeasuredRangeError)
    # through the CLI the error is one line naming the file, exit status 2
    csv = tmp_path / "test.csv"
    lib, _ = ml.load_library(library)
    csv.write_text(f"file,mof_id\nnarrow.xy,{lib['id'].iloc[0]}\n")
    assert main(["mof", "train", "--library", str(library), "--size", "3", "--measured-test", str(csv),
                 "--out-dir", str(tmp_path / "run")]) == 2
    # a good measurement: resampled onto the 2251-point axis, max 1
    good = write_measured(tmp_path / "good.xy", ml.library_patterns(lib)[0], seed=1)
    pattern = ml.load_measured(good)
    assert pattern.shape == (2251,) and pattern.max() == 1.0
    assert np.corrcoef(pattern, ml.library_patterns(lib)[0])[0, 1] > 0.8


# --------------------------------------------------------------------------- workflow


def test_snakemake_dry_run_builds_the_mof_dag(tmp_path, library):
    lib, _ = ml.load_library(library)
    measured = tmp_path / "measured"
    measured.mkdir()
    write_measured(measured / "m1.xy", ml.library_patterns(lib)[0], seed=2)
    (measured / "test.csv").write_text(f"file,mof_id\nm1.xy,{lib['id'].iloc[0]}\n")
    base = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config = {"results": str(tmp_path / "results"),
              "mof": base["mof"] | {"measured_test": str(measured / "test.csv"), "measured_noise_dir": str(measured)}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "mof", "--configfile", str(tmp_path / "c.yaml")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    for rule in ("mof_patterns", "mof_train", "mof_baselines", "mof_report"):
        assert f"rule {rule}:" in out, rule
    sizes = base["mof"]["library_sizes"]
    for size in sizes:
        assert f"runs/{size}/cnn/model.pt" in out and f"runs/{size}/baselines/predictions.parquet" in out
    assert str(measured / "m1.xy") in out and "--measured-test" in out and "--measured-noise" in out
    assert f"--max-mofs {max(sizes)}" in out


# --------------------------------------------------------------------------- tiny run


def _run_config(**extra) -> str:
    cfg = {"augment": {"n_variants": 6, "noise_pool_size": 20000}, "test": {"per_mof": 2},
           "train": {"epochs": 2, "batch_size": 16, "threads": 1, "device": "cpu"},
           "baselines": {"models": ["naive_bayes", "knn", "logistic_regression", "random_forest", "svm"],
                         "pca_components": 10, "rf_trees": 10, "threads": 1}}
    return json.dumps(cfg | extra)


def test_tiny_train_baselines_report_via_the_cli(library, tmp_path, capsys):
    runs = tmp_path / "runs"
    for size in (4, N_MOFS):
        assert main(["mof", "train", "--library", str(library), "--size", str(size), "--config", _run_config(),
                     "--out-dir", str(runs / f"{size}/cnn")]) == 0
        assert main(["mof", "baselines", "--library", str(library), "--size", str(size), "--config", _run_config(),
                     "--out", str(runs / f"{size}/baselines/predictions.parquet")]) == 0
    capsys.readouterr()
    big = runs / f"{N_MOFS}/cnn"
    for name in ("model.pt", "predictions.parquet", "history.csv", "test_patterns.parquet"):
        assert (big / name).stat().st_size > 0, name
    state = torch.load(big / "model.pt", weights_only=True)
    assert state["head.7.weight"].shape[0] == N_MOFS
    predictions, meta = ml_read(big / "predictions.parquet")
    assert meta["noise_source"] == mp.SYNTHETIC_NOISE and meta["test_kind"] == "perturbed"
    assert len(predictions) == 2 * N_MOFS and predictions["true_rank"].between(1, N_MOFS).all()
    assert len(predictions["top_probs"].iloc[0]) == N_MOFS and (predictions["noise_source"] == "synthetic noise").all()
    assert len(pd.read_csv(big / "history.csv")) == 2
    baselines, base_meta = ml_read(runs / f"{N_MOFS}/baselines/predictions.parquet")
    assert sorted(baselines["model"].unique()) == sorted(["naive_bayes", "knn", "logistic_regression",
                                                           "random_forest", "svm"])
    assert base_meta["test_digest"] == meta["test_digest"]  # the same test set as the CNN
    assert set(predictions.columns) <= set(baselines.columns)

    report = tmp_path / "report"
    cnn = [str(runs / f"{s}/cnn/predictions.parquet") for s in (4, N_MOFS)]
    base = [str(runs / f"{s}/baselines/predictions.parquet") for s in (4, N_MOFS)]
    assert main(["mof", "report", "--cnn", *cnn, "--baselines", *base, "--model", str(big / "model.pt"),
                 "--test-patterns", str(big / "test_patterns.parquet"), "--out-dir", str(report),
                 "--nca-mofs", "5", "--cam-mofs", "4"]) == 0
    for name in ("mof_topk.md", "mof_topk.csv", "mof_topk.png", "mof_library_size.md", "mof_library_size.csv",
                 "mof_library_size.png", "mof_nca.png", "mof_nca.csv", "mof_cam.png", "mof_cam.csv",
                 "mof_summary.json"):
        assert (report / name).stat().st_size > 0, name
    topk = (report / "mof_topk.md").read_text()
    assert "synthetic noise" in topk and "56.7" in topk and "76.7" in topk and "perturbed simulated" in topk
    sizes = pd.read_csv(report / "mof_library_size.csv")
    assert sorted(sizes["library_size"].unique()) == [4, N_MOFS] and len(sizes) == 2 * 6
    assert (sizes["noise_source"] == "synthetic noise").all()
    assert "synthetic noise" in (report / "mof_library_size.md").read_text()
    assert (pd.read_csv(report / "mof_cam.csv")["noise_source"] == "synthetic noise").all()
    assert (pd.read_csv(report / "mof_nca.csv")["noise_source"] == "synthetic noise").all()
    summary = json.loads((report / "mof_summary.json").read_text())
    assert summary["noise_source"] == "synthetic noise" and len(summary["cam_mofs"]) == 4
    # the stored ranks give the same top-k as the table
    csv = pd.read_csv(report / "mof_topk.csv")
    ours = csv[(csv["source"] == "this run") & (csv["model"] == "cnn")].set_index("k")["accuracy"]
    assert ours[5] == pytest.approx((predictions["true_rank"] <= 5).mean())
    # CNN and baselines of one size must share the test set
    other = runs / "other"
    assert main(["mof", "baselines", "--library", str(library), "--size", str(N_MOFS), "--seed", "9", "--config",
                 _run_config(baselines={"models": ["knn"], "pca_components": 5, "rf_trees": 5, "threads": 1}),
                 "--out", str(other / "b.parquet")]) == 0
    assert main(["mof", "report", "--cnn", cnn[1], "--baselines", str(other / "b.parquet"), "--model",
                 str(big / "model.pt"), "--test-patterns", str(big / "test_patterns.parquet"), "--out-dir",
                 str(tmp_path / "bad")]) == 2


def test_measured_noise_and_measured_test(library, tmp_path):
    lib, _ = ml.load_library(library)
    patterns = ml.library_patterns(lib)
    folder = tmp_path / "measured"
    folder.mkdir()
    rows = []
    for i in range(3):
        for j in range(2):
            write_measured(folder / f"m{i}_{j}.xy", patterns[i], seed=10 * i + j)
            rows.append(f"m{i}_{j}.xy,{lib['id'].iloc[i]}")
    (folder / "test.csv").write_text("file,mof_id\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["mof", "train", "--library", str(library), "--size", str(N_MOFS), "--config", _run_config(),
                 "--measured-noise", str(folder), "--measured-test", str(folder / "test.csv"),
                 "--out-dir", str(out)]) == 0
    predictions, meta = ml_read(out / "predictions.parquet")
    assert meta["noise_source"] == mp.MEASURED_NOISE and meta["test_kind"] == "measured"
    assert meta["noise_model"]["n_patterns"] == 6
    assert predictions["true_id"].tolist() == [lib["id"].iloc[i] for i in range(3) for _ in range(2)]
    assert predictions["test_source"].str.endswith(".xy").all()


def test_rank_scores_reproduce_ranks():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(9), size=40)
    probs[:5] = 0.0  # ties: a zero true class is never ranked by luck
    probs[:5, 0] = 1.0
    y = rng.integers(1, 9, 40)
    ranks = ml.true_ranks(probs, y)
    assert (ranks[:5] == 9).all()
    from xtalspec.evaluation.classification import top_k_accuracy

    scores, labels = ml.rank_scores(ranks)
    assert scores.shape == (40, 6)
    for k in range(1, 6):
        assert top_k_accuracy(scores, labels, k) == pytest.approx((ranks <= k).mean())
        assert top_k_accuracy(probs[5:], y[5:], k) == pytest.approx((ranks[5:] <= k).mean())


def ml_read(path):
    from xtalspec.utils.tables import read_frame

    return read_frame(path)
