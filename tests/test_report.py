"""`snakemake --report`: every figure (.png) and table (.md) any rule of the workflow writes is a
report item with a caption. Real results take long, so the test fills a results tree with
placeholder files for every output of the default DAG (a real PNG, a small Markdown table each,
carrying its own name) and renders the report as a zip from them."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# a valid 1×1 PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def snakemake(*args, timeout=300):
    result = subprocess.run(SNAKEMAKE + list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def dag_outputs(configfile: Path) -> list[Path]:
    """Every output file of the default target's DAG (`snakemake --summary`)."""
    text = snakemake("--summary", "--nolock", "--configfile", str(configfile), "--cores", "1")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("output_file"))
    return [Path(line.split("\t")[0]) for line in lines[start + 1:] if line.strip() and "\t" in line]


def test_report_has_every_figure_and_table_with_captions(tmp_path):
    results = tmp_path / "results"
    configfile = tmp_path / "c.yaml"
    configfile.write_text(yaml.safe_dump({"results": str(results)}))
    outputs = dag_outputs(configfile)
    assert len(outputs) > 50
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".png":
            path.write_bytes(PNG)
        elif path.suffix == ".md":
            path.write_text(f"| file |\n|---|\n| {path.name} |\n")
        else:
            path.write_text("placeholder\n")
    report = tmp_path / "report.zip"
    snakemake("--report", str(report), "--nolock", "--configfile", str(configfile))

    with zipfile.ZipFile(report) as zf:
        names = zf.namelist()
        text = "\n".join(zf.read(n).decode("utf-8", "replace") for n in names
                         if n.endswith((".html", ".js", ".json")))
    embedded = {Path(n).name for n in names}
    wanted = sorted({p.name for p in outputs if p.suffix in (".png", ".md")})
    missing = [name for name in wanted if name not in embedded]
    assert not missing, f"figures/tables not in the report: {missing}"
    assert any(n.endswith("report.html") for n in names)
    # the PNGs are the files themselves
    png = next(n for n in names if n.endswith("spacegroup_histogram.png"))
    assert zipfile.ZipFile(report).read(png) == PNG
    # captions (JSON inside the HTML), including Jinja-rendered ones and the workflow description
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text.replace("\\n", " "))
    for caption in ("Table 2: sizes of the seven data sets", "Thesis Figs. 3.4 and 5.6",
                    "Confusion matrix of one ensemble member", "Tables SI–SIX format",
                    "top-1 to top-5 accuracy of the CNN", "FEFF10 (preset fast)", "xtalspec: crystal structures",
                    "master seed 0"):
        assert caption in re.sub(r"\s+", " ", text), caption
    for category in ("Structures", "SpgNet", "spacegroupMining", "XANES", "MOF", "Thesis"):
        assert category in text, category
    # the single-file HTML report (the README's `snakemake --report results/report.html`) holds the same items
    html = tmp_path / "report.html"
    snakemake("--report", str(html), "--nolock", "--configfile", str(configfile))
    page = html.read_text(encoding="utf-8")
    assert all(f'"{name}"' in page for name in wanted)
