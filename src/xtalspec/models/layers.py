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
