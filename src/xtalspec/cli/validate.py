"""``xtalspec validate {xrd,pdf,xanes} LABELS.csv``: a predictor over a labelled set of measured files."""

from __future__ import annotations

from pathlib import Path


def cmd_validate(args) -> int:
    from ..evaluation.validation import markdown, validate, write_validation

    per_file, summary = validate(args.kind, args.labels, args.models)
    out = Path(args.out_dir or f"results/validation/{args.kind}")
    write_validation(per_file, summary, args.csv or out / "per_file.csv", args.md or out / "summary.md",
                     args.json or out / "summary.json")
    print(markdown(per_file, summary).split("\n| file |")[0])
    return 0


def register(sub) -> None:
    p = sub.add_parser("validate", help="run a predictor over a labelled set of measured files: per-file results, "
                                        "top-k accuracy, crystal systems, timing")
    p.add_argument("kind", choices=["xrd", "pdf", "xanes"])
    p.add_argument("labels", help="LABELS.csv: file, label and the predictor's options (wavelength, element, …)")
    p.add_argument("--models", default=None, help="the trained models (default: the predictor's default)")
    p.add_argument("--out-dir", default=None, help="default results/validation/<kind>")
    p.add_argument("--csv", default=None)
    p.add_argument("--md", default=None)
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_validate)
