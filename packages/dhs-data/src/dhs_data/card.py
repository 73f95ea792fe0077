"""The data stage's section of MODEL_CARD.md: class balance per split, tiers, pools, split method
and the data report.

Read from the data stage's own artifacts (and the resolved spec in run_info.json for the split
method); returned by :meth:`dhs_data.stage.DataStage.card_section`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dhs_core import layout as run_layout
from dhs_core.cards import NOT_RUN, kv_lines, read_json
from dhs_data.layout import ARTIFACTS


def _ratio(neg: int, pos: int) -> str:
    return f"{neg / pos:.1f}:1" if pos else "not defined"


def section(run_dir: Path) -> str:
    """``## Data``: positives and negatives per split, positives per tier, negatives per pool."""
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    lines = ["## Data", ""]
    manifest = ARTIFACTS["manifest"]
    path = run_dir / manifest
    if not path.is_file():
        return "\n".join(lines + [f"{NOT_RUN} (no {manifest})."])
    cols = [c for c in ("split", "label", "tier", "pool") if c in pq.read_schema(path).names]
    m = pq.read_table(path, columns=cols).to_pydict()
    split, label = np.asarray(m.get("split"), dtype=object), np.asarray(m["label"])
    lines += ["| split | positives | negatives | neg:pos |", "|---|---:|---:|---:|"]
    for s in sorted({str(v) for v in split}) if "split" in m else []:
        pos, neg = int(np.sum((split == s) & (label == 1))), int(np.sum((split == s) & (label == 0)))
        lines.append(f"| {s} | {pos:,} | {neg:,} | {_ratio(neg, pos)} |")
    pos, neg = int(np.sum(label == 1)), int(np.sum(label == 0))
    lines += [f"| all | {pos:,} | {neg:,} | {_ratio(neg, pos)} |", ""]
    if "tier" in m:
        tiers = np.asarray(m["tier"], dtype=object)[label == 1]
        lines.append("- Positives per tier: " + ", ".join(f"{t}: {int(np.sum(tiers == t)):,}" for t in ("A", "B"))
                     + f", none: {int(sum(t is None for t in tiers)):,}")
    if "pool" in m:
        pools = np.asarray(m["pool"], dtype=object)[label == 0]
        n1, n2 = int(np.sum(pools == "N1")), int(np.sum(pools == "N2"))
        lines.append(f"- Negatives per pool: N1: {n1:,}, N2: {n2:,} (N1:N2 = {f'{n1 / n2:.2f}' if n2 else 'not defined'})")
    spec = ((read_json(run_dir / run_layout.RUN_INFO) or {}).get("spec")) or {}
    split_cfg = (spec.get("data") or {}).get("split")
    lines.append(f"- Split method: `{json.dumps(split_cfg) if split_cfg else 'not recorded'}`")
    report_name = ARTIFACTS["data_report"]
    report = read_json(run_dir / report_name)
    lines += [f"- {Path(report_name).name}:"] + (kv_lines({k: v for k, v in report.items() if not isinstance(v, list)}, "  ")
                                                 if isinstance(report, dict) else ["  - not recorded"])
    return "\n".join(lines)
