"""One preprocessing for FEFF and measured XANES (xtalspec.spectra.xanes_matching), the data set
on the relative grid, and the cross-element model (one-hot element input, the per-element folds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from xtalspec.datasets.xanes_spectra import dataset_from_frames
from xtalspec.models.xanes import build_model, element_onehot, load_bundle, save_bundle, standardise
from xtalspec.spectra import xanes_matching as xm
from xtalspec.spectra.xanes_measured import K_EDGES
from xtalspec.training.xanes import fold_split, too_few, train_bundle, train_cross, train_cross_bundle, train_element

torch.set_num_threads(1)


def edge(e, e0, white=0.5, width=1.0, pre=0.0):
    """Edge step 1 at e0 (arctan), a white line 4 eV above, optional pre-edge peak 12 eV below."""
    x = np.asarray(e, float) - e0
    return (0.5 + np.arctan(x / width) / np.pi + white * np.exp(-0.5 * ((x - 4.0) / 2.0) ** 2)
            + pre * np.exp(-0.5 * ((x + 12.0) / 0.8) ** 2))


# --------------------------------------------------------------------------- the steps


def test_core_hole_widths_are_krause_oliver():
    assert xm.CORE_HOLE_WIDTH_EV["Ti"] == 0.94 and xm.CORE_HOLE_WIDTH_EV["Fe"] == 1.25
    assert xm.CORE_HOLE_WIDTH_EV["Cu"] == 1.55
    xraydb = pytest.importorskip("xraydb")
    for element in xm.ELEMENTS:
        assert xm.CORE_HOLE_WIDTH_EV[element] == pytest.approx(xraydb.core_width(element, "K"), abs=0.005)


@pytest.mark.parametrize("lorentz, gauss", [(1.25, 0.0), (0.0, 1.5), (1.25, 1.5)])
def test_broadening_keeps_the_area_and_widens_a_line(lorentz, gauss):
    e = np.arange(7080.0, 7160.0, 0.3)
    line = np.exp(-0.5 * ((e - 7120.0) / 0.2) ** 2)  # a narrow line
    fine, wide = xm.broaden(e, line, lorentz, gauss)
    assert np.trapezoid(wide, fine) == pytest.approx(np.trapezoid(line, e), rel=0.03)
    half = fine[wide >= wide.max() / 2]
    fwhm = half[-1] - half[0]
    expected = 0.5346 * lorentz + np.sqrt(0.2166 * lorentz ** 2 + gauss ** 2)  # Voigt (Olivero & Longbothum)
    assert fwhm == pytest.approx(np.hypot(expected, 0.47), abs=0.25)  # ⊗ the 0.47 eV FWHM line itself
    # an edge far from the ends keeps its level on both sides
    fine, step = xm.broaden(e, edge(e, 7120.0, white=0.0), lorentz, gauss)
    assert step[0] == pytest.approx(edge(e, 7120.0, white=0.0)[0], abs=0.02) and step[-1] > 0.95


def test_no_broadening_returns_the_input():
    e = np.array([3.0, 1.0, 2.0])
    fine, mu = xm.broaden(e, np.array([30.0, 10.0, 20.0]))
    np.testing.assert_array_equal(fine, [1, 2, 3])
    np.testing.assert_array_equal(mu, [10, 20, 30])


def test_half_step_e0_is_stable_where_two_steep_parts_compete():
    """An edge in two steps of similar slope: the maximum slope jumps between them with noise,
    the half-height crossing does not."""
    e = np.arange(5440.0, 5560.0, 0.3)
    mu = 0.5 * (0.5 + np.arctan((e - 5480) / 1.0) / np.pi) + 0.5 * (0.5 + np.arctan((e - 5487) / 1.0) / np.pi)
    pp = xm.Preprocessing(lorentz_factor=0.0, gauss_fwhm_ev=0.0)
    e0s = {"max_slope": [], "half_step": []}
    for seed in range(6):
        noisy = mu + np.random.default_rng(seed).normal(0, 0.01, e.size)
        for rule in e0s:
            e0s[rule].append(xm.prepare(e, noisy, "V", xm.Preprocessing(**(pp.as_dict() | {"e0_rule": rule,
                                                                                            "post_window": (15, 40)})),
                                        simulated=False)[1]["e0"])
    assert np.ptp(e0s["half_step"]) < 0.5
    assert abs(np.mean(e0s["half_step"]) - 5483.5) < 1.0


def test_prepare_is_one_path_for_feff_and_measured():
    """Without broadening a FEFF spectrum and the same data read as a measurement give the same
    input; a raw measurement (scaled, offset, sloping background, shifted) gives nearly the same."""
    e = np.arange(K_EDGES["Fe"] - 20, K_EDGES["Fe"] + 60, 0.3)
    mu = edge(e, K_EDGES["Fe"] + 15, pre=0.1)
    pp = xm.Preprocessing(lorentz_factor=0.0, gauss_fwhm_ev=0.0, normalisation="step")
    a, info_a = xm.prepare(e, mu, "Fe", pp, simulated=True)
    b, info_b = xm.prepare(e, mu, "Fe", pp, simulated=False)
    np.testing.assert_allclose(a, b)
    long_e = np.arange(K_EDGES["Fe"] - 200, K_EDGES["Fe"] + 400, 0.5)
    raw = 0.37 * edge(long_e + 3.0, K_EDGES["Fe"] + 15, pre=0.1) + 0.8 - 2e-4 * (long_e - long_e[0])
    c, info_c = xm.prepare(long_e, raw, "Fe", pp, simulated=False)
    assert info_c["e0"] == pytest.approx(info_a["e0"] - 3.0, abs=0.3)
    assert np.abs(c - a).mean() < 0.03
    assert info_a["coverage"] == 1.0 and a.shape == (100,)
    assert 0.9 < np.median(a[pp.offsets > 20]) < 1.1  # edge step 1, no division by the maximum
    assert a.max() > 1.2  # the white line stays above the step
    mx, _ = xm.prepare(e, mu, "Fe", xm.Preprocessing(**(pp.as_dict() | {"normalisation": "max"})), simulated=True)
    assert mx.max() == pytest.approx(1.0)


def test_broadening_is_applied_to_simulations_only():
    e = np.arange(K_EDGES["Ni"] - 20, K_EDGES["Ni"] + 60, 0.3)
    mu = edge(e, K_EDGES["Ni"] + 10, white=1.0, width=0.5)
    pp = xm.Preprocessing(lorentz_factor=2.0, gauss_fwhm_ev=2.0, normalisation="step")
    sim, info_sim = xm.prepare(e, mu, "Ni", pp, simulated=True)
    meas, info_meas = xm.prepare(e, mu, "Ni", pp, simulated=False)
    assert info_sim["broadening"]["lorentz_fwhm_ev"] == pytest.approx(2 * 1.44)
    assert info_meas["broadening"] == {"lorentz_fwhm_ev": 0.0, "gauss_fwhm_ev": 0.0}
    assert sim.max() < meas.max() - 0.2  # the white line is lower after broadening


def test_preprocessing_settings_round_trip_and_validation():
    pp = xm.Preprocessing.from_dict({"gauss_fwhm_ev": 2.0, "post_window": [10, 30]})
    assert xm.Preprocessing.from_dict(pp.as_dict()) == pp
    assert pp.offsets[0] == -15.0 and pp.offsets[-1] == pytest.approx(34.5)
    with pytest.raises(ValueError, match="unknown"):
        xm.Preprocessing.from_dict({"gauss": 1})
    with pytest.raises(ValueError, match="normalisation"):
        xm.Preprocessing.from_dict({"normalisation": "area"})


# --------------------------------------------------------------------------- data set and models


def feff_like_frame(elements=("V", "Fe", "Cu"), per_class=(5, 3, 6), seed=0) -> pd.DataFrame:
    """FEFF-shard rows: per element and class spectra that differ by pre-edge peak and white line."""
    rng = np.random.default_rng(seed)
    rows = []
    for element in elements:
        edge0 = K_EDGES[element] + 12.0
        energy = np.concatenate([np.arange(edge0 - 18, edge0 - 2, 0.8), np.arange(edge0 - 2, edge0 + 8, 0.3),
                                 np.arange(edge0 + 8, edge0 + 45, 0.9)])
        for cls, n, pre, white in zip(("T4", "S5", "O6"), per_class, (0.6, 0.25, 0.03), (0.1, 0.3, 0.8)):
            for i in range(n):
                e0 = edge0 + rng.normal(0, 1.0)
                wiggle = 0.08 * np.sin((energy - e0) / rng.uniform(3.0, 6.0) + rng.uniform(0, 6.3)) * (energy > e0 + 8)
                mu = edge(energy, e0, white=white * rng.uniform(0.6, 1.4), width=rng.uniform(0.6, 1.6),
                          pre=pre * rng.uniform(0.6, 1.4)) + wiggle + rng.normal(0, 0.004, energy.size)
                rows.append({"id": f"{element}{cls}{i}", "source": "t", "url": "", "site_key": f"t:{element}{cls}{i}:0",
                             "element": element, "site_index": 0, "label": cls, "energy": energy, "mu": mu})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def dataset():
    return dataset_from_frames(feff_like_frame())


def test_dataset_on_the_shared_relative_grid(dataset):
    data, rejects, meta = dataset
    assert meta["preprocessing"] == xm.Preprocessing().as_dict()
    for element in ("V", "Fe", "Cu"):
        info = meta["elements"][element]
        assert info["grid_relative"] and info["grid"][0] == -15.0 and len(info["grid"]) == 100
        assert info["pre_edge_index"] == 30  # grid points below E0
    assert (data["e0"] > 0).all() and len(data) + len(rejects) == 42 and len(data) >= 36
    mu = np.stack(data["mu"].to_numpy())
    np.testing.assert_allclose(mu.max(axis=1), 1.0, atol=1e-6)  # normalisation "max" (the default)
    step, _, _ = dataset_from_frames(feff_like_frame(), preprocessing={"normalisation": "step"})
    assert np.median(np.stack(step["mu"].to_numpy())[:, -20:]) == pytest.approx(1.0, abs=0.15)  # edge step 1


QUICK = {"n_folds": 3, "epochs": 15, "test_shifts_ev": [0.0], "noise_levels": [0.0], "min_spectra": 6}


def test_cross_element_model_uses_the_per_element_folds(dataset):
    data, _, meta = dataset
    predictions, summary = train_cross(data, meta, "mlp", QUICK)
    assert set(predictions["model"]) == {"mlp_x"} and set(predictions["element"]) == {"V", "Fe", "Cu"}
    per_element, _ = train_element(data, meta, "Fe", "mlp", QUICK, variants=(("full", "shift"),))
    for fold in range(3):
        a = predictions[(predictions["element"] == "Fe") & (predictions["fold"] == fold)]["site_key"]
        b = per_element[(per_element["fold"] == fold) & (per_element["test"] == "base")]["site_key"]
        assert sorted(a) == sorted(b)
    assert summary["tested"] == ["Cu", "Fe", "V"] and summary["accuracy_full_shift"] > 0.5


def test_cross_bundle_round_trip_with_the_one_hot_element(dataset, tmp_path):
    data, _, meta = dataset
    bundle, models = train_cross_bundle(data, meta, {"epochs": 5})
    assert bundle["elements"] == ["Cu", "Fe", "V"] and bundle["grid_relative"]
    save_bundle(tmp_path / "cross", bundle, models)
    loaded, loaded_models = load_bundle(tmp_path / "cross")
    x = np.stack(data["mu"].to_numpy()[:3])
    z = standardise(x, loaded, "Fe")
    assert z.shape == (3, 103) and (z[:, 100:] == element_onehot(["Fe"] * 3, ["Cu", "Fe", "V"])).all()
    with torch.no_grad():
        for kind in ("mlp", "cnn"):
            np.testing.assert_allclose(loaded_models[kind](torch.as_tensor(z)).numpy(),
                                       models[kind](torch.as_tensor(z)).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="not trained on Ni"):
        standardise(x, loaded, "Ni")


def test_cnn_with_extra_inputs_convolves_the_spectrum_only():
    model = build_model("cnn", 100, n_extra=8)
    assert model.head[0].in_features == 8 * 45 + 8
    assert model(torch.zeros(2, 108)).shape == (2, 3)
    assert build_model("mlp", 100, n_extra=8).net[0].in_features == 108


def test_too_few_spectra_are_reported_not_crashed(dataset):
    assert too_few(np.array([0, 2, 2])) == "too few spectra (3 < 6)"
    assert too_few(np.array([2] * 8)) == "too few spectra (one class only)"
    assert too_few(np.array([0, 1, 2, 0, 1, 2])) is None
    data, _, meta = dataset
    v = data[data["element"] == "V"]
    small = pd.concat([data[data["element"] == "Fe"], v[v["label"] == "O6"].head(2), v[v["label"] == "T4"].head(2)])
    predictions, summary = train_element(small, meta, "V", "mlp", QUICK)
    assert predictions.empty and summary["status"].startswith("too few spectra")
    bundle, models = train_bundle(small, meta, "V", QUICK)  # two classes: a bundle still trains
    assert bundle["trained"] and set(models) == {"mlp", "cnn"}
    bundle, models = train_bundle(small[small["label"] == "O6"], meta, "Fe", QUICK)
    assert not bundle["trained"] and models == {} and "one class" in bundle["status"]
    # fold splits of an element are the same whether or not the other elements are there
    y = small[small["element"] == "Fe"]["label"].map({"T4": 0, "S5": 1, "O6": 2}).to_numpy()
    assert fold_split(y, 0, 0, 0.1)[1].size >= 2


def test_predict_xanes_falls_back_to_the_cross_element_model(tmp_path):
    """An element whose own bundle could not be trained (one class) is still classified by the
    cross-element models, with a note; an element neither knows is a clear error."""
    from xtalspec.cli import main
    from xtalspec.prediction.xanes import predict_xanes

    frame = feff_like_frame(elements=("V", "Ni"), per_class=(4, 2, 5))
    frame = frame[(frame["element"] == "V") | (frame["label"] == "O6")]  # Ni: O6 only
    data, _, meta = dataset_from_frames(frame)
    for element in ("V", "Ni"):
        bundle, models = train_bundle(data, meta, element, {"epochs": 3})
        save_bundle(tmp_path / element, bundle, models)
    assert not json.loads((tmp_path / "Ni" / "bundle.json").read_text())["trained"]
    bundle, models = train_cross_bundle(data, meta, {"epochs": 3})
    save_bundle(tmp_path / "cross", bundle, models)
    ni = frame[frame["element"] == "Ni"].iloc[0]
    e = np.concatenate([np.arange(ni["energy"][0] - 120, ni["energy"][0] - 1, 2.0), ni["energy"]])
    m = np.concatenate([np.full(e.size - len(ni["mu"]), ni["mu"][0]), ni["mu"]])
    path = tmp_path / "ni.dat"
    np.savetxt(path, np.column_stack([e, 0.3 * m + 0.2]))
    result = predict_xanes(path, "Ni", tmp_path)
    assert list(result.probabilities) == ["mlp_x", "cnn_x"]
    assert any("no per-element Ni model" in n for n in result.details["notes"])
    assert "note: no per-element Ni model" in result.text
    assert main(["predict-xanes", str(path), "--element", "Ni", "--models", str(tmp_path), "--no-cross"]) == 2
    co = tmp_path / "co.dat"
    np.savetxt(co, np.column_stack([e - K_EDGES["Ni"] + K_EDGES["Co"], 0.3 * m + 0.2]))
    with pytest.raises(FileNotFoundError, match="bundles found for: Ni, V"):
        predict_xanes(co, "Co", tmp_path)
