"""PADNet (Jha 2019, thesis ch. 7): a fixed "peak area detection" front end before the SpgNet CNN.

Idea: a raw laboratory pattern sits on a smooth, irregular background. Convolving it with a
zero-sum filter of ±1 values cancels a constant background exactly; the absolute response is
large on the flanks of every peak and zero at its top (zero slope), so a maximum filter of the
filter's size spreads it over the whole area around the peak. Batch normalisation and a softmax
across the filter maps follow, and the maps go to the CNN in place of the background-subtracted
pattern. The filters are fixed (registered buffers), only the batch norm and the CNN learn.

1D analogue of the thesis's four 2D orientations. In 2D each filter is +1 on one side of a line
through the window centre and -1 on the other (horizontal, vertical, two diagonals: edges of
four orientations). In 1D the only "line" through the centre is the centre point itself, and
its two orientations differ by a sign that the absolute value removes. We therefore span the
two things a 1D window can still distinguish, parity and scale:

* ``step``        (odd):  -1 on the left half, 0 at the centre tap, +1 on the right half. A first
  difference of box averages: responds to slopes; zero-sum, so a constant cancels (a linear
  background gives a constant, not zero).
* ``centre``      (even): -1 on the outer quarters, +1 on the inner half (centre tap 0). A
  second-difference / top-hat detector: zero-sum and symmetric, so constant *and* linear
  backgrounds cancel; it responds to curvature (peak tops, valleys).
* ``step_half``, ``centre_half``: the same two shapes on half the window (zeros outside), for
  narrow peaks and close pairs.

Window: the thesis uses f = 50 (even, no centre pixel). Every shape here lives on an odd window
of 2h + 1 taps with h even (so the centre-surround quarters balance exactly); for f = 50 the
full shapes have h = 24 (49 taps) and the half shapes h = 12 (25 taps), all embedded, centred,
in one 49-tap kernel. The maximum filter uses the same 49 taps. The pattern is extended by
replicating its end values (so a constant background cancels up to the ends too).

Softmax: ``"orientations"`` (default, across the maps at each position, as the issue we work
from says), ``"positions"`` (thesis eq. 7.8: over the positions of each map) or ``"none"``.
After a softmax, a second BatchNorm1d rescales the maps for the trunk (``renormalise``, on by
default). Measured on the embedded default's rendered patterns: softmax maps vary by only
about ±0.05 around 1/4, and without the rescaling the Keras-initialised trunk did not learn at
all (cross-entropy stayed at ln 12 over 4 epochs of 1,200 patterns); with it, it learns like
the unnormalised maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import keras_init
from .spgnet import N_BINS, classifier_head, conv_trunk, trunk_features

ORIENTATIONS = ("step", "centre", "step_half", "centre_half")
SOFTMAX_MODES = ("orientations", "positions", "none")
FILTER_SIZE = 50  # the thesis's f, in bins of the 1/d grid (~0.005 1/A, ~0.4 deg 2theta for Cu at 30 deg)


def _half_width(length: int) -> int:
    """The largest even h with 2h + 1 <= length (h even: the centre-surround quarters balance)."""
    if length < 5:
        raise ValueError(f"a filter needs at least 5 taps, got {length}")
    return 2 * ((length - 1) // 4)


def _shape(kind: str, h: int) -> torch.Tensor:
    """One zero-sum ±1 shape on 2h + 1 taps, centre tap 0."""
    side = torch.ones(h)
    if kind == "step":
        return torch.cat([-side, torch.zeros(1), side])
    outer, inner = -torch.ones(h // 2), torch.ones(h // 2)
    return torch.cat([outer, inner, torch.zeros(1), inner, outer])


def slope_filters(size: int = FILTER_SIZE) -> torch.Tensor:
    """The four fixed filters, shape (4, 1, 2h + 1) with h = ``_half_width(size)``, rows in ORIENTATIONS order."""
    h = _half_width(size)
    h_half = _half_width(size // 2)
    rows = []
    for name in ORIENTATIONS:
        kind, half = name.split("_")[0], name.endswith("_half")
        core = _shape(kind, h_half if half else h)
        pad = h - (len(core) - 1) // 2
        rows.append(F.pad(core, (pad, pad)))
    return torch.stack(rows).unsqueeze(1)


class SlopeFilterFrontEnd(nn.Module):
    """Fixed ±1 filters → |·| → max filter → BatchNorm1d → softmax. (B, N) or (B, 1, N) → (B, 4, N)."""

    def __init__(self, size: int = FILTER_SIZE, softmax: str = "orientations", renormalise: bool = True):
        super().__init__()
        if softmax not in SOFTMAX_MODES:
            raise ValueError(f"unknown softmax {softmax!r}; choose from {SOFTMAX_MODES}")
        self.softmax = softmax
        self.register_buffer("weight", slope_filters(size))
        self.norm = nn.BatchNorm1d(self.n_orientations)
        use_renorm = renormalise and softmax != "none"
        self.renorm = nn.BatchNorm1d(self.n_orientations) if use_renorm else nn.Identity()

    @property
    def n_orientations(self) -> int:
        return self.weight.shape[0]

    @property
    def taps(self) -> int:
        return self.weight.shape[-1]

    def filter_responses(self, x: torch.Tensor) -> torch.Tensor:
        """Signed filter outputs (B, 4, N), the input extended by its end values ('same' length)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        half = self.taps // 2
        return F.conv1d(F.pad(x, (half, half), mode="replicate"), self.weight)

    def peak_areas(self, x: torch.Tensor) -> torch.Tensor:
        """|filter responses| spread by a max filter of the window size (B, 4, N): the pre-BN maps."""
        return F.max_pool1d(self.filter_responses(x).abs(), self.taps, stride=1, padding=self.taps // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.norm(self.peak_areas(x))
        if self.softmax == "orientations":
            maps = maps.softmax(dim=1)
        elif self.softmax == "positions":
            maps = maps.softmax(dim=2)
        return self.renorm(maps)


class PADNet(nn.Module):
    """SlopeFilterFrontEnd → SpgNet trunk (4 input channels) → SpgNet classifier head."""

    has_volume_head = False

    def __init__(self, n_classes: int, n_bins: int = N_BINS, filter_size: int = FILTER_SIZE,
                 softmax: str = "orientations", renormalise: bool = True, dropout_conv: float = 0.3,
                 dropout_fc: float = 0.5):
        super().__init__()
        self.front_end = SlopeFilterFrontEnd(filter_size, softmax, renormalise)
        channels = self.front_end.n_orientations
        self.trunk = conv_trunk(dropout_conv, in_channels=channels)
        features = trunk_features(n_bins, in_channels=channels)
        self.classifier = classifier_head(features, n_classes, dropout_fc)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras initialisation of the trainable convolutions and linear layers (the filters are fixed)."""
        keras_init(self.trunk)
        keras_init(self.classifier)

    def forward(self, profiles: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(self.trunk(self.front_end(profiles)))}


MODELS = {"padnet": PADNet}


def build_padnet(n_classes: int, **options) -> PADNet:
    """PADNet with keyword options (n_bins, filter_size, softmax, dropout_conv, dropout_fc)."""
    try:
        return PADNet(n_classes, **options)
    except TypeError as err:
        raise ValueError(f"bad PADNet options {sorted(options)}: {err}") from None
