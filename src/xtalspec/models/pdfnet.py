"""PDFNet: a 1D CNN that reads the space group from a 209-point PDF, designed in the spirit of
Liu et al. (2019), whose exact layers are not public. Model card: docs/model_cards/pdfnet.md.

Three convolution blocks (64, 128, 128 filters; kernels 9, 7, 5; 'same' padding; ReLU; max-pool 2)
→ flatten (128 × 26) → dropout 0.3 → FC 256 → ReLU → dropout 0.3 → one logit per space group.
About 1.0 M parameters at 45 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..spectra.pdf import MODEL_POINTS as N_POINTS  # 209, defined once in spectra/pdf.py
from .layers import keras_init


class PDFNet(nn.Module):
    has_volume_head = False

    def __init__(self, n_classes: int, n_points: int = N_POINTS, dropout: float = 0.3):
        super().__init__()

        def block(c_in, c_out, kernel):
            return [nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool1d(2)]

        self.features = nn.Sequential(*block(1, 64, 9), *block(64, 128, 7), *block(128, 128, 5), nn.Flatten())
        with torch.no_grad():
            width = self.features(torch.zeros(1, 1, n_points)).shape[1]
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 256), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(256, n_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        keras_init(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(self.features(x.unsqueeze(1)))}

    # ``features`` is the convolutional trunk (its name is in the state_dict keys), so the
    # penultimate activations go by ``penultimate``, as in SpgNet.
    def forward_features(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``forward``'s outputs and the penultimate features (the input of the last Linear layer,
        256 per item) from one pass."""
        hidden = self.classifier[:-1](self.features(x.unsqueeze(1)))
        return {"logits": self.classifier[-1](hidden)}, hidden

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the classifier's last Linear layer."""
        return self.forward_features(x)[1]
