"""examples/gates/go-no-go.toml: the published GO/NO-GO criteria validate as [[gates]], and every
gate's metric is one the pipeline really reports (a tiny run: no gate may end "missing")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dhs_core import plugins, run
from dhs_core.runner import plan

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gates" / "go-no-go.toml"

#: the published criteria (docs/specs.md, "The published GO/NO-GO criteria"), written out here
PUBLISHED = [
    ("evaluate.test_auc", ">=", 0.9930),
    ("evaluate.tier_a.test_recall@p>0.3", ">=", 0.80),
    ("evaluate.beta_frac_ceiling.ceiling_restricted@p>0.3", ">=", 0.40),
    ("selection_function.mean_over_cells@p>=0.3", ">=", 0.07),
]


def _needs_gate_evaluators() -> None:
    # the example names the tier_a (dhs-eval) and beta_frac_ceiling (dhs-inject) evaluators
    missing = {"tier_a", "beta_frac_ceiling"} - set(plugins.components("evaluator"))
    if missing:
        pytest.skip(f"evaluator(s) {', '.join(sorted(missing))} not registered")


def test_example_validates_with_the_published_criteria(tmp_path):
    _needs_gate_evaluators()
    the_plan = plan(EXAMPLE, [f"run.out_dir={tmp_path / 'run'}"])
    spec = the_plan.points[0].spec
    assert [(g.metric, g.op, g.value) for g in spec.gates] == PUBLISHED
    assert all(g.name and "docs/specs.md" in g.description for g in spec.gates)
    assert not (tmp_path / "run").exists()
    # criteria set 2, as the example's comment switches to it
    alt = plan(EXAMPLE, [f"run.out_dir={tmp_path / 'run'}", "gates.1.metric=evaluate.tier_a.test_recall@p>0.5",
                         "gates.1.value=0.65"]).points[0].spec
    assert (alt.gates[1].metric, alt.gates[1].value) == ("evaluate.tier_a.test_recall@p>0.5", 0.65)


def test_every_gate_metric_is_reported_by_a_tiny_run(tmp_path):
    _needs_gate_evaluators()
    overrides = [
        f"run.out_dir={tmp_path / 'run'}", "data.n_hosts=120", "data.positive_fraction=0.3",
        "model.base_ch=4", "model.blocks=[1, 1, 1, 1]", "train.epochs=1", "train.micro_batch=16",
        "train.effective_batch=16", "train.schedule={ name = \"cosine\", t_max = 1 }",
        "evaluate.1.n_bootstrap=0", "evaluate.1.plots=false", "evaluate.2.n_per_bin=2", "evaluate.2.plots=false",
        "evaluate.2.source_mag_edges=[20.0, 22.0]",
        "selection_function.theta_e={ start = 1.0, stop = 1.0, step = 1.0 }", "selection_function.per_cell=2",
        "selection_function.qa_n=10",
    ]
    result = run(str(EXAMPLE), overrides)
    verdict = json.loads((tmp_path / "run" / "gates.json").read_text())
    assert [g["metric"] for g in verdict["gates"]] == [m for m, _, _ in PUBLISHED]
    # a one-epoch model need not pass; every gate must have measured its number
    assert [g["status"] for g in verdict["gates"] if g["status"] == "missing"] == [], verdict["gates"]
    assert [g["observed"] for g in verdict["gates"]] == [result.metrics[m] for m, _, _ in PUBLISHED]
    assert "## Decision gates" in (tmp_path / "run" / "MODEL_CARD.md").read_text()
