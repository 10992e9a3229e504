"""Report of every thesis experiment (paper 002) from saved predictions only: composition models
(cross-validation, learning curve, transfer learning; :mod:`.composition_reports`) and the PADNet
comparison (:mod:`.padnet_reports`). :func:`write_thesis_report` is ``xtalspec thesis report``."""

from __future__ import annotations

import json
from pathlib import Path

from . import composition_reports as comp
from . import padnet_reports as pad


def write_thesis_report(out_dir, cv=(), learning_curve=(), learning_curve_source=None, transfer=None,
                        padnet=None) -> dict:
    """``xtalspec thesis report``: cross-validation table and parity figures, learning curve,
    transfer table, PADNet accuracy against background from saved predictions, into
    ``out_dir``/tables, ``out_dir``/figures and ``out_dir``/thesis_summary.json. Returns the summary."""
    import pandas as pd

    from ..provenance import code_version
    from ..utils.atomic import atomic_write_text
    from ..utils.tables import read_frame

    out = Path(out_dir)
    tables, figures = out / "tables", out / "figures"
    summary = {"code_version": code_version(), "inputs": {}}
    if cv:
        by_source = {}
        for path in cv:
            frame, meta = read_frame(path)
            by_source.setdefault(meta.get("source") or "?", []).append(frame)
            summary["inputs"][str(path)] = {k: meta.get(k) for k in ("model", "source", "config", "code_version")}
        by_source = {k: pd.concat(v, ignore_index=True) for k, v in by_source.items()}
        table = comp.cv_table(by_source, tables)
        summary["cv_mae"] = json.loads(table.to_json(orient="records"))
        for source, frame in by_source.items():
            comp.parity_figure(frame, figures / f"parity_{source}.png", title=f"10-fold CV predictions ({source})")
    if learning_curve:
        frames = [read_frame(p)[0] for p in learning_curve]
        curve = pd.concat(frames, ignore_index=True)
        lc = comp.learning_curve_figure(curve, figures / "learning_curve.png", source=learning_curve_source or "")
        summary["learning_curve"] = json.loads(lc.to_json(orient="records"))
    if transfer:
        frame, meta = read_frame(transfer)
        table = comp.transfer_table(frame, tables, meta.get("pretrained"))
        comp.parity_figure(frame, figures / "parity_transfer.png", title="transfer learning")
        summary["transfer"] = json.loads(table.to_json(orient="records"))
    else:
        tables.mkdir(parents=True, exist_ok=True)
        atomic_write_text(tables / "transfer.md", "Transfer learning was not run: it needs an online DFT source. "
                          "Set thesis.compositions.transfer.enabled: true with pretrain_source oqmd (network) or mp "
                          "(network and MP_API_KEY) in the config.\n")
    if padnet:
        frame, meta = read_frame(padnet)
        acc = pad.accuracy_vs_background(frame, tables, figures / "padnet_background.png")
        summary["padnet"] = json.loads(acc.to_json(orient="records"))
        summary["padnet_settings"] = meta.get("settings")
    atomic_write_text(out / "thesis_summary.json", json.dumps(summary, indent=1, default=str))
    return summary
