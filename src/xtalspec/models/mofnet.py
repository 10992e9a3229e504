"""The 1-D CNN of paper 001 for one-to-one MOF identification from powder XRD patterns.

Input: a max-normalised pattern of 2,251 points (2θ 5–50°, 0.02° steps), shape (batch, 2251)
or (batch, 1, 2251). Layers (Keras names; ReLU after every conv and dense layer)::

    Conv 6@5  → MaxPool 2 → Dropout 0.2
    Conv 16@5 → Conv 16@5 → MaxPool 2 → Dropout 0.2
    Conv 32@5 → Conv 32@5 → MaxPool 2 → Dropout 0.2
    Conv 64@5 → Conv 64@5 → MaxPool 2 → Dropout 0.2
    Flatten → Dense 120 → Dense 84 → Dense n_classes (softmax in the loss / at prediction)

Padding is Keras 'same' by default (stride 1, odd kernel: 2 zeros on each side, length kept):
2251 → 1125 → 562 → 281 → 140, 64 × 140 = 8,960 flattened inputs. ``padding="valid"`` gives
2251 → 1123 → 557 → 274 → 133 (8,512). Glorot-uniform weights, zero biases (Keras defaults,
:func:`~xtalspec.models.layers.keras_init`).

For Grad-CAM the network is split at the last conv layer: :meth:`MofCNN.features` returns the
ReLU output of the second Conv 64 (batch, 64, 281 for 'same'), before its pooling;
:meth:`MofCNN.classify` maps those maps to logits. ``forward(x) == classify(features(x))``.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import keras_init

N_POINTS = 2251
KERNEL = 5
FIRST_FILTERS = 6
BLOCK_FILTERS = (16, 32, 64)
DENSE = (120, 84)
DROPOUT = 0.2
POOL = 2
PADDINGS = ("same", "valid")


def _conv(n_in: int, n_out: int, padding: str) -> nn.Conv1d:
    return nn.Conv1d(n_in, n_out, KERNEL, padding=KERNEL // 2 if padding == "same" else 0)


class MofCNN(nn.Module):
    def __init__(self, n_points: int = N_POINTS, n_classes: int = 1012, padding: str = "same"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")
        self.n_points, self.n_classes, self.padding = int(n_points), int(n_classes), padding
        shrink = 0 if padding == "same" else KERNEL - 1
        layers: list[nn.Module] = [_conv(1, FIRST_FILTERS, padding), nn.ReLU(), nn.MaxPool1d(POOL), nn.Dropout(DROPOUT)]
        length = (self.n_points - shrink) // POOL
        n_in = FIRST_FILTERS
        for i, filters in enumerate(BLOCK_FILTERS):
            layers += [_conv(n_in, filters, padding), nn.ReLU(), _conv(filters, filters, padding), nn.ReLU()]
            n_in = filters
            length -= 2 * shrink
            if i < len(BLOCK_FILTERS) - 1:
                layers += [nn.MaxPool1d(POOL), nn.Dropout(DROPOUT)]
                length //= POOL
        if length < POOL:
            raise ValueError(f"{n_points} input points are too few for this network")
        self.conv = nn.Sequential(*layers)  # up to the ReLU of the last conv layer
        self.feature_length = length  # positions of the last conv layer's maps
        self.feature_channels = n_in
        self.n_flat = n_in * (length // POOL)
        head: list[nn.Module] = [nn.MaxPool1d(POOL), nn.Dropout(DROPOUT), nn.Flatten()]
        width = self.n_flat
        for units in DENSE:
            head += [nn.Linear(width, units), nn.ReLU()]
            width = units
        head.append(nn.Linear(width, self.n_classes))
        self.head = nn.Sequential(*head)
        keras_init(self)

    def reset_parameters(self) -> None:
        keras_init(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the last conv layer (after its ReLU): (batch, 64, feature_length)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.conv(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes) from :meth:`features`."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))
