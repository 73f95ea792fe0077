"""The data stage's section of MODEL_CARD.md: class balance per split, tiers, pools, split method
and the data report.

Read from the data stage's own artifacts (and the resolved spec in run_info.json for the split
method); returned by :meth:`dhs_data.stage.DataStage.card_section`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dhs_core import layout as run_layout
from dhs_core.cards import NOT_RUN, compact, field_table, read_json
from dhs_core.io import sha256_file
from dhs_data.layout import ARTIFACTS


def _ratio(neg: int, pos: int) -> str:
    return f"{neg / pos:.1f}:1" if pos else "not defined"


def _source(spec: dict) -> str | None:
    """Where the cutouts came from: the data source and the options that identify its input."""
    data = spec.get("data") or {}
    if not data:
        return None
    keep = {k: v for k, v in data.items() if k in ("name", "path", "data_root", "n_hosts", "stamp",
                                                    "positive_fraction", "bricks", "release")}
    return compact(keep)


def section(run_dir: Path) -> str:
    """``## Data``: the template's data fields in one table (class balance per split, tiers,
    pools, split method, cutout sources), then the split counts. Longer material (strata of the
    data report, exclusions) stays in data_report.json, which the table links."""
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    lines = ["## Data", ""]
    manifest = ARTIFACTS["manifest"]
    path = run_dir / manifest
    if not path.is_file():
        return "\n".join(lines + [f"{NOT_RUN} (no {manifest})."])
    cols = [c for c in ("split", "label", "tier", "pool") if c in pq.read_schema(path).names]
    m = pq.read_table(path, columns=cols).to_pydict()
    split = np.asarray(m.get("split", ["?"] * len(m["label"])), dtype=object)
    label = np.asarray(m["label"])
    info = read_json(run_dir / run_layout.RUN_INFO) or {}
    spec = info.get("spec") or {}
    report = read_json(run_dir / ARTIFACTS["data_report"])
    report = report if isinstance(report, dict) else {}
    pos, neg = int(np.sum(label == 1)), int(np.sum(label == 0))
    counts = {s: int(np.sum(split == s)) for s in ("train", "val", "test")}
    tiers = np.asarray(m.get("tier", [None] * len(label)), dtype=object)
    pools = np.asarray(m.get("pool", [None] * len(label)), dtype=object)
    # Tier-A lenses are the confident ones the published protocol evaluates on (test split);
    # Tier-B (probable) lenses are what training sees, down-weighted by the loss
    tier_a = int(np.sum((tiers == "A") & (label == 1) & (split == "test")))
    tier_b = int(np.sum((tiers == "B") & (label == 1) & (split == "train")))
    n1, n2 = int(np.sum((pools == "N1") & (label == 0))), int(np.sum((pools == "N2") & (label == 0)))
    split_cfg = (spec.get("data") or {}).get("split")
    excl = (report.get("exclusions") or {}).get("total", report.get("n_excluded"))
    rows = [
        ("Manifest", f"[{manifest}]({manifest}), {len(label):,} rows, SHA-256 `{sha256_file(path)[:16]}…`"),
        ("Dataset mode", (spec.get("data") or {}).get("name") or report.get("source")),
        ("Preprocessing", compact(spec["preprocess"]) if spec.get("preprocess") else "none"),
        ("Train / val / test (positives, negatives)",
         " / ".join(f"{counts[s]:,} ({int(np.sum((split == s) & (label == 1))):,}, "
                    f"{int(np.sum((split == s) & (label == 0))):,})" for s in counts)),
        ("Positives / negatives (neg:pos)", f"{pos:,} / {neg:,} ({_ratio(neg, pos)})"),
        ("Tier-A (eval, test split)", f"{tier_a:,}" if "tier" in m else None),
        ("Tier-B (training split)", f"{tier_b:,}" if "tier" in m else None),
        ("N1:N2", f"{n1:,}:{n2:,}" + (f" ({n1 / n2:.2f})" if n2 else "") if "pool" in m else None),
        ("Positive / negative cutout source", _source(spec)),
        ("Excluded cutouts", f"{excl:,} (missing, unreadable or non-finite; listed in {ARTIFACTS['data_report']})"
         if excl is not None else ("not recorded" if report else None)),
        ("Split method and seed", ((compact(split_cfg) if split_cfg else "not recorded")
                                   + (f"; run.seed {spec['run']['seed']}" if (spec.get("run") or {}).get("seed")
                                      is not None else "")) if spec else None),
    ]
    lines += field_table(rows)
    return "\n".join(lines)
