"""ElemNet and IRNet: formation enthalpy per atom from element fractions (Jha 2019, ch. 3–5).

ElemNet (thesis Table 3.1): 17 fully connected layers 1024×4, 512×3, 256×3, 128×3, 64×2, 32, 1,
ReLU, with dropout after the 1024/512/256/128 blocks at keep-probabilities 0.8/0.9/0.7/0.8
(drop 0.2/0.1/0.3/0.2). Weights start uniform (Glorot), as in the thesis ("random weight
initialization from a uniform distribution").

IRNet (thesis ch. 4, Fig. 4.1): every layer but the last is FC + BatchNorm + ReLU with its own
shortcut ("individual residual learning"); where the width changes the shortcut is a linear
projection (y = F(x) + W_s x, eq. 4.1). The thesis text we have omits Table 4.1's widths for the
deeper nets; we take them from the IRNet paper (Jha et al., KDD 2019, Table 1): 17 layers as
ElemNet; 48 layers = 1024×8, 512×8, 256×8, 128×8, 64×8, 32×7, 1.

Initialisation, our choice where the thesis is silent: each residual branch's BatchNorm scale starts
at 0.1 instead of 1 (so the identity shortcuts, which add non-negative ReLU outputs layer after
layer, do not blow the output up at the start), and every network's output bias starts at the
mean of its training targets (:func:`set_output_offset`). Measured on JANAF (fold 1, 40 epochs,
Adam 1e-4): with the default initialisation IRNet-48's first-epoch training MAE was 8.7 eV/atom
and it was still at 1.1 after 36 epochs (validation 1.1); with these two it starts at 1.0 and
reaches a validation MAE of 0.37–0.42, like ElemNet.
"""

from __future__ import annotations

import torch
from torch import nn

ELEMNET_WIDTHS = [1024] * 4 + [512] * 3 + [256] * 3 + [128] * 3 + [64] * 2 + [32]
ELEMNET_DROPOUT = {3: 0.2, 6: 0.1, 9: 0.3, 12: 0.2}  # after layer index (0-based) -> drop probability
IRNET_WIDTHS = {
    17: ELEMNET_WIDTHS,
    24: [1024] * 4 + [512] * 4 + [256] * 4 + [128] * 4 + [64] * 4 + [32] * 3,
    48: [1024] * 8 + [512] * 8 + [256] * 8 + [128] * 8 + [64] * 8 + [32] * 7,
}


def _glorot(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class ElemNet(nn.Module):
    def __init__(self, n_inputs: int, widths: list[int] = ELEMNET_WIDTHS,
                 dropout: dict[int, float] = ELEMNET_DROPOUT):
        super().__init__()
        layers, width_in = [], n_inputs
        for i, width in enumerate(widths):
            layers += [nn.Linear(width_in, width), nn.ReLU()]
            if dropout.get(i):
                layers.append(nn.Dropout(dropout[i]))
            width_in = width
        layers.append(nn.Linear(width_in, 1))
        self.net = nn.Sequential(*layers)
        _glorot(self)

    def forward(self, fractions: torch.Tensor) -> torch.Tensor:
        return self.net(fractions).squeeze(-1)


class ResidualLayer(nn.Module):
    """y = ReLU(BN(W x)) + S x, with S the identity or a linear projection when widths differ."""

    def __init__(self, width_in: int, width_out: int, branch_scale: float = 0.1):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU())
        self.shortcut = nn.Identity() if width_in == width_out else nn.Linear(width_in, width_out, bias=False)
        self.branch_scale = branch_scale

    def reset_branch_scale(self) -> None:
        nn.init.constant_(self.body[1].weight, self.branch_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class IRNet(nn.Module):
    def __init__(self, n_inputs: int, depth: int = 17):
        super().__init__()
        if depth not in IRNET_WIDTHS:
            raise ValueError(f"IRNet depth {depth} not defined; choose from {sorted(IRNET_WIDTHS)}")
        widths = IRNET_WIDTHS[depth]
        blocks, width_in = [], n_inputs
        for width in widths:
            blocks.append(ResidualLayer(width_in, width))
            width_in = width
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(width_in, 1)
        _glorot(self)
        for block in blocks:
            block.reset_branch_scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(x)).squeeze(-1)


NEURAL_MODELS = ("elemnet", "irnet17", "irnet24", "irnet48")


def build_regressor(name: str, n_inputs: int) -> nn.Module:
    if name == "elemnet":
        return ElemNet(n_inputs)
    if name.startswith("irnet") and name[5:].isdigit():
        return IRNet(n_inputs, int(name[5:]))
    raise ValueError(f"unknown composition model {name!r}; choose from {list(NEURAL_MODELS)}")


def set_output_offset(model: nn.Module, mean: float) -> None:
    """Start the final layer's bias at the training targets' mean (eV/atom)."""
    last = [m for name, m in model.named_modules() if isinstance(m, nn.Linear) and "shortcut" not in name][-1]
    with torch.no_grad():
        last.bias.fill_(float(mean))


def n_layers(model: nn.Module) -> int:
    """Fully connected layers that are not shortcuts (the thesis' layer count)."""
    return sum(1 for name, m in model.named_modules() if isinstance(m, nn.Linear) and "shortcut" not in name)
