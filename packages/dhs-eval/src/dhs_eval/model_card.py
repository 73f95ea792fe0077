"""MODEL_CARD.md from a run directory, following the model-card template (Mitchell et al. 2019).

Every field is filled from the run's artifacts — run_info.json, spec.resolved.toml, the manifest,
data_report.json, train/metrics.jsonl, evaluate/metrics.json, selection_function/cells.parquet —
or says explicitly "Not run" (the artifact is absent) or "not recorded" (the artifact exists but
lacks the field). Nothing is filled with a default that could be mistaken for a measurement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dhs_core.io import sha256_file

NOT_RUN = "Not run"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "not defined"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.{digits - 1}e}"
    return str(v)


def _kv(table: Mapping[str, Any] | None, indent: str = "") -> list[str]:
    if not table:
        return [f"{indent}- not recorded"]
    out = []
    for k, v in table.items():
        if isinstance(v, dict):
            out.append(f"{indent}- `{k}`:")
            out += _kv(v, indent + "  ")
        else:
            out.append(f"{indent}- `{k}` = `{json.dumps(v)}`")
    return out


def identification(info: dict | None, spec: dict) -> list[str]:
    run = spec.get("run", {})
    lines = ["## Identification", "", f"- Run name: `{run.get('name', 'not recorded')}`",
             f"- Description: {run.get('description') or 'not recorded'}", f"- Seed: `{run.get('seed')}`"]
    if info:
        lines += [f"- Started: {info.get('started')}", f"- Spec SHA-256: `{info.get('spec_sha256')}`",
                  "- Package versions: " + ", ".join(f"{k}=={v}" for k, v in sorted((info.get("versions") or {}).items()) if v),
                  "- Components: " + ", ".join(f"{p['kind']} `{p['name']}` ({p['distribution']} {p['version']})"
                                               for p in info.get("plugins") or [])]
    else:
        lines.append("- run_info.json: not recorded")
    return lines


def architecture(spec: dict) -> list[str]:
    lines = ["## Architecture and hyperparameters", ""]
    if "model" not in spec and "train" not in spec:
        return lines + [f"{NOT_RUN} (the spec has no [model] / [train] sections)."]
    for sec in ("model", "preprocess", "train"):
        lines += [f"**[{sec}]**", ""] + (_kv(spec.get(sec)) if sec in spec else ["- not set"]) + [""]
    return lines


def data_section(run_dir: Path, spec: dict) -> list[str]:
    import pyarrow.parquet as pq

    lines = ["## Data", ""]
    path = run_dir / "data" / "manifest.parquet"
    if not path.is_file():
        return lines + [f"{NOT_RUN} (no data/manifest.parquet)."]
    cols = [c for c in ("split", "label", "tier", "pool") if c in pq.read_schema(path).names]
    m = pq.read_table(path, columns=cols).to_pydict()
    split, label = np.asarray(m.get("split"), dtype=object), np.asarray(m["label"])
    lines += ["| split | positives | negatives | neg:pos |", "|---|---:|---:|---:|"]
    for s in sorted({str(v) for v in split}) if "split" in m else []:
        pos, neg = int(np.sum((split == s) & (label == 1))), int(np.sum((split == s) & (label == 0)))
        lines.append(f"| {s} | {pos:,} | {neg:,} | {f'{neg / pos:.1f}:1' if pos else 'not defined'} |")
    pos, neg = int(np.sum(label == 1)), int(np.sum(label == 0))
    lines += [f"| all | {pos:,} | {neg:,} | {f'{neg / pos:.1f}:1' if pos else 'not defined'} |", ""]
    if "tier" in m:
        tiers = np.asarray(m["tier"], dtype=object)[label == 1]
        lines.append("- Positives per tier: " + ", ".join(f"{t}: {int(np.sum(tiers == t)):,}" for t in ("A", "B"))
                     + f", none: {int(sum(t is None for t in tiers)):,}")
    if "pool" in m:
        pools = np.asarray(m["pool"], dtype=object)[label == 0]
        n1, n2 = int(np.sum(pools == "N1")), int(np.sum(pools == "N2"))
        lines.append(f"- Negatives per pool: N1: {n1:,}, N2: {n2:,} (N1:N2 = {f'{n1 / n2:.2f}' if n2 else 'not defined'})")
    split_cfg = (spec.get("data") or {}).get("split")
    lines.append(f"- Split method: `{json.dumps(split_cfg) if split_cfg else 'not recorded'}`")
    report = _read_json(run_dir / "data" / "data_report.json")
    lines += ["- data_report.json:"] + (_kv({k: v for k, v in report.items() if not isinstance(v, list)}, "  ")
                                         if isinstance(report, dict) else ["  - not recorded"])
    return lines


def training(run_dir: Path, info: dict | None, spec: dict, rows: list[dict]) -> list[str]:
    lines = ["## Training run", ""]
    if not rows:
        return lines + [f"{NOT_RUN} (no train/metrics.jsonl)."]
    stage = ((info or {}).get("stages") or {}).get("train", {})
    host = (info or {}).get("host") or {}
    epochs = max(int(r.get("epoch", 0)) for r in rows)
    planned = (spec.get("train") or {}).get("epochs")
    if planned is None:
        stop = "not recorded"
    elif epochs >= planned:
        stop = f"completed the configured {planned} epochs"
    else:
        stop = f"stopped after {epochs} of {planned} configured epochs (early stopping; inferred from metrics.jsonl)"
    git = (info or {}).get("git") or {}
    lines += [f"- Host: {host.get('hostname', 'not recorded')} ({host.get('platform', '')}, {host.get('cpu_count')} CPUs)",
              f"- Python {(info or {}).get('python')}, torch {(info or {}).get('torch')}, CUDA {(info or {}).get('cuda')}",
              f"- Train stage: started {stage.get('started', 'not recorded')}, finished {stage.get('finished', 'not recorded')}"
              f" ({stage.get('seconds', '?')} s)",
              f"- Epochs: {epochs}; stop reason: {stop}",
              f"- Command: `{' '.join((info or {}).get('command') or []) or 'not recorded'}`",
              f"- Git commit: `{git.get('commit', 'not recorded')}`{' (uncommitted changes)' if git.get('dirty') else ''}"]
    if (run_dir / "report" / "training_curves.png").is_file():
        lines += ["", "![training curves](report/training_curves.png)"]
    return lines


def validation(rows: list[dict], evaluation: dict | None) -> list[str]:
    lines = ["## Validation metrics", ""]
    if rows:
        best = [r for r in rows if r.get("best")]
        row = best[-1] if best else rows[-1]
        lines += [f"From train/metrics.jsonl, {'best' if best else 'last'} epoch {row.get('epoch')}:", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in row.items() if k.startswith("val") and not isinstance(v, bool)]
        lines.append("")
    val = ((evaluation or {}).get("evaluators", {}).get("classification", {}).get("splits", {})).get("val")
    if val:
        lines += ["From the evaluate stage (val split):", ""] + _split_summary(val)
    return lines if len(lines) > 2 else lines + [f"{NOT_RUN} (no train/metrics.jsonl and no evaluation of val)."]


def _ci(boot: dict | None) -> str:
    if not boot:
        return ""
    return f" (95 % bootstrap CI {_fmt(boot.get('low'))}–{_fmt(boot.get('high'))}, {boot.get('n_resamples')} resamples)"


def _split_summary(res: dict) -> list[str]:
    if res.get("status") != "ok":
        return [f"- {res.get('status')}"]
    lines = [f"- Cutouts: {res['n']:,} ({res['n_positives']:,} positives, {res['n_negatives']:,} negatives, "
             f"{res['n_nan_scores']:,} NaN scores excluded)",
             f"- ROC AUC: {_fmt(res['auc'])} ± {_fmt(res['auc_se_delong'])} (DeLong SE){_ci(res.get('auc_bootstrap'))}"]
    for key, p in res["pauc"].items():
        lines.append(f"- pAUC (FPR ≤ {key}, McClish): {_fmt(p['value'])}{_ci(p.get('bootstrap'))}")
    cal = res["calibration"]
    lines.append(f"- ECE / MCE ({cal['n_bins']} bins): {_fmt(cal['ece'])} / {_fmt(cal['mce'])}; "
                 f"positives only: {_fmt(cal['ece_positives'])} / {_fmt(cal['mce_positives'])}")
    lines += ["", "| target FPR | TPR | 95 % interval | threshold | achieved FPR |", "|---:|---:|---|---:|---:|"]
    for r in res["tpr_at_fpr"]:
        if r["status"] == "ok":
            lines.append(f"| {r['target_fpr']:g} | {_fmt(r['tpr'])} ({r['n_detected']}/{r['n_positives']}) | "
                         f"{_fmt(r['tpr_low'])}–{_fmt(r['tpr_high'])} | {_fmt(r['threshold'], 6)} | {_fmt(r['achieved_fpr'])} |")
        else:
            lines.append(f"| {r['target_fpr']:g} | {r['status']} | | | |")
    lines += ["", "| target TPR | FPR | 95 % interval | threshold |", "|---:|---:|---|---:|"]
    for r in res["fpr_at_tpr"]:
        if r["status"] == "ok":
            lines.append(f"| {r['target_tpr']:g} | {_fmt(r['fpr'])} ({r['n_false_positive']}/{r['n_negatives']}) | "
                         f"{_fmt(r['fpr_low'])}–{_fmt(r['fpr_high'])} | {_fmt(r['threshold'], 6)} |")
        else:
            lines.append(f"| {r['target_tpr']:g} | {r['status']} | | |")
    strata = res.get("strata") or {}
    rows = [p for key in ("recall_by_tier", "fpr_by_pool", "fpr_by_confuser_category") for p in strata.get(key, [])]
    for key, val in strata.items():
        if key.startswith("by_"):
            rows += val["recall"] + val["fpr"]
    if rows:
        lines += ["", "Strata (Jeffreys intervals unless configured otherwise):", ""]
        lines += [f"- {p['text']}" + (f" [{_fmt(p['low'])}, {_fmt(p['high'])}]" if p["n"] else "") for p in rows]
    return lines + [""]


def evaluation_section(evaluation: dict | None) -> list[str]:
    lines = ["## Evaluation metrics", ""]
    if evaluation is None:
        return lines + [f"{NOT_RUN} (no evaluate/metrics.json)."]
    for key, res in evaluation.get("evaluators", {}).items():
        comp = res.get("component", {})
        lines += [f"### {key} ({comp.get('distribution')} {comp.get('version')})", ""]
        if "splits" in res:
            for split in ("test", *(s for s in res["splits"] if s != "test")):
                if split in res["splits"]:
                    lines += [f"**{split} split**", ""] + _split_summary(res["splits"][split])
            lines += [f"![{fig}](evaluate/{fig})" for fig in res.get("figures", [])] + [""]
        else:
            lines += [f"- {k}: {_fmt(v)}" for k, v in (res.get("headline") or {}).items()] + [""]
    return lines


def selection_section(run_dir: Path, figures: list[str]) -> list[str]:
    from dhs_eval import selection

    lines = ["## Selection function", ""]
    path = run_dir / "selection_function" / "cells.parquet"
    if not path.is_file():
        return lines + [f"{NOT_RUN} (no selection_function/cells.parquet)."]
    import pyarrow.parquet as pq

    cells = pq.read_table(path)
    if not {"n_detected", "n_ok"} <= set(cells.column_names):
        return lines + ["cells.parquet lacks n_detected / n_ok: not summarised."]
    tot = selection.summary(cells)
    lines += [f"- Pooled completeness: {_fmt(tot['completeness_median'])} (68 %: {_fmt(tot['completeness_low_68'])}–"
              f"{_fmt(tot['completeness_high_68'])}; {tot['n_detected']:,}/{tot['n_ok']:,} injections detected)"]
    meta = _read_json(run_dir / "selection_function" / "meta.json")
    if isinstance(meta, dict):
        lines += ["- meta.json:"] + _kv({k: v for k, v in meta.items() if not isinstance(v, (list, dict))}, "  ")
    for axis, table in selection.marginal_tables(cells).items():
        lines += ["", f"| {axis} | completeness (median) | 68 % interval | k/n |", "|---:|---:|---|---:|"]
        for row in selection.as_rows(table):
            lines.append(f"| {row[axis]:.4g} | {_fmt(row['completeness_median'])} | {_fmt(row['completeness_low_68'])}–"
                         f"{_fmt(row['completeness_high_68'])} | {row['n_detected']:,}/{row['n_ok']:,} |")
    return lines + [""] + [f"![{f}](report/{f})" for f in figures]


def artifacts(run_dir: Path) -> list[str]:
    lines = ["## Artifacts", "", "| file | bytes | SHA-256 |", "|---|---:|---|"]
    for stage in ("data", "train", "evaluate", "selection_function", "report"):
        d = run_dir / stage
        if not d.is_dir():
            lines.append(f"| {stage}/ | {NOT_RUN} | |")
            continue
        for f in sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")):
            lines.append(f"| {stage}/{f.name} | {f.stat().st_size:,} | `{sha256_file(f)[:16]}…` |")
    return lines


def reproduce(run_dir: Path, info: dict | None) -> list[str]:
    pins = (run_dir / "plugins.txt").read_text().split() if (run_dir / "plugins.txt").is_file() else []
    return ["## Steps to reproduce", "", "```sh",
            f"pip install {' '.join(pins) if pins else '<dhs packages: not recorded>'}",
            f"dhs run spec.resolved.toml   # spec SHA-256 {(info or {}).get('spec_sha256', 'not recorded')}",
            "```", "", "Seeds are derived from `run.seed` and each stage name (recorded in run_info.json)."]


def render(run_dir: Path, heatmaps: list[str]) -> str:
    """The model card text for the run in ``run_dir``."""
    info = _read_json(run_dir / "run_info.json")
    spec = (info or {}).get("spec") or {}
    rows = read_jsonl(run_dir / "train" / "metrics.jsonl")
    evaluation = _read_json(run_dir / "evaluate" / "metrics.json")
    title = f"# Model card: {spec.get('run', {}).get('name', run_dir.name)}"
    parts = [[title], identification(info, spec), architecture(spec), data_section(run_dir, spec),
             training(run_dir, info, spec, rows), validation(rows, evaluation), evaluation_section(evaluation),
             selection_section(run_dir, heatmaps), artifacts(run_dir), reproduce(run_dir, info)]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"
