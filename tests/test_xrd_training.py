"""SpgNet/SpgVolNet: architecture, data sets, deterministic and resumable training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from xtalspec.datasets.spgnet import build_dataset, leaks, range_masks, training_rows, validation_rows
from xtalspec.models.spgnet import SpgNet, SpgVolNet, trunk_features
from xtalspec.training.loop import TrainConfig
from xtalspec.models.checkpoints import load_member
from xtalspec.training.xrd import train_member
from xtalspec.utils.tables import read_frame, write_frame

from xrd_fixtures import profile_rows


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    rows = profile_rows()
    table, description = build_dataset(pd.DataFrame(rows), min_per_group=8, n_folds=2, per_fold=1, seed=0,
                                       leakage_bins=0)
    path = tmp_path_factory.mktemp("xrd") / "dataset.parquet"
    write_frame(table, description, path)
    return path


def test_architecture_matches_the_paper():
    assert trunk_features() == 880  # 80 filters × 11 after the third pooling
    x = torch.rand(3, 10001)
    assert SpgNet(57)(x)["logits"].shape == (3, 57)
    out = SpgVolNet(57)(x)
    assert out["logits"].shape == (3, 57) and out["volume"].shape == (3,)


def test_ranges_are_nested_and_folds_disjoint(dataset_path):
    table, description = read_frame(dataset_path)
    masks = range_masks(table)
    assert masks["sigmaU_eta"].sum() <= masks["sigmaU"].sum() <= masks["2sigmaU"].sum() <= masks["inf"].sum()
    assert not (masks["sigmaU_eta"] & ~masks["2sigmaU_eta"]).any()
    v1, v2 = set(validation_rows(table, 1)), set(validation_rows(table, 2))
    assert v1 and v2 and not v1 & v2
    assert not v1 & set(training_rows(table, "inf", 1))
    assert description["spacegroups"] == [136, 221, 225]


def test_leakage_guard():
    candidate = np.array([100, 200, 300])
    assert leaks(candidate, [np.array([103, 198])], 10001, 5)  # all its peaks within 5 bins
    assert not leaks(candidate, [np.array([103, 250])], 10001, 5)  # one peak far away
    assert not leaks(candidate, [np.array([103, 198])], 10001, 2)


def _train(dataset_path, out, seed=1, epochs=2, model="spgvolnet"):
    cfg = TrainConfig(epochs=epochs, batch_size=4, seed=seed, threads=1, device="cpu")
    return train_member(dataset_path, model, "inf", 1, cfg, out)


def test_same_seed_same_metrics_and_different_seed_differs(dataset_path, tmp_path):
    a = _train(dataset_path, tmp_path / "a")["history"]
    b = _train(dataset_path, tmp_path / "b")["history"]
    c = _train(dataset_path, tmp_path / "c", seed=2)["history"]
    strip = lambda hist: [{k: v for k, v in h.items() if k not in ("seconds", "samples_per_s")} for h in hist]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)
    pa_, pb = pd.read_parquet(tmp_path / "a/predictions.parquet"), pd.read_parquet(tmp_path / "b/predictions.parquet")
    assert np.array_equal(np.stack(pa_["probabilities"]), np.stack(pb["probabilities"]))
    # two identical runs write byte-identical weights (no temporary name or time inside the file)
    assert (tmp_path / "a/model.pt").read_bytes() == (tmp_path / "b/model.pt").read_bytes()
    model, meta = load_member(tmp_path / "a/model.pt")
    assert meta["seed"] == 1 and meta["spacegroups"] == [136, 221, 225]


def test_killed_training_resumes_from_checkpoint(dataset_path, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    cmd = [sys.executable, "-m", "xtalspec.cli", "xrd", "train", "--dataset", str(dataset_path), "--model", "spgnet",
           "--fold", "1", "--seed", "3", "--epochs", "6", "--batch-size", "4", "--device", "cpu", "--out"]
    subprocess.run(cmd + [str(straight)], check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd + [str(resumed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (resumed / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (resumed / "model.pt").exists()
    epochs_done = torch.load(resumed / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= epochs_done < 6
    subprocess.run(cmd + [str(resumed)], check=True, capture_output=True, timeout=600)
    a = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert pd.read_csv(straight / "history.csv")["ce"].tolist() == pd.read_csv(resumed / "history.csv")["ce"].tolist()


def test_checkpoint_of_another_run_is_not_resumed(dataset_path, tmp_path):
    out = tmp_path / "m"
    _train(dataset_path, out, seed=1, epochs=1, model="spgnet")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["model"]["classifier.6.weight"] = torch.zeros(99, 1150)  # as if from a 99-class data set
    state["fingerprint"] = "another run"
    torch.save(state, out / "checkpoint.pt")
    history = _train(dataset_path, out, seed=1, epochs=1, model="spgnet")["history"]
    assert len(history) == 1  # trained afresh instead of crashing on the stale checkpoint
