"""The model card's "Decision gates" section agrees with gates.json, and follows [[gates]] edits."""

from __future__ import annotations

import json
import re

import pytest
from fixture_plugin import fixture_stages

import dhs_core

SECTIONS = {"fixture_data": {}, "fixture_train": {}, "evaluate": [{"name": "classification", "n_bootstrap": 20}]}
GATES = [
    {"name": "test AUC", "metric": "evaluate.test_auc", "op": ">=", "value": 0.5, "description": "better than chance"},
    {"metric": "evaluate.test_auc", "op": ">", "value": 1.0},
    {"name": "typo", "metric": "evaluate.tset_auc", "op": ">=", "value": 0.5},
    {"name": "from the file", "metric": "evaluate/metrics.json:evaluators.classification.splits.test.auc",
     "op": "<=", "value": 1.0},
]


def _spec(tmp_path, gates):
    return {"run": {"name": "cardgates", "seed": 3, "out_dir": str(tmp_path / "run")}, **SECTIONS, "gates": gates}


def _gate_rows(card: str) -> list[list[str]]:
    part = card[card.index("## Decision gates"):]
    part = part[:part.index("\n## ")]
    rows = [line for line in part.splitlines() if line.startswith("|")][2:]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))] for row in rows]


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cardgates")
    with fixture_stages():
        first = dhs_core.run(_spec(tmp, GATES))
        card = (first.run_dir / "MODEL_CARD.md").read_text()
        verdict = json.loads((first.run_dir / "gates.json").read_text())
        # a changed threshold: the card is rewritten, nothing else reruns
        changed = dhs_core.run(_spec(tmp, [{**GATES[1], "value": 0.0}]))
        changed_card = (first.run_dir / "MODEL_CARD.md").read_text()
        no_gates = dhs_core.run(_spec(tmp, []))
        plain_card = (first.run_dir / "MODEL_CARD.md").read_text()
    return first, card, verdict, changed, changed_card, no_gates, plain_card


def test_card_table_agrees_with_gates_json(gated_run):
    first, card, verdict, *_ = gated_run
    rows = _gate_rows(card)
    assert [r[0] for r in rows] == [g["name"] for g in verdict["gates"]]
    assert [r[4] for r in rows] == [g["status"].upper() for g in verdict["gates"]] == ["PASS", "FAIL", "MISSING", "PASS"]
    auc = verdict["gates"][0]["observed"]
    assert auc == first.metrics["evaluate.test_auc"]
    assert rows[0][1:4] == ["`evaluate.test_auc`", f"{auc:.6g}", ">= 0.5"]
    assert rows[2][2] == "not measured"
    assert "2 of 4 gates did not pass" in card
    assert "**test AUC**: better than chance" in card and "close matches: evaluate.test_auc" in card
    assert "| Every field filled or \"Not run\" | pass: no blank table cell |" in card


def test_changed_gates_rerun_only_the_report(gated_run):
    first, _, _, changed, changed_card, *_ = gated_run
    assert first.stages["report"] == "ran"
    assert changed.stages == {**{k: "skipped" for k in changed.stages}, "report": "ran"}
    assert [r[4] for r in _gate_rows(changed_card)] == ["PASS"]
    assert "every gate passes (1/1)" in changed_card


def test_card_without_gates_says_so(gated_run):
    *_, no_gates, plain_card = gated_run
    assert no_gates.gates == [] and not (no_gates.run_dir / "gates.json").exists()
    section = plain_card[plain_card.index("## Decision gates"):]
    assert section.split("\n## ")[0].strip().endswith("No gates in this spec (`[[gates]]` entries: metric, op, value).")
