"""Scheme 2: measured patterns at Cu Kα and Mo Kα through the trained ensemble."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xtalspec.cli import main
from xtalspec.prediction.xrd import find_members, predict_pattern
from xtalspec.training.loop import TrainConfig
from xtalspec.training.xrd import train_member

from test_xrd_training import dataset_path  # noqa: F401  (fixture)
from xrd_fixtures import simulated_pattern, structures

CU, MO = 1.5418, 0.7107


@pytest.fixture(scope="module")
def models_dir(dataset_path, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("models")
    for seed in (1, 2, 3):
        cfg = TrainConfig(epochs=20, batch_size=4, seed=seed, threads=2, device="cpu")
        train_member(dataset_path, "spgvolnet", "inf", 1, cfg, root / f"spgvolnet/inf/fold1/seed{seed}")
    return root


def write_pattern(path, x, y):
    np.savetxt(path, np.column_stack([x, y]), header="2theta intensity", fmt="%.5f")
    return path


@pytest.mark.parametrize("name", ["NaCl_rocksalt", "CsCl_cscl"])
def test_cu_and_mo_patterns_of_one_structure_rank_the_same(models_dir, tmp_path, name):
    structure = dict(structures())[name]
    cu = write_pattern(tmp_path / "cu.xy", *simulated_pattern(structure, CU, (10, 110), seed=1))
    mo = write_pattern(tmp_path / "mo.xye", *simulated_pattern(structure, MO, (4.5, 46), seed=2))
    a = predict_pattern(cu, "CuKa", models_dir, top=3)
    b = predict_pattern(mo, "MoKa", models_dir, top=3)
    assert a.ranking["spacegroup"].tolist() == b.ranking["spacegroup"].tolist()
    assert len(a.members) == 3 and a.volume_per_atom > 0
    assert {"p_I", "p_II", "p_III", "p_ensemble"} <= set(a.ranking.columns)
    assert np.allclose(a.ranking[["p_I", "p_II", "p_III"]].mean(axis=1), a.ranking["p_ensemble"], atol=1e-6)


def test_members_found_and_cli_writes_ranking(models_dir, tmp_path):
    assert [p.parent.name for p in find_members(models_dir, "spgvolnet")] == ["seed1", "seed2", "seed3"]
    structure = dict(structures())["MgO_rocksalt"]
    pattern = write_pattern(tmp_path / "p.csv", *simulated_pattern(structure, CU, (10, 110)))
    out = tmp_path / "ranking.csv"
    assert main(["predict-xrd", str(pattern), "--wavelength", "CuKa", "--models", str(models_dir),
                 "--top", "2", "--n-atoms", "2", "--out", str(out)]) == 0
    ranking = pd.read_csv(out)
    assert len(ranking) == 2 and (ranking["volume"] > 0).all()


@pytest.mark.parametrize("content, wavelength, message", [
    ("", "CuKa", "empty"),
    ("two theta, counts\nabc, def\nghi, jkl\n", "CuKa", "numeric"),
    ("\n".join(f"{2 + 0.01 * i:.2f} {100 + i % 7}" for i in range(600)), "CuKa", "1/d"),
    ("\n".join(f"{20 + 0.02 * i:.2f} {100 + i % 7}" for i in range(600)), "XyKa", "wavelength"),
])
def test_bad_files_fail_clearly_naming_the_file(models_dir, tmp_path, capsys, content, wavelength, message):
    path = tmp_path / "bad_pattern.xy"
    path.write_text(content)
    assert main(["predict-xrd", str(path), "--wavelength", wavelength, "--models", str(models_dir)]) == 2
    err = capsys.readouterr().err
    assert message.lower() in err.lower()
    if message != "wavelength":
        assert "bad_pattern.xy" in err
