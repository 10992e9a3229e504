"""``xtalspec fetch|ingest|summarize|spectrum``: the structure commands (download, read, clean and
relabel structures into Parquet shards; combine summaries; one spectrum of one structure)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("xtalspec")


def _cleaning_settings(args):
    from ..structures.cleaning import CleaningSettings

    return CleaningSettings(
        max_atoms=args.max_atoms,
        min_distance=args.min_distance,
        density_range=(args.density_min, args.density_max),
    )


def _fetch(source: str, cache: Path, args) -> None:
    if source == "cod":
        from ..structures.sources.cod import fetch_cod

        options = {"elements": args.elements, "exclude_elements": args.exclude_elements, "max_atoms": args.max_atoms,
                   "inorganic_only": not args.include_organic, "max_results": args.max_results}
        if args.base_url:
            options["base_url"] = args.base_url
        report = fetch_cod(options, cache)
        log.info("COD: %d downloaded, %d cached, %d rejected", len(report.downloaded), len(report.cached),
                 len(report.rejected))
    elif source == "mp":
        from ..structures.sources.mp import fetch_mp

        fetch_mp({"elements": args.elements, "max_atoms": args.max_atoms, "max_results": args.max_results,
                  "endpoint": args.base_url}, cache)
    else:
        raise SystemExit(f"xtalspec fetch: {source} is not a downloading source (use cod or mp)")


def cmd_fetch(args) -> int:
    _fetch(args.source, Path(args.cache), args)
    return 0


def cmd_ingest(args) -> int:
    from ..structures.ingest import ingest, iter_shard_paths, rejects_name
    from ..structures.sources import make_source
    from ..structures.summary import write_summary

    out = Path(args.out)
    path = args.path
    if args.source in ("cod", "mp") and path is None:
        path = str(out / "cache")
        _fetch(args.source, Path(path), args)
    source = make_source(args.source, {"path": path, "dataset": args.dataset})
    ingest(source, out, n_shards=args.n_shards, settings=_cleaning_settings(args), max_structures=args.max_structures,
           seed=args.seed, shards=args.shard, symprec=args.symprec, angle_tolerance=args.angle_tolerance)
    if args.shard is None and not args.no_summary:
        shards = list(iter_shard_paths(out, args.n_shards))
        summary = write_summary(shards, [out / rejects_name(i) for i in range(args.n_shards)], out)
        t = summary["totals"]
        print(f"{args.source}: {t['accepted']} accepted, {t['rejected']} rejected, "
              f"{t['relabelled']} relabelled ({t['relabelled_pct']} %) -> {out}")
    return 0


def cmd_summarize(args) -> int:
    from ..structures.summary import write_summary

    shards = [Path(p) for p in args.shards]
    rejects = [Path(p) for p in args.rejects]
    summary = write_summary(shards, rejects, Path(args.out))
    t = summary["totals"]
    print(f"{t['accepted']} structures accepted, {t['rejected']} rejected, {t['space_groups']} space groups")
    return 0


def cmd_spectrum_xanes(args) -> int:
    from ..spectra.feff import spectrum_xanes_cli

    spectrum_xanes_cli(args.cif, args.site, args.preset, args.out, args.timeout)
    print(f"wrote {args.out}")
    return 0


def register(sub) -> None:
    from ..structures.cleaning import CleaningSettings
    from ..structures.sources import SOURCE_NAMES
    from ..structures.symmetry import ANGLE_TOLERANCE, SYMPREC

    clean = CleaningSettings()  # the defaults of stand-alone use are the library's (the workflow passes its own)

    def add_download_options(p):
        p.add_argument("--elements", nargs="*", default=None, help="required elements (COD, MP)")
        p.add_argument("--exclude-elements", nargs="*", default=None, help="excluded elements (COD)")
        p.add_argument("--max-results", type=int, default=None, help="stop after this many entries")
        p.add_argument("--include-organic", action="store_true", help="COD: keep organic entries")
        p.add_argument("--base-url", default=None, help="server base URL (COD) or API endpoint (MP)")

    ingest = sub.add_parser("ingest", help="read, clean and relabel structures into Parquet shards")
    ingest.add_argument("--source", required=True, choices=SOURCE_NAMES)
    ingest.add_argument("--path", default=None, help="cif_dir: the folder; cod/mp: an existing download cache")
    ingest.add_argument("--out", required=True, help="output folder for shards, rejects and summary")
    ingest.add_argument("--n-shards", type=int, default=4)
    ingest.add_argument("--shard", type=int, nargs="*", default=None, help="only these shard numbers")
    ingest.add_argument("--max-structures", type=int, default=None, help="deterministic subset of this size")
    ingest.add_argument("--seed", type=int, default=0, help="seed of the subset choice")
    ingest.add_argument("--dataset", default="2019-ASR", help="coremof dataset (2014, 2019-ASR, 2019-FSR)")
    ingest.add_argument("--symprec", type=float, default=SYMPREC, help="spglib distance tolerance (Å)")
    ingest.add_argument("--angle-tolerance", type=float, default=ANGLE_TOLERANCE, help="spglib angle tolerance (degrees)")
    ingest.add_argument("--max-atoms", type=int, default=clean.max_atoms, help="reject cells with more sites")
    ingest.add_argument("--min-distance", type=float, default=clean.min_distance,
                        help="closest allowed full-occupancy pair (Å)")
    ingest.add_argument("--density-min", type=float, default=clean.density_range[0], help="g/cm^3")
    ingest.add_argument("--density-max", type=float, default=clean.density_range[1], help="g/cm^3")
    ingest.add_argument("--no-summary", action="store_true")
    add_download_options(ingest)
    ingest.set_defaults(func=cmd_ingest)

    fetch = sub.add_parser("fetch", help="download structures (COD, Materials Project) into a cache folder")
    fetch.add_argument("--source", required=True, choices=["cod", "mp"])
    fetch.add_argument("--cache", required=True)
    fetch.add_argument("--max-atoms", type=int, default=None)
    add_download_options(fetch)
    fetch.set_defaults(func=cmd_fetch)

    summ = sub.add_parser("summarize", help="combine shards and rejects into one summary")
    summ.add_argument("--shards", nargs="+", required=True)
    summ.add_argument("--rejects", nargs="*", default=[])
    summ.add_argument("--out", required=True)
    summ.set_defaults(func=cmd_summarize)

    spectrum = sub.add_parser("spectrum", help="one spectrum of one structure")
    ssub = spectrum.add_subparsers(dest="spectrum_kind", required=True)
    xanes = ssub.add_parser("xanes", help="FEFF10 K-edge XANES of one absorbing site")
    xanes.add_argument("cif")
    xanes.add_argument("--site", type=int, required=True, help="index of the absorbing site in the CIF's cell")
    xanes.add_argument("--preset", choices=["fast", "reference"], default="fast")
    xanes.add_argument("--timeout", type=float, default=3600.0, help="seconds before the FEFF run is killed")
    xanes.add_argument("-o", "--out", required=True, help="CSV: energy_eV, mu")
    xanes.set_defaults(func=cmd_spectrum_xanes)
