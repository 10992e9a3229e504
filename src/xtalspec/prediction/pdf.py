"""Space group from a measured PDF: read a G(r) file (PDFgetX3 / PDFgui ``.gr`` with their
headers, or two columns r, G), resample onto the model's 209-point grid as the paper does
(quadratic interpolation, zero beyond the data's rmax, min–max to [0, 1]) and rank the space
groups: by default with the deploy model of the file's radiation (``results/pdf/deploy``: X-ray
or neutron, all groups with enough structures, trained on measured-like PDFs), or with each model
of another folder (``--models results/pdf/models``: the paper's standard and randomised models).
Beside the ranking: the crystal systems by summed probability and a verdict — confident,
uncertain or outside (:mod:`xtalspec.evaluation.verdicts`); a model whose checkpoint holds a
``temperature`` has its logits divided by it before the softmax."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets.pdf_paper import PAPER_PARAMS
from ..evaluation.verdicts import Assessment, assess, crystal_system_ranking
from ..spectra.pdf import RMAX, RMIN
from ..utils.textfiles import check_axis, read_data_text
from .outputs import (frame_records, member_probabilities, outputs_and_score, ranking_csv, verdict_lines,
                      with_crystal_system, write_outputs)

GRID_MIN, GRID_MAX = RMIN, RMAX  # the model's r grid (spectra/pdf.py)
# predict-pdf's default: the deploy models, one per radiation (workflow/rules/pdf_deploy.smk);
# `--models results/pdf/models` still selects the paper-protocol models.
DEFAULT_MODELS_DIR = "results/pdf/deploy"
DEPLOY_SUBDIRS = {"x-ray": "xray", "neutron": "neutron"}
MIN_POINTS_ON_GRID = 10
MIN_STEP_A = 1e-4  # a finer r step is not a measured G(r)
R_EXTENT_A = (0.0, 1000.0)


class PDFFileError(ValueError):
    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


def _floats(line: str) -> list[float] | None:
    parts = line.replace(",", " ").split()
    try:
        return [float(p) for p in parts]
    except ValueError:
        return None


_START_DATA = re.compile(r"^#{2,}\s*start\s+data", re.IGNORECASE)
_HEADER_PAIR = re.compile(r"\b(qmax|qmin|qdamp|qbroad|rmax|rmin|rstep)\s*[=:]\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)",
                          re.IGNORECASE)
_NEUTRON = re.compile(r"neutron|get_npdf|pdfgetn|\bmode\s*[=:]\s*(?:neutron|n)\b", re.IGNORECASE)
_XRAY = re.compile(r"x-?ray|get_xpdf|pdfgetx|\bmode\s*[=:]\s*xray\b", re.IGNORECASE)


@dataclasses.dataclass
class MeasuredPDF:
    """A measured G(r) as read: r (Å, increasing), G, header values, radiation, what was read."""

    r: np.ndarray
    g: np.ndarray
    header: dict
    radiation: str | None  # "x-ray", "neutron" or None (not stated)
    layout: str            # how the data were found (start-data marker, RMCProfile count, last block)
    normalisation: str     # "G(r)" or "r(g(r)-1) from g(r)"


def _header_values(lines: list[str]) -> dict:
    """qmax, qmin, qdamp, qbroad, rmax, rmin, rstep from ``key = value`` pairs anywhere in the header
    (several on a line, as PDFgetX2 writes them); the first value of a key wins."""
    header = {}
    for line in lines:
        for key, value in _HEADER_PAIR.findall(line):
            header.setdefault(key.lower(), float(value))
    return header


def _radiation(lines: list[str]) -> str | None:
    text = "\n".join(lines)
    neutron, xray = bool(_NEUTRON.search(text)), bool(_XRAY.search(text))
    if neutron and not xray:
        return "neutron"
    if xray and not neutron:
        return "x-ray"
    if neutron and xray:  # e.g. a PDFgetX2 header naming both: the program's own banner decides
        return "neutron" if re.search(r"get_npdf|pdfgetn", text, re.IGNORECASE) else "x-ray"
    return None


def _numeric_block(path, lines: list[tuple[int, str]], strict: bool) -> tuple[list[list[float]], int]:
    """The (r, G) rows of ``lines``: ``#`` lines (``#S``, ``#L``) are skipped. With ``strict`` a
    non-numeric line after the data began is an error; otherwise the data are the last run of
    numeric rows (numeric lines inside a header are not data), and a non-numeric line after
    that run is an error. Returns the rows and the line number of the first."""
    blocks, rows, junk, start = [], [], None, 0
    for number, line in lines:
        stripped = line.strip()
        if not stripped or stripped[0] in "#!;[":
            continue
        values = _floats(stripped)
        if values is None or len(values) < 2:
            if rows and strict:
                raise PDFFileError(path, f"line {number}: non-numeric line after the data began: {stripped[:60]!r}")
            if rows:
                blocks.append((rows, start))
                rows, junk = [], (number, stripped)
            continue
        if rows and len(values) != len(rows[0]) and not strict:
            blocks.append((rows, start))
            rows = []
        if not rows:
            start = number
        rows.append(values[:2])
    if rows:
        return rows, start
    if blocks and junk is not None:
        raise PDFFileError(path, f"line {junk[0]}: non-numeric line after the data began: {junk[1][:60]!r}")
    return blocks[-1] if blocks else ([], 0)


def _column_label(lines: list[str]) -> str:
    for line in reversed(lines):
        stripped = line.strip()
        if stripped.startswith("#L"):
            return stripped[2:].strip()
    return ""


def read_pdf_file(path: str | Path) -> MeasuredPDF:
    """Read a measured PDF file of any of the usual layouts:

    * PDFgetX2 / PDFgetX3 / PDFgetN / xPDFsuite / Mantid ``.gr``: the data follow the last
      ``#### start data`` line (``#S`` and ``#L`` lines skipped, four columns r G dr dG kept to
      r G); everything before it is header, numeric table lines included;
    * RMCProfile: the first line is the number of points, the second a title;
    * anything else (plain two or more columns, PDFgui fit output): the last run of numeric
      rows, after any header.

    Header ``key = value`` pairs give qmax, qdamp, … and the radiation (x-ray or neutron) when
    the header names it. A ``#L`` column label ``g(r)`` (the pair distribution function, not
    G(r)) is converted to r(g(r) − 1), which is G(r) up to the factor 4πρ₀ that the model's
    min–max scaling removes."""
    path = Path(path)
    text = read_data_text(path, PDFFileError)
    lines = text.splitlines()
    numbered = list(enumerate(lines, 1))
    markers = [i for i, line in numbered if _START_DATA.match(line.strip())]
    first = lines[0].strip() if lines else ""
    if markers:
        head, body, layout, strict = lines[:markers[-1] - 1], numbered[markers[-1]:], "start-data marker", True
    elif re.fullmatch(r"\d+", first) and len(lines) > 2:
        count = int(first)
        head, body, layout, strict = lines[:2], numbered[2:], "RMCProfile (count, title, data)", True
        if count < 1:
            raise PDFFileError(path, f"RMCProfile header says {count} points")
    else:
        head, body, layout, strict = [], numbered, "last block of numeric rows", False
    rows, first_row = _numeric_block(path, body, strict)
    if not rows:
        raise PDFFileError(path, "no numeric (r, G) rows found")
    if layout.startswith("last"):
        head = lines[:first_row - 1]
    data = np.array(rows, dtype=float)
    if not np.isfinite(data).all():
        raise PDFFileError(path, "non-finite values in the data")
    order = np.argsort(data[:, 0], kind="stable")
    r, g = data[order, 0], data[order, 1]
    check_axis(r, path, PDFFileError, "r", "Å", MIN_STEP_A, R_EXTENT_A)
    label = _column_label(head + [line for _, line in body[:5]])
    normalisation = "G(r)"
    if re.search(r"(^|\s)g\(r\)", label):  # lower-case g(r): the pair distribution function
        g, normalisation = r * (g - 1.0), "r(g(r)-1) from g(r)"
    if np.ptp(g) == 0:
        raise PDFFileError(path, f"G(r) is constant ({g[0]:g} everywhere): no pair correlations to read")
    return MeasuredPDF(r, g, _header_values(head), _radiation(head), layout, normalisation)


def read_gr(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(r, G, header values) of a measured PDF file (:func:`read_pdf_file`)."""
    measured = read_pdf_file(path)
    return measured.r, measured.g, measured.header


def check_grid_overlap(path, r: np.ndarray) -> None:
    inside = ((r >= GRID_MIN) & (r <= GRID_MAX)).sum()
    if inside < MIN_POINTS_ON_GRID:
        raise PDFFileError(path, f"r covers {r.min():.3g}–{r.max():.3g} Å: fewer than {MIN_POINTS_ON_GRID} points "
                                 f"inside the model's grid {GRID_MIN}–{GRID_MAX} Å")


@dataclasses.dataclass
class PDFPrediction:
    source: str
    header: dict
    data_rmax: float
    ranking: pd.DataFrame
    radiation: str | None = None
    layout: str = ""
    normalisation: str = "G(r)"
    crystal_systems: pd.DataFrame | None = None  # rank, crystal_system, probability, n_spacegroups, top_spacegroup
    assessment: Assessment | None = None  # the verdict and what it rests on
    models: list[str] = dataclasses.field(default_factory=list)
    model_radiation: str | None = None  # the radiation the models were trained for (deploy models)
    notes: list = dataclasses.field(default_factory=list)
    trained_ranges: dict | None = None  # deploy models: {"qmax": (lo, hi), "qdamp": (lo, hi)} drawn in training

    @property
    def verdict(self) -> str | None:
        return self.assessment.verdict if self.assessment is not None else None

    @property
    def text(self) -> str:
        ranges = self.trained_ranges or {}
        notes = [f"{k} = {self.header[k]:g} (model trained on {ranges[k][0]:g}–{ranges[k][1]:g})" if k in ranges
                 else f"{k} = {self.header[k]:g} (model trained at {PAPER_PARAMS[k]:g})"
                 for k in ("qmax", "qdamp", "qmin", "qbroad") if k in self.header]
        lines = [f"{self.source}: data to r = {self.data_rmax:.2f} Å (zero beyond, as in training's rmax sweep); "
                 f"read by {self.layout}" + (f"; {self.normalisation}" if self.normalisation != "G(r)" else "")]
        if self.radiation == "neutron" and self.model_radiation != "neutron":
            lines.append("radiation: neutron — these models were trained on X-ray PDFs; atoms with negative "
                         "scattering lengths (Mn, Ti, H, …) turn peaks over: treat the ranking with caution")
        elif self.radiation:
            lines.append(f"radiation: {self.radiation}" + (f" (the {self.model_radiation} deploy model)"
                                                            if self.model_radiation else ""))
        lines += self.notes + notes + ["", self.ranking.to_string(index=False, float_format="%.3f")]
        extra = verdict_lines(self.crystal_systems, self.assessment)
        if extra:
            lines += ["", *extra]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """Everything the prediction says, for the JSON document."""
        return {"kind": "pdf", "source": self.source, "models": list(self.models), "header": dict(self.header),
                "data_rmax": self.data_rmax, "radiation": self.radiation, "layout": self.layout,
                "normalisation": self.normalisation,
                **(self.assessment.as_dict() if self.assessment is not None else {}),
                "ranking": frame_records(self.ranking), "crystal_systems": frame_records(self.crystal_systems)}

    def write(self, path: str | Path | None = None, json_path: str | Path | None = None) -> dict[str, Path]:
        """The ranking CSV at ``path`` (with ``verdict``, ``ood_score``, ``crystal_system``), the
        crystal-system ranking beside it (``<stem>_crystal_systems.csv``) and the JSON document at
        ``json_path`` (default ``<stem>.json`` beside ``path``)."""
        return write_outputs(ranking_csv(self.ranking, self.assessment), self.crystal_systems, self.as_dict(),
                             path, json_path)


def find_models(models_dir: str | Path) -> dict[str, Path]:
    root = Path(models_dir)
    found = {p.parent.name: p for p in sorted(root.glob("*/model.pt"))}
    if not found:
        raise FileNotFoundError(f"no trained PDF models under {root} (run `snakemake pdf` first)")
    return found


def select_models(models_dir: str | Path | None, radiation: str | None) -> tuple[dict[str, Path], str | None, list[str]]:
    """(models by name, the radiation they were trained for or None, notes). A folder with the deploy
    layout (``xray/model.pt``, ``neutron/model.pt``; the default ``results/pdf/deploy``) gives the one
    model of ``radiation`` (not stated: the X-ray one, with a note); any other folder gives every
    ``<name>/model.pt`` in it (the paper models under ``results/pdf/models``)."""
    root = Path(models_dir if models_dir is not None else DEFAULT_MODELS_DIR)
    if any((root / sub / "model.pt").is_file() for sub in DEPLOY_SUBDIRS.values()):
        notes = []
        if radiation not in DEPLOY_SUBDIRS:
            notes.append("radiation not stated in the file's header: the X-ray model is used "
                         "(give --radiation neutron for a neutron PDF)")
            radiation = "x-ray"
        path = root / DEPLOY_SUBDIRS[radiation] / "model.pt"
        if not path.is_file():  # only the other radiation's model was trained (pdf.deploy.radiations)
            other = next(r for r in DEPLOY_SUBDIRS if r != radiation)
            notes.append(f"no {radiation} deploy model under {root}: the {other} model is used")
            radiation, path = other, root / DEPLOY_SUBDIRS[other] / "model.pt"
        return {f"deploy_{DEPLOY_SUBDIRS[radiation]}": path}, radiation, notes
    if root == Path(DEFAULT_MODELS_DIR) and not root.is_dir():
        raise FileNotFoundError(f"no PDF deploy models under {root} (run `snakemake pdf_deploy`, or give "
                                f"--models results/pdf/models for the paper models)")
    return find_models(root), None, []


def _deploy_ranges(metas: list[dict]) -> dict:
    """The Qmax and Qdamp ranges a deploy model drew its training PDFs from (its meta's augment)."""
    from ..datasets.pdf_paper import SWEEPS

    qmax = (metas[0].get("augment") or {}).get("qmax") if metas else None
    ranges = {"qdamp": (min(SWEEPS["qdamp"]["values"]), max(SWEEPS["qdamp"]["values"]))}
    if qmax and len(qmax) == 2:
        ranges["qmax"] = (float(qmax[0]), float(qmax[1]))
    return ranges


def predict_pdf(path: str | Path, models_dir: str | Path | None = None, top: int = 6,
                radiation: str | None = None) -> PDFPrediction:
    """Rank the space groups of a measured PDF by the mean probability of every trained model
    (each model's own probability beside it). ``radiation`` overrides what the header says; it
    also picks the deploy model (:func:`select_models`; default folder ``results/pdf/deploy``)."""
    import torch

    from ..models.checkpoints import load_pdf_model
    from ..spectra.pdf import model_input

    measured = read_pdf_file(path)
    r, g = measured.r, measured.g
    check_grid_overlap(path, r)
    x = model_input(r, g, data_rmax=float(r.max()))[None, :].astype(np.float32)
    models, model_radiation, model_notes = select_models(models_dir, radiation or measured.radiation)
    columns, metas, scores, paths = {}, [], [], []
    groups = None
    for name, model_path in models.items():
        model, meta = load_pdf_model(model_path)
        if groups is not None and list(meta["spacegroups"]) != list(groups):
            raise ValueError(f"{model_path}: its space groups differ from the other models' under {models_dir}")
        with torch.no_grad():
            out, score = outputs_and_score(model, torch.from_numpy(x), meta, model_path)
        columns[name] = member_probabilities(out["logits"], meta)
        metas.append(meta)
        scores.append(score)
        paths.append(str(model_path))
        groups = meta["spacegroups"]
    mean = np.mean(list(columns.values()), axis=0)
    order = np.argsort(-mean, kind="stable")[:top]
    ranking = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "spacegroup": [groups[i] for i in order],
                            "p_mean": mean[order]})
    for name, p in columns.items():
        ranking[f"p_{name}"] = p[order]
    return PDFPrediction(str(path), measured.header, float(r.max()), with_crystal_system(ranking),
                         radiation or measured.radiation, measured.layout, measured.normalisation,
                         crystal_system_ranking(groups, mean), assess(float(mean.max()), metas, scores), paths,
                         model_radiation, model_notes, _deploy_ranges(metas) if model_radiation else None)
