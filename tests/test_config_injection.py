"""No config value can run a command: every free string key of config/schema.yaml gets a
shell-breaking payload, Snakemake's dry run prints every job's shell command, and each command
is run by bash with a stand-in ``xtalspec`` — a payload that escaped its quoting would create
its marker file. (Enumerated string keys cannot hold a payload: the schema refuses it, which
is tested too.)
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = ("x\"}' || true; touch MARKER; echo '", "$(touch MARKER) `touch MARKER` ; touch MARKER #")
#: what switches a key's feature on, so that its value reaches a rule
ENABLE = {
    "structures": {"sources": {"cif_dir": {"enabled": True}, "cod": {"enabled": True}, "mp": {"enabled": True}}},
    "thesis": {"compositions": {"sources": ["janaf", "oqmd", "mp"]}},
}


def free_string_keys() -> list[tuple[str, ...]]:
    """Paths of the schema's string keys without an enum (``[]`` marks a list item); a key with a
    ``pattern`` is listed with ``!`` in front of its last part (its payload leaves out braces)."""
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    found = []

    def walk(node, path):
        kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
        if "string" in kinds and "enum" not in node:
            found.append(path[:-1] + ("!" + path[-1],) if "pattern" in node else path)
        for key, child in (node.get("properties") or {}).items():
            walk(child, path + (key,))
        items = node.get("items")
        if isinstance(items, dict):
            item_kinds = items.get("type") if isinstance(items.get("type"), list) else [items.get("type")]
            if "string" in item_kinds and "enum" not in items:
                found.append(path + ("[]",))
            elif items.get("properties"):
                walk(items, path + ("[]",))

    walk(schema, ())
    return found


def _set(config: dict, path: tuple[str, ...], value) -> None:
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if path[-1] == "[]":
        raise AssertionError("list keys are set by their parent")
    node[path[-1]] = value


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _stub_bin(folder: Path) -> Path:
    folder.mkdir()
    for name in ("xtalspec",):
        path = folder / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.parametrize("variant", range(len(PAYLOADS)))
def test_no_config_string_reaches_the_shell_unquoted(tmp_path, variant):
    keys = free_string_keys()
    assert ("thesis", "compositions", "oqmd", "filter") in keys and ("!results",) in keys
    config, markers = _merge({}, ENABLE), {}
    for n, path in enumerate(keys):
        marker = f"MARKER_{n}"
        value = PAYLOADS[variant].replace("MARKER", marker)
        if path[-1].startswith("!"):
            path, value = path[:-1] + (path[-1][1:],), value.replace("{", "").replace("}", "")
        markers[marker] = ".".join(path)
        if path[-1] == "[]":
            _set(config, path[:-1], [value])
        else:
            _set(config, path, value)
    (tmp_path / "payload.yaml").write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    work.mkdir()
    # files named by path keys are rule inputs: they must exist (named by the payloads)
    from xtalspec.datasets.xanes_cache import rejects_path_for

    (work / config["mof"]["measured_noise_dir"]).mkdir()
    for name in (config["mof"]["measured_test"], *config["validation"].values()):
        (work / name).write_text("file,label\n")
    for name in (config["xanes"]["feff"]["cache"], rejects_path_for(config["xanes"]["feff"]["cache"])):
        (work / name).write_bytes(b"")
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work), "--configfile",
         str(ROOT / "config" / "config.yaml"), str(tmp_path / "payload.yaml"), "-n", "-p", "--cores", "1", "all",
         "benchmark", "validate"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    commands = [line.split("Shell command: ", 1)[1] for line in (dry.stdout + dry.stderr).splitlines()
                if "Shell command: " in line]
    assert len(commands) > 50
    reached = {m for m in markers if any(m in c for c in commands)}
    # the keys that reach a shell command at all (the others only select or are read by Python)
    for key in ("results", "thesis.compositions.oqmd.filter", "thesis.compositions.oqmd.base_url",
                "structures.sources.cod.base_url", "structures.sources.cif_dir.path", "xanes.feff.cache",
                "validation.xrd"):
        assert any(markers[m] == key for m in reached), key
    env = dict(os.environ, PATH=f"{_stub_bin(tmp_path / 'bin')}:{os.environ['PATH']}")
    for command in commands:
        subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, timeout=30)
    escaped = sorted(markers[p.name] for p in work.rglob("MARKER_*") if re.fullmatch(r"MARKER_\d+", p.name))
    assert not escaped, f"config values ran a command: {escaped}"


@pytest.mark.parametrize("payload", [{"xrd": {"train": {"device": "cpu; touch MARKER"}}},
                                     {"results": "res}' || touch MARKER; echo '{"}])
def test_enumerated_and_patterned_keys_refuse_a_payload(tmp_path, payload):
    (tmp_path / "payload.yaml").write_text(yaml.safe_dump(payload))
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile",
         str(ROOT / "config" / "config.yaml"), str(tmp_path / "payload.yaml"), "-n", "--cores", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert dry.returncode != 0 and next(iter(payload)) in dry.stdout + dry.stderr
    assert not list(tmp_path.rglob("MARKER*"))
