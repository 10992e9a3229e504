"""``xtalspec predict-xanes``: coordination (T4 / S5 / O6) from a measured K-edge XANES."""

from __future__ import annotations


def cmd_predict_xanes(args) -> int:
    from .prediction.xanes import predict_xanes

    result = predict_xanes(args.file, args.element, args.models)
    print(result.text)
    if args.out:
        csv, sidecar = result.write(args.out)
        print(f"wrote {csv} and {sidecar}")
    return 0


def register(sub) -> None:
    from .prediction.xanes import DEFAULT_MODELS_DIR

    p = sub.add_parser("predict-xanes", help="T4/S5/O6 coordination from a measured K-edge XANES "
                                             "(two columns energy, mu; energy, I0, It; or XDI)")
    p.add_argument("file")
    p.add_argument("--element", required=True, help="absorbing element (Sc…Zn), e.g. Fe")
    p.add_argument("--models", default=DEFAULT_MODELS_DIR, help="folder holding <element>/bundle.json")
    p.add_argument("--out", default=None, help="write the probabilities here (CSV, plus a .json sidecar)")
    p.set_defaults(func=cmd_predict_xanes)
