"""Scheme 2 of Ozaki et al.: a measured pattern → peaks → δ-profile → the trained ensemble →
space groups ranked by the ensemble-mean probability, each member's probability, and the
predicted primitive-cell volume (SpgVolNet); beside them the crystal systems ranked by summed
probability and a verdict — confident, uncertain or outside (:mod:`xtalspec.evaluation.verdicts`).
A member whose checkpoint holds a ``temperature`` has its logits divided by it before the softmax."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..spectra.measured import MeasuredProfile, PatternError, profile_from_pattern, raw_profile_from_pattern
from ..evaluation.verdicts import Assessment, assess, crystal_system_ranking
from ..models.checkpoints import load_member
from ..utils.roman import ROMAN
from .outputs import (frame_records, member_probabilities, outputs_and_score, ranking_csv, verdict_lines,
                      with_crystal_system, write_outputs)


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
    ranking: pd.DataFrame  # rank, spacegroup, crystal_system, p_I..p_VI, p_ensemble
    volume_per_atom: float | None  # exp(ensemble-mean U), Å^3 per atom of the primitive cell
    members: list[str]
    n_atoms: int | None = None  # atoms in the primitive cell, when the user knows them
    crystal_systems: pd.DataFrame | None = None  # rank, crystal_system, probability, n_spacegroups, top_spacegroup
    assessment: Assessment | None = None  # the verdict and what it rests on

    @property
    def verdict(self) -> str | None:
        return self.assessment.verdict if self.assessment is not None else None

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
        extra = verdict_lines(self.crystal_systems, self.assessment)
        if extra:
            lines += ["", *extra]
        if self.volume_per_atom is not None:
            lines += ["", f"predicted volume per atom: {self.volume_per_atom:.3f} Å^3"]
            if self.n_atoms:
                lines.append(f"predicted primitive-cell volume ({self.n_atoms} atoms): "
                             f"{self.volume_per_atom * self.n_atoms:.2f} Å^3")
        return "\n".join(lines)

    def _frame(self) -> pd.DataFrame:
        frame = ranking_csv(self.ranking, self.assessment)
        frame["volume_per_atom"] = self.volume_per_atom
        if self.n_atoms:
            frame["volume"] = self.volume_per_atom * self.n_atoms
        return frame

    def as_dict(self) -> dict:
        """Everything the prediction says, for the JSON document."""
        m = self.measured
        volume = self.volume_per_atom * self.n_atoms if self.n_atoms and self.volume_per_atom is not None else None
        return {"kind": "xrd", "source": str(m.source), "members": list(self.members),
                "measured": {"wavelength": float(m.wavelength), "n_peaks": len(m.peaks),
                             "inv_d_range": [float(v) for v in m.inv_d_range], "coverage": float(m.coverage)},
                **(self.assessment.as_dict() if self.assessment is not None else {}),
                "ranking": frame_records(self.ranking), "crystal_systems": frame_records(self.crystal_systems),
                "volume_per_atom": self.volume_per_atom, "n_atoms": self.n_atoms, "volume": volume}

    def write(self, path: str | Path | None = None, json_path: str | Path | None = None) -> dict[str, Path]:
        """The ranking CSV at ``path`` (with ``verdict``, ``ood_score``, ``crystal_system`` and the
        volume), the crystal-system ranking beside it (``<stem>_crystal_systems.csv``) and the
        JSON document at ``json_path`` (default ``<stem>.json`` beside ``path``)."""
        return write_outputs(self._frame(), self.crystal_systems, self.as_dict(), path, json_path)


@dataclasses.dataclass
class MemberOutputs:
    """What the members say about one profile; unpacks as (probs, volumes, meta) like before."""

    probs: np.ndarray  # (members, classes): softmax(logits / T), T the member's temperature (1 without)
    volumes: np.ndarray | None  # U of each member (SpgVolNet)
    meta: dict  # the last member's metadata
    metas: list[dict]
    ood_scores: list[float | None]  # each member's OOD score (None without a reference)

    def __iter__(self):
        return iter((self.probs, self.volumes, self.meta))


@torch.no_grad()
def run_members(profile: np.ndarray, member_paths: list[Path]) -> MemberOutputs:
    probs, volumes, metas, scores = [], [], [], []
    x = torch.from_numpy(profile.astype(np.float32))[None, :]
    for path in member_paths:
        model, meta = load_member(path)
        out, score = outputs_and_score(model, x, meta, path)
        probs.append(member_probabilities(out["logits"], meta))
        scores.append(score)
        metas.append(meta)
        if "volume" in out:
            volumes.append(float(out["volume"][0]) * meta["u_std"] + meta["u_mean"])
    return MemberOutputs(np.array(probs), (np.array(volumes) if volumes else None), metas[-1], metas, scores)


def predict_pattern(pattern: str | Path, wavelength, models_dir: str | Path, top: int = 5,
                    peak_list: bool | None = None, model_kind: str = "spgvolnet",
                    n_atoms: int | None = None) -> XRDPrediction:
    measured = profile_from_pattern(pattern, wavelength, peak_list)
    members = find_members(models_dir, model_kind)
    run = run_members(measured.profile, members)
    probs, u_values, meta = run
    mean = probs.mean(axis=0)
    groups = meta["spacegroups"]
    order = np.argsort(-mean, kind="stable")[:top]
    ranking = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "spacegroup": [groups[c] for c in order]})
    for k in range(len(members)):
        ranking[f"p_{ROMAN[k]}"] = probs[k, order]
    ranking["p_ensemble"] = mean[order]
    volume = float(np.exp(u_values.mean())) if u_values is not None else None
    return XRDPrediction(measured, with_crystal_system(ranking), volume, [str(p) for p in members], n_atoms,
                         crystal_system_ranking(groups, mean), assess(float(mean.max()), run.metas, run.ood_scores))


PADNET_MODELS_DIR = Path("results/thesis/padnet/models")
#: predict-xrd's default: the deploy members (``snakemake xrd_deploy``); results/xrd/models holds the paper ensembles
DEPLOY_MODELS_DIR = Path("results/xrd/deploy/models")


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
    out, score = outputs_and_score(model, torch.from_numpy(measured.profile)[None, :], meta, path)
    probs = member_probabilities(out["logits"], meta)
    groups = meta["spacegroups"]
    order = np.argsort(-probs, kind="stable")[:top]
    ranking = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "spacegroup": [groups[c] for c in order],
                            "p_padnet": probs[order]})
    return XRDPrediction(measured, with_crystal_system(ranking), None, [str(path)], None,
                         crystal_system_ranking(groups, probs),
                         assess(float(probs.max()), [meta], [score]))


__all__ = ["MemberOutputs", "PatternError", "XRDPrediction", "find_members", "predict_pattern", "predict_raw_pattern",
           "run_members"]
