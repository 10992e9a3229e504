"""Deploy models of predict-xrd: rendered front-end copies, the held-out split, a tiny training run
that predict-xrd finds by default, deterministic rendering, and the ablation score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xtalspec.datasets.xrd_deploy import held_out_ids, in_subset, read_rendered, render_shard
from xtalspec.datasets.xrd_profiles import PROFILE_SCHEMA
from xtalspec.prediction.xrd import find_members, predict_pattern
from xtalspec.training.loop import TrainConfig
from xtalspec.training.xrd_deploy import build_deploy_dataset, score_member, train_deploy
from xtalspec.utils.tables import read_frame, write_frame

from xrd_fixtures import profile_rows, simulated_pattern, structures


@pytest.fixture(scope="module")
def profile_shard(tmp_path_factory):
    path = tmp_path_factory.mktemp("deploy") / "profiles.parquet"
    pq.write_table(pa.Table.from_pylist(profile_rows(), schema=PROFILE_SCHEMA), path)
    return path


@pytest.fixture(scope="module")
def rendered(profile_shard):
    out = profile_shard.parent / "rendered.parquet"
    result = render_shard(profile_shard, out, profile_shard.parent / "rejects.parquet", copies=2, seed=0)
    assert result["rendered"] + result["rejects"] == 2 * 24
    return out


def test_rendering_is_deterministic_per_structure(profile_shard, rendered, tmp_path):
    again = tmp_path / "again.parquet"
    # a shard holding only some of the structures renders them identically
    table = pq.read_table(profile_shard)
    pq.write_table(table.slice(5, 4), tmp_path / "part.parquet")
    render_shard(tmp_path / "part.parquet", again, tmp_path / "rej.parquet", copies=2, seed=0)
    full, part = read_rendered([rendered]).set_index(["id", "copy"]), read_rendered([again]).set_index(["id", "copy"])
    for key, row in part.iterrows():
        assert np.array_equal(row["bins"], full.loc[key, "bins"]) and row["conditions"] == full.loc[key, "conditions"]
    conditions = [json.loads(c) for c in full["conditions"]]
    assert len({c["told"] for c in conditions}) > 1  # the wavelength is drawn


def test_held_out_split_is_seeded_and_per_group():
    ids = pd.Series([f"s{i}" for i in range(40)])
    groups = pd.Series([1] * 20 + [2] * 10 + [3] * 10)
    held = held_out_ids(ids, groups, 0.1, seed=0)
    assert held == held_out_ids(ids, groups, 0.1, seed=0) != held_out_ids(ids, groups, 0.1, seed=1)
    assert sum(h in set(ids[:20]) for h in held) == 2 and len(held) == 4


def test_deploy_dataset_training_and_prediction(profile_shard, rendered, tmp_path):
    profiles = pq.read_table(profile_shard).to_pandas()
    items, description = build_deploy_dataset(profiles, read_rendered([rendered]), min_per_group=8, holdout=0.15, seed=0)
    assert description["spacegroups"] == [136, 221, 225]
    assert set(items["kind"]) == {"clean", "front_end"}
    held = set(items.loc[items["held_out"], "id"])
    assert held and held.isdisjoint(set(items.loc[~items["held_out"], "id"]))
    path = tmp_path / "dataset.parquet"
    write_frame(items, description, path)
    out = tmp_path / "models/spgvolnet/all/fold0/seed1"
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-3, seed=1, device="cpu")
    summary = train_deploy(path, "spgvolnet", cfg, out)
    assert summary["temperature"] > 0 and set(summary["held_out"]) == {"clean", "front_end"}
    assert (out / "heldout.parquet").exists() and (out / "history.csv").exists()
    members = find_members(tmp_path / "models", "spgvolnet")
    assert members == [out / "model.pt"]
    # a lab pattern of rock salt NaCl through predict-xrd with the deploy member
    name, structure = structures()[0]
    x, y = simulated_pattern(structure, 1.5406, (10.0, 100.0))
    scan = tmp_path / "nacl.xy"
    np.savetxt(scan, np.column_stack([x, y]))
    result = predict_pattern(scan, "CuKa", tmp_path / "models", top=3)
    assert list(result.ranking["spacegroup"]) and len(result.ranking) == 3
    scores = score_member(out / "model.pt", path)
    assert set(scores) == {"clean", "front_end"} and 0 <= scores["front_end"]["top1"] <= 1


def test_ablation_subset_is_seeded_and_shared_by_rendering_and_the_data_set(profile_shard, rendered, tmp_path):
    ids = [f"amcsd:{i:07d}" for i in range(4000)]
    share = np.mean([in_subset(0, i, 0.25) for i in ids])
    assert 0.22 < share < 0.28 and all(in_subset(0, i, 1.0) for i in ids[:10])
    assert [in_subset(0, i, 0.25) for i in ids] != [in_subset(1, i, 0.25) for i in ids]
    # rendering a share renders exactly the in_subset structures, each as the full rendering did
    part = tmp_path / "part.parquet"
    render_shard(profile_shard, part, tmp_path / "rej.parquet", copies=2, seed=0, fraction=0.5)
    profiles = pq.read_table(profile_shard).to_pandas()
    chosen = {i for i in profiles["id"] if in_subset(0, i, 0.5)}
    assert 0 < len(chosen) < len(profiles)
    sub, full = read_rendered([part]), read_rendered([rendered]).set_index(["id", "copy"])
    assert set(sub["id"]) <= chosen and len(sub) >= len(chosen)  # two copies each, a few may be rejected
    for row in sub.itertuples():
        assert np.array_equal(row.bins, full.loc[(row.id, row.copy), "bins"])
    # the data set keeps every held-out structure and only the share of the training ones
    whole, _ = build_deploy_dataset(profiles, read_rendered([rendered]), min_per_group=8, holdout=0.15, seed=0)
    items, description = build_deploy_dataset(profiles, read_rendered([part]), min_per_group=8, holdout=0.15,
                                              seed=0, train_fraction=0.5)
    held = set(whole.loc[whole["held_out"], "id"])
    assert set(items.loc[items["held_out"], "id"]) == held and description["train_fraction"] == 0.5
    assert set(items.loc[~items["held_out"], "id"]) == set(whole.loc[~whole["held_out"], "id"]) & chosen


def test_deploy_report_and_ablation_table(tmp_path):
    from xtalspec.evaluation.xrd_deploy_report import ablation_table, deploy_report

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=40).astype(np.float32)
    labels = rng.integers(0, 4, size=40)
    frame = pd.DataFrame({"id": [f"s{i}" for i in range(40)], "kind": ["front_end"] * 40, "spacegroup": labels + 1,
                          "class_index": labels, "probabilities": list(probs)})
    write_frame(frame, {"member": {"temperature": 1.5}}, tmp_path / "heldout.parquet")
    summary = {"model": "spgnet", "temperature": 1.5, "n_classes": 4, "history": [{"epoch": 1, "val_acc": 0.3}],
               "held_out": {"front_end": {"n": 40, "top1": 0.3, "top3": 0.7, "ece_before": 0.2, "ece_after": 0.1}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    text = deploy_report([tmp_path / "summary.json"], [tmp_path / "heldout.parquet"], tmp_path / "deploy.md",
                         tmp_path / "reliability.png")
    assert "| spgnet" in text and "1: 0.300" in text and (tmp_path / "reliability.png").stat().st_size > 0
    for variant, top1 in (("all", 0.5), ("no-noise", 0.4)):
        (tmp_path / f"{variant}.json").write_text(json.dumps(
            {"variant": variant, "scores": {"front_end": {"n": 9, "top1": top1, "top3": 0.8}, "clean": {"top1": 0.6}}}))
    table = ablation_table([tmp_path / "all.json", tmp_path / "no-noise.json"], tmp_path / "ablation.md")
    assert "| no-noise | 0.4 | 0.8 | 0.6 | -0.1 | 0.0 |" in table and "standard error" in table


def test_ablation_target_resolves_every_variant_on_a_share_of_the_structures():
    """Every configured augmentation (kalpha2 included: a digit in the name) gets its variant; the
    no-X and subset variants render and train on ablation_fraction, the deploy models on all."""
    import yaml

    from test_workflow import ROOT, run_snakemake

    dry = run_snakemake("-n", "xrd_deploy_ablation", "--forceall", "-p")
    assert dry.returncode == 0, dry.stderr[-3000:]
    text = dry.stdout + dry.stderr
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())["xrd"]["deploy"]
    share = config["ablation_fraction"]
    assert share < 1
    for augmentation in config["ablation"]:
        assert f"results/xrd/deploy/ablation/no-{augmentation}/score.json" in text, augmentation
    assert "results/xrd/deploy/ablation/subset/score.json" in text
    renders = [line for line in text.splitlines() if "xtalspec xrd deploy-render" in line]
    ablated = [line for line in renders if "/rendered/no-" in line]
    full = [line for line in renders if "/rendered/all/" in line]
    assert ablated and full and len(ablated) + len(full) == len(renders)
    assert all(f"--fraction {share}" in line for line in ablated) and all("--fraction 1.0" in line for line in full)
    datasets = [line for line in text.splitlines() if "xtalspec xrd deploy-dataset" in line]
    assert any("--train-fraction 1.0" in line and "dataset/all.parquet" in line for line in datasets)
    assert any(f"--train-fraction {share}" in line and "dataset/subset.parquet" in line for line in datasets)
