"""GPU slot allocator (xtalspec.utils.gpu_slots): simulated GPUs (XTALSPEC_GPU_COUNT), a private
lock folder, real concurrent processes. No GPU needed; a few seconds in all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xtalspec.utils import gpu_slots

SRC = str(Path(__file__).resolve().parents[1] / "src")

WORKER = """
import json, logging, os, sys, time
from xtalspec.utils import gpu_slots
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
hold, timeout = float(sys.argv[1]), float(sys.argv[2])
slot = gpu_slots.acquire(timeout_s=timeout)
record = {"pid": os.getpid(), "device": slot.device if slot else None,
          "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}
print(json.dumps(dict(record, event="acquired")), flush=True)
time.sleep(hold)
record["end"] = time.time()
print(json.dumps(dict(record, event="done")), flush=True)
"""


def _env(lock_dir: Path, count: int | None = None, visible: str | None = None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_VISIBLE_DEVICES", gpu_slots.ENV_COUNT, gpu_slots.ENV_LOCK_DIR, "SLURM_JOB_ID")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env[gpu_slots.ENV_LOCK_DIR] = str(lock_dir)
    env[gpu_slots.ENV_POLL] = "0.02"
    if count is not None:
        env[gpu_slots.ENV_COUNT] = str(count)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    env.update(extra)
    return env


def _start(env: dict, hold: float, timeout: float = 30.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, str(hold), str(timeout)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 30.0) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    done = [e for e in events if e["event"] == "done"]
    assert done, (out, err)
    return done[0] | {"stderr": err}


def _wait_acquired(proc: subprocess.Popen, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError("worker never acquired a slot")


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", gpu_slots.ENV_COUNT, gpu_slots.ENV_LOCK_DIR,
                "SLURM_JOB_ID"):
        monkeypatch.setenv(key, "")  # records the original state, restored afterwards
        monkeypatch.delenv(key)
    yield monkeypatch
    gpu_slots.release()


def test_concurrent_jobs_never_share_a_device(tmp_path):
    env = _env(tmp_path / "locks", count=3)
    procs = [_start(env, hold=0.6) for _ in range(6)]
    records = [_finish(p) for p in procs]
    devices = [r["device"] for r in records]
    assert set(devices) <= {"0", "1", "2"} and None not in devices
    assert all(r["visible"] == r["device"] for r in records)  # CUDA_VISIBLE_DEVICES = the slot
    assert len(set(devices)) >= 2  # jobs ran side by side, not one after another
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            if a["device"] == b["device"]:
                assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)
    # never more running jobs than slots
    for r in records:
        running = [o for o in records if o["start"] <= r["start"] < o["end"]]
        assert len(running) <= 3
    # three had to wait for a slot, and said so
    assert sum("busy" in r["stderr"] for r in records) >= 1
    note = json.loads((tmp_path / "locks" / "gpu-0.lock").read_text())
    assert {"pid", "host", "command", "device"} <= set(note)


def test_sigkilled_job_frees_its_slot(tmp_path):
    env = _env(tmp_path / "locks", count=1)
    holder = _start(env, hold=60)
    try:
        first = _wait_acquired(holder)
        assert first["device"] == "0"
        # while it lives the only slot is taken: a short wait gives up
        blocked = _finish(_start(env, hold=0, timeout=0.3))
        assert blocked["device"] is None and "busy" in blocked["stderr"]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    after = _finish(_start(env, hold=0, timeout=5))
    assert after["device"] == "0" and after["visible"] == "0"


def test_preset_visible_devices_are_respected(tmp_path):
    locks = tmp_path / "locks"
    env = _env(locks, visible="5,7")  # e.g. the devices SLURM or the user gave this job
    a, b = _start(env, hold=0.5), _start(env, hold=0.5)
    ra, rb = _finish(a), _finish(b)
    assert {ra["device"], rb["device"]} == {"5", "7"}
    assert sorted(p.name for p in locks.iterdir()) == ["gpu-5.lock", "gpu-7.lock"]
    # one device listed: nothing to choose, nothing locked, the variable untouched
    single = _finish(_start(_env(tmp_path / "single", visible="3"), hold=0))
    assert single["device"] == "3" and single["visible"] == "3"
    assert not (tmp_path / "single").exists()
    # UUID-style ids make safe lock names
    uuid = _finish(_start(_env(tmp_path / "uuid", visible="GPU-ab/c,GPU-def"), hold=0))
    assert uuid["device"] == "GPU-ab/c" and (tmp_path / "uuid" / "gpu-GPU-ab_c.lock").exists()


def test_no_gpu_is_a_no_op(tmp_path, clean_env):
    clean_env.setenv(gpu_slots.ENV_COUNT, "0")
    clean_env.setenv(gpu_slots.ENV_LOCK_DIR, str(tmp_path / "locks"))
    assert gpu_slots.acquire(timeout_s=0) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not (tmp_path / "locks").exists()
    # an empty CUDA_VISIBLE_DEVICES (or -1) means no GPU either
    clean_env.delenv(gpu_slots.ENV_COUNT)
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert gpu_slots.acquire(timeout_s=0) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "-1"


def _parse(*argv):
    from xtalspec.cli import build_parser

    return build_parser().parse_args(list(argv))


def test_training_commands_and_their_devices():
    xrd = ["xrd", "train", "--dataset", "d", "--model", "spgnet", "--fold", "1", "--seed", "1", "--out", "o"]
    assert gpu_slots.command_wants_gpu(_parse(*xrd))
    assert gpu_slots.requested_device(_parse(*xrd)) == ("auto", None)
    assert gpu_slots.requested_device(_parse(*xrd, "--device", "cpu")) == ("cpu", None)
    xanes = _parse("xanes", "train", "--dataset", "d", "--element", "V", "--model", "cnn", "--out", "o",
                   "--config", json.dumps({"device": "auto", "gpus_per_job": 0}))
    assert gpu_slots.requested_device(xanes) == ("auto", 0)
    mof = _parse("mof", "train", "--library", "l", "--size", "4", "--out-dir", "o",
                 "--config", json.dumps({"train": {"device": "cuda", "gpus_per_job": 1}}))
    assert gpu_slots.requested_device(mof) == ("cuda", 1)
    rf = _parse("compositions", "cv", "--dataset", "d", "--model", "rf_comp", "--out", "o")
    assert gpu_slots.requested_device(rf) == ("cpu", 0)
    assert not gpu_slots.command_wants_gpu(_parse("xrd", "report", "table3", "--predictions", "p", "--out-dir", "o"))


def test_every_training_command_declares_a_gpu():
    """The commands that train torch models (and only they) declare @wants_gpu."""
    from xtalspec.cli import build_parser

    def leaves(parser, path=()):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, child in action.choices.items():
                    yield from leaves(child, path + (name,))
        if not any(a.__class__.__name__ == "_SubParsersAction" for a in parser._actions):
            yield path, parser.get_default("func")

    declared = {path for path, func in leaves(build_parser()) if getattr(func, "wants_gpu", False)}
    assert declared == {
        ("xrd", "train"), ("xrd", "train-ensemble"), ("pdf", "train"), ("xanes", "train"), ("xanes", "bundle"),
        ("xanes", "train-cross"), ("xanes", "bundle-cross"), ("xrd", "deploy-train"), ("pdf", "deploy-train"),
        ("mof", "train"), ("compositions", "cv"), ("compositions", "learning-curve"), ("compositions", "pretrain"),
        ("compositions", "transfer"), ("padnet", "train")}


def test_a_new_training_command_gets_a_slot_without_editing_gpu_slots(tmp_path, clean_env, caplog):
    """A toy training command registered on the real parser (the registration API of xtalspec.cli)
    declares @wants_gpu and gets a GPU slot: CUDA_VISIBLE_DEVICES set and the lock held while it runs."""
    import types

    import torch

    from xtalspec import cli
    from xtalspec.cli.main import config_device

    seen = {}

    @gpu_slots.wants_gpu(device_of=config_device)
    def cmd_toy_train(args) -> int:
        model = torch.nn.Linear(3, 1)  # a toy model, trained one step on the CPU
        loss = model(torch.ones(2, 3)).pow(2).mean()
        loss.backward()
        seen["visible"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen["held"] = [row["held"] for row in gpu_slots.status()]  # inside, slot 0 is the only visible one
        seen["holder_pid"] = (gpu_slots.status()[0]["holder"] or {}).get("pid")
        seen["lock_taken"] = _lock_taken(tmp_path / "locks" / "gpu-0.lock")
        return 0

    def register(sub):
        toy = sub.add_parser("toy", help="a toy training command of this test")
        toy_sub = toy.add_subparsers(dest="toy_command", required=True)
        p = toy_sub.add_parser("train")
        p.add_argument("--config", default=None)
        p.set_defaults(func=cmd_toy_train)

    systems = [importlib_module(f"xtalspec.cli.{name}") for name in cli.SYSTEMS] + [types.SimpleNamespace(
        register=register)]
    parser = cli.build_parser(systems)
    clean_env.setenv(gpu_slots.ENV_COUNT, "2")
    clean_env.setenv(gpu_slots.ENV_LOCK_DIR, str(tmp_path / "locks"))
    caplog.set_level("INFO", logger="xtalspec.gpu")
    assert cli.main(["toy", "train"], parser=parser) == 0
    assert seen == {"visible": "0", "held": [True], "holder_pid": os.getpid(), "lock_taken": True}
    assert any("GPU slot 0 of 2" in r.getMessage() for r in caplog.records)
    # afterwards the slot is free again and the environment as it was
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert [row["held"] for row in gpu_slots.status()] == [False, False]
    # the same command asking for the CPU in its config gets no slot
    seen.clear()
    assert cli.main(["toy", "train", "--config", json.dumps({"device": "cpu"})], parser=parser) == 0
    assert seen["visible"] is None and seen["held"] == [False, False]
    assert not seen["lock_taken"]


def _lock_taken(path) -> bool:
    """Whether another open file description holds the flock on ``path``."""
    import fcntl

    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def importlib_module(name):
    import importlib

    return importlib.import_module(name)


def test_claim_for_command(tmp_path, clean_env):
    clean_env.setenv(gpu_slots.ENV_COUNT, "2")
    clean_env.setenv(gpu_slots.ENV_LOCK_DIR, str(tmp_path / "locks"))
    xrd = ["xrd", "train", "--dataset", "d", "--model", "spgnet", "--fold", "1", "--seed", "1", "--out", "o"]
    assert gpu_slots.claim_for_command(_parse(*xrd, "--device", "cpu")) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    slot = gpu_slots.claim_for_command(_parse(*xrd))
    assert slot.device == "0" and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    gpu_slots.release()
    clean_env.delenv("CUDA_VISIBLE_DEVICES")
    # gpus_per_job 0: Snakemake did not count the job against its gpu resource, so no GPU
    xanes = _parse("xanes", "train", "--dataset", "d", "--element", "V", "--model", "cnn", "--out", "o",
                   "--config", json.dumps({"device": "auto", "gpus_per_job": 0}))
    assert gpu_slots.claim_for_command(xanes) is None and os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_cli_takes_a_slot_before_training(tmp_path, clean_env, caplog, capsys):
    """`xtalspec.cli.main` claims the slot (and logs it) before the command runs."""
    from xtalspec.cli import main

    clean_env.setenv(gpu_slots.ENV_COUNT, "1")
    clean_env.setenv(gpu_slots.ENV_LOCK_DIR, str(tmp_path / "locks"))
    caplog.set_level("DEBUG")  # the failure is logged at debug level (the user sees it once, on stderr)
    code = main(["xrd", "train", "--dataset", str(tmp_path / "missing.parquet"), "--model", "spgnet", "--fold", "1",
                 "--seed", "1", "--out", str(tmp_path / "out")])
    assert code == 2 and "missing.parquet" in capsys.readouterr().err  # the dataset is missing …
    messages = [r.getMessage() for r in caplog.records]
    taken = next(i for i, m in enumerate(messages) if "GPU slot 0 of 1" in m)
    failed = next(i for i, m in enumerate(messages) if "missing.parquet" in m)
    assert taken < failed  # … but the slot was taken before the command ran
    # in-process, the command gives the slot back and leaves the environment as it was
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert gpu_slots.status()[0]["held"] is False


def test_busy_slots_auto_runs_on_the_cpu_and_cuda_fails(tmp_path, clean_env):
    locks = tmp_path / "locks"
    holder = _start(_env(locks, count=1), hold=60)
    try:
        _wait_acquired(holder)
        for key, value in ((gpu_slots.ENV_COUNT, "1"), (gpu_slots.ENV_LOCK_DIR, str(locks)),
                           (gpu_slots.ENV_WAIT, "0.2"), (gpu_slots.ENV_POLL, "0.02")):
            clean_env.setenv(key, value)
        xrd_args = ["xrd", "train", "--dataset", "d", "--model", "spgnet", "--fold", "1", "--seed", "1", "--out", "o"]
        with pytest.raises(RuntimeError, match="no free GPU slot"):
            gpu_slots.claim_for_command(_parse(*xrd_args, "--device", "cuda"))
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
        assert gpu_slots.claim_for_command(_parse(*xrd_args)) is None  # device auto
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # torch sees no GPU: cpu
    finally:
        holder.kill()
        holder.wait()
