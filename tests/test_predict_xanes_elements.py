"""predict-xanes for each of the eight elements (issue 17, item 4).

The FEFF spectra cache shipped in ``resources/xanes/`` holds spectra of all eight elements. The
test trains small per-element bundles and the cross-element bundle on it (the workflow's data
set code and preprocessing), then turns one cached spectrum of each element into a "measured"
file — energies moved by a few eV, a pre-edge region as a beamline scan has, an arbitrary edge
step, a sloping background and noise — and checks that ``xtalspec predict-xanes FILE --element
El`` reads it, finds its edge where the FEFF edge moved to, and returns T4/S5/O6 probabilities
from the per-element and the cross-element MLP and CNN. The sites are in the training set: this
checks the path from a file to the models for every element, not generalisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from xtalspec.cli import main
from xtalspec.datasets.xanes_cache import element_spectra, read_cache
from xtalspec.datasets.xanes_spectra import dataset_from_frames
from xtalspec.models.xanes import save_bundle
from xtalspec.spectra.xanes_matching import ELEMENTS, Preprocessing, prepare
from xtalspec.training.xanes import train_bundle, train_cross_bundle

torch.set_num_threads(1)
CACHE = Path(__file__).resolve().parents[1] / "resources" / "xanes" / "feff_cache.parquet"
QUICK = {"epochs": 10, "seed": 0}


@pytest.fixture(scope="module")
def cache():
    frame = read_cache(CACHE)
    if not set(ELEMENTS) <= set(frame["element"]):
        pytest.skip(f"the cache lacks {sorted(set(ELEMENTS) - set(frame['element']))}")
    return frame


@pytest.fixture(scope="module")
def models(cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("xanes_models_8")
    spectra = pd.concat([element_spectra(cache, e) for e in ELEMENTS], ignore_index=True)
    dataset, _, meta = dataset_from_frames(spectra)
    for element in ELEMENTS:
        bundle, trained = train_bundle(dataset, meta, element, QUICK)
        save_bundle(root / element, bundle, trained)
    bundle, trained = train_cross_bundle(dataset, meta, QUICK)
    save_bundle(root / "cross", bundle, trained)
    return root


def measured_file(path: Path, energy, mu, shift: float, step: float, seed: int) -> Path:
    """A beamline-like file from a FEFF spectrum: a flat pre-edge from 100 eV below, energies
    moved by ``shift``, edge step ``step``, offset + slope and 1 % noise."""
    rng = np.random.default_rng(seed)
    pre = np.arange(energy[0] - 100.0, energy[0] - 1.0, 2.0)
    e = np.concatenate([pre, energy]) + shift
    m = np.concatenate([np.full(pre.size, mu[0]), mu])
    raw = step * m + 0.6 - 0.001 * step * (e - e[0]) + rng.normal(0, 0.01 * step, e.size)
    np.savetxt(path, np.column_stack([e, raw]), header="energy_eV mu", fmt="%.4f")
    return path


@pytest.mark.parametrize("element", ELEMENTS)
def test_predict_xanes_for_every_element(cache, models, tmp_path, capsys, element):
    site = cache[cache["element"] == element].sort_values("site_key").iloc[0]
    energy, mu = np.asarray(site["energy"], float), np.asarray(site["mu"], float)
    shift = 3.0
    path = measured_file(tmp_path / f"{element}.txt", energy, mu, shift, 0.37, seed=len(element))
    out = tmp_path / f"{element}.csv"
    assert main(["predict-xanes", str(path), "--element", element, "--models", str(models), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out)
    assert table["model"].tolist() == ["mlp", "cnn", "mlp_x", "cnn_x"], printed
    p = table[["p_T4", "p_S5", "p_O6"]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert set(table["label"]) <= {"T4", "S5", "O6"}
    side = json.loads(out.with_suffix(".json").read_text())
    # the grid's E0 is the cached spectrum's (same rule, no broadening: read as a measurement) + the shift
    own = prepare(energy, mu, element, Preprocessing(), simulated=False)[1]
    assert side["e0_grid_ev"] == pytest.approx(own["e0"] + shift, abs=0.6)
    assert side["grid_coverage"] >= 0.8
    assert "(all elements)" in printed
