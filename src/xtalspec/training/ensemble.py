"""Ensembles trained together: the M seeds of one SpgNet/SpgVolNet (model × range × fold) in ONE
process, as one batched model.

:class:`StackedSpgNet` holds the M members' weights stacked (convolutions as one grouped Conv1d
over M × 80 channels with SameConv1d's TensorFlow 'same' padding, or per member on CPU; linear
layers as batched matmuls) and runs all members at once, each on its own mini-batch. Everything that makes a
member *that* member in :func:`loop.train` is kept per member:

* initialisation: exactly ``_reinitialise(model, seed)`` on a fresh model, then stacked;
* shuffle order: ``torch.Generator().manual_seed(seed)`` and one ``torch.randperm`` per epoch;
* dropout stream: loop.train draws its masks from torch's global RNG right after
  ``_reinitialise``; here that state is copied into a per-member ``torch.Generator`` and every
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

Also here: :func:`bench_together_vs_sequential` (wall time of M sequential ``loop.train`` runs vs
one together run), :func:`spgnet_step_flops` and :func:`paper_h100_fraction` (what share of an
H100's dense bf16 peak the paper's 240 models need to train in 24 h).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import SameConv1d
from ..spectra.xrd import N_BINS
from ..utils.atomic import atomic_path, atomic_write_text
from .loop import ArrayData, TrainConfig, _autocast, _reinitialise, loss_terms, pick_device, predict

log = logging.getLogger("xtalspec.training.ensemble")

CHECKPOINT = "ensemble_checkpoint.pt"


# ----------------------------------------------------------------------------- the stacked model

def _plan(seq: nn.Sequential, prefix: str) -> list[tuple]:
    """The layers of one of SpgNet's Sequentials as (kind, …) steps; anything else is refused."""
    steps: list[tuple] = []
    for i, module in enumerate(seq):
        key = f"{prefix}.{i}"
        if isinstance(module, SameConv1d):
            if module.padding != (0,) or module.dilation != (1,) or module.groups != 1 or module.bias is None:
                raise ValueError(f"{key}: only plain SameConv1d layers can be stacked")
            steps.append(("conv", key, module.stride[0], module.kernel_size[0], module.out_channels))
        elif isinstance(module, nn.Conv1d):
            raise ValueError(f"{key}: only SameConv1d convolutions can be stacked")
        elif isinstance(module, nn.Linear):
            if module.bias is None:
                raise ValueError(f"{key}: linear layers without bias are not supported")
            steps.append(("linear", key))
        elif isinstance(module, nn.ReLU):
            steps.append(("relu",))
        elif isinstance(module, nn.Dropout):
            steps.append(("dropout", float(module.p)))
        elif isinstance(module, nn.AvgPool1d):
            if module.padding not in (0, (0,)) or module.ceil_mode:
                raise ValueError(f"{key}: only 'valid' average pooling can be stacked")
            k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
            s = module.stride if isinstance(module.stride, int) else module.stride[0]
            steps.append(("pool", k, s))
        elif isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise ValueError(f"{key}: only Flatten(1, -1) can be stacked")
            steps.append(("flatten",))
        else:
            raise ValueError(f"{key}: cannot stack {type(module).__name__}")
    return steps


def default_conv_mode(device: torch.device | str) -> str:
    return "grouped" if torch.device(device).type == "cuda" else "split"


class StackedSpgNet(nn.Module):
    """M members of one SpgNet/SpgVolNet architecture with their weights stacked.

    ``forward(profiles)`` takes ``[M, B, n_bins]`` (member m's mini-batch is ``profiles[m]``) and
    returns ``{"logits": [M, B, C]}`` (+ ``"volume": [M, B]``). Conv weights are stored as
    ``[M·out, in, k]`` (member m owns rows ``m·out … (m+1)·out``), linear weights transposed as
    ``[M, in, out]`` (so the batched matmul's weight gradient needs no transposing copy), biases
    as ``[M, out]``. In training mode each member's dropout masks come from
    ``self.generators[m]`` (torch's global RNG when unset).

    ``conv_mode``: ``"grouped"`` runs each convolution as one Conv1d with ``groups=M`` (one
    kernel launch per layer: the GPU path); ``"split"`` runs each member's trunk on its own
    contiguous tensors (M ordinary Conv1d calls per layer, the very kernels of a single model:
    on CPU the losses came out bit-identical to loop.train's) and only the linear layers batched.
    On CPU (1 thread, 6 members, batch 32) split matched M single steps and grouped was 2–10 %
    slower; ``"auto"``: grouped on CUDA, split elsewhere."""

    def __init__(self, members: Sequence[nn.Module], conv_mode: str = "auto"):
        super().__init__()
        if not members:
            raise ValueError("no members to stack")
        if conv_mode == "auto":
            conv_mode = default_conv_mode(next(members[0].parameters()).device)
        if conv_mode not in ("grouped", "split"):
            raise ValueError(f"conv_mode must be 'auto', 'grouped' or 'split', not {conv_mode!r}")
        template = members[0]
        self.n_members = len(members)
        self.conv_mode = conv_mode
        self.has_volume_head = bool(getattr(template, "has_volume_head", False))
        self.generators: list[torch.Generator] | None = None
        self.plans = {"trunk": _plan(template.trunk, "trunk"), "classifier": _plan(template.classifier, "classifier")}
        if self.has_volume_head:
            self.plans["volume"] = _plan(template.volume, "volume")
        self._kinds: dict[str, str] = {}
        for plan in self.plans.values():
            for step in plan:
                if step[0] in ("conv", "linear"):
                    self._kinds[f"{step[1]}.weight"] = self._kinds[f"{step[1]}.bias"] = step[0]
        states = [m.state_dict() for m in members]
        for state in states:
            if list(state) != list(states[0]) or any(state[k].shape != states[0][k].shape for k in state):
                raise ValueError("members differ in architecture")
        if set(states[0]) != set(self._kinds):
            raise ValueError(f"unexpected parameters or buffers: {sorted(set(states[0]) ^ set(self._kinds))}")
        self.keys = list(states[0])  # the members' state_dict order
        self.params = nn.ParameterDict()
        for key in self.keys:
            parts = [s[key].detach() for s in states]
            if self._kinds[key] == "conv":
                stacked = torch.cat(parts, 0)
            elif key.endswith(".weight"):
                stacked = torch.stack([part.t() for part in parts], 0)
            else:
                stacked = torch.stack(parts, 0)
            self.params[self._name(key)] = nn.Parameter(stacked.clone())

    @staticmethod
    def _name(key: str) -> str:
        return key.replace(".", "__")

    def member_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """The members as ordinary SpgNet/SpgVolNet state_dicts (detached copies)."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in range(self.n_members)]
        for key in self.keys:
            tensor = self.params[self._name(key)].detach()
            if self._kinds[key] == "conv":
                parts = tensor.chunk(self.n_members, 0)
            elif key.endswith(".weight"):
                parts = [part.t() for part in tensor.unbind(0)]
            else:
                parts = tensor.unbind(0)
            for m, part in enumerate(parts):
                out[m][key] = part.clone().contiguous()
        return out

    # -- forward ----------------------------------------------------------------------------

    def _noise(self, shape, like: torch.Tensor, p: float, m: int) -> torch.Tensor:
        """Member m's dropout multiplier, drawn as ATen's CPU dropout draws it:
        ``empty_like(input).bernoulli_(1 - p).div_(1 - p)``."""
        generator = None if self.generators is None else self.generators[m]
        noise = torch.empty(shape, dtype=like.dtype, device=like.device)
        return noise.bernoulli_(1 - p, generator=generator).div_(1 - p)

    def _dropout(self, h: torch.Tensor, p: float, layout: str, member: int | None) -> torch.Tensor:
        if not self.training or p <= 0:
            return h
        if p >= 1:
            return h * torch.zeros_like(h)
        m_count = self.n_members
        if layout == "member":  # one member's [B, …]
            return h * self._noise(h.shape, h, p, member)
        if layout == "grouped":  # [B, M·C, L]: member m owns channels m·C … (m+1)·C
            batch, mc, length = h.shape
            return h * torch.cat([self._noise((batch, mc // m_count, length), h, p, m) for m in range(m_count)], 1)
        return h * torch.stack([self._noise(h.shape[1:], h, p, m) for m in range(m_count)], 0)  # [M, B, F]

    def _run(self, plan: list[tuple], h: torch.Tensor, layout: str, member: int | None = None) -> torch.Tensor:
        """Run ``plan`` on ``h`` laid out as ``layout``: "grouped" [B, M·C, L] (all members' trunks
        as grouped convolutions), "member" [B, C, L] (member ``member`` alone), "stacked" [M, B, F]
        (all members' linear layers as batched matmuls). Flatten turns "grouped" into "stacked"."""
        m_count = self.n_members
        for step in plan:
            kind = step[0]
            if kind == "conv":
                _, key, stride, kernel, out_channels = step
                length = h.shape[-1]  # SameConv1d: TensorFlow 'same' padding, output length ceil(L / stride)
                pad = max((math.ceil(length / stride) - 1) * stride + kernel - length, 0)
                h = F.pad(h, (pad // 2, pad - pad // 2))
                weight, bias = self.params[self._name(key + ".weight")], self.params[self._name(key + ".bias")]
                if layout == "grouped":
                    h = F.conv1d(h, weight, bias, stride=stride, groups=m_count)
                else:
                    rows = slice(member * out_channels, (member + 1) * out_channels)
                    h = F.conv1d(h, weight[rows], bias[rows], stride=stride)
            elif kind == "linear":
                weight = self.params[self._name(step[1] + ".weight")]
                bias = self.params[self._name(step[1] + ".bias")]
                if layout == "member":
                    h = torch.addmm(bias[member], h, weight[member])
                else:
                    h = torch.baddbmm(bias.unsqueeze(1), h, weight)
            elif kind == "relu":
                h = F.relu(h)
            elif kind == "dropout":
                h = self._dropout(h, step[1], layout, member)
            elif kind == "pool":
                h = F.avg_pool1d(h, step[1], step[2])
            elif kind == "flatten":
                if layout == "grouped":
                    h = h.reshape(h.shape[0], m_count, -1).transpose(0, 1)  # member m: its C × L block
                    layout = "stacked"
                else:
                    h = h.flatten(1)
        return h

    def forward(self, profiles: torch.Tensor) -> dict[str, torch.Tensor]:
        if profiles.dim() != 3 or profiles.shape[0] != self.n_members:
            raise ValueError(f"expected [{self.n_members}, batch, bins], got {list(profiles.shape)}")
        if self.conv_mode == "grouped":  # member m's input is channel m
            features = self._run(self.plans["trunk"], profiles.transpose(0, 1), "grouped")
        else:  # each member's trunk on its own contiguous tensors, then the heads batched
            features = torch.stack([self._run(self.plans["trunk"], profiles[m].unsqueeze(1), "member", m)
                                    for m in range(self.n_members)], 0)
        out = {"logits": self._run(self.plans["classifier"], features, "stacked")}
        if self.has_volume_head:
            out["volume"] = self._run(self.plans["volume"], features, "stacked").squeeze(-1)
        return out


# ----------------------------------------------------------------------------- training

def init_members(factory: Callable[[], nn.Module], seeds: Sequence[int], device: torch.device):
    """Fresh members initialised exactly as loop.train initialises them, and each member's
    dropout generator in the state loop.train's global RNG has right after ``_reinitialise``."""
    members, generators = [], []
    for seed in seeds:
        model = factory()
        _reinitialise(model, int(seed))
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
        with _autocast(device, amp):
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


def _evaluate_all(stacked, data: ArrayData | None, device, cfg: TrainConfig) -> list[dict]:
    if data is None or len(data) == 0:
        return [{} for _ in range(stacked.n_members)]
    metrics = []
    for out in predict_stacked(stacked, data, device, amp=cfg.amp):
        record = {"val_acc": float((out["probabilities"].argmax(1) == data.labels).mean())}
        if "volume" in out and data.volume is not None:
            record["val_mae"] = float(np.abs(out["volume"] - data.volume).mean())
        metrics.append(record)
    return metrics


def _save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_together(factory: Callable[[], nn.Module], seeds: Sequence[int], train_data: ArrayData, cfg: TrainConfig,
                   out_dir: str | Path, val_data: ArrayData | None = None, fingerprint: str = "",
                   progress_every_s: float = 30.0, conv_mode: str = "auto",
                   checkpoint_name: str = CHECKPOINT) -> tuple[list[nn.Module], list[list[dict]]]:
    """Train one member per seed of ``factory()`` at once, as loop.train would train each alone
    (``cfg.seed`` is ignored: the seeds are ``seeds``). Resumes from ``out_dir/checkpoint_name``
    when it carries the same ``fingerprint`` and seeds. Returns the trained members (ordinary
    models on the training device) and each member's history."""
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"need distinct seeds, got {seeds}")
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cpu":
        keep_large_buffers()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / checkpoint_name
    members, dropout = init_members(factory, seeds, device)
    if conv_mode == "auto":
        conv_mode = default_conv_mode(device)
    stacked = StackedSpgNet(members, conv_mode=conv_mode).to(device)
    stacked.generators = dropout
    optimiser = torch.optim.Adam(stacked.parameters(), lr=cfg.lr, betas=cfg.betas)
    shuffles = [torch.Generator().manual_seed(seed) for seed in seeds]
    histories: list[list[dict]] = [[] for _ in seeds]
    start_epoch = 0
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True) if ckpt_path.exists() else None
    if state is not None and (state.get("fingerprint") != fingerprint or list(state.get("seeds", [])) != seeds):
        log.warning("ignoring %s: it belongs to another run (data, seeds or settings changed)", ckpt_path)
        state = None
    if state is not None:
        stacked.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        for generator, rng in zip(shuffles, state["shuffle_rng"]):
            generator.set_state(rng)
        for generator, rng in zip(dropout, state["dropout_rng"]):
            generator.set_state(rng)
        histories, start_epoch = [list(h) for h in state["history"]], int(state["epoch"])
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    n, m_count = len(train_data), len(seeds)
    weights = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32,
                                                                     device=device)
    last_log = time.monotonic()
    for epoch in range(start_epoch, cfg.epochs):
        for group in optimiser.param_groups:
            group["lr"] = cfg.lr * math.exp(-cfg.lr_decay * epoch)
        stacked.train()
        t0 = time.monotonic()
        orders = [torch.randperm(n, generator=g).numpy() for g in shuffles]
        step_values, step_sizes, keys, seen = [], [], None, 0
        for start in range(0, n, cfg.batch_size):
            rows = [order[start: start + cfg.batch_size] for order in orders]
            size = len(rows[0])
            x, y, v = train_data.batch(np.concatenate(rows), device)  # member-major: row m·size + i
            x, y = x.view(m_count, size, -1), y.view(m_count, size)
            v = None if v is None else v.view(m_count, size)
            with _autocast(device, cfg.amp):
                outputs = stacked(x)
            terms = [loss_terms(_member_outputs(outputs, m), y[m], None if v is None else v[m], cfg.volume_weight,
                                weights) for m in range(m_count)]
            total = torch.stack([t["loss"] for t in terms]).sum()  # d total / d member m's weights = its own loss
            optimiser.zero_grad(set_to_none=True)
            total.backward()
            optimiser.step()
            keys = keys or list(terms[0])
            step_values.append(torch.stack([torch.stack([t[k].detach().float() for k in keys]) for t in terms]))
            step_sizes.append(size)
            seen += size
            if time.monotonic() - last_log > progress_every_s:
                running = (torch.stack(step_values).double().cpu() * torch.tensor(step_sizes, dtype=torch.float64)
                           [:, None, None]).sum(0) / seen
                log.info("epoch %d: %d/%d samples, loss %s", epoch + 1, seen, n,
                         " ".join(f"{float(value):.4f}" for value in running[:, keys.index("loss")]))
                last_log = time.monotonic()
        seconds = time.monotonic() - t0
        if step_values:  # one device sync per epoch; loop.train sums float(term) · len(rows) in double
            sums = (torch.stack(step_values).double().cpu()
                    * torch.tensor(step_sizes, dtype=torch.float64)[:, None, None]).sum(0).numpy()
        val = _evaluate_all(stacked, val_data, device, cfg)
        for m in range(m_count):
            record = {"epoch": epoch + 1, **({k: float(sums[m, j]) / max(seen, 1) for j, k in enumerate(keys)}
                                            if step_values else {}),
                      "samples_per_s": seen / max(seconds, 1e-9), "seconds": seconds}
            record.update(val[m])
            histories[m].append(record)
        log.info("epoch %d/%d, %d members together: %.1f model-samples/s; loss %s; val_acc %s", epoch + 1, cfg.epochs,
                 m_count, m_count * seen / max(seconds, 1e-9),
                 " ".join(f"{h[-1].get('loss', float('nan')):.4g}" for h in histories),
                 " ".join(f"{h[-1].get('val_acc', float('nan')):.3f}" for h in histories))
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            _save(ckpt_path, {"model": stacked.state_dict(), "optimiser": optimiser.state_dict(),
                              "epoch": epoch + 1, "seeds": seeds,
                              "shuffle_rng": [g.get_state() for g in shuffles],
                              "dropout_rng": [g.get_state() for g in dropout],
                              "history": histories, "fingerprint": fingerprint})
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
    from .xrd import _write_predictions, array_data

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
        _write_predictions(table, val_idx, out, meta, seed_dir / "predictions.parquet")
        with atomic_path(seed_dir / "model.pt") as tmp:
            torch.save({"state_dict": {k: t.cpu() for k, t in model.state_dict().items()}, "meta": meta}, tmp)
        atomic_write_text(seed_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
        results[seed] = {"history": history, "meta": meta}
    return results


# ----------------------------------------------------------------------------- measurements

def synthetic_profiles(n_samples: int, n_classes: int = 57, n_bins: int = N_BINS, seed: int = 0,
                       peaks: tuple[int, int] = (20, 300)) -> ArrayData:
    """Sparse δ-profiles shaped like the real ones: 20–300 peaks among 10,001 bins, intensities
    skewed towards weak, the strongest = 1; random class labels and volume z-scores."""
    from ..datasets.spgnet import densify

    rng = np.random.default_rng(seed)
    bins, values = [], []
    for _ in range(n_samples):
        k = int(rng.integers(peaks[0], peaks[1] + 1))
        b = np.sort(rng.choice(n_bins, size=k, replace=False))
        v = rng.random(k) ** 3
        v /= v.max()
        bins.append(b)
        values.append(v.astype(np.float32))
    bins_col, values_col = np.array(bins, dtype=object), np.array(values, dtype=object)
    return ArrayData(make_inputs=lambda r: densify(bins_col, values_col, r, n_bins),
                     labels=rng.integers(0, n_classes, n_samples).astype(np.int64),
                     volume=rng.standard_normal(n_samples).astype(np.float32))


def bench_together_vs_sequential(n_members: int = 6, n_samples: int = 160, epochs: int = 2, batch_size: int = 32,
                                 threads: int = 1, n_classes: int = 57, model: str = "spgnet",
                                 conv_mode: str = "auto", device: str = "cpu", same_allocator: bool = True) -> dict:
    """Wall time of ``n_members`` sequential loop.train runs vs one together run of the same
    members (same seeds, epochs, data, batch size, checkpointing every epoch, no validation).

    One-off costs are paid before timing (torch.optim's first use imports torch._dynamo, ~1 s).
    ``same_allocator``: apply :func:`keep_large_buffers` before the sequential runs too (it is
    process-wide), so only the batching is compared; False compares what the two CLI commands
    get (``xrd train`` leaves glibc's defaults alone)."""
    from ..models.spgnet import build_model
    from .loop import train

    torch.set_num_threads(threads)
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # the first Adam imports torch._dynamo
    if same_allocator:
        keep_large_buffers()
    data = synthetic_profiles(n_samples, n_classes)
    seeds = list(range(1, n_members + 1))
    factory = lambda: build_model(model, n_classes)  # noqa: E731
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, threads=threads, device=device)
    with tempfile.TemporaryDirectory(prefix="xtalspec-bench-") as tmp:
        t0 = time.perf_counter()
        sequential_loss = []
        for seed in seeds:
            history = train(factory(), data, dataclasses.replace(cfg, seed=seed), Path(tmp) / f"seq{seed}")
            sequential_loss.append(history[-1]["loss"])
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, histories = train_together(factory, seeds, data, cfg, Path(tmp) / "together", conv_mode=conv_mode)
        together = time.perf_counter() - t0
    model_samples = n_members * n_samples * epochs
    together_loss = [h[-1]["loss"] for h in histories]
    return {
        "model": model, "n_members": n_members, "n_samples": n_samples, "epochs": epochs, "batch_size": batch_size,
        "threads": threads, "n_classes": n_classes,
        "conv_mode": default_conv_mode(pick_device(device)) if conv_mode == "auto" else conv_mode,
        "device": str(pick_device(device)), "same_allocator": same_allocator,
        "sequential_s": sequential, "together_s": together, "ratio": sequential / together,
        "sequential_model_samples_per_s": model_samples / sequential,
        "together_model_samples_per_s": model_samples / together,
        "max_rel_loss_difference": float(max(abs(a - b) / max(abs(a), 1e-12)
                                             for a, b in zip(sequential_loss, together_loss))),
    }


def spgnet_forward_macs(n_classes: int = 57, n_bins: int = N_BINS, volume_head: bool = False) -> dict[str, int]:
    """Multiply–accumulates of one sample's forward pass, per conv/linear layer (pooling, ReLU,
    dropout and the loss are left out: < 1 % of the total)."""
    from ..models.spgnet import SpgNet, SpgVolNet

    model = (SpgVolNet if volume_head else SpgNet)(n_classes, n_bins=n_bins)
    macs: dict[str, int] = {}
    length, channels = n_bins, 1
    for i, module in enumerate(model.trunk):
        if isinstance(module, SameConv1d):
            length = math.ceil(length / module.stride[0])
            macs[f"trunk.{i}"] = length * module.out_channels * channels * module.kernel_size[0]
            channels = module.out_channels
        elif isinstance(module, nn.AvgPool1d):
            length = (length - module.kernel_size[0]) // module.stride[0] + 1
    heads = [model.classifier] + ([model.volume] if volume_head else [])
    for name, head in zip(["classifier", "volume"], heads):
        for i, module in enumerate(head):
            if isinstance(module, nn.Linear):
                macs[f"{name}.{i}"] = module.in_features * module.out_features
    return macs


def spgnet_step_flops(batch_size: int, n_classes: int = 57, n_bins: int = N_BINS, volume_head: bool = False,
                      backward_factor: float = 2.0) -> float:
    """FLOPs of one SpgNet (SpgVolNet with ``volume_head``) training step on ``batch_size``
    samples: forward = 2 × MACs of the conv and linear layers; backward ≈ ``backward_factor`` ×
    forward (gradients w.r.t. inputs and weights), so a step ≈ 3 × forward. (Exactly, the first
    convolution needs no input gradient: 2.7 % less for SpgNet.)"""
    forward = 2 * sum(spgnet_forward_macs(n_classes, n_bins, volume_head).values())
    return float(batch_size * forward * (1 + backward_factor))


# The paper's training (Ozaki et al. 2025; config/paper.yaml `xrd`): 5 validation folds ×
# (7 SpgNet ranges + 1 SpgVolNet on D(∞)) × 6 seeds = 240 models, 5,000 epochs each, Adam,
# batch 32 (Keras' default; not stated), 57 classes, 10,001 bins, 912 validation items per fold
# (57 × 16). Training-set sizes per range are in the paper's Table 2, which the text we hold
# lost; only D(∞) = 62,830 structures is known, so every model is counted with the largest
# training set, D(∞) minus a validation fold = 61,918 items (an upper bound: the narrower ranges
# are smaller; the paper's 3 h vs 6.5 h on an A100 for D(σU+η) vs D(∞) suggests ~half).
PAPER_EPOCHS = 5000
PAPER_D_INF = 62830
PAPER_VALIDATION_ITEMS = 57 * 16
PAPER_N_TRAIN = PAPER_D_INF - PAPER_VALIDATION_ITEMS
PAPER_N_CLASSES = 57
PAPER_FOLDS = 5
PAPER_SPGNET_RANGES = 7
PAPER_SPGVOLNET_RANGES = 1
PAPER_SEEDS = 6
H100_BF16_DENSE_FLOPS = 989e12  # NVIDIA H100 SXM, dense (no sparsity) bf16 tensor-core peak


def paper_h100_fraction(hours: float = 24.0, epochs: int = PAPER_EPOCHS, n_train: int = PAPER_N_TRAIN,
                        n_validation: int = PAPER_VALIDATION_ITEMS, n_classes: int = PAPER_N_CLASSES,
                        folds: int = PAPER_FOLDS, spgnet_ranges: int = PAPER_SPGNET_RANGES,
                        spgvolnet_ranges: int = PAPER_SPGVOLNET_RANGES, seeds: int = PAPER_SEEDS,
                        peak_flops: float = H100_BF16_DENSE_FLOPS, backward_factor: float = 2.0) -> dict:
    """Share of one H100's dense bf16 peak that training the paper's models in ``hours`` needs:
    every model trains ``epochs`` × ``n_train`` samples (forward + backward) and evaluates its
    validation fold once per epoch (forward only)."""
    per_sample = {volume: spgnet_step_flops(1, n_classes, volume_head=volume, backward_factor=backward_factor)
                  for volume in (False, True)}
    forward = {volume: 2.0 * sum(spgnet_forward_macs(n_classes, volume_head=volume).values())
               for volume in (False, True)}
    counts = {False: folds * spgnet_ranges * seeds, True: folds * spgvolnet_ranges * seeds}
    total = sum(counts[v] * epochs * (n_train * per_sample[v] + n_validation * forward[v]) for v in counts)
    needed = total / (hours * 3600.0)
    return {
        "models": counts[False] + counts[True], "spgnet_models": counts[False], "spgvolnet_models": counts[True],
        "epochs": epochs, "n_train": n_train, "n_validation": n_validation,
        "spgnet_flops_per_sample_step": per_sample[False], "spgvolnet_flops_per_sample_step": per_sample[True],
        "total_flops": total, "hours": hours, "needed_flops_per_s": needed, "peak_flops_per_s": peak_flops,
        "fraction_of_peak": needed / peak_flops,
    }
