"""ElemNet/IRNet architectures, composition features, the cleaned K-fold data set and the
cross-validation protocol (early stopping never sees the test fold)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from xtalspec.compositions.features import (attribute_names, element_order, element_property_table, fraction_matrix,
                                            physical_attributes)
from xtalspec.datasets.compositions import TARGET, build_composition_dataset, fold_labels, inputs
from xtalspec.models.elemnet import ElemNet, IRNet, ResidualLayer, build_regressor, n_layers
from xtalspec.training.compositions import FitConfig, cross_validate, learning_curve, split_validation


def linear_widths(model: nn.Module) -> list[int]:
    return [m.out_features for name, m in model.named_modules() if isinstance(m, nn.Linear) and "shortcut" not in name]


def test_elemnet_is_the_thesis_table_3_1():
    model = ElemNet(86)
    assert n_layers(model) == 17
    assert linear_widths(model) == [1024] * 4 + [512] * 3 + [256] * 3 + [128] * 3 + [64] * 2 + [32, 1]
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops == pytest.approx([0.2, 0.1, 0.3, 0.2])  # keep-probabilities 0.8 / 0.9 / 0.7 / 0.8
    # each dropout sits right after the last layer of its block (after the 4th, 7th, 10th, 13th layer)
    kinds = [type(m).__name__ for m in model.net]
    linear_index = [i for i, k in enumerate(kinds) if k == "Linear"]
    for layer_number in (4, 7, 10, 13):
        i = linear_index[layer_number - 1]
        assert kinds[i + 1: i + 3] == ["ReLU", "Dropout"]
    assert model(torch.rand(5, 86)).shape == (5,)


@pytest.mark.parametrize("depth, blocks", [(17, 16), (48, 47)])
def test_irnet_has_a_residual_per_layer_and_projections_where_widths_change(depth, blocks):
    model = IRNet(40, depth)
    assert n_layers(model) == depth
    layers = [m for m in model.blocks if isinstance(m, ResidualLayer)]
    assert len(layers) == blocks
    for layer in layers:
        fc, bn, relu = layer.body
        assert isinstance(bn, nn.BatchNorm1d) and isinstance(relu, nn.ReLU)
        same = fc.in_features == fc.out_features
        assert isinstance(layer.shortcut, nn.Identity) == same
    # the shortcut really adds: with the body's output zeroed, an identity layer passes its input
    layer = layers[1]
    with torch.no_grad():
        layer.body[1].weight.zero_()
        layer.body[1].bias.zero_()
    x = torch.randn(4, 1024)
    torch.testing.assert_close(layer.eval()(x), x)
    assert build_regressor("irnet48", 40)(torch.rand(3, 40)).shape == (3,)
    with pytest.raises(ValueError):
        build_regressor("irnet5", 40)


def test_irnet_starts_near_the_identity_and_at_the_training_mean():
    from xtalspec.models.elemnet import set_output_offset

    model = IRNet(40, 48)
    scales = [m.body[1].weight for m in model.blocks]
    assert all(torch.all(w == 0.1) for w in scales)
    set_output_offset(model, -1.7)
    assert model.out.bias.item() == pytest.approx(-1.7)
    torch.manual_seed(0)
    x = torch.softmax(torch.randn(64, 40), dim=1)  # fraction-like inputs
    out = model.train()(x)
    assert out.abs().max() < 10  # the residual stream does not blow the output up at the start


def test_fractions_and_physical_attributes():
    elements = element_order(["NaCl", "Fe2O3", "MgO"])
    assert elements == ["O", "Na", "Mg", "Cl", "Fe"]
    x = fraction_matrix(["NaCl", "Fe2O3"], elements)
    np.testing.assert_allclose(x.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(x[1], [0.6, 0, 0, 0, 0.4], rtol=1e-6)
    with pytest.raises(KeyError):
        fraction_matrix(["KCl"], elements)
    attrs = pd.DataFrame(physical_attributes(x, elements), columns=attribute_names())
    # Pauling electronegativity: Na 0.93, Cl 3.16; Fe 1.83, O 3.44
    assert attrs.loc[0, "mean_X"] == pytest.approx((0.93 + 3.16) / 2, abs=1e-5)
    assert attrs.loc[0, "range_X"] == pytest.approx(3.16 - 0.93, abs=1e-5)
    assert attrs.loc[1, "mean_X"] == pytest.approx(0.6 * 3.44 + 0.4 * 1.83, abs=1e-5)
    assert attrs.loc[1, "mad_Z"] == pytest.approx(0.6 * abs(8 - 15.2) + 0.4 * abs(26 - 15.2), abs=1e-4)
    assert attrs.loc[1, "min_Z"] == 8 and attrs.loc[1, "max_Z"] == 26
    assert attrs.loc[0, "n_elements"] == 2 and attrs.loc[0, "L2_norm"] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert attrs.loc[1, "mean_d_valence"] == pytest.approx(0.4 * 6, abs=1e-6)  # Fe [Ar]3d6 4s2, O none
    assert attrs.loc[1, "mean_p_valence"] == pytest.approx(0.6 * 4, abs=1e-6)  # O [He]2s2 2p4
    symbols, table, gaps = element_property_table()
    assert len(symbols) == 94 and np.isfinite(table).all() and gaps >= 0


def records(rows):
    return pd.DataFrame([{"id": i, "formula": f, "reduced_formula": f, "formation_enthalpy_eV_per_atom": e,
                          "source": "test", "url": ""} for i, f, e in rows])


def test_dataset_cleaning_records_every_drop():
    rng = np.random.default_rng(0)
    base = [(f"r{i}", f, float(v)) for i, (f, v) in enumerate(zip(
        ["NaCl", "KCl", "MgO", "CaO", "Al2O3", "Fe2O3", "TiO2", "SiO2", "LiF", "NaF", "KF", "MgF2", "CaF2", "ZnO",
         "CuO", "NiO", "CoO", "MnO", "BaO", "SrO", "Li2O", "Na2O", "K2O", "ZrO2", "HfO2"], rng.normal(-2, 0.3, 25)))]
    rows = base + [("poly-hi", "MgO", 5.0), ("single", "O2", 0.0), ("outlier", "CrN", -60.0)]
    # one point among 26 can sit at most (n-1)/sqrt(n) = 4.9 sigma from the mean, so test the rule at 4 sigma
    data, rejects, description = build_composition_dataset(records(rows), n_folds=5, seed=3, n_sigma=4)
    assert len(data) == 25 and description["n_records"] == 28
    by_id = dict(zip(rejects["id"], rejects["reason"]))
    assert by_id == {"poly-hi": "higher_energy_polymorph", "single": "single_element", "outlier": "outlier_4sigma"}
    assert "r2" in set(data["id"])  # the lower MgO entry is kept
    assert sorted(np.bincount(data["fold"])[1:]) == [5] * 5
    assert description["elements"] == element_order(data["reduced_formula"])
    np.testing.assert_allclose(inputs(data).sum(axis=1), 1.0, rtol=1e-6)
    again, _, _ = build_composition_dataset(records(rows), n_folds=5, seed=3, n_sigma=4)
    assert again["fold"].tolist() == data["fold"].tolist()
    restricted, rejects2, _ = build_composition_dataset(records(rows), n_folds=5, seed=3, n_sigma=4,
                                                        elements=["O", "Na", "Cl", "Mg"])
    assert set(restricted["reduced_formula"]) == {"NaCl", "MgO", "Na2O"}
    assert (rejects2["reason"] == "element_outside_model").sum() == 22


def test_fold_labels_are_balanced_and_seeded():
    a, b = fold_labels(23, 10, 1), fold_labels(23, 10, 1)
    assert (a == b).all() and set(a) == set(range(1, 11)) and np.bincount(a)[1:].max() - np.bincount(a)[1:].min() <= 1
    assert (fold_labels(23, 10, 2) != a).any()


def synthetic_dataset(n=60, seed=0):
    """Binary compositions A_x B_(1-x) with a smooth, learnable enthalpy."""
    rng = np.random.default_rng(seed)
    pairs = [("Na", "Cl"), ("Mg", "O"), ("Al", "O"), ("Li", "F"), ("Ca", "S"), ("K", "Br"),
             ("Zn", "Se"), ("Ga", "N"), ("Ti", "C"), ("Sr", "I"), ("Ba", "P"), ("Cs", "Te")]
    rows = []
    for i in range(n):
        a, b = pairs[i % len(pairs)]
        na, nb = rng.integers(1, 5, 2)
        formula = f"{a}{na}{b}{nb}"
        x = na / (na + nb)
        rows.append((f"s{i}", formula, -3.0 * x * (1 - x) * (1 + 0.15 * (i % len(pairs)))))
    frame = records(rows)
    from pymatgen.core import Composition
    frame["reduced_formula"] = [Composition(f).reduced_formula for f in frame["formula"]]
    data, _, description = build_composition_dataset(frame, n_folds=4, seed=0)
    return data, description["elements"]


def test_validation_split_is_inside_the_training_part():
    rows = np.arange(10, 50)
    fit, val = split_validation(rows, 0.1, 3)
    assert len(val) == 4 and set(fit) | set(val) == set(rows) and not set(fit) & set(val)


def test_cross_validation_never_looks_at_the_test_fold(torch_one_thread):
    data, elements = synthetic_dataset()
    cfg = FitConfig(max_epochs=30, patience=5, lr=1e-3, seed=2)
    poisoned = data.copy()
    poisoned.loc[poisoned["fold"] == 2, TARGET] = np.nan  # a model that saw these labels would produce NaN
    predictions, summary = cross_validate(poisoned, elements, "elemnet", cfg, folds=[2])
    assert np.isfinite(predictions["y_pred"]).all() and len(predictions) == (data["fold"] == 2).sum()
    assert np.isfinite(summary["best_val_mae"]).all() and (summary["best_epoch"] >= 1).all()


@pytest.mark.parametrize("model", ["elemnet", "irnet17", "rf_comp", "rf_phys"])
def test_every_model_beats_the_mean_and_predicts_each_composition_once(model, torch_one_thread):
    data, elements = synthetic_dataset(120)  # ~80 compositions: the deep BatchNorm nets need more than ~40
    cfg = FitConfig(max_epochs=60, patience=15, lr=1e-3, seed=1, rf_trees=50)
    predictions, summary = cross_validate(data, elements, model, cfg)
    assert sorted(predictions["id"]) == sorted(data["id"]) and len(summary) == 4
    baseline = np.abs(data[TARGET] - data[TARGET].mean()).mean()
    assert summary["mae"].mean() < 0.8 * baseline, (model, summary["mae"].mean(), baseline)


def test_same_seed_same_predictions_and_learning_curve_sizes(torch_one_thread):
    data, elements = synthetic_dataset(40)
    cfg = FitConfig(max_epochs=8, patience=3, lr=1e-3, seed=5)
    a, _ = cross_validate(data, elements, "elemnet", cfg, folds=[1])
    b, _ = cross_validate(data, elements, "elemnet", cfg, folds=[1])
    np.testing.assert_array_equal(a["y_pred"].to_numpy(), b["y_pred"].to_numpy())
    curve = learning_curve(data, elements, "rf_comp", FitConfig(seed=1, rf_trees=20), [0.25, 1.0], [1, 2])
    n_train = (data["fold"] != 1).sum()
    assert curve.loc[(curve["fold"] == 1) & (curve["fraction"] == 1.0), "n_train_total"].item() == n_train
    assert curve.loc[(curve["fold"] == 1) & (curve["fraction"] == 0.25), "n_train_total"].item() == round(n_train / 4)
