"""The selection-function stage's MODEL_CARD.md section, from hand-written cells.parquet and meta.json."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

from dhs_core.cards import fmt
from dhs_inject.selection.card import section
from dhs_inject.selection.stage import SelectionFunctionStage


def test_selection_section_pools_counts_and_links_the_report_heatmaps(tmp_path):
    sf = tmp_path / "selection_function"
    sf.mkdir(parents=True)
    cells = {"theta_e": [1.0, 1.0, 1.5, 1.5], "psfsize_r": [1.1, 1.4, 1.1, 1.4], "source_mag": [22.0] * 4,
             "n_detected": [3, 5, 8, 9], "n_ok": [10, 10, 10, 10]}
    pq.write_table(pa.table(cells), sf / "cells.parquet")
    (sf / "meta.json").write_text(json.dumps({"threshold": 0.93, "target_fpr": 0.001, "bins": {"x": 1},
                                              "figures": ["a.png"]}))
    text = section(tmp_path)
    assert text.startswith("## Selection function\n")
    # pooled over every cell: 25 of 40 detected, Jeffreys posterior median
    median = stats.beta.ppf(0.5, 25.5, 15.5)
    assert f"- Pooled completeness: {fmt(float(median))} (68 %: " in text and "25/40 injections detected" in text
    assert "  - `threshold` = `0.93`" in text and "`bins`" not in text and "`figures`" not in text
    # one marginal table per axis present; theta_E = 1.5 pools 8 + 9 of 20
    assert "| theta_e | completeness (median) | 68 % interval | k/n |" in text
    assert f"| 1.5 | {fmt(float(stats.beta.ppf(0.5, 17.5, 3.5)))} |" in text and "| 17/20 |" in text
    assert "| psfsize_r |" in text and "| source_mag |" in text and "| psfdepth_r |" not in text
    assert "completeness_theta_e_psfsize_r.png" not in text
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "completeness_theta_e_psfsize_r.png").write_bytes(b"png")
    assert ("![completeness_theta_e_psfsize_r.png](report/completeness_theta_e_psfsize_r.png)"
            in SelectionFunctionStage().card_section(tmp_path))


def test_selection_section_without_cells_says_not_run(tmp_path):
    assert section(tmp_path) == "## Selection function\n\nNot run (no selection_function/cells.parquet)."
