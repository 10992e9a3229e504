"""Writing report artefacts: PNG figures (Agg backend, atomic) and Markdown tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..utils.atomic import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path, dpi: int = 110) -> Path:
    plt = pyplot()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def output_paths(names: dict[str, str], out_dir=None, **given) -> dict[str, Path]:
    """The output files of a report: each key's path as given (the workflow passes whole paths),
    else ``out_dir / names[key]`` (stand-alone use with a folder). ``names`` is the one place
    that spells the default file names of that report."""
    paths = {}
    for key, name in names.items():
        if given.get(key) is not None:
            paths[key] = Path(given[key])
        elif out_dir is not None:
            paths[key] = Path(out_dir) / name
        else:
            raise ValueError(f"no path for the {key} output: pass it, or a folder (--out-dir)")
    return paths
