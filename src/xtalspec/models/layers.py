"""Layers shared by the 1D CNNs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SameConv1d(nn.Conv1d):
    """Conv1d with TensorFlow/Keras 'same' padding for any stride: output length ceil(L / stride).
    (PyTorch's padding='same' refuses strides > 1; the papers' models are Keras models.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        stride, kernel = self.stride[0], self.kernel_size[0]
        out = math.ceil(length / stride)
        pad = max((out - 1) * stride + kernel - length, 0)
        return super().forward(F.pad(x, (pad // 2, pad - pad // 2)))


def keras_init(model: nn.Module) -> None:
    """Keras defaults (the papers' models are Keras models): Glorot-uniform weights, zero
    biases. PyTorch's default (Kaiming-uniform, a=√5) leaves these sparse-input CNNs stuck at
    chance for many epochs."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
