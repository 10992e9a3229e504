"""Bench section ``rules``: wall times of the last pipeline run from Snakemake's ``benchmark:``
files under ``<out-dir>/rules`` (reads files only): per rule (its wildcard instances together),
jobs, total, median and max seconds; per stage (the first folder) totals."""

from __future__ import annotations

import datetime as _dt
import re
import statistics
from pathlib import Path


def read_benchmark_tsv(path) -> list[dict]:
    """Rows of one Snakemake benchmark file (columns s, h:m:s, max_rss, ...); numbers as floats,
    'NA'/'-'/empty as None."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty file")
    header = lines[0].split("\t")
    if "s" not in header:
        raise ValueError(f"no 's' column in header {header}")
    rows = []
    for line in lines[1:]:
        row = {}
        for key, value in zip(header, line.split("\t")):
            value = value.strip()
            if key == "h:m:s":
                row[key] = value
                continue
            try:
                row[key] = float(value)
            except ValueError:
                row[key] = None
        rows.append(row)
    if not rows or rows[0].get("s") is None:
        raise ValueError("no timing row")
    return rows


def workflow_rules_dir() -> Path | None:
    """``workflow/rules`` of the checkout (editable install) or of the current folder."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (root / "workflow" / "rules").is_dir():
            return root / "workflow" / "rules"
    return None


_RULE = re.compile(r"^[ \t]*(?:rule|checkpoint)[ \t]+(\w+)[ \t]*:", re.M)
_BENCH = re.compile(r"benchmark:\s*\n\s*BENCH\s*/\s*\"([^\"]+)\"")


def rule_patterns(rules_dir) -> list[tuple[str, re.Pattern]]:
    """(rule name, regex of its benchmark path relative to BENCH) from the workflow's ``*.smk``
    files; literal paths first, then patterns with fewer wildcards and longer literal parts."""
    found = []
    if rules_dir is None or not Path(rules_dir).is_dir():
        return found
    for smk in sorted(Path(rules_dir).glob("*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in _RULE.finditer(text)] + [(len(text), None)]
        for (start, name), (end, _) in zip(starts, starts[1:]):
            match = _BENCH.search(text, start, end)
            if not match:
                continue
            template, regex, pos, wildcards = match.group(1), "", 0, 0
            for wc in re.finditer(r"\{([^{}]+)\}", template):
                regex += re.escape(template[pos:wc.start()])
                constraint = wc.group(1).split(",", 1)[1] if "," in wc.group(1) else r"[^/]+"
                regex += f"(?:{constraint})"
                pos, wildcards = wc.end(), wildcards + 1
            regex += re.escape(template[pos:])
            literal = len(re.sub(r"\{[^{}]+\}", "", template))
            found.append((wildcards, -literal, name, re.compile(regex)))
    return [(name, pattern) for _, _, name, pattern in sorted(found, key=lambda t: t[:2])]


def _fallback_rule(relative: str) -> str:
    """A rule key from the path alone: its folders and the file name up to the first '-'."""
    parts = relative.split("/")
    stem = parts[-1][: -len(".tsv")] if parts[-1].endswith(".tsv") else parts[-1]
    return "/".join(parts[:-1] + [stem.split("-")[0]])


def collect_rule_benchmarks(bench_dir, rules_dir="auto") -> dict:
    """Per rule and per stage wall times from the ``*.tsv`` files under ``bench_dir``.

    A file's rule is the workflow rule whose ``benchmark:`` path matches it (``rules_dir``: the
    ``*.smk`` folder; "auto" finds the checkout's, None uses paths only), else its folders plus
    the file name up to the first '-'. Its stage is its first folder. A file with several rows
    (Snakemake's ``repeat()``) counts as one job with the mean of its rows."""
    bench_dir = Path(bench_dir)
    patterns = rule_patterns(workflow_rules_dir() if rules_dir == "auto" else rules_dir)
    jobs, unreadable = [], []
    files = sorted(bench_dir.rglob("*.tsv")) if bench_dir.is_dir() else []
    for path in files:
        relative = path.relative_to(bench_dir).as_posix()
        try:
            rows = read_benchmark_tsv(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            unreadable.append({"file": relative, "error": str(exc)})
            continue
        seconds = statistics.fmean(r["s"] for r in rows if r.get("s") is not None)
        rss = [r["max_rss"] for r in rows if r.get("max_rss") is not None]
        rule = next((name for name, pattern in patterns if pattern.fullmatch(relative)), None)
        jobs.append({"file": relative, "rule": rule or _fallback_rule(relative), "matched": rule is not None,
                     "stage": relative.split("/")[0] if "/" in relative else "(top)", "s": seconds,
                     "max_rss_mb": max(rss) if rss else None, "mtime": path.stat().st_mtime})
    rules: dict[str, dict] = {}
    for job in jobs:
        rules.setdefault(job["rule"], {"stage": job["stage"], "times": [], "rss": [], "matched": job["matched"]})
        entry = rules[job["rule"]]
        entry["times"].append(job["s"])
        if job["max_rss_mb"] is not None:
            entry["rss"].append(job["max_rss_mb"])
    rule_rows = []
    for name, entry in rules.items():
        t = entry["times"]
        rule_rows.append({"rule": name, "stage": entry["stage"], "count": len(t), "total_s": sum(t),
                          "median_s": statistics.median(t), "max_s": max(t),
                          "max_rss_mb": max(entry["rss"]) if entry["rss"] else None,
                          "grouped_by": "workflow rule" if entry["matched"] else "path"})
    rule_rows.sort(key=lambda r: (r["stage"], -r["total_s"], r["rule"]))
    stages: dict[str, dict] = {}
    for row in rule_rows:
        s = stages.setdefault(row["stage"], {"stage": row["stage"], "rules": 0, "count": 0, "total_s": 0.0,
                                             "max_s": 0.0})
        s["rules"] += 1
        s["count"] += row["count"]
        s["total_s"] += row["total_s"]
        s["max_s"] = max(s["max_s"], row["max_s"])
    stage_rows = sorted(stages.values(), key=lambda s: -s["total_s"])

    def stamp(t):
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")

    return {"bench_dir": str(bench_dir), "n_files": len(files), "n_jobs": len(jobs), "rules": rule_rows,
            "stages": stage_rows, "total_s": sum(j["s"] for j in jobs), "unreadable": unreadable,
            "oldest_file": stamp(min(j["mtime"] for j in jobs)) if jobs else None,
            "newest_file": stamp(max(j["mtime"] for j in jobs)) if jobs else None}


def section_rules(bench_dir) -> dict:
    result = collect_rule_benchmarks(bench_dir)
    params = {"bench_dir": str(bench_dir), "time": "column s (wall seconds) of each benchmark file",
              "grouping": "rule: the workflow rule whose benchmark: path matches (else folders + name "
                          "before the first '-'); stage: first folder"}
    out = {"parameters": params, "results": result, "ratios": {}}
    if not result["n_jobs"]:
        out["note"] = f"no Snakemake benchmark files under {bench_dir} (run the pipeline first)"
    return out
