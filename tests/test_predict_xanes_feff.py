"""predict-xanes on spectra made from real FEFF10 results (acceptance of issue 5, item 5).

``tests/data/xanes_feff_V.csv`` holds five FEFF10 K-edge spectra of V sites in AMCSD minerals
(one T4, one S5, three O6; preset ``fast``, computed by ``xtalspec xanes feff``). The test builds
the data set and a bundle from them, then writes "measured" files made from one site's FEFF
spectrum — energies moved by a few eV, an arbitrary edge step, a sloping background and noise —
and checks that ``xtalspec predict-xanes`` undoes the shift and returns that site's label. The
sites are in the training set: this checks the path from a measured file to the models
(reading, E0, normalisation, alignment), not generalisation (the pipeline's folds do that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xtalspec.cli import main
from xtalspec.datasets.xanes_spectra import build_xanes_dataset
from xtalspec.models.xanes import save_bundle
from xtalspec.prediction.xanes import predict_xanes
from xtalspec.spectra.xanes_matching import Preprocessing, prepare
from xtalspec.training.xanes import train_bundle
from xtalspec.utils.tables import write_frame

DATA = Path(__file__).parent / "data" / "xanes_feff_V.csv"


def feff_spectra() -> pd.DataFrame:
    long = pd.read_csv(DATA, comment="#")
    rows = [{"id": key.split(":")[1], "source": "amcsd", "url": "", "site_key": key, "element": "V",
             "site_index": int(key.split(":")[2]), "label": part["label"].iloc[0],
             "energy": part["energy_eV"].to_numpy(), "mu": part["mu"].to_numpy()}
            for key, part in long.groupby("site_key", sort=True)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("xanes_models")
    write_frame(feff_spectra(), {}, root / "spectra.parquet")
    dataset, _, meta = build_xanes_dataset([root / "spectra.parquet"])
    bundle, trained = train_bundle(dataset, meta, "V", {"epochs": 50, "seed": 0})
    save_bundle(root / "models" / "V", bundle, trained)
    return root / "models"


def measured_file(path: Path, site: pd.Series, shift: float, step: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    energy = site["energy"] + shift
    background = 0.4 + 0.002 * step * (energy - energy[0])  # offset + gentle slope (0.2 % of the step per eV)
    mu = step * site["mu"] + background + rng.normal(0, 0.01 * step, energy.size)
    np.savetxt(path, np.column_stack([energy, mu]), header="energy_eV mu_measured", fmt="%.4f")
    return path


@pytest.mark.parametrize("shift, step, seed", [(3.0, 0.37, 1), (-2.0, 2.5, 2), (4.5, 0.08, 3)])
def test_feff_spectrum_shifted_scaled_and_noisy_gets_its_label(models, tmp_path, shift, step, seed):
    """Every site: the edge step is found (relative to the step the same preprocessing finds on
    the original FEFF spectrum: FEFF's μ has no exact unit step over a 50 eV window). The T4 site (a vanadate tetrahedron, E0 ~5 eV above
    the median of the V sites): its E0 moved with the shift (the models see E − E0) and both
    models call it T4. (Five training
    spectra are too few to separate S5 from O6 reliably under noise, and an O6 spectrum may
    align to another O6 training spectrum a few eV away.)"""
    for _, site in feff_spectra().iterrows():
        path = measured_file(tmp_path / f"{site['site_key'].replace(':', '_')}.txt", site, shift, step, seed)
        result = predict_xanes(path, "V", models)
        own = prepare(site["energy"], site["mu"], "V", Preprocessing(), simulated=False)[1]
        own_step = own["edge_step"]
        assert abs(result.edge_step / (step * own_step) - 1) < 0.2, (site["site_key"], result.edge_step, own_step)
        if site["label"] == "T4":
            # the grid's E0 moved with the energies: the same rule as on the unshifted spectrum
            assert abs(result.details["e0_grid_ev"] - own["e0"] - shift) < 0.5
            assert result.labels == {"mlp": "T4", "cnn": "T4"}, result.text
            assert min(p[0] for p in result.probabilities.values()) > 0.5


def test_cli_prints_and_writes_probabilities(models, tmp_path, capsys):
    t4 = feff_spectra().query("label == 'T4'").iloc[0]
    path = measured_file(tmp_path / "t4.txt", t4, 3.0, 0.37, 4)
    out = tmp_path / "p.csv"
    assert main(["predict-xanes", str(path), "--element", "V", "--models", str(models), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert set(table["label"]) == {"T4"} and np.allclose(table[["p_T4", "p_S5", "p_O6"]].sum(axis=1), 1, atol=1e-5)
    assert "T4" in capsys.readouterr().out


def test_bad_measured_files_fail_clearly(models, tmp_path, capsys):
    text = tmp_path / "words.txt"
    text.write_text("energy mu\nfoo bar\nbaz qux\n")
    assert main(["predict-xanes", str(text), "--element", "V", "--models", str(models)]) == 2
    assert str(text) in capsys.readouterr().err
    fe = tmp_path / "fe_edge.txt"  # an Fe K edge asked as V: no V edge in range
    e = np.linspace(7080, 7200, 300)
    np.savetxt(fe, np.column_stack([e, 0.5 + np.arctan((e - 7120) / 2) / np.pi]))
    assert main(["predict-xanes", str(fe), "--element", "V", "--models", str(models)]) == 2
    assert "fe_edge.txt" in capsys.readouterr().err
