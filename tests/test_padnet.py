"""PADNet's fixed peak-area front end, and laboratory patterns rendered from δ-profiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xtalspec.models.padnet import ORIENTATIONS, PADNet, SlopeFilterFrontEnd, build_padnet, slope_filters
from xtalspec.spectra.lab_patterns import (
    broaden_profile, filter_background, random_background, render_batch, render_lab_pattern, subtract_background,
)
from xtalspec.spectra.xrd import BIN_WIDTH, INV_D_MIN, N_BINS, broaden, from_sparse

pytestmark = pytest.mark.usefixtures("torch_one_thread")

STICKS = (np.array([1000, 3000, 5000, 7000, 9000]), np.array([1.0, 0.3, 0.7, 0.05, 0.5]))
CENTRE_CHANNELS = [i for i, name in enumerate(ORIENTATIONS) if name.startswith("centre")]
STEP = ORIENTATIONS.index("step")


def peaks(fwhm: float = 10.0, sticks=STICKS) -> torch.Tensor:
    return torch.tensor(broaden_profile(from_sparse(*sticks), fwhm), dtype=torch.float32).unsqueeze(0)


# --------------------------------------------------------------------------- front end


def test_filters_are_zero_sum_fixed_and_survive_training():
    weight = slope_filters(50)
    assert weight.shape == (4, 1, 49)
    assert torch.all(weight.sum(-1) == 0) and set(weight.unique().tolist()) == {-1.0, 0.0, 1.0}
    model = PADNet(3, n_bins=2001)
    assert "front_end.weight" in dict(model.named_buffers())
    assert "front_end.weight" not in dict(model.named_parameters()) and not model.front_end.weight.requires_grad
    filters, trunk = model.front_end.weight.clone(), model.trunk[0].weight.clone()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = torch.nn.functional.cross_entropy(model(torch.rand(4, 2001))["logits"], torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimiser.step()
    assert torch.equal(model.front_end.weight, filters)
    assert not torch.equal(model.trunk[0].weight, trunk)


def test_constant_and_linear_backgrounds_cancel():
    front = SlopeFilterFrontEnd()
    x = peaks()
    interior = slice(50, N_BINS - 50)
    base = front.peak_areas(x)[..., interior]
    constant = front.peak_areas(x + 5.0)[..., interior]
    torch.testing.assert_close(constant, base, atol=1e-4, rtol=0)
    linear = front.peak_areas(x + 0.5 + 1e-4 * torch.arange(N_BINS))[..., interior]
    torch.testing.assert_close(linear[:, CENTRE_CHANNELS], base[:, CENTRE_CHANNELS], atol=1e-4, rtol=0)
    assert (linear[:, STEP] - base[:, STEP]).abs().max() > 1e-2  # the step filter sees the slope


def test_peak_lights_up_the_window_around_it():
    front = SlopeFilterFrontEnd()
    centre, half = 5000, front.taps // 2
    x = peaks(8.0, (np.array([centre]), np.array([1.0])))
    slope = front.filter_responses(x)[0, STEP]
    assert slope[centre].abs() < 1e-3 * slope.abs().max()  # zero slope at the top
    area = front.peak_areas(x)[0, STEP]
    assert torch.all(area[centre - half : centre + half + 1] > 0.9 * area.max())
    far = 2 * half + 10 * 8 + 2
    assert area[: centre - far].abs().max() < 1e-5 and area[centre + far :].abs().max() < 1e-5


def test_softmax_modes():
    x = torch.cat([peaks(), peaks(15.0)]) + 0.1
    out = SlopeFilterFrontEnd(renormalise=False)(x)
    assert out.shape == (2, 4, N_BINS)
    torch.testing.assert_close(out.sum(1), torch.ones(2, N_BINS))
    positions = SlopeFilterFrontEnd(softmax="positions", renormalise=False)(x)
    torch.testing.assert_close(positions.sum(2), torch.ones(2, 4), atol=1e-4, rtol=0)
    # the default rescales the softmax maps for the trunk: unit variance per map over the batch
    renormalised = SlopeFilterFrontEnd()(x)
    torch.testing.assert_close(renormalised.var(dim=(0, 2), unbiased=False), torch.ones(4), atol=0.05, rtol=0)  # BN eps
    with pytest.raises(ValueError):
        SlopeFilterFrontEnd(softmax="bins")


def test_padnet_shape_and_tiny_overfit():
    torch.manual_seed(0)
    model = build_padnet(7)
    assert not model.has_volume_head
    assert model(torch.rand(2, N_BINS))["logits"].shape == (2, 7)
    with pytest.raises(ValueError):
        build_padnet(2, kernel=3)
    torch.manual_seed(0)
    model = build_padnet(2, dropout_conv=0.0, dropout_fc=0.0)
    rng = np.random.default_rng(0)
    a, b = (np.array([1500, 4000, 6500]), np.array([2500, 5200, 8000]))
    x = torch.tensor(render_batch([a, b, a, b], [np.ones(3)] * 4, rng, [0.0, 0.0, 1.0, 1.0]))
    y = torch.tensor([0, 1, 0, 1])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(20):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x)["logits"], y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# --------------------------------------------------------------------------- laboratory patterns


@pytest.mark.parametrize("shape", ["pseudo-voigt", "gaussian", "lorentzian"])
def test_broaden_profile_keeps_peaks_and_matches_xrd_broaden(shape):
    bins, values = STICKS
    out = broaden_profile(from_sparse(bins, values), 10.0, shape, normalise=False)
    for b, v in zip(bins, values):
        window = np.arange(b - 101, b + 102)
        assert out[window].sum() == pytest.approx(v, rel=1e-9)
        assert window[np.argmax(out[window])] == b
        assert (window * out[window]).sum() / out[window].sum() == pytest.approx(b, abs=1e-6)
    axis = INV_D_MIN + (np.arange(N_BINS) + 0.5) * BIN_WIDTH
    reference = broaden(axis[bins], values, axis, fwhm=10.0 * BIN_WIDTH, shape=shape) * BIN_WIDTH
    error = np.abs(out - reference) / reference.max()
    at_cut = (np.abs(np.arange(N_BINS)[:, None] - bins) == 100).any(1)  # round-off decides the sample at ±10 FWHM
    assert error[~at_cut].max() < 2e-4 and error.max() < 3e-3  # a Lorentzian is 1/401 of its top there
    normalised = broaden_profile(np.stack([from_sparse(bins, values)] * 2), 10.0, shape)
    assert normalised.shape == (2, N_BINS) and np.allclose(normalised.max(1), 1.0)
    np.testing.assert_allclose(normalised[0], out / out.max(), atol=1e-12)


def test_random_background_is_smooth_positive_and_seeded():
    for kind in ("mixed", "decay", "amorphous", "polynomial"):
        bg = random_background(np.random.default_rng(3), kind=kind)
        assert bg.shape == (N_BINS,) and bg.min() >= 0 and bg.max() == pytest.approx(1.0)
        assert kind == "amorphous" or bg.min() > 0
        assert np.abs(np.diff(bg, 2)).max() < 1e-4  # smooth on the scale of peaks
    first, again, other = (random_background(np.random.default_rng(seed)) for seed in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_rendered_patterns_are_seeded_and_normalised():
    bins, values = STICKS
    one, again, other = (render_lab_pattern(bins, values, np.random.default_rng(seed), background_strength=1.0)
                         for seed in (7, 7, 8))
    assert one.dtype == np.float32 and one.shape == (N_BINS,) and one.max() == 1.0
    np.testing.assert_array_equal(one, again)
    assert not np.array_equal(one, other)
    strengths = [0.0, 2.0, 0.0]
    batch = render_batch([bins] * 3, [values] * 3, np.random.default_rng(7), strengths)
    assert batch.dtype == np.float32 and batch.shape == (3, N_BINS) and np.all(batch.max(1) == 1.0)
    rng = np.random.default_rng(7)
    singles = [render_lab_pattern(bins, values, rng, background_strength=s) for s in strengths]
    np.testing.assert_array_equal(batch, np.stack(singles))
    assert batch[0].min() == batch[2].min() == 0.0 < batch[1].min()


def test_background_strength_raises_the_floor():
    bins, values = STICKS
    clean = [render_lab_pattern(bins, values, np.random.default_rng(5), background_strength=s, counts=None)
             for s in (0.0, 2.0)]
    assert clean[0].min() < 1e-6 and clean[1].min() > 0.05
    rng = np.random.default_rng(5)
    rng.random(3)  # the documented draw order: FWHM, eta, counts, then the background
    expected = clean[0] + 2.0 * random_background(rng)
    np.testing.assert_allclose(clean[1], expected / expected.max(), atol=1e-6)
    noisy = [render_lab_pattern(bins, values, np.random.default_rng(5), background_strength=s) for s in (0.0, 2.0)]
    assert np.quantile(noisy[0], 0.5) < 0.01 and np.quantile(noisy[1], 0.05) > 0.05
    assert abs(noisy[1].min() - clean[1].min()) < 0.05  # the floor sits where the noise-free one does


def test_subtract_background_recovers_a_known_background():
    rng = np.random.default_rng(11)
    bins = np.sort(rng.choice(np.arange(300, N_BINS - 300), 20, replace=False))
    values = rng.uniform(0.1, 1.0, 20)
    clean = broaden_profile(from_sparse(bins, values), 12.0)
    x = INV_D_MIN + (np.arange(N_BINS) + 0.5) * BIN_WIDTH  # a known background: tilt, hump, low-angle decay
    background = 0.3 + 0.2 * x + 0.6 * np.exp(-0.5 * ((x - 0.4) / 0.04) ** 2) + 0.5 * np.exp(-(x - INV_D_MIN) / 0.1)
    pattern = clean + background
    top = pattern.max()
    pattern, background = pattern / top, background / top
    estimate = filter_background(pattern, "min_mean")
    error = np.abs(estimate - background)
    assert error.mean() < 0.01 and error.max() < 0.03
    errors = {m: np.abs(subtract_background(pattern, m) - clean).mean() for m in ("min", "min_mean")}
    untouched = np.abs(pattern - clean).mean()
    assert errors["min_mean"] < 0.2 * untouched and errors["min"] < 0.2 * untouched
    cleaned = subtract_background(pattern)
    for b in bins:
        window = slice(b - 20, b + 21)  # the peak tops stay where they are in the clean pattern
        assert abs(int(np.argmax(cleaned[window])) - int(np.argmax(clean[window]))) <= 1
    stacked = subtract_background(np.stack([pattern, 2 * pattern]))
    np.testing.assert_allclose(stacked, np.stack([cleaned, cleaned]), atol=1e-12)
