"""The train stage's sections of MODEL_CARD.md, in the published model-card template: architecture
and hyperparameters, the training run, and the validation metrics of the selected epoch.

Each is a short ``| field | value |`` table (docs/eval.md, "Model card"). Values come from the
resolved spec and timing in run_info.json, the trainer's own record ``train/summary.json`` (stop
reason, parameter count, precision — recorded while training, never inferred afterwards) and
``train/metrics.jsonl``. A field whose source is absent says "Not run". Returned by
:meth:`dhs_models.stage.TrainStage.card_section`; the training-curve figure is drawn by the report
stage (dhs-eval), whose file name it links.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhs_core import layout as run_layout
from dhs_core.cards import NOT_RUN, compact, field_table, read_json, read_jsonl
from dhs_eval.layout import REPORT_DIR, TRAINING_CURVES
from dhs_models.layout import ARTIFACTS


def _batch(train: dict[str, Any]) -> str:
    micro, eff = train.get("micro_batch"), train.get("effective_batch")
    if micro is None:
        return ""
    # effective > micro means gradient accumulation over effective // micro micro-batches
    return f"{micro} (effective {eff}, {eff // micro} accumulation steps)" if eff and eff != micro else str(micro)


def architecture(spec: dict[str, Any], summary: dict | None, data_stamp: Any) -> list[str]:
    lines = ["## Architecture and hyperparameters", ""]
    if "model" not in spec and "train" not in spec:
        return lines + [f"{NOT_RUN} (the spec has no [model] / [train] sections)."]
    model, train = spec.get("model") or {}, spec.get("train") or {}
    opt, es = train.get("optimizer") or {}, train.get("early_stopping")
    n_params = (summary or {}).get("n_parameters")
    warmup = train.get("warmup_epochs") or 0
    schedule = compact(train.get("schedule")) + (f"; linear warm-up {warmup} epochs" if warmup else "")
    metadata = model.get("metadata")
    return lines + field_table([
        ("Architecture", compact(model) if model else None),
        ("Parameters", f"{n_params:,}" if isinstance(n_params, int) else None),
        ("Input channels", "3 (g, r, z)" + (f" + metadata {compact(metadata)}" if metadata else "")),
        ("Input size", f"{data_stamp} × {data_stamp} px" if data_stamp else None),
        ("Optimizer", opt.get("name", "adamw")),
        ("LR", opt.get("lr")),
        ("Weight decay", opt.get("weight_decay")),
        ("Batch", _batch(train)),
        ("Max epochs", train.get("epochs")),
        ("Patience", f"{es.get('patience')} epochs on {es.get('metric')}" if es else "no early stopping"),
        ("LR schedule", schedule),
        ("AMP", (summary or {}).get("amp") or train.get("precision")),
        ("Loss", compact(train.get("loss"))),
        ("Checkpoint selection", f"best {train.get('monitor', 'val_auc')}; augmentation "
         + ("hflip, vflip, rot90" if train.get("augment", True) else "none")
         + (f"; backbone frozen {train['freeze_backbone_epochs']} epochs" if train.get("freeze_backbone_epochs") else "")),
    ])


def training(run_dir: Path, info: dict | None, spec: dict[str, Any], rows: list[dict], summary: dict | None) -> list[str]:
    lines = ["## Training run", ""]
    if not rows:
        return lines + [f"{NOT_RUN} (no {ARTIFACTS['metrics']})."]
    stage = ((info or {}).get("stages") or {}).get("train", {})
    host = (info or {}).get("host") or {}
    best_path = run_dir / ARTIFACTS["best"]
    curves = f"{REPORT_DIR}/{TRAINING_CURVES}"
    lines += field_table([
        ("Host", f"{host.get('hostname')} ({host.get('cpu_count')} CPUs, device {(summary or {}).get('device', '?')}; "
                 f"Python {(info or {}).get('python')}, torch {(info or {}).get('torch')}, CUDA {(info or {}).get('cuda')})"
         if host else None),
        ("Start / end (UTC)", f"{stage.get('started')} → {stage.get('finished')} ({stage.get('seconds')} s)"
         if stage.get("finished") else None),
        ("Epochs done", f"{len(rows)} of {(summary or {}).get('epochs_configured') or (spec.get('train') or {}).get('epochs')}"),
        ("Stop reason", (summary or {}).get("stop_reason")
         or f"not recorded (no {ARTIFACTS['summary']}: the train stage did not finish)"),
        ("Checkpoints", f"`{ARTIFACTS['best']}` (selected epoch), `{ARTIFACTS['last']}`" if best_path.is_file() else None),
        ("Training curves", f"[{curves}]({curves})" if (run_dir / curves).is_file() else "not drawn yet (the report stage draws them)"),
    ])
    return lines


def validation(rows: list[dict]) -> list[str]:
    lines = ["## Validation metrics", ""]
    if not rows:
        return lines + [f"{NOT_RUN} (no {ARTIFACTS['metrics']})."]
    best = [r for r in rows if r.get("best")]
    row = best[-1] if best else rows[-1]
    return lines + field_table([
        ("Best val AUC", row.get("val_auc")),
        ("Best epoch", f"{row.get('epoch')}" + ("" if best else " (last; no epoch was marked best)")),
        ("Final train loss", rows[-1].get("train_loss")),
    ])


def section(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    info = read_json(run_dir / run_layout.RUN_INFO)
    spec = (info or {}).get("spec") or {}
    try:
        rows = read_jsonl(run_dir / ARTIFACTS["metrics"])
    except ValueError as exc:  # a damaged metrics file: the sections say so, the card renders
        return f"## Training run\n\nunreadable: {ARTIFACTS['metrics']}: {exc}"
    summary = read_json(run_dir / ARTIFACTS["summary"])
    stamp = (spec.get("data") or {}).get("stamp")
    parts = [architecture(spec, summary, stamp), training(run_dir, info, spec, rows, summary), validation(rows)]
    return "\n\n".join("\n".join(p).strip("\n") for p in parts)
