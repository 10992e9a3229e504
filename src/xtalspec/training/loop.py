"""The one training loop of every torch model family, short enough to read in one sitting.

:func:`run` trains a model for ``epochs`` epochs: each epoch draws one ``torch.randperm`` order
per shuffle generator, walks it in mini-batches (forward under bf16 autocast on CUDA, loss,
``zero_grad``, ``backward``, Adam ``step``), sums the per-step numbers and hands them to the
family's end-of-epoch hook (metrics, history, early stopping). Everything that differs between
the families is a :class:`Family`: how rows become a batch, the loss, the epoch record, what a
checkpoint holds beside the model and the optimiser. Seeding (:func:`initialise`,
:func:`seeded`), device and threads (:func:`setup`), bf16 autocast (:func:`autocast`) and
checkpoint/resume live here, once.

Given an output folder, a checkpoint holding the model, the optimiser, the family's RNG states
and history is written atomically every ``checkpoint_every`` epochs; a rerun with the same
folder and fingerprint resumes from it and, on CPU, ends with the same weights as an
uninterrupted run. Checkpoints are loaded with ``weights_only=True``.

The families (each with its config dataclass, built from the validated config):

* SpgNet/SpgVolNet, PDFNet, PADNet: :class:`Classifier` via :func:`train`
  (:class:`TrainConfig`); stacked SpgNet ensembles: :mod:`.ensemble`;
* XANES MLP/CNN: :func:`.xanes.fit` (:class:`.xanes.XanesConfig`);
* the MOF CNN: :func:`.mof.train_cnn` (:class:`.mof.MofConfig`);
* ElemNet/IRNet with early stopping: :func:`.compositions.fit_network`
  (:class:`.compositions.FitConfig`).

The seed of :func:`train` fixes the initialisation (:func:`initialise`), the shuffle order (its
own ``torch.Generator``) and the dropout stream (torch's global RNG).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.torch_io import TorchFileError, load_torch, save_torch

log = logging.getLogger("xtalspec.training")


@dataclasses.dataclass
class LoopConfig:
    """What :func:`run` itself needs; each family's config builds one with ``.loop()``."""

    epochs: int
    batch_size: int
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    lr_decay: float = 0.0  # lr(epoch) = lr · exp(−lr_decay · epoch)
    threads: int = 1
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast of the forward pass on CUDA
    checkpoint_every: int = 1


@dataclasses.dataclass
class TrainConfig:
    """SpgNet/SpgVolNet, PDFNet and PADNet (:func:`train`)."""

    epochs: int = 10
    batch_size: int = 32  # Keras' default; the paper does not state it
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 1
    volume_weight: float = 1.0  # MTL: loss = CE + volume_weight * MAE(volume z-score)
    checkpoint_every: int = 1
    threads: int = 1
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA
    lr_decay: float = 0.0  # lr(epoch) = lr · exp(−lr_decay · epoch)
    class_weights: list[float] | None = None  # weighted cross-entropy

    def loop(self) -> LoopConfig:
        return LoopConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, betas=self.betas,
                          lr_decay=self.lr_decay, threads=self.threads, device=self.device, amp=self.amp,
                          checkpoint_every=self.checkpoint_every)


# ----------------------------------------------------------------------------- seeding, device, autocast

def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def setup(threads: int, device: str = "auto") -> torch.device:
    """Torch's CPU threads and the training device."""
    torch.set_num_threads(int(threads))
    return pick_device(device)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; nothing elsewhere."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def initialise(model, seed: int) -> None:
    """Initialise the weights from ``seed``: the model's own initialiser when it has one, else
    each module's reset_parameters. Torch's global RNG is left where the initialisation ended
    (the dropout stream of :func:`train` starts there)."""
    torch.manual_seed(seed)
    if hasattr(model, "reset_parameters"):
        model.reset_parameters()
        return
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def seeded(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` right after ``torch.manual_seed(seed)``: the initialisation of a model that is
    built seeded (XANES, MOF CNN, ElemNet/IRNet), and the global RNG (its dropout stream) after it."""
    torch.manual_seed(seed)
    return build()


def set_deterministic() -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


# ----------------------------------------------------------------------------- the loop

class Sums:
    """The per-step numbers of one epoch, summed in Python (each a batch total, e.g. mean loss ×
    batch size); :meth:`means` divides by the number of training items."""

    def __init__(self):
        self.sums: dict = {}

    def add(self, numbers: dict, size: int) -> None:
        for key, value in numbers.items():
            self.sums[key] = self.sums.get(key, 0) + value

    def running(self, seen: int) -> str:
        return f"loss {self.sums['loss'] / seen:.4f}" if "loss" in self.sums and seen else ""

    def means(self, n: int) -> dict:
        return {key: value / max(n, 1) for key, value in self.sums.items()}


class Family:
    """The parts of a training run that differ between model families. The defaults: one
    shuffle generator seeded with ``seed``, dropout from torch's global RNG, per-step numbers
    summed by :class:`Sums`, a history of one dict per epoch, checkpoints holding the shuffle
    generator's and the global RNG's state."""

    checkpoint_name = "checkpoint.pt"

    def __init__(self, seed: int):
        self.shuffles = [torch.Generator().manual_seed(int(seed))]
        self.history: list = []

    def batch(self, device: torch.device, *rows: torch.Tensor):
        """``(inputs, targets)`` of the rows (one index tensor per shuffle generator); None skips the step."""
        raise NotImplementedError

    def loss(self, outputs, targets, size: int) -> tuple[torch.Tensor, object]:
        """(the loss to back-propagate, the step's numbers for the epoch's meter)."""
        raise NotImplementedError

    def meter(self):
        return Sums()

    def end_epoch(self, model, epoch: int, means, seen: int, seconds: float, device: torch.device) -> bool:
        """Record epoch ``epoch`` (1-based) in the history; True stops training (early stopping)."""
        self.history.append({"epoch": epoch, **means})
        return False

    def accepts(self, state: dict, fingerprint: str) -> bool:
        return state.get("fingerprint") == fingerprint

    def checkpoint_state(self) -> dict:
        return {"shuffle_rng": self.shuffles[0].get_state(), "torch_rng": torch.get_rng_state(),
                "history": self.history}

    def restore(self, state: dict) -> None:
        self.shuffles[0].set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.history = list(state["history"])


def save_checkpoint(path: Path, state: dict) -> None:
    save_torch(state, path)


def read_checkpoint(path: Path | None) -> dict | None:
    """The checkpoint at ``path``, or None when there is none or it cannot be read (a save that
    was killed, a damaged file: it is discarded with a warning and training starts afresh).
    Temporary files of an interrupted save beside it are removed."""
    if path is None:
        return None
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
        log.warning("removed %s, left by an interrupted checkpoint save", stale)
    if not path.exists():
        return None
    try:
        return load_torch(path)
    except TorchFileError as exc:
        log.warning("discarding an unreadable checkpoint: %s; training starts afresh", exc)
        path.unlink(missing_ok=True)
        return None


def run(model, family: Family, n: int, cfg: LoopConfig, out_dir: str | Path | None = None, fingerprint: str = "",
        progress_every_s: float = 30.0):
    """Train ``model`` on ``n`` items for ``cfg.epochs`` epochs; returns ``family.history``.
    With ``out_dir``, resume from ``out_dir/family.checkpoint_name`` when the family accepts it
    (same ``fingerprint``: data, model and settings other than the epoch count; a checkpoint of
    another run is ignored and overwritten) and checkpoint every ``cfg.checkpoint_every`` epochs.
    A family that stops early (ElemNet/IRNet) trains without ``out_dir``: its best weights are
    the family's, not the checkpoint's."""
    device = setup(cfg.threads, cfg.device)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    ckpt_path, start_epoch = None, 0
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        ckpt_path = Path(out_dir) / family.checkpoint_name
    # on the CPU: the RNG states must stay CPU tensors; load_state_dict moves weights and Adam state to the device
    state = read_checkpoint(ckpt_path)
    if state is not None and not family.accepts(state, fingerprint):
        log.warning("ignoring %s: it belongs to another run (data or settings changed)", ckpt_path)
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        family.restore(state)
        start_epoch = int(state["epoch"])
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    last_log = time.monotonic()
    for epoch in range(start_epoch, cfg.epochs):
        for group in optimiser.param_groups:
            group["lr"] = cfg.lr * math.exp(-cfg.lr_decay * epoch)
        model.train()
        t0 = time.monotonic()
        orders = [torch.randperm(n, generator=g) for g in family.shuffles]
        meter, seen = family.meter(), 0
        for start in range(0, n, cfg.batch_size):
            rows = [order[start: start + cfg.batch_size] for order in orders]
            batch = family.batch(device, *rows)
            if batch is None:
                continue
            inputs, targets = batch
            with autocast(device, cfg.amp):
                outputs = model(inputs)
            loss, numbers = family.loss(outputs, targets, len(rows[0]))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            meter.add(numbers, len(rows[0]))
            seen += len(rows[0])
            if time.monotonic() - last_log > progress_every_s:
                log.info("epoch %d: %d/%d samples, %s", epoch + 1, seen, n, meter.running(seen))
                last_log = time.monotonic()
        stop = family.end_epoch(model, epoch + 1, meter.means(n), seen, time.monotonic() - t0, device)
        if ckpt_path is not None and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs):
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                        "epoch": epoch + 1, **family.checkpoint_state(), "fingerprint": fingerprint})
        if stop:
            break
    return family.history


# ----------------------------------------------------------------------------- SpgNet, SpgVolNet, PDFNet, PADNet

@dataclasses.dataclass
class ArrayData:
    """Training data: a function that builds a dense batch from row numbers, plus targets."""

    make_inputs: Callable[[np.ndarray], np.ndarray]
    labels: np.ndarray  # int64 class index
    volume: np.ndarray | None = None  # float32 z-score, for models with a volume head

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray, device: torch.device):
        x = torch.from_numpy(self.make_inputs(rows)).to(device, non_blocking=True)
        y = torch.from_numpy(self.labels[rows]).to(device)
        v = None if self.volume is None else torch.from_numpy(self.volume[rows]).to(device)
        return x, y, v


def loss_terms(outputs: dict, y: torch.Tensor, v: torch.Tensor | None, volume_weight: float,
               weights: torch.Tensor | None = None) -> dict:
    ce = F.cross_entropy(outputs["logits"].float(), y, reduction="none")
    if weights is not None:  # Keras' class_weight: mean over the batch of w[y] · CE
        ce = ce * weights[y]
    terms = {"ce": ce.mean()}
    if "volume" in outputs and v is not None:
        terms["mae"] = (outputs["volume"].float() - v).abs().mean()
    terms["loss"] = terms["ce"] + volume_weight * terms.get("mae", 0.0)
    return terms


@torch.no_grad()
def predict(model, data: ArrayData, device: torch.device, batch_size: int = 256, amp: bool = True) -> dict:
    """Class probabilities (and volume z-scores) for every row of ``data``."""
    model.eval()
    probs, volumes = [], []
    for start in range(0, len(data), batch_size):
        rows = np.arange(start, min(start + batch_size, len(data)))
        x, _, _ = data.batch(rows, device)
        with autocast(device, amp):
            out = model(x)
        probs.append(torch.softmax(out["logits"].float(), dim=1).cpu().numpy())
        if "volume" in out:
            volumes.append(out["volume"].float().cpu().numpy())
    result = {"probabilities": np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)}
    if volumes:
        result["volume"] = np.concatenate(volumes)
    return result


def validation_metrics(predicted: dict, data: ArrayData) -> dict:
    """val_acc (and val_mae of the volume z-score) of :func:`predict`'s output on ``data``."""
    metrics = {"val_acc": float((predicted["probabilities"].argmax(1) == data.labels).mean())}
    if "volume" in predicted and data.volume is not None:
        metrics["val_mae"] = float(np.abs(predicted["volume"] - data.volume).mean())
    return metrics


class Classifier(Family):
    """SpgNet/SpgVolNet, PDFNet, PADNet: cross-entropy (class-weighted with
    ``cfg.class_weights``) plus ``volume_weight`` × the volume MAE for models with a volume head;
    the epoch record holds the mean loss terms, throughput and the validation metrics."""

    def __init__(self, train_data: ArrayData, val_data: ArrayData | None, cfg: TrainConfig, device: torch.device):
        super().__init__(cfg.seed)
        self.data, self.val, self.cfg = train_data, val_data, cfg
        self.weights = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32,
                                                                              device=device)

    def batch(self, device, rows):
        x, y, v = self.data.batch(rows.numpy(), device)
        return x, (y, v)

    def loss(self, outputs, targets, size):
        terms = loss_terms(outputs, *targets, self.cfg.volume_weight, self.weights)
        return terms["loss"], {key: float(value.detach()) * size for key, value in terms.items()}

    def end_epoch(self, model, epoch, means, seen, seconds, device):
        record = {"epoch": epoch, **means, "samples_per_s": seen / max(seconds, 1e-9), "seconds": seconds}
        if self.val is not None and len(self.val) > 0:
            record.update(validation_metrics(predict(model, self.val, device, amp=self.cfg.amp), self.val))
        self.history.append(record)
        log.info("epoch %d/%d %s", epoch, self.cfg.epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"))
        return False


def train(model, train_data: ArrayData, cfg: TrainConfig, out_dir: str | Path, val_data: ArrayData | None = None,
          progress_every_s: float = 30.0, fingerprint: str = "") -> list[dict]:
    """Train ``model`` (initialised from ``cfg.seed``) for ``cfg.epochs`` epochs, resuming from
    ``out_dir/checkpoint.pt`` when that checkpoint carries the same ``fingerprint``."""
    device = setup(cfg.threads, cfg.device)
    initialise(model, cfg.seed)
    family = Classifier(train_data, val_data, cfg, device)
    return run(model, family, len(train_data), cfg.loop(), out_dir, fingerprint, progress_every_s)


def run_fingerprint(data_file: str | Path, **identity) -> str:
    """What a checkpoint must match to be resumed: the data file's bytes and the run's identity."""
    import hashlib
    import json

    digest = hashlib.sha256(Path(data_file).read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps({"data": digest, **identity}, sort_keys=True, default=str).encode()).hexdigest()


def throughput(history: list[dict]) -> float:
    rates = [h["samples_per_s"] for h in history if math.isfinite(h.get("samples_per_s", float("nan")))]
    return float(np.median(rates)) if rates else float("nan")
