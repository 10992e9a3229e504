"""The M members of one SpgNet/SpgVolNet architecture stacked into one batched model
(:class:`StackedSpgNet`), so that an ensemble trains together in one process
(:mod:`xtalspec.training.ensemble`).

Convolutions run as one grouped Conv1d over M × 80 channels with SameConv1d's TensorFlow 'same'
padding (or per member, on CPU), linear layers as batched matmuls; each member's dropout masks
come from its own generator, drawn as ATen's CPU dropout draws them.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import SameConv1d

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
    on CPU the losses came out bit-identical to one model trained alone) and only the linear layers batched.
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
