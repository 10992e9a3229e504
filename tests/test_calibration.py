"""Calibration: temperature scaling lowers the expected calibration error on held-out data
(synthetic over-confident logits and a small PDFNet over-fitted on synthetic inputs), the ECE of
calibrated data is near zero, reliability tables and diagrams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xtalspec.evaluation.calibration import (ensemble_probabilities, expected_calibration_error, fit_temperature,
                                             negative_log_likelihood, plot_reliability, reliability_table)


def calibrated_data(n=6000, n_classes=8, scale=2.0, seed=0):
    """Logits z and labels drawn from softmax(z): softmax(z) is calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, scale, (n, n_classes))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    return z, np.minimum(labels, n_classes - 1)


def test_calibrated_data_have_an_ece_near_zero_and_overconfident_data_do_not():
    z, y = calibrated_data()
    assert expected_calibration_error(ensemble_probabilities(z), y) < 0.03
    assert expected_calibration_error(ensemble_probabilities(3 * z), y) > 0.15
    assert expected_calibration_error(ensemble_probabilities(z / 3), y) > 0.1  # under-confident too


def test_temperature_scaling_lowers_ece_on_held_out_synthetic_logits():
    z, y = calibrated_data(seed=1)
    logits = 2.5 * z  # over-confident
    fit, held = slice(0, 3000), slice(3000, None)
    t = fit_temperature(logits[fit], y[fit])
    assert t == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(ensemble_probabilities(logits[held]), y[held])
    after = expected_calibration_error(ensemble_probabilities(logits[held], t), y[held])
    assert after < 0.03 < 0.15 < before
    assert negative_log_likelihood(logits[held], y[held], t) < negative_log_likelihood(logits[held], y[held])
    # the ranking does not change
    assert (ensemble_probabilities(logits[held], t).argmax(1) == logits[held].argmax(1)).all()
    assert fit_temperature(logits[fit], y[fit]) == t  # deterministic
    assert fit_temperature(torch.from_numpy(logits[fit]), torch.from_numpy(y[fit])) == pytest.approx(t)


def test_one_temperature_for_an_ensemble_calibrates_the_mean_probability():
    z, y = calibrated_data(seed=2)
    rng = np.random.default_rng(3)
    members = np.stack([3 * (z + rng.normal(0, 0.3, z.shape)) for _ in range(3)])
    t = fit_temperature(members[:, :3000], y[:3000])
    held = slice(3000, None)
    before = expected_calibration_error(ensemble_probabilities(members[:, held]), y[held])
    after = expected_calibration_error(ensemble_probabilities(members[:, held], t), y[held])
    assert t > 1.5 and after < before / 3
    mean = ensemble_probabilities(members[:, held], t)
    assert np.allclose(mean.sum(1), 1) and np.allclose(
        mean, np.mean([ensemble_probabilities(m, t) for m in members[:, held]], axis=0))


def test_reliability_table_bins_and_counts():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.5, 0.5], [0.7, 0.3]])
    labels = np.array([0, 1, 0, 0, 1])
    table = reliability_table(probs, labels, n_bins=10)
    assert len(table) == 10 and table["count"].sum() == 5
    row = table[table["bin"] == 9].iloc[0]
    assert row["count"] == 2 and row["confidence"] == pytest.approx(0.95) and row["accuracy"] == 0.5
    assert table[table["bin"] == 4].iloc[0]["count"] == 1  # 0.5 lies in (0.4, 0.5]
    # ECE by hand: bin 9: 2 × |0.5 − 0.95|, bin 4: |1 − 0.5|, bin 5: |1 − 0.55|, bin 6: |0 − 0.7|
    expected = (2 * 0.45 + 0.5 + 0.45 + 0.7) / 5
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)
    with pytest.raises(ValueError, match="labels"):
        reliability_table(probs, np.array([0, 1, 2, 0, 0]))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="shape"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(ValueError, match="non-finite"):
        fit_temperature(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((2, 3)), np.array([0]))
    with pytest.raises(ValueError, match="positive"):
        ensemble_probabilities(np.zeros((2, 3)), temperature=0.0)


def test_reliability_diagram_is_written_as_png_and_svg(tmp_path):
    z, y = calibrated_data(n=500)
    before = reliability_table(ensemble_probabilities(3 * z), y)
    after = reliability_table(ensemble_probabilities(3 * z, 3.0), y)
    png = plot_reliability(before, after, tmp_path / "figs" / "reliability.png")
    svg = plot_reliability(before, after, tmp_path / "reliability.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in svg.read_bytes()[:500]
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ValueError, match="png or .svg"):
        plot_reliability(before, after, tmp_path / "reliability.pdf")


@pytest.fixture(scope="module")
def overfitted_pdfnet():
    """A real network of the project (PDFNet; its 209-point input keeps this fast) over-fitted on
    32 synthetic inputs of 4 overlapping classes, and a sampler of more such inputs."""
    from xtalspec.models.pdfnet import PDFNet

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_classes, r = 4, np.linspace(1.5, 30, 209)

    def sample(n):
        y = rng.integers(0, n_classes, n)
        freq = 1.0 + 0.35 * y + rng.normal(0, 0.18, n)  # overlapping classes: errors on held-out data
        x = np.sin(freq[:, None] * r[None]) * np.exp(-0.05 * r)[None] + rng.normal(0, 0.6, (n, 209))
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)

    x_train, y_train = sample(32)
    model = PDFNet(n_classes, dropout=0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    with torch.inference_mode(False):
        for _ in range(20):  # full batch, to near-zero training loss
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train)["logits"], y_train)
            loss.backward()
            optimiser.step()
    assert loss.item() < 0.05
    return model.eval(), x_train, sample, rng


def test_temperature_scaling_lowers_ece_of_an_overfitted_pdfnet(overfitted_pdfnet):
    """Over-confident on held-out inputs: its fitted temperature is above 1 and lowers the ECE on
    a third split."""
    model, _, sample, _ = overfitted_pdfnet
    x_cal, y_cal = sample(200)
    x_test, y_test = sample(200)
    with torch.no_grad():
        cal, test = model(x_cal)["logits"].numpy(), model(x_test)["logits"].numpy()
    t = fit_temperature(cal, y_cal.numpy())
    before = expected_calibration_error(ensemble_probabilities(test), y_test.numpy())
    after = expected_calibration_error(ensemble_probabilities(test, t), y_test.numpy())
    assert 0.3 < (test.argmax(1) == y_test.numpy()).mean() < 0.95  # neither chance nor perfect
    assert t > 1.2 and after < before * 0.6, (t, before, after)


def test_ood_score_of_a_real_network_puts_noise_outside(overfitted_pdfnet):
    """The kNN distance in PDFNet's penultimate features to its training inputs: held-out inputs
    of the training distribution score about 1, white noise and random walks (no such input was
    ever seen) score far above the outside threshold chosen on held-out data."""
    from xtalspec.evaluation.verdicts import choose_thresholds, ood_reference, ood_score

    model, x_train, sample, rng = overfitted_pdfnet
    x_held, _ = sample(200)
    noise = torch.from_numpy(rng.normal(0, 3, (50, 209)).astype(np.float32))
    walk = torch.from_numpy(np.cumsum(rng.normal(0, 0.3, (50, 209)), 1).astype(np.float32))
    with torch.no_grad():
        reference = ood_reference(model.penultimate(x_train), k=5)
        held = ood_score(model.penultimate(x_held), reference)
        noise_scores, walk_scores = ood_score(model.penultimate(noise), reference), ood_score(model.penultimate(walk),
                                                                                             reference)
    threshold = choose_thresholds(np.ones(len(held)), np.ones(len(held), bool), held)["ood_threshold"]
    assert np.median(held) < 1.0 < threshold < 1.5
    assert noise_scores.min() > 2 * threshold and np.median(walk_scores) > 1.5 * threshold
