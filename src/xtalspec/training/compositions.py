"""Formation-enthalpy regressors on compositions: ElemNet/IRNet with early stopping on a
validation split that is never the test fold, random-forest baselines, K-fold cross-validation,
learning curves and transfer learning (thesis ch. 3–5).

Early stopping: the public ElemNet code monitored its test set; here each fold's training part is
split (seeded) into fit and validation rows, the weights of the best validation MAE are kept, and
the test fold is only predicted once at the end. The networks train in the shared loop
(:func:`xtalspec.training.loop.run`; :class:`Regressor` holds the MAE loss and the early stopping).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time

import numpy as np
import pandas as pd
import torch

from ..compositions.features import physical_attributes
from ..datasets.compositions import TARGET, inputs
from ..models.elemnet import NEURAL_MODELS, build_regressor, set_output_offset
from .loop import Family, LoopConfig, run, seeded, setup

log = logging.getLogger("xtalspec.training.compositions")

RF_MODELS = ("rf_comp", "rf_phys")


@dataclasses.dataclass
class FitConfig:
    lr: float = 1e-4            # thesis: Adam 1e-4
    batch_size: int = 32        # thesis
    max_epochs: int = 1000
    patience: int = 200         # epochs without a better validation MAE (IRNet: 200)
    val_fraction: float = 0.1   # of each fold's training part
    seed: int = 1
    threads: int = 1
    device: str = "auto"
    rf_trees: int = 200         # thesis grid: 100/150/200 trees, max_features 0.25/0.33, depth 10/25
    rf_max_features: float = 0.33
    rf_max_depth: int | None = 25

    @classmethod
    def from_dict(cls, options: dict) -> "FitConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names})

    def loop(self) -> LoopConfig:
        return LoopConfig(epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr, threads=self.threads,
                          device=self.device, amp=False)


def split_validation(rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows): a seeded share of ``rows``, at least one of each."""
    order = np.random.default_rng(seed).permutation(rows)
    n_val = min(max(1, int(round(fraction * len(rows)))), len(rows) - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _mae(model, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x) - y).abs().mean())


class Regressor(Family):
    """ElemNet/IRNet's parts of the loop: the mean absolute error, batches of one skipped for
    models with BatchNorm, the validation MAE after every epoch and early stopping: training
    stops ``patience`` epochs after the best validation MAE, whose weights :attr:`best` keeps."""

    def __init__(self, model: torch.nn.Module, x_fit, y_fit, x_val, y_val, cfg: FitConfig):
        super().__init__(cfg.seed)
        self.x, self.y, self.x_val, self.y_val, self.cfg = x_fit, y_fit, x_val, y_val, cfg
        self.batchnorm = any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
        self.best = (np.inf, 0, copy.deepcopy(model.state_dict()))

    def batch(self, device, rows):
        rows = rows.to(device)
        if len(rows) < 2 and self.batchnorm:
            return None  # BatchNorm cannot normalise a batch of one
        return self.x[rows], self.y[rows]

    def loss(self, outputs, y, size):
        loss = (outputs - y).abs().mean()
        return loss, {"train_mae": float(loss.detach()) * size}

    def end_epoch(self, model, epoch, means, seen, seconds, device):
        val = _mae(model, self.x_val, self.y_val)
        self.history.append({"epoch": epoch, "train_mae": means.get("train_mae", 0.0), "val_mae": val})
        if val < self.best[0]:
            self.best = (val, epoch, copy.deepcopy(model.state_dict()))
            return False
        return epoch - self.best[1] >= self.cfg.patience


def fit_network(model: torch.nn.Module, x_fit, y_fit, x_val, y_val, cfg: FitConfig) -> dict:
    """Adam + MAE loss, mini-batches in a seeded order, early stopping on the validation MAE;
    the model ends with its best weights. Returns the history and the best epoch."""
    device = setup(cfg.threads, cfg.device)
    torch.manual_seed(cfg.seed)  # dropout stream
    model.to(device)
    xf, yf = torch.as_tensor(x_fit, device=device), torch.as_tensor(y_fit, dtype=torch.float32, device=device)
    xv, yv = torch.as_tensor(x_val, device=device), torch.as_tensor(y_val, dtype=torch.float32, device=device)
    family = Regressor(model, xf, yf, xv, yv, cfg)
    history = run(model, family, len(yf), cfg.loop())
    best_mae, best_epoch, best_state = family.best
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_epoch": best_epoch, "best_val_mae": best_mae, "epochs_run": len(history)}


def predict_network(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(torch.as_tensor(x, device=device)).float().cpu().numpy().astype(np.float64)


def features_for(model_name: str, x_fractions: np.ndarray, elements: list[str]) -> np.ndarray:
    return physical_attributes(x_fractions, elements) if model_name == "rf_phys" else x_fractions


def fit_forest(x: np.ndarray, y: np.ndarray, cfg: FitConfig):
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=cfg.rf_trees, max_features=cfg.rf_max_features,
                                   max_depth=cfg.rf_max_depth, random_state=cfg.seed, n_jobs=cfg.threads)
    return forest.fit(x, y)


def fit_and_predict(model_name: str, x: np.ndarray, y: np.ndarray, train_rows: np.ndarray, test_rows: np.ndarray,
                    elements: list[str], cfg: FitConfig, init_state: dict | None = None) -> tuple[np.ndarray, dict]:
    """Train one model on ``train_rows`` (networks: minus their validation split) and predict
    ``test_rows``. ``init_state``: start a network from pretrained weights (transfer learning)."""
    start = time.monotonic()
    if model_name in RF_MODELS:
        feats = features_for(model_name, x, elements)
        forest = fit_forest(feats[train_rows], y[train_rows], cfg)
        info = {"n_train": int(len(train_rows)), "n_val": 0}
        prediction = forest.predict(feats[test_rows])
    else:
        fit_rows, val_rows = split_validation(train_rows, cfg.val_fraction, cfg.seed)
        model = seeded(cfg.seed, lambda: build_regressor(model_name, x.shape[1]))  # initialisation
        if init_state is not None:
            model.load_state_dict(init_state)
        else:
            set_output_offset(model, y[fit_rows].mean())
        result = fit_network(model, x[fit_rows], y[fit_rows], x[val_rows], y[val_rows], cfg)
        prediction = predict_network(model, x[test_rows])
        info = {"n_train": int(len(fit_rows)), "n_val": int(len(val_rows)), "best_epoch": result["best_epoch"],
                "epochs_run": result["epochs_run"], "best_val_mae": result["best_val_mae"], "history": result["history"],
                "model": model}
    info["seconds"] = time.monotonic() - start
    return prediction, info


def _rows_frame(data: pd.DataFrame, rows: np.ndarray, prediction: np.ndarray, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"id": data["id"].to_numpy()[rows], "reduced_formula": data["reduced_formula"].to_numpy()[rows],
                          "fold": data["fold"].to_numpy()[rows], "y_true": data[TARGET].to_numpy()[rows],
                          "y_pred": prediction})
    for name, value in columns.items():
        frame[name] = value
    return frame


def cross_validate(data: pd.DataFrame, elements: list[str], model_name: str, cfg: FitConfig,
                   folds: list[int] | None = None, init_state: dict | None = None,
                   label: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every fold's test predictions (one row per composition) and a per-fold summary."""
    x, y = inputs(data), data[TARGET].to_numpy(dtype=np.float64)
    all_folds = sorted(int(f) for f in np.unique(data["fold"]))
    predictions, summary = [], []
    for fold in folds or all_folds:
        test_rows = np.flatnonzero(data["fold"].to_numpy() == fold)
        train_rows = np.flatnonzero(data["fold"].to_numpy() != fold)
        prediction, info = fit_and_predict(model_name, x, y, train_rows, test_rows, elements,
                                           dataclasses.replace(cfg, seed=cfg.seed + fold), init_state)
        name = label or model_name
        predictions.append(_rows_frame(data, test_rows, prediction, model=name))
        mae = float(np.abs(prediction - y[test_rows]).mean())
        summary.append({"model": name, "fold": fold, "mae": mae, "n_test": int(len(test_rows))}
                       | {k: v for k, v in info.items() if k not in ("history", "model")})
        log.info("%s fold %d: MAE %.4f eV/atom (%d test, %s)", name, fold, mae, len(test_rows),
                 {k: v for k, v in info.items() if k in ("n_train", "best_epoch", "seconds")})
    return pd.concat(predictions, ignore_index=True), pd.DataFrame(summary)


def learning_curve(data: pd.DataFrame, elements: list[str], model_name: str, cfg: FitConfig,
                   fractions: list[float], folds: list[int]) -> pd.DataFrame:
    """Test MAE vs training-set size: seeded random subsets of each fold's training part
    (thesis Fig. 3.3), the same subset for every model at a given (fold, fraction)."""
    x, y = inputs(data), data[TARGET].to_numpy(dtype=np.float64)
    rows = []
    for fold in folds:
        test_rows = np.flatnonzero(data["fold"].to_numpy() == fold)
        train_all = np.flatnonzero(data["fold"].to_numpy() != fold)
        order = np.random.default_rng([cfg.seed, fold]).permutation(train_all)
        for fraction in fractions:
            n = max(5, int(round(fraction * len(train_all))))
            subset = np.sort(order[:n])
            prediction, info = fit_and_predict(model_name, x, y, subset, test_rows, elements,
                                               dataclasses.replace(cfg, seed=cfg.seed + fold))
            mae = float(np.abs(prediction - y[test_rows]).mean())
            rows.append({"model": model_name, "fold": fold, "fraction": fraction, "n_train_total": int(n),
                         "mae": mae, "seconds": info["seconds"], "best_epoch": info.get("best_epoch")})
            log.info("%s fold %d, %d training compositions: MAE %.4f", model_name, fold, n, mae)
    return pd.DataFrame(rows)


def pretrain(data: pd.DataFrame, elements: list[str], model_name: str, cfg: FitConfig) -> tuple[torch.nn.Module, dict]:
    """Train on the whole (large, DFT) source set but a seeded validation split for early stopping."""
    x, y = inputs(data), data[TARGET].to_numpy(dtype=np.float64)
    fit_rows, val_rows = split_validation(np.arange(len(y)), cfg.val_fraction, cfg.seed)
    model = seeded(cfg.seed, lambda: build_regressor(model_name, x.shape[1]))
    set_output_offset(model, y[fit_rows].mean())
    result = fit_network(model, x[fit_rows], y[fit_rows], x[val_rows], y[val_rows], cfg)
    return model, {k: v for k, v in result.items()} | {"n_fit": int(len(fit_rows)), "n_val": int(len(val_rows))}


__all__ = ["FitConfig", "NEURAL_MODELS", "RF_MODELS", "cross_validate", "fit_and_predict", "fit_network",
           "learning_curve", "pretrain", "split_validation"]
