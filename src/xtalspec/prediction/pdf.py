"""Space group from a measured PDF: read a G(r) file (PDFgetX3 / PDFgui ``.gr`` with their
headers, or two columns r, G), resample onto the model's 209-point grid as the paper does
(quadratic interpolation, zero beyond the data's rmax, min–max to [0, 1]) and rank the space
groups with each trained model (the standard one, and the one trained on randomised parameters
when present)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets.pdf_paper import PAPER_PARAMS
from ..spectra.pdf import RMAX, RMIN
from ..utils.atomic import atomic_write_text
from ..utils.textfiles import check_axis, read_data_text

GRID_MIN, GRID_MAX = RMIN, RMAX  # the model's r grid (spectra/pdf.py)
MIN_POINTS_ON_GRID = 10
MIN_STEP_A = 1e-4  # a finer r step is not a measured G(r)
R_EXTENT_A = (0.0, 1000.0)
_HEADER_VALUE = re.compile(r"^\W*(qmax|qmin|qdamp|qbroad|rmax|rmin|rstep)\s*[=:]\s*([-+0-9.eE]+)", re.IGNORECASE)


class PDFFileError(ValueError):
    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


def _floats(line: str) -> list[float] | None:
    parts = line.replace(",", " ").split()
    try:
        return [float(p) for p in parts]
    except ValueError:
        return None


def read_gr(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(r, G, header values). The data are the numeric rows after the last header line."""
    path = Path(path)
    text = read_data_text(path, PDFFileError)
    header, rows = {}, []
    for line in text.splitlines():
        match = _HEADER_VALUE.match(line)
        if match and not rows:
            header[match.group(1).lower()] = float(match.group(2))
        stripped = line.strip()
        if not stripped or stripped[0] in "#!;[":
            continue
        values = _floats(stripped)
        if values is None or len(values) < 2:
            if rows:
                raise PDFFileError(path, f"non-numeric line after the data began: {stripped[:60]!r}")
            continue  # still in a header
        rows.append(values[:2])
    if not rows:
        raise PDFFileError(path, "no numeric (r, G) rows found")
    data = np.array(rows, dtype=float)
    if not np.isfinite(data).all():
        raise PDFFileError(path, "non-finite values in the data")
    order = np.argsort(data[:, 0])
    r, g = data[order, 0], data[order, 1]
    check_axis(r, path, PDFFileError, "r", "Å", MIN_STEP_A, R_EXTENT_A)
    if np.ptp(g) == 0:
        raise PDFFileError(path, f"G(r) is constant ({g[0]:g} everywhere): no pair correlations to read")
    return r, g, header


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

    @property
    def text(self) -> str:
        notes = [f"{k} = {self.header[k]:g} (model trained at {PAPER_PARAMS[k]:g})"
                 for k in ("qmax", "qdamp", "qmin", "qbroad") if k in self.header]
        lines = [f"{self.source}: data to r = {self.data_rmax:.2f} Å (zero beyond, as in training's rmax sweep)"]
        lines += notes + ["", self.ranking.to_string(index=False, float_format="%.3f")]
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        atomic_write_text(path, self.ranking.to_csv(index=False))


def find_models(models_dir: str | Path) -> dict[str, Path]:
    root = Path(models_dir)
    found = {p.parent.name: p for p in sorted(root.glob("*/model.pt"))}
    if not found:
        raise FileNotFoundError(f"no trained PDF models under {root} (run `snakemake pdf` first)")
    return found


def predict_pdf(path: str | Path, models_dir: str | Path, top: int = 6) -> PDFPrediction:
    from ..spectra.pdf import model_input
    from ..models.checkpoints import load_pdf_model
    from ..models.checkpoints import pdf_probabilities as probabilities

    r, g, header = read_gr(path)
    check_grid_overlap(path, r)
    x = model_input(r, g, data_rmax=float(r.max()))[None, :].astype(np.float32)
    columns = {}
    groups = None
    for name, model_path in find_models(models_dir).items():
        model, meta = load_pdf_model(model_path)
        columns[name] = probabilities(model, x)[0]
        groups = meta["spacegroups"]
    first = next(iter(columns))
    order = np.argsort(-columns[first])[:top]
    ranking = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "spacegroup": [groups[i] for i in order]})
    for name, p in columns.items():
        ranking[f"p_{name}"] = p[order]
    return PDFPrediction(str(path), header, float(r.max()), ranking)
