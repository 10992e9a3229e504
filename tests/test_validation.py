"""``xtalspec validate`` on a tiny labelled set: every file gets a row (read or not), top-k
accuracy over all files and over the files whose label the model knows, crystal systems."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from xtalspec.cli import main
from xtalspec.evaluation.validation import crystal_system, read_labels, summarise

from test_predict_xanes_feff import feff_spectra, measured_file, models  # noqa: F401  (fixture)


@pytest.mark.parametrize("number, system", [(1, "triclinic"), (14, "monoclinic"), (62, "orthorhombic"),
                                            (139, "tetragonal"), (166, "trigonal"), (194, "hexagonal"),
                                            (225, "cubic"), (0, None), ("x", None)])
def test_crystal_systems(number, system):
    assert crystal_system(number) == system


def test_labels_need_file_and_label(tmp_path):
    (tmp_path / "LABELS.csv").write_text("name,label\na,1\n")
    with pytest.raises(ValueError, match="'file' and 'label'"):
        read_labels(tmp_path / "LABELS.csv")
    (tmp_path / "LABELS.csv").write_text("# a comment\nfile,label,wavelength\nsub/a.xy,225,CuKa\n")
    frame = read_labels(tmp_path / "LABELS.csv")
    assert frame["path"].tolist() == [str(tmp_path / "sub" / "a.xy")] and frame["wavelength"].tolist() == ["CuKa"]


def test_validate_xanes_on_a_tiny_set(models, tmp_path, capsys):  # noqa: F811
    spectra = feff_spectra()
    rows = []
    for i, (_, site) in enumerate(spectra.iterrows()):
        name = f"site{i}.dat"
        measured_file(tmp_path / name, site, shift=1.5, step=2.0, seed=i)
        rows.append(f"{name},{site['label']},V")
    (tmp_path / "broken.dat").write_text("energy mu\n1 2\n")
    rows.append("broken.dat,O6,V")                      # unreadable: a row, counted as wrong
    rows.append(f"site0.dat,{spectra.iloc[0]['label']},Fe")  # no Fe bundle: a row, counted as wrong
    (tmp_path / "LABELS.csv").write_text("file,label,element\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    code = main(["validate", "xanes", str(tmp_path / "LABELS.csv"), "--models", str(models), "--out-dir", str(out)])
    assert code == 0
    per_file = pd.read_csv(out / "per_file.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert len(per_file) == len(spectra) + 2
    assert per_file["status"].tolist() == ["ok"] * len(spectra) + ["error", "error"]
    assert "broken.dat" in per_file["reason"].iloc[-2] or "points" in per_file["reason"].iloc[-2]
    assert summary["n_files"] == len(spectra) + 2 and summary["n_errors"] == 2
    right = int((per_file["rank"] == 1).sum())
    assert summary["top_k_all"]["1"] == pytest.approx(right / (len(spectra) + 2))
    assert summary["top_k_in_classes"]["1"] == pytest.approx(right / len(spectra))
    assert right >= len(spectra) - 1  # the sites are in the training set: the path works
    assert summary["top_k_all"]["2"] >= summary["top_k_all"]["1"]
    assert "Validation on measured data: xanes" in (out / "summary.md").read_text()
    assert "top-1" in capsys.readouterr().out


def test_summary_counts_crystal_systems_and_unknown_labels():
    per_file = pd.DataFrame({
        "status": ["ok", "ok", "ok", "error"], "rank": [1, 4, None, None], "in_classes": [True, True, False, None],
        "system": ["cubic", "cubic", "hexagonal", "cubic"], "predicted_system": ["cubic", "tetragonal", "hexagonal", None],
        "seconds": [0.1, 0.2, 0.3, 0.0]})
    summary = summarise(per_file, "xrd")
    assert summary["top_k_all"] == {1: 0.25, 3: 0.25, 5: 0.5}
    assert summary["top_k_in_classes"] == {1: 0.5, 3: 0.5, 5: 1.0}
    assert summary["crystal_system_top1_all"] == 0.5 and summary["n_label_in_classes"] == 2
