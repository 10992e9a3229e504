"""Scheme 2 of Ozaki et al.: a measured pattern → peaks → δ-profile → the trained ensemble →
space groups ranked by the ensemble-mean probability, each member's probability, and the
predicted primitive-cell volume (SpgVolNet)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..spectra.measured import MeasuredProfile, PatternError, profile_from_pattern, raw_profile_from_pattern
from ..models.checkpoints import load_member
from ..utils.atomic import atomic_write_text
from ..utils.roman import ROMAN


def find_members(models_dir: str | Path, model_kind: str) -> list[Path]:
    """Trained members of one family, one ensemble: the (range, fold) with the most seeds,
    first in sort order on a tie (e.g. ``spgvolnet/inf/fold1/seed{1..6}/model.pt``)."""
    root = Path(models_dir) / model_kind
    paths = sorted(root.glob("*/fold*/seed*/model.pt"))
    if not paths:
        raise FileNotFoundError(f"no trained {model_kind} members under {root} (run `snakemake xrd` first)")
    groups: dict[Path, list[Path]] = {}
    for p in paths:
        groups.setdefault(p.parent.parent, []).append(p)
    best = max(sorted(groups), key=lambda k: len(groups[k]))
    return sorted(groups[best], key=lambda p: int(p.parent.name.removeprefix("seed")))


@dataclasses.dataclass
class XRDPrediction:
    measured: MeasuredProfile
    ranking: pd.DataFrame  # rank, spacegroup, p_I..p_VI, p_ensemble
    volume_per_atom: float | None  # exp(ensemble-mean U), Å^3 per atom of the primitive cell
    members: list[str]
    n_atoms: int | None = None  # atoms in the primitive cell, when the user knows them

    @property
    def text(self) -> str:
        m = self.measured
        what = f"{len(m.peaks)} peaks" if len(m.peaks) else "whole scan, no peak picking"
        lines = [f"{m.source}: {what}, λ = {m.wavelength:.5f} Å, 1/d {m.inv_d_range[0]:.4f}–"
                 f"{m.inv_d_range[1]:.4f} Å⁻¹ ({100 * m.coverage:.0f} % of the model's range)"]
        if m.file_wavelength is not None and abs(m.file_wavelength - m.wavelength) > 1e-3 * m.wavelength:
            lines.append(f"note: the file ({m.format}) states λ = {m.file_wavelength:.5f} Å; the given "
                         f"{m.wavelength:.5f} Å was used")
        lines += [f"ensemble of {len(self.members)} members" if len(self.members) > 1 else f"model {self.members[0]}",
                  "", self.ranking.to_string(index=False, float_format="%.3f")]
        if self.volume_per_atom is not None:
            lines += ["", f"predicted volume per atom: {self.volume_per_atom:.3f} Å^3"]
            if self.n_atoms:
                lines.append(f"predicted primitive-cell volume ({self.n_atoms} atoms): "
                             f"{self.volume_per_atom * self.n_atoms:.2f} Å^3")
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        frame = self.ranking.copy()
        frame["volume_per_atom"] = self.volume_per_atom
        if self.n_atoms:
            frame["volume"] = self.volume_per_atom * self.n_atoms
        atomic_write_text(path, frame.to_csv(index=False))


@torch.no_grad()
def run_members(profile: np.ndarray, member_paths: list[Path]) -> tuple[np.ndarray, np.ndarray | None, dict]:
    probs, volumes, meta = [], [], None
    x = torch.from_numpy(profile.astype(np.float32))[None, :]
    for path in member_paths:
        model, meta = load_member(path)
        out = model(x)
        probs.append(torch.softmax(out["logits"], dim=1)[0].numpy())
        if "volume" in out:
            volumes.append(float(out["volume"][0]) * meta["u_std"] + meta["u_mean"])
    return np.array(probs), (np.array(volumes) if volumes else None), meta


def predict_pattern(pattern: str | Path, wavelength, models_dir: str | Path, top: int = 5,
                    peak_list: bool | None = None, model_kind: str = "spgvolnet",
                    n_atoms: int | None = None) -> XRDPrediction:
    measured = profile_from_pattern(pattern, wavelength, peak_list)
    members = find_members(models_dir, model_kind)
    probs, u_values, meta = run_members(measured.profile, members)
    mean = probs.mean(axis=0)
    groups = meta["spacegroups"]
    order = np.argsort(-mean)[:top]
    ranking = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "spacegroup": [groups[c] for c in order]})
    for k in range(len(members)):
        ranking[f"p_{ROMAN[k]}"] = probs[k, order]
    ranking["p_ensemble"] = mean[order]
    volume = float(np.exp(u_values.mean())) if u_values is not None else None
    return XRDPrediction(measured, ranking, volume, [str(p) for p in members], n_atoms)


PADNET_MODELS_DIR = Path("results/thesis/padnet/models")


@torch.no_grad()
def predict_raw_pattern(pattern: str | Path, wavelength, models_dir: str | Path = PADNET_MODELS_DIR,
                        top: int = 5) -> XRDPrediction:
    """PADNet on a raw measured scan: no peak picking, no background subtraction (thesis ch. 7).
    ``models_dir`` holds ``padnet/model.pt`` (from ``snakemake thesis_padnet``) or is that file."""
    from ..models.checkpoints import load_padnet_member

    path = Path(models_dir)
    if path.is_dir():
        path = path / "padnet" / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"no trained PADNet at {path} (run `snakemake thesis_padnet` first)")
    measured = raw_profile_from_pattern(pattern, wavelength)
    model, meta = load_padnet_member(path)
    probs = torch.softmax(model(torch.from_numpy(measured.profile)[None, :])["logits"], dim=1)[0].numpy()
    groups = meta["spacegroups"]
    order = np.argsort(-probs)[:top]
    ranking = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "spacegroup": [groups[c] for c in order],
                            "p_padnet": probs[order]})
    return XRDPrediction(measured, ranking, None, [str(path)])


__all__ = ["PatternError", "XRDPrediction", "find_members", "predict_pattern", "predict_raw_pattern"]
