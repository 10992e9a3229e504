"""The benchmark record as ``benchmarks.json`` and ``benchmarks.md``: a summary table of every
section (ratio and the absolute numbers beside it), the training and pipeline-rule tables, and
every section's parameters."""

from __future__ import annotations

import json
from pathlib import Path


def _num(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _threads_text(threads) -> str:
    if isinstance(threads, dict):
        return ", ".join(f"{name} {n}" for name, n in threads.items()) or "–"
    return str(threads)


def _summary_rows(name: str, entry: dict) -> list[tuple[str, str, str]]:
    """(measure, ratio, beside) rows of one ok section for the summary table."""
    r, res = entry.get("ratios", {}), entry.get("results", {})
    p = entry.get("parameters", {})
    if name == "xrd":
        return [("pymatgen / δ-profile (ms per structure)", f"{_num(r['pymatgen_over_delta_profile'])}×",
                 f"{_num(res['ms_per_structure_delta'], 2)} vs {_num(res['ms_per_structure_pymatgen'])} ms; "
                 f"{p['n_structures']} AMCSD structures")]
    if name == "powder":
        n = len(p["structures"])
        return [("pymatgen / our sticks (like for like, one BLAS thread)", f"{_num(r['pymatgen_over_sticks'])}×",
                 f"{_num(res['median_ms_sticks'], 2)} vs {_num(res['median_ms_pymatgen'])} ms; median of {n} MOFs"),
                ("pymatgen / our full pattern (sticks + broadening, one BLAS thread)",
                 f"{_num(r['pymatgen_over_pattern'])}×", f"{_num(res['median_ms_pattern'], 2)} ms per pattern"),
                (f"{n} MOF{'s' if n != 1 else ''} together: pymatgen (one thread) / our patterns with the "
                 "BLAS defaults",
                 f"{_num(r['pymatgen_one_thread_over_pattern_blas_defaults_all'])}×",
                 f"{_num(r['pattern_defaults_over_one_thread'], 2)} of the one-thread ratio "
                 f"{_num(r['pymatgen_over_pattern_all'])}× "
                 f"({'within' if res['defaults_within_20_percent_of_one_thread'] else 'NOT within'} 20 %): "
                 f"ours {_num(res['total_ms_pattern_blas_defaults'], 2)} vs {_num(res['total_ms_pattern'], 2)} ms "
                 f"in total; "
                 f"default BLAS threads: {_threads_text(p.get('blas_default_threads'))}"),
                ("pymatgen / our full pattern, both with the BLAS defaults",
                 f"{_num(r['pymatgen_over_pattern_blas_defaults'])}×",
                 f"sticks {_num(r['pymatgen_over_sticks_blas_defaults'])}×; pymatgen itself "
                 f"{_num(res['pymatgen_slowdown_blas_defaults'], 2)}× slower with the defaults "
                 f"({_num(res['median_ms_pymatgen_blas_defaults'])} ms)")]
    if name == "pdf":
        rate = f"{_num(res['structures_per_s_ours'])} structures/s ({_num(res['ms_per_structure_ours'], 2)} ms)"
        if "pdffit2_over_ours" in r:
            return [("PDFfit2 / ours (ms per structure)", f"{_num(r['pdffit2_over_ours'])}×",
                     f"{rate} vs {_num(res['ms_per_structure_pdffit2'], 2)} ms PDFfit2; {p['n_structures']} AMCSD")]
        return [("our PDFs per second (PDFfit2 not installed)", "–", rate)]
    if name == "feff":
        return [("reference / fast (FEFF seconds)", f"{_num(r['reference_over_fast'])}×",
                 f"{_num(res.get('reference_s'))} vs {_num(res.get('fast_s'))} s; r = {res.get('r')}; {p['site']}")]
    if name == "training":
        rows = []
        for model, row in res.items():
            ratio = "1.0× (reference)" if model == "spgnet" else f"{_num(row.get('vs_spgnet'), 2)}× SpgNet"
            rows.append((f"{model}: samples/s (batch {row['batch_size']})", ratio,
                         f"{_num(row['samples_per_s'])} samples/s, {_num(row['ms_per_step'])} ms/step"))
        return rows
    if name == "ensemble":
        labels = {"ratio": f"sequential / together wall time ({res.get('n_members')} × {res.get('model')})"}
        if "together_model_samples_per_s" in res and "sequential_model_samples_per_s" in res:
            beside = (f"{_num(res['together_model_samples_per_s'])} vs {_num(res['sequential_model_samples_per_s'])} "
                      f"model-samples/s; {_num(res.get('together_s'))} vs {_num(res.get('sequential_s'))} s")
            return [(labels.get(k, k), f"{_num(v, 2)}×", beside) for k, v in r.items()]
        beside = ", ".join(f"{k} {_num(v, 2) if isinstance(v, float) else v}" for k, v in res.items()
                           if k not in r and isinstance(v, (int, float)) and not isinstance(v, bool))
        return [(k, f"{_num(v, 2)}×", beside) for k, v in r.items()] or [("(no ratio returned)", "–", beside)]
    if name == "ensemble_jobs":
        return [(f"{res['n_members']} × `xrd train` / one `xrd train-ensemble` (whole jobs)",
                 f"{_num(r['sequential_over_together'], 2)}×",
                 f"{_num(res['together_model_samples_per_s'])} vs {_num(res['sequential_model_samples_per_s'])} "
                 f"model-samples/s; {_num(res['together_s'])} vs {_num(res['sequential_s'])} s; "
                 f"{res['n_train']} profiles × {p['epochs']} epochs; max loss difference "
                 f"{res['max_loss_difference']:.2g}")]
    if name == "rules":
        res_rules = res
        return [("jobs, rules, stages of the last run", "–",
                 f"{res_rules['n_jobs']} jobs, {len(res_rules['rules'])} rules, {len(res_rules['stages'])} stages, "
                 f"{_num(res_rules['total_s'])} s in total")]
    return []


def markdown(record: dict) -> str:
    m = record["machine"]
    lines = ["# xtalspec benchmarks", "",
             f"Code {record['code_version']}, {record['created_utc']}; {m.get('cpu_model', m.get('machine'))}, "
             f"{m.get('cpus_available', m.get('cpu_count'))} CPUs available, {record['options']['threads']} "
             f"thread(s); load average {m.get('load_average_start')} → {m.get('load_average_end')}; "
             f"{record['total_seconds']} s in all{' (--quick)' if record['options']['quick'] else ''}.",
             "", "Ratios are measured in one process, alternating per repeat, medians over "
             f"{record['options']['repeats']} repeats; absolute times beside them are for this machine only.", "",
             "| section | measure | ratio | beside | status |", "|---|---|---:|---|---|"]
    for name, entry in record["sections"].items():
        status = entry["status"]
        if status == "ok":
            try:
                rows = _summary_rows(name, entry)
            except (KeyError, TypeError) as exc:
                rows = [("(summary failed)", "–", f"{type(exc).__name__}: {exc}")]
            for measure, ratio, beside in rows:
                lines.append(f"| {name} | {measure} | {ratio} | {beside} | ok ({entry['seconds']} s) |")
        else:
            why = entry.get("error") or entry.get("note", "")
            lines.append(f"| {name} | {entry['title']} | – | {why.replace('|', '/')} | {status} |")
    training = record["sections"].get("training", {})
    if training.get("status") == "ok":
        lines += ["", "## Training", "",
                  "Timed: zero_grad, forward, the training module's loss, backward, Adam step, on one synthetic "
                  "batch of the real shape (no data loading). "
                  f"{training['parameters']['warmup_steps']} warm-up steps, then {training['parameters']['repeats']}"
                  f" repeats of {training['parameters']['steps_per_repeat']} steps.", "",
                  "| model | batch × input | outputs | parameters | samples/s | ms/step (min–max) | vs SpgNet "
                  "| as in |",
                  "|---|---|---:|---:|---:|---|---:|---|"]
        for model, row in training["results"].items():
            shape = " × ".join(str(s) for s in row["input_shape"])
            lines.append(f"| {model} | {shape} | {row['n_outputs']} | {row['parameters']:,} | "
                         f"{_num(row['samples_per_s'])} | {_num(row['ms_per_step'])} "
                         f"({_num(row['ms_per_step_min'])}–{_num(row['ms_per_step_max'])}) | "
                         f"{_num(row.get('vs_spgnet'), 2)} | {row['imitates'].split(':')[0]} |")
        for model, err in training.get("model_errors", {}).items():
            lines.append(f"| {model} | error: {err} | | | | | | |")
    rules = record["sections"].get("rules", {})
    if rules.get("status") == "ok":
        res = rules["results"]
        lines += ["", "## Pipeline rules", ""]
        if not res["n_jobs"]:
            lines.append(rules.get("note", "no benchmark files"))
        else:
            lines += [f"{res['n_jobs']} jobs from `{res['bench_dir']}` (files written {res['oldest_file']} … "
                      f"{res['newest_file']}).", "",
                      "| stage | rule | jobs | total s | median s | max s | max RSS MB |",
                      "|---|---|---:|---:|---:|---:|---:|"]
            for row in res["rules"]:
                lines.append(f"| {row['stage']} | {row['rule']} | {row['count']} | {_num(row['total_s'])} | "
                             f"{_num(row['median_s'])} | {_num(row['max_s'])} | {_num(row['max_rss_mb'], 0)} |")
            lines += ["", "| stage | rules | jobs | total s | max s |", "|---|---:|---:|---:|---:|"]
            for row in res["stages"]:
                lines.append(f"| {row['stage']} | {row['rules']} | {row['count']} | {_num(row['total_s'])} | "
                             f"{_num(row['max_s'])} |")
            for bad in res["unreadable"]:
                lines.append(f"\nunreadable: {bad['file']}: {bad['error']}")
    lines += ["", "## Parameters", ""]
    for name, entry in record["sections"].items():
        if "parameters" in entry:
            lines.append(f"- **{name}**: `{json.dumps(entry['parameters'], ensure_ascii=False)}`")
    return "\n".join(lines) + "\n"


def write_report(record: dict, out_dir) -> tuple[Path, Path]:
    from ..utils.atomic import atomic_write_text

    out_dir = Path(out_dir)
    json_path = atomic_write_text(out_dir / "benchmarks.json", json.dumps(record, indent=1, allow_nan=False) + "\n")
    md_path = atomic_write_text(out_dir / "benchmarks.md", markdown(record))
    return json_path, md_path
