"""Ensembles trained together: the M seeds of one SpgNet/SpgVolNet (model × range × fold) in ONE
process, as one batched model.

:class:`~xtalspec.models.stacked.StackedSpgNet` holds the M members' weights stacked (convolutions
as one grouped Conv1d over M × 80 channels with SameConv1d's TensorFlow 'same' padding, or per
member on CPU; linear layers as batched matmuls) and runs all members at once, each on its own
mini-batch. It trains in the shared loop (:func:`loop.run`) with the :class:`Members` parts.
Everything that makes a member *that* member in :func:`loop.train` is kept per member:

* initialisation: exactly ``loop.initialise(model, seed)`` on a fresh model, then stacked;
* shuffle order: ``torch.Generator().manual_seed(seed)`` and one ``torch.randperm`` per epoch;
* dropout stream: loop.train draws its masks from torch's global RNG right after
  ``initialise``; here that state is copied into a per-member ``torch.Generator`` and every
  mask is drawn from it with the shape and in the order ``nn.Dropout`` would (CPU: ``F.dropout``
  is ``input * (empty_like(input).bernoulli_(1 - p) / (1 - p))``, reproduced bit for bit);
* optimiser: one Adam over the stacked tensors is elementwise the same as one Adam per member,
  because the loss is the sum over members of each member's own mean loss (``loss_terms``, with
  the volume head, ``volume_weight``, ``class_weights``) and members share no weights;
* learning-rate schedule (``lr_decay``), per-member validation metrics and history.

So on CPU a member trained together follows the loss curve of the same member trained alone up to
float reordering (grouped convolution and batched matmul may sum in another order than the
single-model kernels: observed relative loss differences ≤ 1e-7 on small models, none at all on
the full-size SpgNet; Adam can turn that noise in near-zero gradients into weight differences of
at most ~lr/100). On CUDA
loop.train's dropout uses the fused ``native_dropout`` kernel on the CUDA default generator; the
masks here come from ``bernoulli_`` on a per-member CUDA generator seeded with the member's seed,
which is the same distribution but not the same masks.

The stacked state (weights, Adam state, every member's two RNG states, histories) is checkpointed
atomically; a rerun with the same fingerprint resumes. At the end the members are unstacked into
ordinary SpgNet/SpgVolNet state_dicts and written exactly as :func:`xrd.train_member` writes them
(``seed{n}/model.pt``, ``predictions.parquet``, ``history.csv``).

Its speed against sequential training is measured in :mod:`xtalspec.bench.ensemble`; the FLOP
accounting of SpgNet is in :mod:`xtalspec.models.flops`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..models.stacked import StackedSpgNet, default_conv_mode
from ..utils.atomic import atomic_write_text
from ..utils.torch_io import save_torch
from .loop import (ArrayData, Family, TrainConfig, autocast, initialise, loss_terms, pick_device, predict, run, setup,
                   validation_metrics)

log = logging.getLogger("xtalspec.training.ensemble")

CHECKPOINT = "ensemble_checkpoint.pt"

__all__ = ["CHECKPOINT", "StackedSpgNet", "default_conv_mode", "init_members", "keep_large_buffers",
           "predict_stacked", "train_together", "train_members_together"]


# ----------------------------------------------------------------------------- training

def init_members(factory: Callable[[], nn.Module], seeds: Sequence[int], device: torch.device):
    """Fresh members initialised exactly as loop.train initialises them, and each member's
    dropout generator in the state loop.train's global RNG has right after ``initialise``."""
    members, generators = [], []
    for seed in seeds:
        model = factory()
        initialise(model, int(seed))
        if device.type == "cpu":
            generator = torch.Generator()
            generator.set_state(torch.get_rng_state())
        else:  # loop.train's CUDA dropout draws from the CUDA generator that manual_seed(seed) seeded
            generator = torch.Generator(device=device)
            generator.manual_seed(int(seed))
        members.append(model)
        generators.append(generator)
    return members, generators


def keep_large_buffers() -> bool:
    """Stop glibc from handing large freed blocks back to the OS (Linux only; process-wide).

    glibc serves allocations above its mmap threshold (dynamic, at most 32 MiB) with a fresh
    mmap and unmaps them on free, so every training step page-faults them in again. One member's
    largest tensors (~10 MiB) stay below that; the stacked model's weight gradients, Adam
    temporaries and grouped activations are 50–120 MiB each, which made a together step ~13 %
    slower than M single steps on CPU (measured, 1 thread). Raising the mmap and trim thresholds
    to 1 GiB lets the allocator reuse those blocks: the gap closes. Returns whether it applied."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc
        return False


def _member_outputs(outputs: dict, m: int) -> dict:
    return {key: value[m] for key, value in outputs.items()}


@torch.no_grad()
def predict_stacked(stacked: StackedSpgNet, data: ArrayData, device: torch.device, batch_size: int = 256,
                    amp: bool = True) -> list[dict]:
    """Every member's class probabilities (and volume z-scores) for every row of ``data``."""
    stacked.eval()
    m_count = stacked.n_members
    probs: list[list[np.ndarray]] = [[] for _ in range(m_count)]
    volumes: list[list[np.ndarray]] = [[] for _ in range(m_count)]
    for start in range(0, len(data), batch_size):
        rows = np.arange(start, min(start + batch_size, len(data)))
        x, _, _ = data.batch(rows, device)
        with autocast(device, amp):
            out = stacked(x.unsqueeze(0).expand(m_count, -1, -1))
        p = torch.softmax(out["logits"].float(), dim=-1).cpu().numpy()
        vol = out["volume"].float().cpu().numpy() if "volume" in out else None
        for m in range(m_count):
            probs[m].append(p[m])
            if vol is not None:
                volumes[m].append(vol[m])
    results = []
    for m in range(m_count):
        result = {"probabilities": np.concatenate(probs[m]) if probs[m] else np.zeros((0, 0), np.float32)}
        if volumes[m]:
            result["volume"] = np.concatenate(volumes[m])
        results.append(result)
    return results




class MemberSums:
    """Every member's per-step loss terms, kept on the device and summed once per epoch in
    double (as ``float(term) · batch size``, which loop.train sums in Python)."""

    def __init__(self):
        self.values: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.keys: list[str] | None = None

    def add(self, numbers: tuple[list[str], torch.Tensor], size: int) -> None:
        self.keys = self.keys or numbers[0]
        self.values.append(numbers[1])
        self.sizes.append(size)

    def _sums(self) -> torch.Tensor:
        return (torch.stack(self.values).double().cpu()
                * torch.tensor(self.sizes, dtype=torch.float64)[:, None, None]).sum(0)

    def running(self, seen: int) -> str:
        running = self._sums() / seen
        return "loss " + " ".join(f"{float(value):.4f}" for value in running[:, self.keys.index("loss")])

    def means(self, n: int) -> list[dict] | None:
        if not self.values:
            return None
        sums = self._sums().numpy()  # one device sync per epoch
        return [{k: float(sums[m, j]) / max(n, 1) for j, k in enumerate(self.keys)} for m in range(len(sums))]


class Members(Family):
    """The parts of :func:`loop.run` for M members of a :class:`StackedSpgNet`: one shuffle
    generator and one dropout generator per member, member m's mini-batch from its own order,
    the loss the sum over members of each member's own :func:`loss_terms`, one history per member."""

    def __init__(self, seeds: list[int], dropout: list[torch.Generator], train_data: ArrayData,
                 val_data: ArrayData | None, cfg: TrainConfig, device: torch.device, checkpoint_name: str):
        self.seeds, self.dropout, self.data, self.val, self.cfg = seeds, dropout, train_data, val_data, cfg
        self.shuffles = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.history: list[list[dict]] = [[] for _ in seeds]
        self.checkpoint_name = checkpoint_name
        self.weights = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32,
                                                                              device=device)

    def batch(self, device, *rows):
        m_count, size = len(rows), len(rows[0])
        x, y, v = self.data.batch(np.concatenate([r.numpy() for r in rows]), device)  # member-major: row m·size + i
        x, y = x.view(m_count, size, -1), y.view(m_count, size)
        v = None if v is None else v.view(m_count, size)
        return x, (y, v)

    def loss(self, outputs, targets, size):
        y, v = targets
        terms = [loss_terms(_member_outputs(outputs, m), y[m], None if v is None else v[m], self.cfg.volume_weight,
                            self.weights) for m in range(len(self.seeds))]
        total = torch.stack([t["loss"] for t in terms]).sum()  # d total / d member m's weights = its own loss
        keys = list(terms[0])
        return total, (keys, torch.stack([torch.stack([t[k].detach().float() for k in keys]) for t in terms]))

    def meter(self):
        return MemberSums()

    def end_epoch(self, model, epoch, means, seen, seconds, device):
        val = _evaluate_all(model, self.val, device, self.cfg)
        for m, history in enumerate(self.history):
            record = {"epoch": epoch, **(means[m] if means is not None else {}),
                      "samples_per_s": seen / max(seconds, 1e-9), "seconds": seconds}
            record.update(val[m])
            history.append(record)
        log.info("epoch %d/%d, %d members together: %.1f model-samples/s; loss %s; val_acc %s", epoch,
                 self.cfg.epochs, len(self.seeds), len(self.seeds) * seen / max(seconds, 1e-9),
                 " ".join(f"{h[-1].get('loss', float('nan')):.4g}" for h in self.history),
                 " ".join(f"{h[-1].get('val_acc', float('nan')):.3f}" for h in self.history))
        return False

    def accepts(self, state, fingerprint):
        return state.get("fingerprint") == fingerprint and list(state.get("seeds", [])) == self.seeds

    def checkpoint_state(self):
        return {"seeds": self.seeds, "shuffle_rng": [g.get_state() for g in self.shuffles],
                "dropout_rng": [g.get_state() for g in self.dropout], "history": self.history}

    def restore(self, state):
        for generator, rng in zip(self.shuffles, state["shuffle_rng"]):
            generator.set_state(rng)
        for generator, rng in zip(self.dropout, state["dropout_rng"]):
            generator.set_state(rng)
        self.history = [list(h) for h in state["history"]]


def _evaluate_all(stacked, data: ArrayData | None, device, cfg: TrainConfig) -> list[dict]:
    if data is None or len(data) == 0:
        return [{} for _ in range(stacked.n_members)]
    return [validation_metrics(out, data) for out in predict_stacked(stacked, data, device, amp=cfg.amp)]


def train_together(factory: Callable[[], nn.Module], seeds: Sequence[int], train_data: ArrayData, cfg: TrainConfig,
                   out_dir: str | Path, val_data: ArrayData | None = None, fingerprint: str = "",
                   progress_every_s: float = 30.0, conv_mode: str = "auto",
                   checkpoint_name: str = CHECKPOINT) -> tuple[list[nn.Module], list[list[dict]]]:
    """Train one member per seed of ``factory()`` at once, as loop.train would train each alone
    (``cfg.seed`` is ignored: the seeds are ``seeds``), in :func:`loop.run`. Resumes from
    ``out_dir/checkpoint_name`` when it carries the same ``fingerprint`` and seeds. Returns the
    trained members (ordinary models on the training device) and each member's history."""
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"need distinct seeds, got {seeds}")
    device = setup(cfg.threads, cfg.device)
    if device.type == "cpu":
        keep_large_buffers()
    members, dropout = init_members(factory, seeds, device)
    if conv_mode == "auto":
        conv_mode = default_conv_mode(device)
    stacked = StackedSpgNet(members, conv_mode=conv_mode).to(device)
    stacked.generators = dropout
    family = Members(seeds, dropout, train_data, val_data, cfg, device, checkpoint_name)
    histories = run(stacked, family, len(train_data), cfg.loop(), out_dir, fingerprint, progress_every_s)
    for model, weights_m in zip(members, stacked.member_state_dicts()):
        model.load_state_dict(weights_m)
        model.to(device)
    return members, histories


def train_members_together(dataset: str | Path, model_name: str, range_name: str, fold: int, cfg: TrainConfig,
                           seeds: Sequence[int], out_dir: str | Path, conv_mode: str = "auto") -> dict:
    """All seeds of (model, range, fold) in one process; writes ``out_dir/seed{n}/`` exactly as
    :func:`xrd.train_member` writes its ``out_dir`` (model.pt, predictions.parquet, history.csv)."""
    from ..datasets.spgnet import training_rows, validation_rows
    from ..models.spgnet import build_model
    from ..provenance import code_version
    from ..utils.tables import read_frame
    from .loop import run_fingerprint
    from .xrd import array_data, write_predictions

    table, description = read_frame(dataset)
    out_dir = Path(out_dir)
    seeds = [int(s) for s in seeds]
    train_idx, val_idx = training_rows(table, range_name, fold), validation_rows(table, fold)
    n_classes = len(description["spacegroups"])
    factory = lambda: build_model(model_name, n_classes)  # noqa: E731
    with_volume = factory().has_volume_head
    log.info("%s %s fold %d seeds %s together: %d training, %d validation items, %d classes", model_name, range_name,
             fold, seeds, len(train_idx), len(val_idx), n_classes)
    val = array_data(table, val_idx, with_volume)
    settings = {k: v for k, v in cfg.__dict__.items()
                if k not in ("epochs", "threads", "checkpoint_every", "device", "seed")}
    fingerprint = run_fingerprint(dataset, model=model_name, range=range_name, fold=fold, settings=settings,
                                  seeds=seeds, together=True)
    members, histories = train_together(factory, seeds, array_data(table, train_idx, with_volume), cfg, out_dir,
                                        val_data=val, fingerprint=fingerprint, conv_mode=conv_mode)
    device = pick_device(cfg.device)
    results = {}
    for seed, model, history in zip(seeds, members, histories):
        member_cfg = dataclasses.replace(cfg, seed=seed)
        out = predict(model, val, device, amp=cfg.amp)
        meta = {
            "model": model_name, "range": range_name, "fold": fold, "seed": seed,
            "spacegroups": description["spacegroups"], "u_mean": description["u_mean"],
            "u_std": description["u_std"],
            "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in member_cfg.__dict__.items()},
            "n_train": len(train_idx), "code_version": code_version(), "trained_together": seeds,
        }
        seed_dir = out_dir / f"seed{seed}"
        write_predictions(table, val_idx, out, meta, seed_dir / "predictions.parquet")
        save_torch({"state_dict": {k: t.cpu() for k, t in model.state_dict().items()}, "meta": meta},
                   seed_dir / "model.pt")
        atomic_write_text(seed_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
        results[seed] = {"history": history, "meta": meta}
    return results
