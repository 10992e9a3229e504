"""Measured XANES → coordination: reader, normalisation, edge checks, a tiny trained bundle, CLI.

No FEFF here: spectra are physically shaped curves (arctan edge step, Gaussian pre-edge peak,
white line, damped post-edge oscillation) written by the tests.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from xtalspec.cli import main
from xtalspec.models.xanes import CLASSES, build_model, save_bundle
from xtalspec.prediction.xanes import predict_xanes
from xtalspec.spectra.xanes_grid import edge_energy, scale_to_max
from xtalspec.spectra.xanes_measured import (K_EDGES, XanesError, XanesFileError, align_to_model,
                                             check_edge_in_range, measured_edge_energy, normalise, read_xanes)

torch.set_num_threads(1)

FE = K_EDGES["Fe"]
E0_FEFF = FE + 6.0  # the "FEFF" training spectra's edge, off from experiment as FEFF's are
GRID = E0_FEFF - 15.0 + 0.5 * np.arange(100)


def xanes_curve(energy, e0, pre_height=0.0, white=0.3, width=1.0, osc=0.05, phase=0.0):
    """Edge step 1 at ``e0``: arctan step, pre-edge peak 8 eV below, white line, damped EXAFS-like wiggle."""
    x = np.asarray(energy, dtype=np.float64) - e0
    step = 0.5 + np.arctan(x / width) / np.pi
    pre = pre_height * np.exp(-0.5 * ((x + 8.0) / 1.0) ** 2)
    line = white * np.exp(-0.5 * ((x - 4.0) / 3.0) ** 2)
    onset = 1.0 / (1.0 + np.exp(-(x - 10.0) / 2.0))
    wiggle = osc * np.sin(2 * np.pi * x / 25.0 + phase) * np.exp(-np.clip(x, 0, None) / 150.0) * onset
    return step + pre + line + wiggle


def scan_energies(e0, lo=-200.0, hi=400.0):
    """A beamline-like scan: 5 eV steps before the edge, 0.5 eV across it, 2 eV after."""
    return np.concatenate([np.arange(e0 + lo, e0 - 20, 5.0), np.arange(e0 - 20, e0 + 40, 0.5),
                           np.arange(e0 + 40, e0 + hi, 2.0)])


def measured(e0, scale=0.37, offset=0.8, slope=-2e-4, noise=0.0, seed=0, **shape):
    """(energy, raw μ): the curve times an edge step, plus a linear background and Gaussian noise."""
    energy = scan_energies(e0)
    rng = np.random.default_rng(seed)
    mu = scale * xanes_curve(energy, e0, **shape) + offset + slope * (energy - e0)
    return energy, mu + rng.normal(0.0, noise, energy.size)


def write_columns(path, *columns, header=None, delimiter=" "):
    np.savetxt(path, np.column_stack(columns), fmt="%.6f", delimiter=delimiter, header=header or "", comments="")
    return path


# --------------------------------------------------------------------------- edge and normalisation


@pytest.mark.parametrize("e0, width, pre_height, noise", [(7112.0, 1.0, 0.0, 0.0), (7115.3, 1.4, 0.25, 0.0),
                                                          (7109.7, 0.8, 0.25, 0.01), (4966.0, 1.2, 0.6, 0.003)])
def test_edge_energy_recovered_within_half_ev(e0, width, pre_height, noise):
    energy, mu = measured(e0, width=width, pre_height=pre_height, noise=noise, seed=3)
    assert abs(measured_edge_energy(energy, mu) - e0) < 0.5


@pytest.mark.parametrize("scale, offset, slope", [(1.0, 0.0, 0.0), (0.37, 2.1, -3e-4), (12.0, -5.0, 2e-3),
                                                  (0.05, 0.3, 1e-5)])
def test_normalise_gives_unit_edge_step(scale, offset, slope):
    energy, mu = measured(7112.0, scale=scale, offset=offset, slope=slope, pre_height=0.25)
    norm, info = normalise(energy, mu)
    assert abs(info["e0"] - 7112.0) < 0.5
    assert info["edge_step"] == pytest.approx(scale, rel=0.05)
    assert abs(norm[energy < 7112.0 - 30].mean()) < 0.02  # pre-edge on zero
    assert norm[(energy > 7112.0 + 50)].mean() == pytest.approx(1.0, abs=0.05)
    assert info["post_degree"] == 2


def test_normalise_short_feff_like_data_uses_the_fallback_ranges():
    energy = np.arange(7100.0, 7160.0, 0.5)  # E0 − 12 … E0 + 47.5: no point in the default ranges
    mu = 0.5 * xanes_curve(energy, 7112.0, white=0.2, osc=0.0) + 0.1
    norm, info = normalise(energy, mu)
    assert abs(info["e0"] - 7112.0) < 0.5
    assert info["pre_range"][1] < info["e0"] - 10 and info["post_range"][0] > info["e0"] + 15
    assert info["edge_step"] == pytest.approx(0.5, rel=0.05)


def test_normalise_rejects_an_inverted_spectrum():
    energy, mu = measured(7112.0)
    with pytest.raises(XanesError, match="not positive|too few post-edge|no rising edge"):
        normalise(energy, -mu)


def test_check_edge_in_range():
    energy, mu = measured(7112.0)
    check_edge_in_range(energy, "fe", e0=7118.0)
    with pytest.raises(XanesError, match="Cu K edge"):
        check_edge_in_range(energy, "Cu")
    with pytest.raises(XanesError, match="steepest edge"):
        check_edge_in_range(energy, "Fe", e0=7150.0)
    with pytest.raises(ValueError, match="no K edge tabulated"):
        check_edge_in_range(energy, "Xx")


def test_align_to_model_moves_the_edge_onto_the_bundle_e0():
    energy, mu = measured(E0_FEFF + 3.0, pre_height=0.25)
    norm, info = normalise(energy, mu)
    meta = {"grid": GRID.tolist(), "e0": E0_FEFF}
    x, shift = align_to_model(energy, norm, meta, e0=info["e0"])
    assert shift == pytest.approx(-3.0, abs=0.5)
    assert x.max() == pytest.approx(1.0) and x.shape == (100,)
    assert abs(edge_energy(GRID, x) - E0_FEFF) < 0.6
    with pytest.raises(XanesError, match="cover"):
        align_to_model(energy[energy < E0_FEFF + 15], norm[energy < E0_FEFF + 15], meta, e0=info["e0"])


# --------------------------------------------------------------------------- reading files


def test_xdi_file_in_kev_with_i0_itrans(tmp_path):
    energy, mu = measured(7112.0)
    i0 = 1e5 * (1 + 0.01 * np.sin(energy / 40))
    it = i0 * np.exp(-mu)
    lines = ["# XDI/1.0 GSE/1.0", "# Column.1: energy keV", "# Column.2: i0", "# Column.3: itrans",
             "# Element.symbol: Fe", "# Element.edge: K", "# Mono.d_spacing: 3.13555", "# ///",
             "# a test scan", "#----", "# energy i0 itrans"]
    lines += [f"{e / 1000:.6f} {a:.4f} {b:.4f}" for e, a, b in zip(energy, i0, it)]
    path = tmp_path / "fe.xdi"
    path.write_text("\n".join(lines) + "\n")
    e, m, info = read_xanes(path)
    assert info["format"] == "xdi" and info["energy_unit"] == "keV"
    assert info["element"] == "Fe" and info["edge"] == "K"
    assert e == pytest.approx(energy, abs=1e-3)
    assert m == pytest.approx(mu, abs=1e-5)
    assert info["mu_from"].startswith("ln(i0/itrans)")
    with pytest.raises(XanesFileError, match="XDI header says element Fe, asked for Co"):
        predict_xanes(path, "Co", tmp_path / "no_models")


def test_xdi_mu_column_and_fluorescence(tmp_path):
    energy, mu = measured(7112.0)
    i0 = np.full(energy.size, 2e4)
    lines = ["# XDI/1.0", "# Column.1: energy eV", "# Column.2: i0", "# Column.3: ifluor",
             "# Column.4: mutrans", "#----"]
    lines += [f"{e:.3f} {a:.3f} {a * m * 0.5:.5f} {m:.6f}" for e, a, m in zip(energy, i0, mu)]
    path = tmp_path / "mu.xdi"
    path.write_text("\n".join(lines) + "\n")
    _, m, info = read_xanes(path)
    assert info["mu_from"] == "column 4 (mutrans)" and m == pytest.approx(mu, abs=1e-5)
    path.write_text("\n".join(line for line in path.read_text().splitlines() if "Column.4" not in line))
    _, m, info = read_xanes(path)  # no μ column labelled: i0 and ifluor
    assert info["mu_from"].startswith("ifluor/i0") and m == pytest.approx(0.5 * mu, abs=1e-5)


def test_three_column_transmission_file(tmp_path):
    energy, mu = measured(7112.0)
    i0 = 8e4 + 100 * np.cos(energy / 13)
    path = write_columns(tmp_path / "scan.dat", energy, i0, i0 * np.exp(-mu), header="# Fe foil-like scan")
    e, m, info = read_xanes(path)
    assert info["columns"] is None and info["mu_from"].startswith("ln(I0/It)")
    assert m == pytest.approx(mu, abs=1e-5) and e == pytest.approx(energy)


def test_labelled_csv_with_header_line_sorted_and_cleaned(tmp_path):
    energy, mu = measured(7112.0)
    rows = [f"{e:.3f},{m:.6f},0" for e, m in zip(energy, mu)]
    rows = rows[::-1] + [rows[10], "7300.0,nan,0"]  # a downward scan, a repeated energy, a NaN
    path = tmp_path / "scan.csv"
    path.write_text("Energy,mu,flag\n" + "\n".join(rows) + "\n")
    e, m, info = read_xanes(path)
    assert info["columns"] == ["energy", "mu", "flag"] and info["mu_from"] == "column 2 (mu)"
    assert np.all(np.diff(e) > 0) and e.size == energy.size and info["n_dropped"] == 2
    assert m == pytest.approx(mu, abs=1e-5)


@pytest.mark.parametrize("content, problem", [
    ("", "empty"),
    ("energy mu\nabc def\nghi jkl\n", "no numeric data"),
    ("7100 0.1\n7101 0.2\nnot a number\n", "non-numeric"),
    ("\n".join(f"{7100 + i} {0.01 * i}" for i in range(12)), "need at least 20"),
    ("\n".join(f"7112 {0.01 * i}" for i in range(30)), "constant"),
    ("\n".join(f"{7100 + (i * 37) % 23} {i} 5" for i in range(40)), "back and forth"),
    ("# energy foo bar\n" + "\n".join(f"{7100 + i} 1 2" for i in range(40)), "name no μ column"),
])
def test_reader_errors_name_the_file(tmp_path, content, problem):
    path = tmp_path / "bad_spectrum.dat"
    path.write_text(content)
    with pytest.raises(XanesFileError, match=problem) as err:
        read_xanes(path)
    assert str(err.value).startswith(str(path))


def test_missing_file_and_wrong_element_name_the_file(tmp_path):
    with pytest.raises(XanesFileError, match="not found") as err:
        read_xanes(tmp_path / "nowhere.dat")
    assert "nowhere.dat" in str(err.value)
    path = write_columns(tmp_path / "fe_sample.dat", *measured(7112.0))
    with pytest.raises(XanesFileError, match="Cu K edge") as err:
        predict_xanes(path, "Cu", tmp_path / "no_models")
    assert str(err.value).startswith(str(path))
    with pytest.raises(ValueError, match="no K edge tabulated"):
        predict_xanes(path, "Pb", tmp_path / "no_models")


# --------------------------------------------------------------------------- end to end on a tiny bundle


def training_set(n_per_class=64, seed=0):
    """(spectra on GRID scaled to max 1, class indices): "T4" strong pre-edge peak, weak white
    line; "O6" no pre-edge peak, strong white line; edge, width, wiggle and noise varied."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for cls, pre, white in (("T4", 0.25, 0.1), ("O6", 0.0, 0.5)):
        for _ in range(n_per_class):
            e0 = E0_FEFF + rng.uniform(-2, 2)
            mu = xanes_curve(GRID, e0, pre_height=pre * rng.uniform(0.7, 1.3), white=white * rng.uniform(0.7, 1.3),
                             width=rng.uniform(0.8, 1.4), phase=rng.uniform(0, 2 * np.pi))
            x.append(mu + rng.normal(0, 0.01, GRID.size))
            y.append(CLASSES.index(cls))
    return scale_to_max(np.array(x)), np.array(y)


def train(kind, x, y, steps=300, seed=0):
    torch.manual_seed(seed)
    model = build_model(kind, x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    x, y = training_set()
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    z = (x - mean) / std
    models = {kind: train(kind, z, y, seed=i) for i, kind in enumerate(("mlp", "cnn"))}
    meta = {"element": "Fe", "classes": list(CLASSES), "grid": GRID.tolist(),
            "e0": edge_energy(GRID, x.mean(axis=0)), "features": "full",
            "scaler_mean": mean.tolist(), "scaler_std": std.tolist(), "n_train": int(len(y)),
            "provenance": "synthetic test bundle"}
    root = tmp_path_factory.mktemp("xanes_models")
    save_bundle(root / "Fe", meta, models)
    return root


def bundle_e0(models_dir):
    return json.loads((models_dir / "Fe" / "bundle.json").read_text())["e0"]


@pytest.mark.parametrize("shape, label", [({"pre_height": 0.25, "white": 0.1}, "T4"),
                                          ({"pre_height": 0.0, "white": 0.5}, "O6")])
def test_measured_spectrum_shifted_scaled_and_noisy_is_classified(models_dir, tmp_path, shape, label):
    energy, mu = measured(E0_FEFF + 3.0, scale=0.37, offset=0.8, slope=-2e-4, noise=0.01, seed=7, **shape)
    path = write_columns(tmp_path / "sample.dat", energy, mu, header="# energy mu")
    result = predict_xanes(path, "fe", models_dir)
    assert result.labels == {"mlp": label, "cnn": label}
    assert result.e0_model == bundle_e0(models_dir)  # the training spectra's edge, E0_FEFF ± 1 eV
    assert result.shift_ev == pytest.approx(result.e0_model - (E0_FEFF + 3.0), abs=0.5)
    assert result.edge_step == pytest.approx(0.37, rel=0.05)
    assert result.coverage == 1.0
    for p in result.probabilities.values():
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert "T4" in result.text and str(path) in result.text


def test_missing_bundle_lists_available_elements(models_dir, tmp_path):
    path = write_columns(tmp_path / "co.dat", *measured(K_EDGES["Co"]))
    with pytest.raises(FileNotFoundError, match="bundles found for: Fe"):
        predict_xanes(path, "Co", models_dir)


def test_cli_writes_csv_and_sidecar(models_dir, tmp_path, capsys):
    path = write_columns(tmp_path / "sample.dat", *measured(E0_FEFF + 3.0, noise=0.01, pre_height=0.25, white=0.1))
    out = tmp_path / "out" / "pred.csv"
    assert main(["predict-xanes", str(path), "--element", "Fe", "--models", str(models_dir), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["model", "p_T4", "p_S5", "p_O6", "label"]
    assert table["label"].tolist() == ["T4", "T4"]
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["file"] == str(path) and side["shift_ev"] == pytest.approx(bundle_e0(models_dir) - E0_FEFF - 3, abs=0.5)
    assert side["bundle"].endswith("Fe") and side["reader"]["mu_from"] == "column 2"
    assert "p_T4" in capsys.readouterr().out


def test_cli_bad_file_exits_2_naming_the_file(models_dir, tmp_path, capsys):
    bad = tmp_path / "garbage.dat"
    bad.write_text("this is not a spectrum\n")
    assert main(["predict-xanes", str(bad), "--element", "Fe", "--models", str(models_dir)]) == 2
    err = capsys.readouterr().err
    assert f"xtalspec: error: {bad}:" in err
