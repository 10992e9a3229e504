"""A training loop short enough to read in one sitting.

One model, one seed, one device. The seed fixes the initialisation, the shuffle order (its own
torch.Generator) and the dropout stream (torch's global RNG). A checkpoint holding the model,
the optimiser, both RNG states and the history is written atomically every
``checkpoint_every`` epochs; a rerun with the same output folder resumes from it and, on CPU,
ends with the same weights as an uninterrupted run. Checkpoints are loaded with
``weights_only=True``.
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

from ..utils.atomic import atomic_path

log = logging.getLogger("xtalspec.training")


@dataclasses.dataclass
class TrainConfig:
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


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


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


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def predict(model, data: ArrayData, device: torch.device, batch_size: int = 256, amp: bool = True) -> dict:
    """Class probabilities (and volume z-scores) for every row of ``data``."""
    model.eval()
    probs, volumes = [], []
    for start in range(0, len(data), batch_size):
        rows = np.arange(start, min(start + batch_size, len(data)))
        x, _, _ = data.batch(rows, device)
        with _autocast(device, amp):
            out = model(x)
        probs.append(torch.softmax(out["logits"].float(), dim=1).cpu().numpy())
        if "volume" in out:
            volumes.append(out["volume"].float().cpu().numpy())
    result = {"probabilities": np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)}
    if volumes:
        result["volume"] = np.concatenate(volumes)
    return result


def _evaluate(model, data: ArrayData | None, device, cfg: TrainConfig) -> dict:
    if data is None or len(data) == 0:
        return {}
    out = predict(model, data, device, amp=cfg.amp)
    metrics = {"val_acc": float((out["probabilities"].argmax(1) == data.labels).mean())}
    if "volume" in out and data.volume is not None:
        metrics["val_mae"] = float(np.abs(out["volume"] - data.volume).mean())
    return metrics


def _save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(model, train_data: ArrayData, cfg: TrainConfig, out_dir: str | Path, val_data: ArrayData | None = None,
          progress_every_s: float = 30.0, fingerprint: str = "") -> list[dict]:
    """Train ``model`` for ``cfg.epochs`` epochs, resuming from ``out_dir/checkpoint.pt`` when
    that checkpoint carries the same ``fingerprint`` (data, model and settings other than the
    epoch count); a checkpoint of another run is ignored and overwritten."""
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    _reinitialise(model, cfg.seed)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    start_epoch = 0
    # on the CPU: the RNG states must stay CPU tensors; load_state_dict moves weights and Adam state to the device
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True) if ckpt_path.exists() else None
    if state is not None and state.get("fingerprint") != fingerprint:
        log.warning("ignoring %s: it belongs to another run (data or settings changed)", ckpt_path)
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        shuffle.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        history, start_epoch = list(state["history"]), int(state["epoch"])
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    n = len(train_data)
    last_log = time.monotonic()
    weights = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32,
                                                                     device=device)
    for epoch in range(start_epoch, cfg.epochs):
        for group in optimiser.param_groups:
            group["lr"] = cfg.lr * math.exp(-cfg.lr_decay * epoch)
        model.train()
        t0 = time.monotonic()
        order = torch.randperm(n, generator=shuffle).numpy()
        sums, seen = {}, 0
        for start in range(0, n, cfg.batch_size):
            rows = order[start: start + cfg.batch_size]
            x, y, v = train_data.batch(rows, device)
            with _autocast(device, cfg.amp):
                outputs = model(x)
            terms = loss_terms(outputs, y, v, cfg.volume_weight, weights)
            optimiser.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimiser.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * len(rows)
            seen += len(rows)
            if time.monotonic() - last_log > progress_every_s:
                log.info("epoch %d: %d/%d samples, loss %.4f", epoch + 1, seen, n, sums["loss"] / seen)
                last_log = time.monotonic()
        seconds = time.monotonic() - t0
        record = {"epoch": epoch + 1, **{k: s / max(seen, 1) for k, s in sums.items()},
                  "samples_per_s": seen / max(seconds, 1e-9), "seconds": seconds}
        record.update(_evaluate(model, val_data, device, cfg))
        history.append(record)
        log.info("epoch %d/%d %s", epoch + 1, cfg.epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"))
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            _save(ckpt_path, {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch + 1,
                              "shuffle_rng": shuffle.get_state(), "torch_rng": torch.get_rng_state(),
                              "history": history, "fingerprint": fingerprint})
    return history


def run_fingerprint(data_file: str | Path, **identity) -> str:
    """What a checkpoint must match to be resumed: the data file's bytes and the run's identity."""
    import hashlib
    import json

    digest = hashlib.sha256(Path(data_file).read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps({"data": digest, **identity}, sort_keys=True, default=str).encode()).hexdigest()


def _reinitialise(model, seed: int) -> None:
    """Initialise the weights from ``seed``: the model's own initialiser when it has one, else
    each module's reset_parameters."""
    torch.manual_seed(seed)
    if hasattr(model, "reset_parameters"):
        model.reset_parameters()
        return
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def set_deterministic() -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


def throughput(history: list[dict]) -> float:
    rates = [h["samples_per_s"] for h in history if math.isfinite(h.get("samples_per_s", float("nan")))]
    return float(np.median(rates)) if rates else float("nan")
