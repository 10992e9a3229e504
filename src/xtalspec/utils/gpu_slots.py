"""One GPU per job on a multi-GPU workstation: a lock-file slot allocator.

Snakemake counts ``--resources gpu=N`` but does not tell a job *which* GPU to use, so every
training job would otherwise start on ``cuda:0``. A training command declares that it wants a GPU
(:func:`wants_gpu` on its command function, with how to read its device from the parsed
arguments); ``xtalspec.cli.main`` then calls :func:`acquire` (through :func:`gpu_slot_for_command`)
before anything touches CUDA:

* the slots are the GPUs of the machine: ``XTALSPEC_GPU_COUNT`` if set (tests simulate GPUs
  that way), else the devices listed in a pre-set ``CUDA_VISIBLE_DEVICES`` (SLURM sets it to
  the job's allocation), else ``nvidia-smi -L``, ``/proc/driver/nvidia/gpus`` or, last, a
  ``torch.cuda.device_count()`` run in a *child* process (CUDA is never initialised here);
* slot ``i`` is held by an exclusive, non-blocking ``flock`` on ``<lock_dir>/gpu-<i>.lock``
  (``XTALSPEC_GPU_LOCK_DIR``, default a per-user folder in the system temp dir). The file stays
  open for the life of the process: a job that crashes or is killed (even with SIGKILL) frees
  its slot because the kernel drops the lock. The file's text (pid, host, command) is for
  humans; the lock, not the text, says whether the slot is taken;
* the process then sets ``CUDA_VISIBLE_DEVICES`` to that device, so ``cuda:0`` inside it is the
  slot's GPU. ``CUDA_DEVICE_ORDER`` defaults to ``PCI_BUS_ID`` so indices match ``nvidia-smi``;
* a pre-set ``CUDA_VISIBLE_DEVICES`` is respected: with exactly one device listed nothing is
  done, with several the slot is chosen among those ids only, with none (``""``) there is
  nothing to share;
* when every slot is busy the job waits (``XTALSPEC_GPU_WAIT_S``, default 600 s, polling every
  ``XTALSPEC_GPU_POLL_S``), logging who holds them. Snakemake's ``gpu`` resource normally makes
  that impossible; if the wait runs out, ``device=auto`` falls back to the CPU and
  ``device=cuda`` fails.

``python -m xtalspec.utils.gpu_slots`` lists the slots and their holders.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("xtalspec.gpu")

ENV_COUNT = "XTALSPEC_GPU_COUNT"
ENV_LOCK_DIR = "XTALSPEC_GPU_LOCK_DIR"
ENV_WAIT = "XTALSPEC_GPU_WAIT_S"
ENV_POLL = "XTALSPEC_GPU_POLL_S"
DEFAULT_WAIT_S = 600.0
DEFAULT_POLL_S = 2.0

_HELD: list["Slot"] = []  # slots of this process: their fds stay open until the process ends


@dataclass
class Slot:
    device: str          # the id written to CUDA_VISIBLE_DEVICES
    lock_path: Path | None
    fd: int | None


def lock_dir() -> Path:
    """``XTALSPEC_GPU_LOCK_DIR``, else ``<tmp>/xtalspec-gpu-<uid>`` (``-job<id>`` inside a SLURM job,
    whose device ids are relative to its own allocation)."""
    env = os.environ.get(ENV_LOCK_DIR)
    if env:
        return Path(env)
    name = f"xtalspec-gpu-{os.getuid()}"
    if os.environ.get("SLURM_JOB_ID"):
        name += f"-job{os.environ['SLURM_JOB_ID']}"
    return Path(tempfile.gettempdir()) / name


def _visible_list(value: str) -> list[str]:
    ids = [v.strip() for v in value.split(",") if v.strip()]
    # CUDA stops at the first invalid id ("-1" hides every device)
    out = []
    for v in ids:
        if v.startswith("-"):
            break
        out.append(v)
    return out


def _count_nvidia_smi() -> int | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def _count_proc() -> int | None:
    root = Path("/proc/driver/nvidia/gpus")
    try:
        return sum(1 for p in root.iterdir() if p.is_dir()) if root.is_dir() else None
    except OSError:
        return None


def _count_torch_child() -> int | None:
    """``torch.cuda.device_count()`` in a child process (only for a CUDA/ROCm build of torch):
    calling it here would fix this process' visible devices before ``CUDA_VISIBLE_DEVICES`` is
    set. Importing torch here is safe (it does not initialise CUDA) and the commands need it anyway."""
    try:
        import torch
    except ImportError:
        return None
    if not (torch.version.cuda or getattr(torch.version, "hip", None)):
        return 0
    try:
        code = "import torch; print(torch.cuda.device_count())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        return int(out.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def gpu_ids() -> tuple[list[str], str]:
    """(device ids that are slots, where they came from). An empty list means: no GPUs to share."""
    env = os.environ.get(ENV_COUNT)
    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if preset is not None:
        ids = _visible_list(preset)
        if env is not None:  # simulated count inside a pre-set list: the first N listed
            ids = ids[: max(0, int(env))]
        return ids, "CUDA_VISIBLE_DEVICES"
    if env is not None:
        return [str(i) for i in range(max(0, int(env)))], ENV_COUNT
    for how, count in (("nvidia-smi -L", _count_nvidia_smi), ("/proc/driver/nvidia", _count_proc),
                       ("torch.cuda.device_count", _count_torch_child)):
        n = count()
        if n is not None:
            return [str(i) for i in range(n)], how
    return [], "none found"


def _lock_name(device: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", device)
    return f"gpu-{safe}.lock"


def _describe_holders(paths: list[Path]) -> str:
    parts = []
    for path in paths:
        try:
            info = json.loads(path.read_text() or "{}")
            parts.append(f"{path.stem}: pid {info.get('pid')} on {info.get('host')} ({info.get('command', '')[:80]})")
        except (OSError, ValueError):
            parts.append(f"{path.stem}: ?")
    return "; ".join(parts)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held by another process
        os.close(fd)
        return None
    return fd


def _write_info(fd: int, device: str) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "device": device,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv)}
    data = (json.dumps(info) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def acquire(timeout_s: float | None = None, poll_s: float | None = None, set_env: bool = True) -> Slot | None:
    """Take a free GPU slot and (``set_env``) point ``CUDA_VISIBLE_DEVICES`` at it.

    Returns the slot; ``Slot(device, None, None)`` when a pre-set ``CUDA_VISIBLE_DEVICES`` lists
    exactly one device (nothing to choose); ``None`` when there is no GPU, or when every slot
    stayed busy for ``timeout_s`` seconds. Calling it again in the same process returns the
    slot already held.
    """
    if _HELD:
        return _HELD[0]
    ids, source = gpu_ids()
    if not ids:
        log.debug("no GPU (%s): nothing to allocate", source)
        return None
    if source == "CUDA_VISIBLE_DEVICES" and len(ids) == 1:
        log.info("GPU: CUDA_VISIBLE_DEVICES=%s is already one device; using it", ids[0])
        return Slot(ids[0], None, None)
    timeout_s = float(os.environ.get(ENV_WAIT, DEFAULT_WAIT_S)) if timeout_s is None else timeout_s
    poll_s = float(os.environ.get(ENV_POLL, DEFAULT_POLL_S)) if poll_s is None else poll_s
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = [folder / _lock_name(d) for d in ids]
    start = time.monotonic()
    waited = False
    while True:
        for device, path in zip(ids, paths):
            fd = _try_lock(path)
            if fd is None:
                continue
            _write_info(fd, device)
            slot = Slot(device, path, fd)
            _HELD.append(slot)
            if set_env:
                _set_visible(device)
            log.info("GPU slot %s of %d (%s) taken%s: CUDA_VISIBLE_DEVICES=%s, lock %s", device, len(ids), source,
                     f" after {time.monotonic() - start:.1f} s" if waited else "", device, path)
            return slot
        elapsed = time.monotonic() - start
        if elapsed >= timeout_s:
            log.warning("every GPU slot still busy after %.0f s (%s)", elapsed, _describe_holders(paths))
            return None
        if not waited:
            log.warning("all %d GPU slots are busy (%s); waiting up to %.0f s for one to free. Snakemake's "
                        "--resources gpu=N normally prevents this: is N larger than the number of GPUs, or is "
                        "another program holding them? (lock folder %s)", len(ids), _describe_holders(paths),
                        timeout_s, folder)
            waited = True
        time.sleep(min(poll_s, timeout_s - elapsed))


def _set_visible(device: str) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.cuda, "is_initialized", lambda: False)():
        log.warning("CUDA was initialised before the GPU slot was taken; CUDA_VISIBLE_DEVICES=%s has no effect",
                    device)
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ["CUDA_VISIBLE_DEVICES"] = device


def release() -> None:
    """Give the slots of this process back (also happens when the process ends)."""
    while _HELD:
        slot = _HELD.pop()
        if slot.fd is not None:
            os.close(slot.fd)


def wants_gpu(func=None, *, device_of=None):
    """Decorator for a command function that trains a torch model: :func:`claim_for_command` (from
    ``xtalspec.cli.main``) gives it a GPU slot before it runs. ``device_of(args) -> (device,
    gpus_per_job)`` tells which device the parsed command asks for (``gpus_per_job`` None when not
    given); without it, ``args.device`` or ``auto``. The allocator asks the command, not a list of
    names::

        @wants_gpu                       # device from --device (default auto)
        def cmd_train(args): ...

        @wants_gpu(device_of=read_it)    # e.g. from the command's --config JSON
        def cmd_fit(args): ...
    """
    def mark(command):
        command.wants_gpu = True
        command.device_of = device_of or _flag_device
        return command

    return mark(func) if func is not None else mark


def _flag_device(args) -> tuple[str, int | None]:
    return str(getattr(args, "device", None) or "auto"), None


def command_wants_gpu(args) -> bool:
    """Whether the parsed command (its ``func``) declared :func:`wants_gpu`."""
    return bool(getattr(getattr(args, "func", None), "wants_gpu", False))


def requested_device(args) -> tuple[str, int | None]:
    """(device, gpus_per_job) the parsed training command asks for, from its own ``device_of``;
    ``("cpu", 0)`` for a command that wants no GPU."""
    if not command_wants_gpu(args):
        return "cpu", 0
    device, gpus = args.func.device_of(args)
    return str(device), (int(gpus) if gpus is not None else None)


def claim_for_command(args) -> Slot | None:
    """Called by ``xtalspec.cli.main`` before the command runs: a command that declared
    :func:`wants_gpu` and whose device is ``auto`` or ``cuda`` takes a GPU slot. ``auto`` with ``gpus_per_job: 0`` in its config (the job
    is not counted against Snakemake's gpu resource) hides the GPUs instead; ``auto`` without a
    free slot after the wait runs on the CPU; ``cuda`` without one fails."""
    if not command_wants_gpu(args):
        return None
    device, gpus = requested_device(args)
    kind = device.split(":")[0]
    if kind not in ("auto", "cuda"):
        return None
    if kind == "auto" and gpus == 0:
        if os.environ.get("CUDA_VISIBLE_DEVICES") != "":
            log.info("gpus_per_job is 0: running on the CPU (CUDA_VISIBLE_DEVICES='')")
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return None
    slot = acquire()
    if slot is None and gpu_ids()[0]:
        if kind == "cuda":
            raise RuntimeError("no free GPU slot (see the warnings above); device=cuda cannot fall back to the CPU")
        log.warning("no free GPU slot: device=auto runs on the CPU")
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return slot


@contextlib.contextmanager
def gpu_slot_for_command(args):
    """:func:`claim_for_command` for the length of a command: afterwards the slot is given back and
    ``CUDA_VISIBLE_DEVICES`` restored (it matters for commands run in-process, e.g. by tests; a
    console command ends with its process anyway)."""
    saved = {key: os.environ.get(key) for key in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
    held_before = bool(_HELD)
    try:
        yield claim_for_command(args)
    finally:
        if not held_before:
            release()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def status() -> list[dict]:
    """Every slot: device, lock file, whether it is held now, and the last holder's note."""
    ids, source = gpu_ids()
    folder = lock_dir()
    rows = []
    for device in ids:
        path = folder / _lock_name(device)
        held = False
        if path.exists():
            fd = _try_lock(path)
            held = fd is None
            if fd is not None:
                os.close(fd)
        try:
            note = json.loads(path.read_text() or "{}") if path.exists() else {}
        except (OSError, ValueError):
            note = {}
        rows.append({"device": device, "source": source, "lock": str(path), "held": held,
                     "holder": note if held else None})
    return rows


if __name__ == "__main__":
    for row in status():
        print(json.dumps(row))
