"""The train stage's section of MODEL_CARD.md: architecture and hyperparameters, the training run
and the validation metrics of the selected epoch.

Read from the train stage's metrics.jsonl and the resolved spec and timing in run_info.json;
returned by :meth:`dhs_models.stage.TrainStage.card_section`. The training-curve figure is drawn
by the report stage (dhs-eval), whose file name it links.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhs_core import layout as run_layout
from dhs_core.cards import NOT_RUN, fmt, kv_lines, read_json, read_jsonl
from dhs_eval.layout import REPORT_DIR, TRAINING_CURVES
from dhs_models.layout import ARTIFACTS


def architecture(spec: dict[str, Any]) -> list[str]:
    lines = ["## Architecture and hyperparameters", ""]
    if "model" not in spec and "train" not in spec:
        return lines + [f"{NOT_RUN} (the spec has no [model] / [train] sections)."]
    for sec in ("model", "preprocess", "train"):
        lines += [f"**[{sec}]**", ""] + (kv_lines(spec.get(sec)) if sec in spec else ["- not set"]) + [""]
    return lines


def training(run_dir: Path, info: dict | None, spec: dict[str, Any], rows: list[dict]) -> list[str]:
    lines = ["## Training run", ""]
    if not rows:
        return lines + [f"{NOT_RUN} (no {ARTIFACTS['metrics']})."]
    stage = ((info or {}).get("stages") or {}).get("train", {})
    epochs = max(int(r.get("epoch", 0)) for r in rows)
    planned = (spec.get("train") or {}).get("epochs")
    if planned is None:
        stop = "not recorded"
    elif epochs >= planned:
        stop = f"completed the configured {planned} epochs"
    else:
        stop = (f"stopped after {epochs} of {planned} configured epochs "
                f"(early stopping; inferred from {Path(ARTIFACTS['metrics']).name})")
    lines += [f"- Train stage: started {stage.get('started', 'not recorded')}, finished "
              f"{stage.get('finished', 'not recorded')} ({stage.get('seconds', '?')} s)",
              f"- Epochs: {epochs}; stop reason: {stop}"]
    curves = f"{REPORT_DIR}/{TRAINING_CURVES}"
    if (run_dir / curves).is_file():
        lines += ["", f"![training curves]({curves})"]
    return lines


def validation(rows: list[dict]) -> list[str]:
    lines = ["## Validation metrics", ""]
    if not rows:
        return lines + [f"{NOT_RUN} (no {ARTIFACTS['metrics']})."]
    best = [r for r in rows if r.get("best")]
    row = best[-1] if best else rows[-1]
    lines += [f"From {ARTIFACTS['metrics']}, {'best' if best else 'last'} epoch {row.get('epoch')} "
              "(the evaluate stage's section gives the val split with intervals):", ""]
    return lines + [f"- {k}: {fmt(v)}" for k, v in row.items() if k.startswith("val") and not isinstance(v, bool)]


def section(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    info = read_json(run_dir / run_layout.RUN_INFO)
    spec = (info or {}).get("spec") or {}
    rows = read_jsonl(run_dir / ARTIFACTS["metrics"])
    parts = [architecture(spec), training(run_dir, info, spec, rows), validation(rows)]
    return "\n\n".join("\n".join(p).strip("\n") for p in parts)
