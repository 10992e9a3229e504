"""``xtalspec``'s parser, logging, SIGTERM handling and GPU-slot hook.

Every system module of :mod:`xtalspec.cli` has ``register(sub)``, which adds its commands to the
subparsers ``sub``; :func:`build_parser` calls them in turn (``systems`` adds others, e.g. a test's
toy command). A training command declares that it wants a GPU with
:func:`xtalspec.utils.gpu_slots.wants_gpu` on its command function; :func:`run` asks the parsed
command (not a list of names) and takes a slot for it before the command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings

log = logging.getLogger("xtalspec")

DESCRIPTION = "Command line: ``xtalspec <command>``. Workflow rules call these; so can users."

#: the modules (of this package) whose ``register(sub)`` adds the commands, in help order
SYSTEMS = ("structures", "xrd", "pdf", "xanes", "mof", "compositions", "thesis", "bench", "validate")


def json_arg(text: str | None):
    """A ``--config``/``--options`` JSON argument (None when not given)."""
    return json.loads(text) if text else None


def config_device(args) -> tuple[str, int | None]:
    """(device, gpus_per_job) of a training command configured by JSON: ``--device`` if the command
    has one, else ``device`` / ``train.device`` of its ``--config`` (default ``auto``);
    ``gpus_per_job`` likewise (None when not given)."""
    try:
        cfg = json.loads(getattr(args, "config", None) or "{}")
    except ValueError:
        cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    device = getattr(args, "device", None) or cfg.get("device") or train.get("device") or "auto"
    gpus = cfg.get("gpus_per_job", train.get("gpus_per_job"))
    return str(device), (int(gpus) if gpus is not None else None)


def build_parser(systems=None) -> argparse.ArgumentParser:
    """The whole ``xtalspec`` parser. ``systems``: modules (or objects) with ``register(sub)``;
    default the modules named in :data:`SYSTEMS`."""
    import importlib

    if systems is None:
        systems = [importlib.import_module(f"{__package__}.{name}") for name in SYSTEMS]
    parser = argparse.ArgumentParser(prog="xtalspec", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for system in systems:
        system.register(sub)
    return parser


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (``--top``, ``--n-atoms``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def share(text: str) -> float:
    """argparse type: a share of a set, 0 < value <= 1 (``--fraction``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {value}")
    return value


def _exit_on_sigterm(signum, frame):
    """SIGTERM (Snakemake cancelling a job, SLURM's scancel) unwinds like Ctrl-C: ``finally``
    blocks run, temporary files are removed and FEFF child process groups are killed."""
    raise SystemExit(128 + signum)


def run(args) -> int:
    """Run one parsed command: logging, then (a command that wants a GPU) a slot, then ``args.func``."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        warnings.simplefilter("ignore")  # pymatgen's parser warnings are captured per CIF as reject details
    try:
        from ..utils.gpu_slots import gpu_slot_for_command

        with gpu_slot_for_command(args):  # training commands: a free GPU of their own, before CUDA starts
            return args.func(args)
    except (ValueError, OSError, RuntimeError, MemoryError) as exc:  # PatternError is a ValueError
        # said once, on stderr (the log goes there too): the file and the problem
        message = str(exc) or type(exc).__name__
        if isinstance(exc, MemoryError):
            message = "out of memory (is an input file far larger than a measured data file?)"
        log.debug("command failed: %s", message)  # in the log with -v; the user sees the line below once
        print(f"xtalspec: error: {message}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    import signal

    if argv is None:  # the console script, not a test calling main([...])
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = (parser or build_parser()).parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
