"""profiles/slurm: a dry run with the SLURM executor plugin (no SLURM needed) gives every job a
partition and a runtime, training jobs a GPU on the GPU partition, and groups the per-shard
spectrum jobs; the plugin turns a training job's resources into `sbatch … --gpus=1`."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytest.importorskip("snakemake_executor_plugin_slurm",
                    reason="snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")

ROOT = Path(__file__).resolve().parents[1]
PROFILE = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
RULE_LINE = re.compile(r"^\s*(?:local)?rule (\w+):\s*$")


@functools.cache
def gpu_rules() -> frozenset[str]:
    """Every rule that declares `resources: gpu=` in workflow/rules/*.smk."""
    names = set()
    for path in (ROOT / "workflow/rules").glob("*.smk"):
        rule = None
        for line in path.read_text().splitlines():
            m = re.match(r"^\s*rule (\w+):", line)
            if m:
                rule = m.group(1)
            elif re.match(r"^\s+gpu=", line) and rule:
                names.add(rule)
    return frozenset(names)


def dry_run(tmp_path, configfile="config/config.yaml", timeout=300):
    """`snakemake -n --profile profiles/slurm` with results in tmp_path (every job of the DAG)."""
    results = tmp_path / "results.yaml"
    results.write_text(yaml.safe_dump({"results": str(tmp_path / "results")}))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm", "--configfile",
                             configfile, str(results)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def parse_jobs(text: str) -> list[dict]:
    """(rule, threads, resources, runs) of every job a dry run prints; target rules run nothing."""
    jobs, current = [], None
    for line in text.splitlines():
        m = RULE_LINE.match(line)
        if m:
            current = {"rule": m.group(1), "threads": 1, "resources": {}, "runs": True}
            jobs.append(current)
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("threads:"):
            current["threads"] = int(stripped.split(":", 1)[1])
        elif stripped.startswith("resources:"):
            current["resources"] = dict(kv.split("=", 1) for kv in re.split(r",\s*", stripped.split(":", 1)[1].strip()))
        elif stripped == "Shell command: None":
            current["runs"] = False
        elif not stripped:
            current = None
    return jobs


def job_stats(text: str) -> dict[str, int]:
    table = text.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            if counts:
                break
            continue
        counts[parts[0]] = int(parts[1])
    return counts


def test_profile_covers_every_training_rule():
    declared = gpu_rules()
    assert {"xrd_train", "pdf_train", "xanes_train", "mof_train", "compositions_cv", "padnet_train"} <= declared
    for rule in declared:
        assert PROFILE["set-resources"][rule]["slurm_partition"] == "gpu", rule
    for rule in PROFILE["groups"]:
        assert rule in {"ingest_shard", "xrd_profiles", "pdf_profiles", "pdf_deploy_profiles", "xrd_deploy_render",
                        "xanes_feff"}


def _sbatch(job: dict) -> str:
    """The plugin's own sbatch call for a job with these resources (no SLURM contacted)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        def __getattr__(self, name):
            return self[name]

    res = {k: (int(v) if v.isdigit() else v) for k, v in job["resources"].items()}
    stub = SimpleNamespace(resources=Resources(res), threads=job["threads"], name=job["rule"], is_group=lambda: False)
    params = {"run_uuid": "test", "slurm_logfile": "log", "comment_str": job["rule"], "account": "",
              "partition": f"-p {res['slurm_partition']}", "workdir": str(ROOT)}
    return get_submit_command(stub, params) + set_gres_string(stub)


def test_slurm_dry_run_paper_scale(tmp_path):
    text = dry_run(tmp_path, "config/paper.yaml", timeout=600)
    jobs = parse_jobs(text)
    stats = job_stats(text)
    assert stats.pop("total") == sum(stats.values()) == len(jobs) > 1500
    assert stats["ingest_shard"] == 400 and stats["pdf_profiles"] == 512 and stats["xanes_feff"] == 512
    declared = gpu_rules()
    submitted = [j for j in jobs if j["runs"]]
    for job in submitted:
        res = job["resources"]
        assert "slurm_partition" in res and "runtime" in res, job
        wants_gpu = int(res.get("gpu", 0)) > 0
        if job["rule"] in declared:
            assert res["slurm_partition"] == "gpu", job
            assert wants_gpu or job["rule"].startswith("compositions_"), job  # rf_* models: gpu=0
        else:
            assert not wants_gpu and res["slurm_partition"] == "cpu", job
    assert {j["rule"] for j in submitted if int(j["resources"].get("gpu", 0)) > 0} >= {
        "pdf_train", "xanes_train", "xanes_bundle", "mof_train", "compositions_cv", "compositions_learning_curve",
        "compositions_pretrain", "compositions_transfer", "padnet_train"}
    assert any(j["rule"] == "compositions_cv" and j["resources"]["gpu"] == "0" for j in jobs)  # random forests
    member = next(j for j in jobs if j["rule"] in ("xrd_train", "xrd_train_together"))
    sbatch = _sbatch(member)
    runtime = PROFILE["set-resources"][member["rule"]]["runtime"]
    # threads 4 (paper.yaml), capped by --cores: profiles/default's `cores: all` (this machine's cores)
    cpus = min(4, os.cpu_count())
    assert "--gpus=1" in sbatch and "-p gpu" in sbatch and f"--cpus-per-task={cpus}" in sbatch
    assert f"-t {runtime}" in sbatch
    cpu_job = next(j for j in jobs if j["rule"] == "xrd_dataset")
    assert "--gpus" not in _sbatch(cpu_job) and "-p cpu" in _sbatch(cpu_job)


def test_slurm_dry_run_default_config(tmp_path):
    jobs = [j for j in parse_jobs(dry_run(tmp_path)) if j["runs"]]
    assert jobs
    for job in jobs:
        assert "slurm_partition" in job["resources"] and "runtime" in job["resources"], job
    xrd = [j for j in jobs if j["rule"] in ("xrd_train", "xrd_train_together")]
    assert xrd and all(j["resources"]["gpu"] == "1" and j["resources"]["slurm_partition"] == "gpu" for j in xrd)


FAKE_SBATCH = """#!/bin/sh
n=$(($(cat "$FAKE_SLURM/count" 2>/dev/null || echo 0) + 1))
echo $n > "$FAKE_SLURM/count"
echo "$((4000 + n))" >> "$FAKE_SLURM/ids"
echo "sbatch $*" >> "$FAKE_SLURM/sbatch.log"
echo "$((4000 + n))"
"""
# every submitted job is reported FAILED at the first status check, so Snakemake stops at once
FAKE_SACCT = """#!/bin/sh
for id in $(cat "$FAKE_SLURM/ids" 2>/dev/null); do echo "$id|FAILED"; done
"""


def test_submissions_group_the_shards_and_request_gpus(tmp_path):
    """The real plugin against fake sbatch/sacct: placeholder inputs make the PDF profiles of the
    six AMCSD shards and one SpgNet member the only jobs; the six shards go out as one group job,
    the member as a GPU job on the GPU partition."""
    fake = tmp_path / "slurm"
    (fake / "bin").mkdir(parents=True)
    for name, text in {"sbatch": FAKE_SBATCH, "sacct": FAKE_SACCT, "squeue": "#!/bin/sh\n",
                       "scontrol": "#!/bin/sh\n", "sinfo": "#!/bin/sh\necho cpu*\n", "scancel": "#!/bin/sh\n"}.items():
        (fake / "bin" / name).write_text(text)
        (fake / "bin" / name).chmod(0o755)
    results = tmp_path / "results"
    configfile = tmp_path / "c.yaml"
    configfile.write_text(yaml.safe_dump({"results": str(results)}))
    # placeholders, older to newer along the DAG: shards -> δ-profiles -> SpgNet data set
    layers = [[f"structures/amcsd/{kind}-{i:03d}.parquet" for i in range(6) for kind in ("shard", "rejects")],
              [f"xrd/profiles/amcsd/{kind}-{i:03d}.parquet" for i in range(6) for kind in ("shard", "rejects")],
              ["xrd/dataset/dataset.parquet", "xrd/tables/table2.md", "xrd/tables/table2.csv", "xrd/tables/sets.md",
               "xrd/tables/validation_folds.csv"]]
    for age, layer in zip((300, 200, 100), layers):
        for name in layer:
            path = results / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("placeholder\n")
            stamp = path.stat().st_mtime - age
            os.utime(path, (stamp, stamp))
    targets = [str(results / f"pdf/profiles/standard/amcsd/shard-{i:03d}.parquet") for i in range(6)]
    targets.append(str(results / "xrd/models/spgnet/inf/fold1/seed1/model.pt"))
    env = dict(os.environ, PATH=f"{fake / 'bin'}{os.pathsep}{os.environ['PATH']}", FAKE_SLURM=str(fake))
    result = subprocess.run([sys.executable, "-m", "snakemake", *targets, "--snakefile", str(ROOT / "Snakefile"),
                             "--profile", str(ROOT / "profiles/slurm"), "--configfile",
                             str(ROOT / "config/config.yaml"), str(configfile), "--retries", "0",
                             "--slurm-init-seconds-before-status-checks", "1", "--slurm-no-account"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    calls = (fake / "sbatch.log").read_text().splitlines() if (fake / "sbatch.log").exists() else []
    assert len(calls) == 2, result.stdout[-3000:] + result.stderr[-3000:]
    group = next(c for c in calls if "group_pdf_spectra" in c)
    member = next(c for c in calls if "rule_xrd_train" in c)  # one seed, or all seeds with xrd.train.together
    rule = "xrd_train_together" if "rule_xrd_train_together" in member else "xrd_train"
    wanted = PROFILE["set-resources"][rule]
    assert group.count("pdf_profiles:") == 6 and "-p cpu" in group and "--gpus" not in group
    assert "--gpus=1" in member and "-p gpu" in member
    assert f"-t {wanted['runtime']}" in member and f"--mem {wanted['mem_mb']}" in member
