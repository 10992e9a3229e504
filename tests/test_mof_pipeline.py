"""MOF identification pipeline (paper 001) on a tiny synthetic library of Gaussian-peak patterns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from xtalspec.datasets import mof_patterns as mp
from xtalspec.evaluation import mof_reports as mr
from xtalspec.evaluation.classification import top_k_accuracy
from xtalspec.models.mofnet import MofCNN
from xtalspec.training.mof import baselines, predict_proba, train_cnn

N_CLASSES = 6


def peaks(centres, heights, fwhm=0.15) -> np.ndarray:
    centres, heights, fwhm = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (centres, heights, fwhm))
    sigma = np.broadcast_to(fwhm, centres.shape) / 2.3548
    return (heights[:, None] * np.exp(-0.5 * ((mp.TWO_THETA - centres[:, None]) / sigma[:, None]) ** 2)).sum(0)


def library(n: int, seed: int, fwhm=(0.1, 0.2)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        k = rng.integers(8, 14)
        rows.append(peaks(rng.uniform(6, 48, k), rng.uniform(0.1, 1.0, k), rng.uniform(*fwhm, k)))
    return mp.normalise_max(np.array(rows))


@pytest.fixture(scope="module", autouse=True)
def _one_thread(torch_one_thread):
    """Every test here runs torch on one thread (conftest.torch_one_thread)."""


@pytest.fixture(scope="module")
def lib():
    return library(N_CLASSES, seed=0)


@pytest.fixture(scope="module")
def pool():
    return mp.synthetic_noise_pool(20_000, np.random.default_rng(1))


@pytest.fixture(scope="module")
def trained(lib, pool):
    x_tr, y_tr, x_va, y_va = mp.augmented_split(lib, pool.values, n_variants=16, rng=np.random.default_rng(2))
    model, history = train_cnn(x_tr, y_tr, x_va, y_va, {"epochs": 6, "batch_size": 32, "seed": 0, "device": "cpu"})
    x_te, y_te = mp.perturbed_test_patterns(lib, 5, np.random.default_rng(3))
    return {"model": model, "history": history, "x_tr": x_tr, "y_tr": y_tr, "x_te": x_te, "y_te": y_te}


# --------------------------------------------------------------------------- data


def test_augmentation_keeps_the_401_strongest_points_and_fills_the_rest_from_the_pool(lib):
    pattern = lib[0] * 7.0  # any scale: augmentation max-normalises first
    keep = mp.strongest_points_mask(pattern)
    assert keep.sum() == mp.N_KEEP == 401
    assert pattern[keep].min() >= pattern[~keep].max()
    pool = np.random.default_rng(5).uniform(0.0, 0.05, 5000)  # distinct values
    variants = mp.augment_with_noise(pattern, pool, n_variants=4, rng=np.random.default_rng(6))
    assert variants.shape == (4, mp.N_POINTS) and variants.dtype == np.float32
    clean = (pattern / pattern.max()).astype(np.float32)
    pool32 = pool.astype(np.float32)
    for row in variants:
        np.testing.assert_array_equal(row[keep], clean[keep])
        fill = row[~keep]
        assert np.isin(fill, pool32).all()
        assert len(np.unique(fill)) == fill.size  # without replacement: a pool this large allows it
    assert not np.array_equal(variants[0], variants[1])
    small = mp.augment_with_noise(pattern, pool[:100], n_variants=2, rng=np.random.default_rng(6))
    assert np.isin(small[0][~keep], pool32[:100]).all()  # with replacement from a small pool
    again = mp.augment_with_noise(pattern, pool, n_variants=4, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(variants, again)


def test_augmented_split_is_4_to_1_per_mof(lib, pool):
    x_tr, y_tr, x_va, y_va = mp.augmented_split(lib[:3], pool.values, n_variants=10, rng=np.random.default_rng(0))
    assert x_tr.shape == (24, mp.N_POINTS) and x_va.shape == (6, mp.N_POINTS)
    assert np.bincount(y_tr).tolist() == [8, 8, 8] and np.bincount(y_va).tolist() == [2, 2, 2]


def test_baseline_noise_leaves_the_peaks_out():
    rng = np.random.default_rng(0)
    background = 0.05 + 0.02 * rng.random(mp.N_POINTS)
    measured = 1000.0 * (peaks([10, 20, 30, 40], [1.0, 0.6, 0.8, 0.4], fwhm=0.3) + background)
    pool = mp.baseline_noise_from_measured(np.stack([measured, measured * 2]), guard=5)
    scaled = measured / measured.max()
    assert pool.ndim == 1 and 0 < pool.size < 2 * mp.N_POINTS - 2 * mp.N_KEEP
    assert pool.max() <= scaled[np.abs(mp.TWO_THETA - 30) > 1.0].max() + 1e-12  # no peak values
    assert pool.min() >= 0.05 / (1.0 + 0.07) - 1e-9


def test_synthetic_noise_pool_is_labelled_and_reproducible(lib):
    a = mp.synthetic_noise_pool(5000, np.random.default_rng(4))
    b = mp.synthetic_noise_pool(5000, np.random.default_rng(4))
    assert a.noise_source == mp.SYNTHETIC_NOISE == "synthetic noise"
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.shape == (5000,) and a.values.min() >= 0 and 0.005 < a.values.mean() < 0.3
    assert a.model["kind"] == "synthetic" and "peak_counts" in a.model["ranges"] and a.model["drawn"]
    assert mp.noise_pool(None, n=100, rng=0).noise_source == mp.SYNTHETIC_NOISE
    measured = mp.noise_pool(lib[:2] + 0.05, rng=0)
    assert measured.noise_source == mp.MEASURED_NOISE and measured.model["kind"] == "measured"


def test_fft_denoise_keeps_smooth_patterns_and_filters_noisy_ones():
    smooth = mp.normalise_max(peaks([8, 15, 22, 31, 44], [1.0, 0.5, 0.7, 0.3, 0.6], fwhm=0.4))
    assert not mp.fft_would_denoise(smooth)
    np.testing.assert_array_equal(mp.fft_denoise(smooth), smooth)
    noisy = smooth + np.random.default_rng(0).normal(0.0, 0.05, mp.N_POINTS)
    assert np.abs(np.fft.rfft(noisy)[200:]).mean() > 1.0
    denoised = mp.fft_denoise(noisy)
    assert denoised.shape == noisy.shape
    np.testing.assert_allclose(np.abs(np.fft.rfft(denoised)[150:]), 0.0, atol=1e-9)
    assert np.abs(denoised - smooth).std() < 0.5 * np.abs(noisy - smooth).std()
    both = mp.fft_denoise(np.stack([smooth, noisy]))
    np.testing.assert_array_equal(both[0], smooth)
    np.testing.assert_allclose(both[1], denoised)


def test_perturbed_tests_are_reproducible_and_differ_from_training(lib, pool):
    x1, y1 = mp.perturbed_test_patterns(lib, 3, np.random.default_rng(11))
    x2, y2 = mp.perturbed_test_patterns(lib, 3, np.random.default_rng(11))
    x3, _ = mp.perturbed_test_patterns(lib, 3, np.random.default_rng(12))
    np.testing.assert_array_equal(x1, x2)
    assert y1.tolist() == y2.tolist() == np.repeat(np.arange(N_CLASSES), 3).tolist()
    assert x1.shape == (3 * N_CLASSES, mp.N_POINTS) and np.allclose(x1.max(axis=1), 1.0)
    assert not np.allclose(x1, x3)
    train = mp.augment_with_noise(lib[0], pool.values, n_variants=3, rng=np.random.default_rng(11))
    for row in x1[:3]:
        assert not np.allclose(row, lib[0], atol=1e-3)
        assert all(not np.allclose(row, t, atol=1e-3) for t in train)
    # shift only: each copy is its clean pattern moved by at most shift_deg (≤ 5 points)
    shifted, labels = mp.perturbed_test_patterns(lib, 4, 0, shift_deg=0.1, scale=(1, 1), broadening=(0, 0),
                                                 noise=False)
    lags = []
    for row, cls in zip(shifted, labels):
        corr = np.correlate(row, lib[cls], mode="full")[mp.N_POINTS - 1 - 10:mp.N_POINTS + 10]
        lags.append(int(np.argmax(corr)) - 10)
    assert max(abs(v) for v in lags) <= 5 and len(set(lags)) > 1


# --------------------------------------------------------------------------- model and training


@pytest.mark.parametrize("padding, length, flat", [("same", 281, 8960), ("valid", 266, 8512)])
def test_cnn_shapes(padding, length, flat):
    torch.manual_seed(0)
    model = MofCNN(mp.N_POINTS, N_CLASSES, padding=padding).eval()
    x = torch.rand(3, mp.N_POINTS)
    features = model.features(x)
    assert features.shape == (3, 64, length) and model.feature_length == length and model.n_flat == flat
    logits = model(x)
    assert logits.shape == (3, N_CLASSES)
    torch.testing.assert_close(model.classify(features), logits)
    torch.testing.assert_close(model(x.unsqueeze(1)), logits)


def test_short_training_identifies_perturbed_patterns(trained):
    history = trained["history"]
    assert len(history) == 6 and history[-1]["loss"] < history[0]["loss"]
    assert {"epoch", "loss", "acc", "val_loss", "val_acc", "seconds"} <= set(history[-1])
    probs = predict_proba(trained["model"], trained["x_te"])
    assert probs.shape == (len(trained["y_te"]), N_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert top_k_accuracy(probs, trained["y_te"], 1) >= 0.9  # chance: 1/6


def test_baselines_return_probabilities(trained):
    out = baselines(trained["x_tr"], trained["y_tr"], trained["x_te"],
                    {"rf_trees": 30, "max_train_per_class": 10, "pca_components": 20, "n_classes": N_CLASSES + 1})
    assert set(out) == {"naive_bayes", "knn", "logistic_regression", "random_forest", "svm"}
    for name, probs in out.items():
        assert probs.shape == (len(trained["y_te"]), N_CLASSES + 1), name
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6, err_msg=name)
        assert (probs[:, N_CLASSES] == 0).all() and (probs >= 0).all()


# --------------------------------------------------------------------------- Grad-CAM


class RegionModel(nn.Module):
    """Two feature channels on 8-point averages of the input: channel 0 is the input inside a
    region of the feature positions, channel 1 outside it. Logit 0 = Σ channel 0, logit 1 =
    Σ channel 1, logit 2 = −Σ channel 0. No parameters."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def features(self, x):
        pooled = nn.functional.avg_pool1d(x.reshape(len(x), 1, -1), 8)  # (n, 1, 281)
        inside = torch.zeros_like(pooled)
        inside[..., self.start:self.stop] = 1.0
        return torch.cat([pooled * inside, pooled * (1 - inside)], dim=1)

    def classify(self, f):
        return torch.stack([f[:, 0].sum(-1), f[:, 1].sum(-1), -f[:, 0].sum(-1)], dim=1)


def test_grad_cam_on_a_model_with_a_known_answer():
    start, stop = 100, 140  # feature positions: input points ~ 803 .. 1123 (2θ ~ 21 .. 27.5°)
    model = RegionModel(start, stop)
    x = peaks([24.0, 40.0], [0.5, 1.0], fwhm=0.3) + 0.01  # the strongest peak lies outside the region
    cam = mr.grad_cam(model, x, 0)
    assert cam.shape == (mp.N_POINTS,)
    # expected: weights (1, 0) → cam = pooled x inside the region, upsampled (align_corners=False)
    low = torch.nn.functional.avg_pool1d(torch.tensor(x, dtype=torch.float32)[None, None], 8)[0, 0].numpy()
    low = np.where((np.arange(low.size) >= start) & (np.arange(low.size) < stop), low, 0.0)
    source = np.clip((np.arange(mp.N_POINTS) + 0.5) * low.size / mp.N_POINTS - 0.5, 0, low.size - 1)
    np.testing.assert_allclose(cam, np.interp(source, np.arange(low.size), low), rtol=1e-4, atol=1e-6)
    assert abs(mp.TWO_THETA[cam.argmax()] - 24.0) < 0.1
    inside = (source > start - 1) & (source < stop)
    assert (cam[~inside] == 0).all() and (cam[inside] > 0).all()
    other = mr.grad_cam(model, x, 1)
    assert abs(mp.TWO_THETA[other.argmax()] - 40.0) < 0.1 and (other[(source > start) & (source < stop - 1)] == 0).all()
    assert (mr.grad_cam(model, x, 2) == 0).all()  # negative weights: ReLU leaves nothing


def test_grad_cam_of_the_trained_cnn(trained, lib):
    model = trained["model"]
    model.train()
    cams = [mr.grad_cam(model, lib[c], c) for c in range(N_CLASSES)]
    assert model.training  # mode restored
    model.eval()
    for cam in cams:
        assert cam.shape == (mp.N_POINTS,) and np.isfinite(cam).all() and (cam >= 0).all()
    assert any(cam.max() > 0 for cam in cams)


# --------------------------------------------------------------------------- reports


def test_reports_are_written(trained, lib, tmp_path):
    y = trained["y_te"]
    probs = {"cnn": predict_proba(trained["model"], trained["x_te"]),
             "knn": np.eye(N_CLASSES)[(y + 1) % N_CLASSES] * 0.6 + 0.4 / N_CLASSES}
    table = mr.topk_table(probs, y, out_dir=tmp_path, noise_source=mp.SYNTHETIC_NOISE)
    for suffix in ("csv", "md", "png"):
        assert (tmp_path / f"mof_topk.{suffix}").stat().st_size > 0
    csv = pd.read_csv(tmp_path / "mof_topk.csv")
    assert len(csv) == len(table) == 2 * 5 + 2
    paper = csv[csv["source"] == "paper"].set_index("k")["accuracy_percent"]
    assert paper.to_dict() == {1: 56.7, 5: 96.7}
    assert csv.loc[(csv["model"] == "knn") & (csv["k"] == 1), "accuracy"].item() == 0.0
    assert (csv.loc[csv["source"] == "this run", "noise_source"] == "synthetic noise").all()
    md = (tmp_path / "mof_topk.md").read_text()
    assert "synthetic noise" in md and "56.7" in md and "Top-5" in md

    results = [{"library_size": s, "model": "cnn", "top1": 0.9 - s / 5000, "top5": 1.0} for s in (189, 500, 1012)]
    curve = mr.library_size_curve(results, tmp_path, noise_source=mp.SYNTHETIC_NOISE)
    assert curve["library_size"].tolist() == [189, 500, 1012]
    for suffix in ("csv", "md", "png"):
        assert (tmp_path / f"mof_library_size.{suffix}").stat().st_size > 0

    embedding = mr.nca_map(trained["x_te"], y, tmp_path / "nca.png", seed=0,
                           names={i: f"MOF-{i}" for i in range(N_CLASSES)}, noise_source=mp.SYNTHETIC_NOISE)
    assert embedding.shape == (len(y), 2) and np.isfinite(embedding).all()
    assert (tmp_path / "nca.png").stat().st_size > 0 and len(pd.read_csv(tmp_path / "nca.csv")) == len(y)

    frame = mr.cam_figure(trained["model"], lib[:5], range(5), [f"MOF-{i}" for i in range(5)],
                          tmp_path / "cam.png", noise_source=mp.SYNTHETIC_NOISE)
    assert (tmp_path / "cam.png").stat().st_size > 0
    assert list(frame.columns) == ["two_theta"] + [f"{k}_{i}" for i in range(4) for k in ("pattern", "cam")]
    assert len(pd.read_csv(tmp_path / "cam.csv")) == mp.N_POINTS
