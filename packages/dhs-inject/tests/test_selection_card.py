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
    # pooled over every cell: 25 of 40 detected, Jeffreys posterior Beta(k+1/2, n-k+1/2)
    median = stats.beta.ppf(0.5, 25.5, 15.5)
    lo68, hi68 = stats.beta.ppf([0.16, 0.84], 25.5, 15.5)
    assert "| Injections detected / scored (k/n) | 25/40 " in text
    assert f"| Pooled posterior median [68 %; 95 %] | {fmt(float(median))} [{fmt(float(lo68))}–{fmt(float(hi68))};" in text
    assert "| Detection threshold | p ≥ 0.9300" in text and "`bins`" not in text
    # the θE table pools over the other axes: theta_E = 1.5 pools 8 + 9 of 20
    assert "| theta_e | k/n | posterior median | 68 % interval | 95 % interval |" in text
    assert f"| 1.5 | 17/20 | {fmt(float(stats.beta.ppf(0.5, 17.5, 3.5)))} |" in text
    # the other axes in one row each; an axis with one bin adds nothing
    assert "| Pooled by psfsize_r (k/n, median [68 %]) | 1.1: 11/20" in text and "source_mag" not in text
    assert "completeness_theta_e_psfsize_r.png" not in text and "| Heatmaps | not drawn yet" in text
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "completeness_theta_e_psfsize_r.png").write_bytes(b"png")
    assert ("[completeness_theta_e_psfsize_r.png](report/completeness_theta_e_psfsize_r.png)"
            in SelectionFunctionStage().card_section(tmp_path))


def test_selection_section_without_cells_says_not_run(tmp_path):
    assert section(tmp_path) == "## Selection function\n\nNot run (no selection_function/cells.parquet)."


def test_selection_section_reads_counts_not_derived_columns(tmp_path):
    """Only n_detected / n_ok are read: a cells.parquet whose completeness columns are missing or
    differently named (the columns are being reworked) gives the same card."""
    sf = tmp_path / "selection_function"
    sf.mkdir(parents=True)
    cells = {"theta_e": [1.0, 1.5], "n_detected": [1, 2], "n_ok": [4, 4], "completeness": [0.9, 0.9]}
    pq.write_table(pa.table(cells), sf / "cells.parquet")
    with_column = section(tmp_path)
    pq.write_table(pa.table({k: v for k, v in cells.items() if k != "completeness"}), sf / "cells.parquet")
    assert section(tmp_path) == with_column and "| 1.5 | 2/4 |" in with_column
