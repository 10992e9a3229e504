"""SpgNet and SpgVolNet (Ozaki, Ishida & Kiyobayashi 2025), after the CNN of Park et al. 2017.

Input: the δ-function XRD profile, 10,001 bins of 1/d. Trunk: three strided 'same' convolutions
(80 filters; kernels 100, 50, 25; strides 5, 5, 2), each ReLU → Dropout 0.3 → AvgPool
('valid' pooling: (3, 2), (3, 3), (3, 3)); flattened to 80 × 11 = 880 features.
SpgNet head: FC 2300 → FC 1150 (ReLU, dropout 0.5) → one logit per space group.
SpgVolNet: the same trunk and class head plus a volume head (two FC blocks without dropout → 1)
predicting the z-score of U = ln(V / n_atoms).
"""

from __future__ import annotations

import torch
from torch import nn

from ..spectra.xrd import N_BINS  # the delta-profile grid, defined once in spectra/xrd.py
from .layers import SameConv1d, keras_init


def conv_trunk(dropout: float = 0.3, in_channels: int = 1) -> nn.Sequential:
    """The three-block convolutional trunk; ``in_channels`` > 1 for front ends with several maps."""

    def block(c_in, kernel, stride, pool_stride):
        return [SameConv1d(c_in, 80, kernel, stride), nn.ReLU(), nn.Dropout(dropout), nn.AvgPool1d(3, pool_stride)]

    return nn.Sequential(*block(in_channels, 100, 5, 2), *block(80, 50, 5, 3), *block(80, 25, 2, 3), nn.Flatten())


def trunk_features(n_bins: int = N_BINS, in_channels: int = 1) -> int:
    """Length of the flattened trunk output for inputs of ``n_bins`` bins."""
    with torch.no_grad():
        return conv_trunk(in_channels=in_channels).eval()(torch.zeros(1, in_channels, n_bins)).shape[1]


def classifier_head(features: int, n_classes: int, dropout: float = 0.5) -> nn.Sequential:
    """FC 2300 → FC 1150 (ReLU, dropout) → one logit per space group."""
    return nn.Sequential(
        nn.Linear(features, 2300), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(2300, 1150), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(1150, n_classes),
    )


class SpgNet(nn.Module):
    has_volume_head = False

    def __init__(self, n_classes: int, n_bins: int = N_BINS, dropout_conv: float = 0.3, dropout_fc: float = 0.5):
        super().__init__()
        self.trunk = conv_trunk(dropout_conv)
        features = trunk_features(n_bins)
        self.classifier = classifier_head(features, n_classes, dropout_fc)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        keras_init(self)

    def forward(self, profiles: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(self.trunk(profiles.unsqueeze(1)))}

    def forward_features(self, profiles: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``forward``'s outputs and the penultimate features (the input of the last Linear layer,
        1150 per item) from one pass; used for the out-of-distribution score at prediction."""
        trunk = self.trunk(profiles.unsqueeze(1))
        hidden = self.classifier[:-1](trunk)
        out = {"logits": self.classifier[-1](hidden)}
        if self.has_volume_head:
            out["volume"] = self.volume(trunk).squeeze(-1)
        return out, hidden

    def penultimate(self, profiles: torch.Tensor) -> torch.Tensor:
        """The input of the classifier's last Linear layer."""
        return self.classifier[:-1](self.trunk(profiles.unsqueeze(1)))


class SpgVolNet(SpgNet):
    has_volume_head = True

    def __init__(self, n_classes: int, n_bins: int = N_BINS, dropout_conv: float = 0.3, dropout_fc: float = 0.5):
        super().__init__(n_classes, n_bins, dropout_conv, dropout_fc)
        features = trunk_features(n_bins)
        self.volume = nn.Sequential(nn.Linear(features, 2300), nn.ReLU(), nn.Linear(2300, 1150), nn.ReLU(),
                                    nn.Linear(1150, 1))
        self.reset_parameters()

    def forward(self, profiles: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(profiles.unsqueeze(1))
        return {"logits": self.classifier(features), "volume": self.volume(features).squeeze(-1)}


MODELS = {"spgnet": SpgNet, "spgvolnet": SpgVolNet}


def build_model(name: str, n_classes: int) -> SpgNet:
    try:
        return MODELS[name](n_classes)
    except KeyError:
        raise ValueError(f"unknown XRD model {name!r}; choose from {sorted(MODELS)}") from None
