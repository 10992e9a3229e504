"""FLOP accounting of SpgNet/SpgVolNet (:mod:`xtalspec.models.spgnet`), next to the model it counts.

:func:`spgnet_forward_macs` counts the multiply–accumulates of one sample's forward pass per
conv/linear layer from the model's own layers, :func:`spgnet_step_flops` a training step, and
:func:`paper_h100_fraction` what share of an H100's dense bf16 peak the paper's 240 models need to
train in 24 h (the ``PAPER_*`` constants: Ozaki et al. 2025's training runs).
"""

from __future__ import annotations

import math

from torch import nn

from .layers import SameConv1d
from .spgnet import N_BINS, SpgNet, SpgVolNet


def spgnet_forward_macs(n_classes: int = 57, n_bins: int = N_BINS, volume_head: bool = False) -> dict[str, int]:
    """Multiply–accumulates of one sample's forward pass, per conv/linear layer (pooling, ReLU,
    dropout and the loss are left out: < 1 % of the total)."""
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
