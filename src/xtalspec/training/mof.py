"""Training of the MOF identification CNN (paper 001) and its five classical baselines, on arrays
of max-normalised patterns (n, 2251) with class indices.

CNN (:func:`train_cnn`, config :class:`MofConfig`; the paper's values are the defaults): Adam
(lr 1e-3, Keras' default), batch 128, 50 epochs, cross-entropy on softmax, Glorot init, 'same'
padding, trained by the shared loop (:func:`xtalspec.training.loop.run`). Seeded:
``torch.manual_seed(seed)`` before the model is built (initialisation and the dropout stream) and
a separate ``torch.Generator`` for the shuffle order. CUDA when present (``device`` "auto",
:func:`~xtalspec.training.loop.pick_device`), with bf16 autocast on CUDA only (``amp``); on CPU
``threads`` torch threads.

Baselines (:func:`baselines`, config :data:`BASELINE_DEFAULTS`): Gaussian naive Bayes, k nearest
neighbours, logistic regression, random forest and an RBF SVM with Platt probabilities. The
paper runs them on the patterns; 2,251 dimensions × 72·N samples make the SVM and the logistic
regression slow, so by default

* each class keeps at most ``max_train_per_class`` (24) training samples, drawn with ``seed``;
* the inputs are reduced to ``pca_components`` (100) principal components of those training
  samples (``None`` keeps the raw points).

Settings: kNN ``knn_neighbors`` 5 (Euclidean, uniform weights); logistic regression
``logreg_C`` 1.0, lbfgs, ``logreg_max_iter`` 1000; random forest ``rf_trees`` 200, Gini,
``max_features="sqrt"``; naive Bayes sklearn's defaults; SVM: RBF ``SVC``, ``svm_C`` 1.0, gamma
"scale", with Platt probabilities. ``SVC(probability=True)`` is deprecated from scikit-learn
1.9, so its documented replacement is used: ``CalibratedClassifierCV(SVC(), method="sigmoid",
ensemble=False)`` on ``svm_cv`` (5; lowered to the smallest class count, at least 2) stratified
folds. Every model returns probabilities over all ``n_classes`` classes
(columns of classes missing from the training sample are 0).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import torch
from torch import nn

from ..models.mofnet import MofCNN
from .loop import Family, LoopConfig, autocast, run, seeded, setup

log = logging.getLogger(__name__)



@dataclasses.dataclass
class MofConfig:
    """The MOF CNN's training settings (config ``mof.train`` and the command's seed)."""

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    threads: int = 1
    device: str = "auto"
    amp: bool = True
    padding: str = "same"
    eval_batch_size: int = 512
    n_classes: int | None = None  # None: max(label) + 1

    @classmethod
    def from_dict(cls, options: dict) -> "MofConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in options.items() if k in names})
        cfg.epochs, cfg.batch_size, cfg.lr = int(cfg.epochs), int(cfg.batch_size), float(cfg.lr)
        cfg.seed, cfg.threads, cfg.eval_batch_size = int(cfg.seed), int(cfg.threads), int(cfg.eval_batch_size)
        return cfg

    def loop(self) -> LoopConfig:
        return LoopConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, threads=self.threads,
                          device=self.device, amp=self.amp)


BASELINE_NAMES = ("naive_bayes", "knn", "logistic_regression", "random_forest", "svm")
BASELINE_DEFAULTS = {"models": list(BASELINE_NAMES), "pca_components": 100, "max_train_per_class": 24,
                     "seed": 0, "threads": 1, "knn_neighbors": 5, "logreg_C": 1.0, "logreg_max_iter": 1000,
                     "rf_trees": 200, "svm_C": 1.0, "svm_cv": 5, "n_classes": None}


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device, cfg: MofConfig) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    for rows in _batches(len(x), cfg.eval_batch_size):
        xb, yb = x[rows].to(device), y[rows].to(device)
        with autocast(device, cfg.amp):
            logits = model(xb).float()
        loss += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    return loss / max(len(x), 1), correct / max(len(x), 1)


class MofCNNFamily(Family):
    """The MOF CNN's parts of the loop: cross-entropy on the float logits; the epoch record holds
    the training loss and accuracy (dropout on), the validation loss and accuracy, and the
    seconds since training started."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, val: tuple | None, cfg: MofConfig):
        super().__init__(cfg.seed)
        self.x, self.y, self.val, self.cfg = x, y, val, cfg
        self.start = time.monotonic()

    def batch(self, device, rows):
        return self.x[rows].to(device, non_blocking=True), self.y[rows].to(device, non_blocking=True)

    def loss(self, logits, y, size):
        loss = nn.functional.cross_entropy(logits.float(), y)
        return loss, {"loss": float(loss.detach()) * size, "acc": int((logits.detach().argmax(1) == y).sum())}

    def end_epoch(self, model, epoch, means, seen, seconds, device):
        record = {"epoch": epoch, **means}
        if self.val is not None:
            record["val_loss"], record["val_acc"] = _evaluate(model, *self.val, device, self.cfg)
        record["seconds"] = round(time.monotonic() - self.start, 2)
        self.history.append(record)
        log.info("epoch %d/%d: %s", epoch, self.cfg.epochs, record)
        return False


def train_cnn(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None = None,
              y_val: np.ndarray | None = None, cfg: MofConfig | dict | None = None) -> tuple[MofCNN, list[dict]]:
    """(trained model in eval mode, history) — one dict per epoch with ``epoch``, ``loss``,
    ``acc`` (training, dropout on), ``val_loss``, ``val_acc`` (when validation data are given)
    and ``seconds``. ``cfg``: a :class:`MofConfig` or a dict of its fields (the rest default);
    ``n_classes`` defaults to ``max(label) + 1``."""
    cfg = cfg if isinstance(cfg, MofConfig) else MofConfig.from_dict(cfg or {})
    device = setup(cfg.threads, cfg.device)
    x_tr = torch.as_tensor(np.asarray(x_train, dtype=np.float32))
    y_tr = torch.as_tensor(np.asarray(y_train, dtype=np.int64))
    val = None
    if x_val is not None and y_val is not None and len(x_val) > 0:
        val = (torch.as_tensor(np.asarray(x_val, dtype=np.float32)), torch.as_tensor(np.asarray(y_val, dtype=np.int64)))
    n_classes = int(cfg.n_classes or int(y_tr.max()) + 1)
    model = seeded(cfg.seed, lambda: MofCNN(x_tr.shape[1], n_classes, padding=cfg.padding)).to(device)
    history = run(model, MofCNNFamily(x_tr, y_tr, val, cfg), len(x_tr), cfg.loop())
    return model.eval(), history


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray, batch_size: int = 512, amp: bool = True) -> np.ndarray:
    """Softmax probabilities (n, n_classes), float32, on the model's device (eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    out = []
    for rows in _batches(len(x), batch_size):
        with autocast(device, amp):
            logits = model(x[rows].to(device))
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, getattr(model, "n_classes", 0)), np.float32)


def _subsample(y: np.ndarray, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    if per_class is None:
        return np.arange(len(y))
    rows = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        rows.append(members if len(members) <= per_class else rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(rows))


def _estimator(name: str, cfg: dict):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    seed, jobs = int(cfg["seed"]), int(cfg["threads"])
    if name == "naive_bayes":
        return GaussianNB()
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=int(cfg["knn_neighbors"]), n_jobs=jobs)
    if name == "logistic_regression":
        return LogisticRegression(C=float(cfg["logreg_C"]), max_iter=int(cfg["logreg_max_iter"]), random_state=seed)
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=int(cfg["rf_trees"]), random_state=seed, n_jobs=jobs)
    if name == "svm":
        # SVC(probability=True) is deprecated from scikit-learn 1.9; this is its documented
        # replacement: Platt (sigmoid) calibration on cross-validated decision values, one SVC
        # refitted on all samples (ensemble=False).
        from sklearn.calibration import CalibratedClassifierCV

        svc = SVC(C=float(cfg["svm_C"]), kernel="rbf", gamma="scale", random_state=seed)
        return CalibratedClassifierCV(svc, method="sigmoid", cv=int(cfg["svm_cv"]), ensemble=False)
    raise ValueError(f"unknown baseline {name!r}; known: {BASELINE_NAMES}")


def baselines(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
              cfg: dict | None = None) -> dict[str, np.ndarray]:
    """{name: probabilities (n_test, n_classes)} of the baselines named in ``cfg["models"]``
    (settings in the module docstring and :data:`BASELINE_DEFAULTS`)."""
    from sklearn.decomposition import PCA

    cfg = BASELINE_DEFAULTS | (cfg or {})
    y_train = np.asarray(y_train, dtype=np.int64)
    n_classes = int(cfg["n_classes"] or y_train.max() + 1)
    rng = np.random.default_rng([int(cfg["seed"]), 5])
    rows = _subsample(y_train, cfg["max_train_per_class"], rng)
    x_tr = np.asarray(x_train, dtype=np.float64)[rows]
    y_tr = y_train[rows]
    x_te = np.asarray(x_test, dtype=np.float64)
    if cfg["pca_components"]:
        n_comp = int(min(cfg["pca_components"], x_tr.shape[0], x_tr.shape[1]))
        pca = PCA(n_components=n_comp, random_state=int(cfg["seed"])).fit(x_tr)
        x_tr, x_te = pca.transform(x_tr), pca.transform(x_te)
    out = {}
    for name in cfg["models"]:
        start = time.monotonic()
        if name == "svm":  # the calibration folds need every class in each of them
            smallest = int(np.bincount(y_tr)[np.unique(y_tr)].min())
            cfg = cfg | {"svm_cv": max(2, min(int(cfg["svm_cv"]), smallest))}
        estimator = _estimator(name, cfg).fit(x_tr, y_tr)
        probs = np.zeros((len(x_te), n_classes))
        probs[:, estimator.classes_] = estimator.predict_proba(x_te)
        out[name] = probs
        log.info("%s: %d training samples, %.1f s", name, len(y_tr), time.monotonic() - start)
    return out
