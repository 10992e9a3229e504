"""XANES reports (Carbone et al. 2019 Tables I–III, Figs 2, 3, 5, 6) on small synthetic inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from xtalspec.evaluation import xanes_reports as xr

CLASSES = list(xr.CLASSES)


def rows(element, model, features, augmentation, test, perturbation, fold, y_true, y_pred):
    return [{"element": element, "model": model, "features": features, "augmentation": augmentation,
             "fold": fold, "test": test, "perturbation": perturbation, "site_key": f"{element}-{fold}-{i}",
             "y_true": t, "y_pred": p} for i, (t, p) in enumerate(zip(y_true, y_pred))]


def noisy(y_true, error_rate, rng):
    """y_true with a fraction of the labels replaced by another class."""
    y = list(y_true)
    for i in np.flatnonzero(rng.random(len(y)) < error_rate):
        y[i] = rng.choice([c for c in CLASSES if c != y[i]])
    return y


def synthetic_predictions(elements=("Ti", "Fe"), folds=3, tests=("base", "shift", "noise"), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = []
    y_true = ["T4"] * 6 + ["S5"] * 4 + ["O6"] * 10
    for element in elements:
        late = element in xr.LATE
        for model in ("mlp", "cnn"):
            for fold in range(folds):
                if "base" in tests:
                    for features, rate in (("full", 0.1), ("pre", 0.45 if late else 0.25)):
                        out += rows(element, model, features, "shift", "base", 0.0, fold, y_true,
                                    noisy(y_true, rate, rng))
                if "shift" in tests:
                    for augmentation in ("shift", "none"):
                        for de in (-1.0, 0.0, 1.0):
                            rate = 0.1 + (0.05 if augmentation == "shift" else 0.3) * abs(de)
                            out += rows(element, model, "full", augmentation, "shift", de, fold, y_true,
                                        noisy(y_true, rate, rng))
                if "noise" in tests:
                    for augmentation in ("noise", "none"):
                        for sigma in (0.0, 0.05):
                            out += rows(element, model, "full", augmentation, "noise", sigma, fold, y_true,
                                        noisy(y_true, 0.1 + 4 * sigma, rng))
    return pd.DataFrame(out)


def synthetic_dataset(elements=("Ti", "Fe"), seed=0):
    rng = np.random.default_rng(seed)
    grid_x = np.linspace(0, 1, 100)
    records, meta = [], {"elements": {}}
    for element in elements:
        counts = {"T4": 5, "S5": 3, "O6": 12} if element != "Fe" else {"T4": 7, "S5": 0, "O6": 9}
        for c, n in counts.items():
            centre = {"T4": 0.3, "S5": 0.4, "O6": 0.5}[c]
            for i in range(n):
                mu = 1 / (1 + np.exp(-(grid_x - centre - 0.02 * rng.standard_normal()) * 30))
                mu += 0.05 * rng.random(100)
                records.append({"site_key": f"{element}-{c}-{i}", "element": element, "label": c,
                                "mu": (mu / mu.max()).tolist()})
        meta["elements"][element] = {"grid": (4960.0 + 0.5 * np.arange(100)).tolist(), "pre_edge_index": 30,
                                     "e0_median": 4975.0, "n_rejected": 2,
                                     "n_before_dedup": {c: n + 1 for c, n in counts.items()}}
    return pd.DataFrame(records), meta


def scores_frame(entries) -> pd.DataFrame:
    """A classwise_f1-shaped frame from (element, model, features, fold, f1_T4, f1_S5, f1_O6, macro)."""
    out = []
    for element, model, features, fold, t4, s5, o6, macro in entries:
        out.append({"element": element, "model": model, "features": features, "augmentation": "shift",
                    "test": "base", "perturbation": 0.0, "fold": fold, "n": 10, "n_T4": 3, "n_S5": 3, "n_O6": 4,
                    "f1_T4": t4, "f1_S5": s5, "f1_O6": o6, "macro_f1": macro})
    return pd.DataFrame(out)


# ---------------------------------------------------------------- F1


def test_classwise_f1_matches_hand_computed_example_and_sklearn():
    y_true = ["T4", "T4", "S5", "O6", "O6", "O6"]
    y_pred = ["T4", "O6", "S5", "O6", "O6", "T4"]
    scores = xr.classwise_f1(pd.DataFrame(rows("Ti", "mlp", "full", "shift", "base", 0.0, 0, y_true, y_pred)))
    assert len(scores) == 1
    r = scores.iloc[0]
    # T4: TP 1, FP 1, FN 1 -> 0.5; S5: TP 1 -> 1; O6: TP 2, FP 1, FN 1 -> 4/6
    assert r["f1_T4"] == pytest.approx(0.5)
    assert r["f1_S5"] == pytest.approx(1.0)
    assert r["f1_O6"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert (r["n"], r["n_T4"], r["n_S5"], r["n_O6"]) == (6, 2, 1, 3)
    expected = f1_score(y_true, y_pred, labels=CLASSES, average=None, zero_division=np.nan)
    np.testing.assert_allclose([r["f1_T4"], r["f1_S5"], r["f1_O6"]], expected)


def test_classwise_f1_equals_sklearn_on_every_group():
    predictions = synthetic_predictions(folds=2)
    scores = xr.classwise_f1(predictions).set_index(xr.KEYS)
    for key, part in predictions.groupby(xr.KEYS):
        expected = f1_score(part["y_true"], part["y_pred"], labels=CLASSES, average=None, zero_division=np.nan)
        np.testing.assert_allclose(scores.loc[key, ["f1_T4", "f1_S5", "f1_O6"]].to_numpy(dtype=float), expected)


def test_missing_class_rule():
    # fold 0: no S5 in labels nor predictions -> f1_S5 undefined, macro over T4 and O6
    # fold 1: S5 predicted but absent from labels -> f1_S5 = 0, still not part of the macro F1
    fold0 = rows("Cu", "cnn", "full", "shift", "base", 0.0, 0, ["T4", "T4", "O6", "O6"], ["T4", "O6", "O6", "O6"])
    fold1 = rows("Cu", "cnn", "full", "shift", "base", 0.0, 1, ["T4", "T4", "O6", "O6"], ["T4", "S5", "O6", "O6"])
    scores = xr.classwise_f1(pd.DataFrame(fold0 + fold1)).set_index("fold")
    assert np.isnan(scores.loc[0, "f1_S5"])
    assert scores.loc[0, "f1_T4"] == pytest.approx(2 / 3)  # TP 1, FN 1
    assert scores.loc[0, "f1_O6"] == pytest.approx(0.8)  # TP 2, FP 1
    assert scores.loc[0, "macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert scores.loc[1, "f1_S5"] == 0.0
    assert scores.loc[1, "f1_O6"] == pytest.approx(1.0)
    assert scores.loc[1, "macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_undefined_class_is_skipped_in_fold_means(tmp_path):
    entries = [("Ti", "mlp", "full", 0, 0.9, np.nan, 0.9, 0.9), ("Ti", "mlp", "full", 1, 0.7, 0.6, 0.9, 0.7),
               ("Ti", "mlp", "pre", 0, 0.5, np.nan, 0.8, 0.65), ("Ti", "mlp", "pre", 1, 0.5, 0.2, 0.8, 0.5)]
    data = xr.figure3(None, tmp_path / "fig3.png", scores=scores_frame(entries)).set_index(["model", "class"])
    assert data.loc[("mlp", "S5"), "full_mean"] == pytest.approx(0.6)
    assert data.loc[("mlp", "S5"), "n_folds_full"] == 1
    assert data.loc[("mlp", "T4"), "full_mean"] == pytest.approx(0.8)
    table = xr.table3(None, tmp_path, scores=scores_frame(entries))
    ti = table[(table["level"] == "element") & (table["class"] == "S5")].iloc[0]
    assert ti["delta_mean"] == pytest.approx(0.4) and ti["n_folds"] == 1


def test_unknown_labels_are_rejected():
    bad = pd.DataFrame(rows("Ti", "mlp", "full", "shift", "base", 0.0, 0, ["T4", "X"], ["T4", "T4"]))
    with pytest.raises(ValueError, match="outside"):
        xr.classwise_f1(bad)


# ---------------------------------------------------------------- tables


def test_table2_average_row(tmp_path):
    entries = [("Ti", m, f, k, 0, 0, 0, v) for m in ("mlp", "cnn") for f in ("full", "pre")
               for k, v in ((0, 0.8), (1, 0.9))]
    entries += [("Fe", m, f, k, 0, 0, 0, v) for m in ("mlp", "cnn") for f in ("full", "pre")
                for k, v in ((0, 0.6), (1, 0.7))]
    table = xr.table2(None, tmp_path, scores=scores_frame(entries)).set_index("element")
    assert list(table.index) == ["Ti", "Fe", "Average"]
    assert table.loc["Ti", "mlp_full_mean"] == pytest.approx(0.85)
    assert table.loc["Ti", "mlp_full_sd"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert table.loc["Ti", "mlp_full_paper"] == 0.83 and table.loc["Ti", "mlp_full_paper_sd"] == 0.02
    # Average: mean of the element means; sd over folds of the element-averaged values (0.7, 0.8)
    assert table.loc["Average", "cnn_pre_mean"] == pytest.approx(0.75)
    assert table.loc["Average", "cnn_pre_sd"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert table.loc["Average", "cnn_pre_n_elements"] == 2
    assert table.loc["Average", "cnn_pre_paper"] == 0.70
    md = (tmp_path / "xanes_table2.md").read_text()
    assert "0.85 ± 0.07 (paper 0.83(2))" in md
    assert "| Average | 0.75 ± 0.07 (paper 0.85(1))" in md
    csv = pd.read_csv(tmp_path / "xanes_table2.csv")
    assert {"mlp_full_mean", "mlp_full_sd", "mlp_full_paper", "cnn_pre_paper_sd"} <= set(csv.columns)


def test_table2_cross_element_columns_and_too_few_spectra(tmp_path):
    entries = [("Ti", m, f, k, 0, 0, 0, v) for m in ("mlp", "cnn") for f in ("full", "pre")
               for k, v in ((0, 0.8), (1, 0.9))]
    entries += [("Ti", "mlp_x", "full", k, 0, 0, 0, v) for k, v in ((0, 0.7), (1, 0.9))]
    entries += [("Fe", "cnn_x", "full", k, 0, 0, 0, v) for k, v in ((0, 0.5), (1, 0.7))]
    table = xr.table2(None, tmp_path, scores=scores_frame(entries),
                      statuses={"Cu": "too few spectra (4 < 6)", "Ti": "ok"}).set_index("element")
    assert list(table.index) == ["Ti", "Fe", "Cu", "Average"]
    assert table.loc["Ti", "mlp_x_full_mean"] == pytest.approx(0.8)
    assert table.loc["Fe", "cnn_x_full_mean"] == pytest.approx(0.6) and np.isnan(table.loc["Fe", "mlp_full_mean"])
    assert table.loc["Cu", "status"] == "too few spectra (4 < 6)"
    md = (tmp_path / "xanes_table2.md").read_text()
    assert "| Element | MLP | CNN | Pre-MLP | Pre-CNN | MLP (all elements) | CNN (all elements) |" in md
    assert "| Cu | too few spectra (4 < 6) (paper 0.86(2))" in md
    assert "Not cross-validated: Cu: too few spectra (4 < 6)" in md
    # the per-element average is unchanged by the cross-element rows
    assert table.loc["Average", "mlp_full_mean"] == pytest.approx(0.85)


def test_table2_from_predictions_uses_shift_augmented_base_test(tmp_path):
    predictions = synthetic_predictions()
    table = xr.table2(predictions, tmp_path).set_index("element")
    scores = xr.classwise_f1(predictions)
    base = scores[(scores["test"] == "base") & (scores["augmentation"] == "shift")]
    expected = base[(base["element"] == "Fe") & (base["model"] == "cnn") & (base["features"] == "full")]
    assert table.loc["Fe", "cnn_full_mean"] == pytest.approx(expected["macro_f1"].mean())
    assert table.loc["Fe", "cnn_full_n_folds"] == 3


def test_table3_sign_and_early_late_grouping(tmp_path):
    entries = []
    for fold, bump in ((0, 0.0), (1, 0.1)):
        # Ti (early): full beats pre on T4 and S5, pre beats full on O6
        entries += [("Ti", "mlp", "full", fold, 0.9, 0.8, 0.7, 0), ("Ti", "mlp", "pre", fold, 0.8 - bump, 0.5, 0.8, 0)]
        # V (early): deltas 0.2, 0.2, 0.2
        entries += [("V", "mlp", "full", fold, 0.9, 0.9, 0.9, 0), ("V", "mlp", "pre", fold, 0.7, 0.7, 0.7, 0)]
        # Fe (late): big deltas
        entries += [("Fe", "mlp", "full", fold, 0.9, 0.9, 0.9, 0), ("Fe", "mlp", "pre", fold, 0.5, 0.3, 0.8, 0)]
        entries += [("Fe", "cnn", "full", fold, 0.9, 0.9, 0.9, 0), ("Fe", "cnn", "pre", fold, 0.6, 0.4, 0.85, 0)]
    table = xr.table3(None, tmp_path, scores=scores_frame(entries))
    groups = table[table["level"] == "group"].set_index(["group", "model", "class"])
    # early MLP: mean over Ti and V of their fold-mean deltas
    assert groups.loc[("early", "mlp", "T4"), "delta_mean"] == pytest.approx(((0.1 + 0.2) / 2 + 0.2) / 2)
    assert groups.loc[("early", "mlp", "S5"), "delta_mean"] == pytest.approx((0.3 + 0.2) / 2)
    assert groups.loc[("early", "mlp", "O6"), "delta_mean"] == pytest.approx((-0.1 + 0.2) / 2)
    # sd over folds of the element-averaged delta: T4 per fold (0.1+0.2)/2, (0.2+0.2)/2
    assert groups.loc[("early", "mlp", "T4"), "delta_sd"] == pytest.approx(np.std([0.15, 0.2], ddof=1))
    assert groups.loc[("early", "mlp", "T4"), "elements"] == "Ti V"
    # late: Fe only, positive, larger than early; no early CNN data
    assert groups.loc[("late", "mlp", "S5"), "delta_mean"] == pytest.approx(0.6)
    assert groups.loc[("late", "cnn", "T4"), "delta_mean"] == pytest.approx(0.3)
    assert groups.loc[("late", "mlp", "T4"), "elements"] == "Fe"
    assert np.isnan(groups.loc[("early", "cnn", "T4"), "delta_mean"])
    assert groups.loc[("early", "cnn", "T4"), "n_elements"] == 0
    assert groups.loc[("late", "mlp", "S5"), "paper"] == 0.57
    per_element = table[table["level"] == "element"].set_index(["elements", "model", "class"])
    assert per_element.loc[("Ti", "mlp", "O6"), "delta_mean"] == pytest.approx(-0.1)
    assert per_element.loc[("Fe", "mlp", "T4"), "group"] == "late"
    md = (tmp_path / "xanes_table3.md").read_text()
    assert "Early (Ti, V)" in md and "Late (Fe)" in md and "(paper 0.57(5))" in md


def test_table1_counts_match_dataset(tmp_path):
    dataset, meta = synthetic_dataset()
    table = xr.table1(dataset, meta, tmp_path).set_index("element")
    for element, part in dataset.groupby("element"):
        for c in CLASSES:
            assert table.loc[element, c] == (part["label"] == c).sum()
        assert table.loc[element, "total"] == len(part)
    assert table.loc["Fe", "S5"] == 0
    assert table.loc["Ti", "T4_before_dedup"] == 6 and table.loc["Ti", "n_rejected"] == 2
    assert table.loc["Ti", "paper_T4"] == 271 and table.loc["Fe", "paper_total"] == 2990
    assert table.loc["Total", "total"] == len(dataset)
    assert np.isnan(table.loc["Total", "paper_total"])  # the paper's total covers all eight elements
    md = (tmp_path / "xanes_table1.md").read_text()
    assert "| Ti | 5 (paper 271) | 3 (paper 359) | 12 (paper 1562) | 20 (paper 2192) |" in md


def test_paper_constants():
    assert sum(xr.PAPER_TABLE1[e]["Total"] for e in xr.ELEMENTS) == xr.PAPER_TABLE1["Total"]["Total"]
    for c in CLASSES:
        assert sum(xr.PAPER_TABLE1[e][c] for e in xr.ELEMENTS) == xr.PAPER_TABLE1["Total"][c]
    assert xr.PAPER_TABLE2["Cu"][("cnn", "pre")] == (0.64, 0.07)
    assert xr.paper_str(*xr.PAPER_TABLE2["Average"][("mlp", "pre")]) == "0.64(1)"
    assert xr.PAPER_TABLE3["late"]["cnn"]["S5"] == (0.44, 0.07)


# ---------------------------------------------------------------- figures and write_all


def test_write_all_two_elements(tmp_path):
    predictions = synthetic_predictions()
    dataset, meta = synthetic_dataset()
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    result = xr.write_all(predictions, dataset, meta, tables, figures, {"run": "test", "seed": 0})
    for name in ("xanes_fig3_f1.png", "xanes_fig5_shift.png", "xanes_fig6_noise.png", "xanes_fig2_pca.png",
                 "xanes_fig2_gallery.png"):
        path = figures / name
        assert path.exists() and path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for stem in ("xanes_table1", "xanes_table2", "xanes_table3"):
        assert (tables / f"{stem}.csv").stat().st_size > 0 and (tables / f"{stem}.md").stat().st_size > 0
    summary = json.loads((tables / "xanes_summary.json").read_text())
    assert summary == result
    assert summary["provenance"] == {"run": "test", "seed": 0}
    assert summary["average_macro_f1"]["cnn_pre"]["paper"] == 0.70
    assert summary["average_macro_f1"]["mlp_full"]["elements"] == ["Ti", "Fe"]
    assert 0 < summary["average_macro_f1"]["mlp_full"]["ours"] <= 1
    assert all((tmp_path / "x").parent.joinpath(p).exists() for p in summary["files"])
    variance = pd.read_csv(tables / "xanes_pca_variance.csv")
    assert len(variance) == 4 and set(variance["region"]) == {"full", "pre_edge"}
    assert (variance["pc1"] >= variance["pc2"]).all()
    assert set(variance[variance["region"] == "pre_edge"]["n_points"]) == {30}
    fig5 = pd.read_csv(tables / "xanes_fig5_shift.csv")
    assert set(fig5["augmentation"]) == {"shift", "none"} and set(fig5["perturbation"]) == {-1.0, 0.0, 1.0}
    assert set(pd.read_csv(tables / "xanes_fig6_noise.csv")["augmentation"]) == {"noise", "none"}
    fig3 = pd.read_csv(tables / "xanes_fig3_classwise.csv")
    assert len(fig3) == 2 * 2 * 3


def test_single_element_and_missing_combinations(tmp_path):
    predictions = synthetic_predictions(elements=("Mn",), folds=1, tests=("base",))
    predictions = predictions[~((predictions["features"] == "pre") & (predictions["model"] == "cnn"))]
    dataset, meta = synthetic_dataset(elements=("Mn",))
    del meta["elements"]["Mn"]["pre_edge_index"]
    result = xr.write_all(predictions, dataset, meta, tmp_path, tmp_path, {})
    assert result["average_macro_f1"]["cnn_pre"]["ours"] is None
    assert result["average_macro_f1"]["mlp_pre"]["ours"] is not None
    assert result["average_macro_f1"]["mlp_full"]["ours_sd"] is None  # one fold
    for name in ("xanes_fig5_shift.png", "xanes_fig6_noise.png", "xanes_fig3_f1.png", "xanes_fig2_pca.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert pd.read_csv(tmp_path / "xanes_fig6_noise.csv").empty
    md2 = (tmp_path / "xanes_table2.md").read_text()
    assert "| Mn |" in md2 and "— (paper 0.68(3))" in md2
    table3 = pd.read_csv(tmp_path / "xanes_table3.csv")
    early = table3[(table3["level"] == "group") & (table3["group"] == "early") & (table3["model"] == "mlp")]
    assert early["elements"].eq("Mn").all() and early["delta_mean"].notna().all()
    assert table3[(table3["group"] == "late") & (table3["level"] == "group")]["delta_mean"].isna().all()


def test_empty_predictions_still_write_figures(tmp_path):
    empty = synthetic_predictions(elements=("Ti",), folds=1).iloc[0:0]
    for figure in (xr.figure3, xr.figure5, xr.figure6):
        data = figure(empty, tmp_path / f"{figure.__name__}.png")
        assert data.empty and (tmp_path / f"{figure.__name__}.png").stat().st_size > 1000
    table = xr.table2(empty, tmp_path)
    assert list(table["element"]) == ["Average"]
