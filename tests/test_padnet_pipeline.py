"""The PADNet comparison pipeline (rendered training/test sets, every approach scored) and
`xtalspec predict-xrd --model padnet` on a raw scan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from xtalspec.cli import main
from xtalspec.spectra.measured import PatternError, inv_d_from_two_theta, raw_profile_from_pattern
from xtalspec.spectra.xrd import BIN_WIDTH, INV_D_MIN, N_BINS
from xtalspec.training.loop import TrainConfig
from xtalspec.models.checkpoints import load_padnet_member
from xtalspec.training.padnet import (APPROACHES, PadnetSettings, accuracy_table, evaluate, split_items, train_variant,
                                      training_patterns)


def toy_table(n_classes=3, per_class=10, seed=0) -> pd.DataFrame:
    """Sparse δ-profiles: each class has its own three strong lines, items add weak random lines."""
    rng = np.random.default_rng(seed)
    lines = rng.integers(500, N_BINS - 500, (n_classes, 3))
    rows = []
    for c in range(n_classes):
        for k in range(per_class):
            extra = rng.integers(200, N_BINS - 200, 4)
            bins = np.concatenate([lines[c], extra])
            values = np.concatenate([[1.0, 0.7, 0.5], rng.uniform(0.05, 0.2, 4)])
            order = np.argsort(bins)
            rows.append({"id": f"c{c}-{k}", "class_index": c, "bins": bins[order].astype(np.int32),
                         "values": values[order].astype(np.float32),
                         "fold": 1 if k < 3 else 0, "train_pool": k >= 3})
    return pd.DataFrame(rows)


SETTINGS = PadnetSettings(max_train_per_group=5, copies=2, test_strengths=(0.0, 2.0), adaboost_estimators=10,
                          adaboost_depth=2, seed=3)


def test_training_and_test_items_are_disjoint_and_rendering_is_seeded():
    table = toy_table()
    train, test = split_items(table, 5, 3)
    assert not set(train) & set(test) and len(test) == 9 and len(train) == 15
    x1, y1 = training_patterns(table, "padnet", SETTINGS)
    x2, _ = training_patterns(table, "padnet", SETTINGS)
    xm, _ = training_patterns(table, "spgnet_min_mean", SETTINGS)
    assert x1.shape == (30, N_BINS) and (x1 == x2).all() and np.bincount(y1).tolist() == [10, 10, 10]
    # min+mean filtering removes the background floor the raw patterns carry
    assert np.median(xm) < np.median(x1)


def test_every_approach_is_scored_at_every_strength(tmp_path, torch_one_thread):
    table = toy_table()
    cfg = TrainConfig(epochs=1, batch_size=8, threads=1, device="cpu", seed=1)
    models = {}
    for variant in ("padnet", "spgnet_min", "spgnet_min_mean", "spgnet_raw"):
        models[variant], history = train_variant(table, 3, variant, SETTINGS, cfg, tmp_path / variant)
        assert len(history) == 1 and np.isfinite(history[0]["ce"])
    predictions = evaluate(table, models, SETTINGS)
    expected = {a for a, (m, _) in APPROACHES.items() if m in models or m == "adaboost"}
    assert set(predictions["approach"]) == expected
    assert len(predictions) == len(expected) * 2 * 9
    acc = accuracy_table(predictions)
    assert acc["accuracy"].between(0, 1).all() and (acc["n"] == 9).all()
    # AdaBoost learns the three lines of each class on clean enough patterns
    ada = acc[(acc.approach == "adaboost_min_mean_filter") & (acc.strength == 0.0)]["accuracy"].item()
    assert ada > 1 / 3


def write_scan(path, two_theta, intensity):
    pd.DataFrame({"2theta": two_theta, "I": intensity}).to_csv(path, sep=" ", index=False, header=False)


def test_raw_profile_keeps_the_whole_scan_on_the_1_over_d_grid(tmp_path):
    two_theta = np.arange(10.0, 80.0, 0.02)
    peak = 40.0
    intensity = 50 + 0.5 * two_theta + 1000 * np.exp(-0.5 * ((two_theta - peak) / 0.05) ** 2)
    write_scan(tmp_path / "scan.xy", two_theta, intensity)
    measured = raw_profile_from_pattern(tmp_path / "scan.xy", "CuKa")
    profile = measured.profile
    assert profile.shape == (N_BINS,) and profile.max() == pytest.approx(1.0) and profile.min() == 0.0
    expected_bin = int((inv_d_from_two_theta(peak, measured.wavelength) - INV_D_MIN) / BIN_WIDTH)
    assert abs(int(np.argmax(profile)) - expected_bin) <= 1
    lo, hi = inv_d_from_two_theta(np.array([10.0, 79.98]), measured.wavelength)
    centres = INV_D_MIN + (np.arange(N_BINS) + 0.5) * BIN_WIDTH
    assert (profile[centres > hi + BIN_WIDTH] == 0).all()  # outside the scan
    assert (profile[(centres > lo) & (centres < hi)] > 0).mean() > 0.99  # background kept, not subtracted
    write_scan(tmp_path / "flat.xy", two_theta, np.full_like(two_theta, 7.0))
    with pytest.raises(PatternError, match="flat"):
        raw_profile_from_pattern(tmp_path / "flat.xy", "CuKa")
    write_scan(tmp_path / "peaks.xy", [20.0, 30.0, 40.0], [1, 2, 3])
    with pytest.raises(PatternError, match="whole scan|peak list|points"):
        raw_profile_from_pattern(tmp_path / "peaks.xy", "CuKa")


def test_predict_xrd_padnet_cli(tmp_path, capsys, torch_one_thread):
    table = toy_table()
    model, _ = train_variant(table, 3, "padnet", SETTINGS, TrainConfig(epochs=1, batch_size=8, device="cpu"),
                             tmp_path / "train")
    out = tmp_path / "models/padnet"
    out.mkdir(parents=True)
    meta = {"model": "padnet", "spacegroups": [14, 62, 225], "settings": {"filter_size": 50}, "seed": 1}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, out / "model.pt")
    loaded, loaded_meta = load_padnet_member(out / "model.pt")
    assert loaded_meta["spacegroups"] == [14, 62, 225] and not loaded.training
    two_theta = np.arange(10.0, 80.0, 0.02)
    write_scan(tmp_path / "scan.xy", two_theta, 100 + 2000 * np.exp(-0.5 * ((two_theta - 33.0) / 0.06) ** 2))
    assert main(["predict-xrd", str(tmp_path / "scan.xy"), "--wavelength", "CuKa", "--model", "padnet",
                 "--models", str(tmp_path / "models"), "--top", "3", "--out", str(tmp_path / "rank.csv")]) == 0
    printed = capsys.readouterr().out
    assert "whole scan, no peak picking" in printed
    ranking = pd.read_csv(tmp_path / "rank.csv")
    assert set(ranking["spacegroup"]) == {14, 62, 225} and 0.99 < ranking["p_padnet"].sum() < 1.01
    assert main(["predict-xrd", str(tmp_path / "scan.xy"), "--wavelength", "CuKa", "--model", "padnet",
                 "--models", str(tmp_path / "nothing")]) == 2
