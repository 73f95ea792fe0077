"""The injection-recovery diagnostics ``beta_frac_ceiling`` (test Q2.1) and ``host_conditioning``
(the 4-way model 2 vs model 1 test): config contract, statistics against scipy, common random
numbers, a monotonic science check with a stub finder, and both end to end through the runner."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from dhs_core import plugins, run
from dhs_core.errors import SpecError, UserError
from dhs_eval.evaluators.base import EvaluationContext
from dhs_inject.diagnostics import groups as grp
from dhs_inject.diagnostics import hosts as hs

NEW = ("beta_frac_ceiling", "host_conditioning")
# fast_kernel off and no supersampling: compiling or refining costs more than these few injections
INJECTOR = {"name": "model1", "supersample": 1, "fast_kernel": False}
CONDITIONED = {"name": "model2", "supersample": 1, "fast_kernel": False}
EDGES = [18.0, 20.0, 22.0, 24.0]
N_PER_BIN = 6
THETA_E = [1.0, 2.0]
N_PER_POINT = 8
ARMS = ("lrg_conditioned", "lrg_independent", "all_independent", "all_conditioned")


def _jeffreys(k: int, n: int, level: float) -> tuple[float, float]:
    """Independent reference: equal-tailed Beta(k + 1/2, n - k + 1/2) quantiles, 0 / 1 at k = 0 / n."""
    a = (1 - level) / 2
    low = 0.0 if k == 0 else stats.beta.ppf(a, k + 0.5, n - k + 0.5)
    high = 1.0 if k == n else stats.beta.ppf(1 - a, k + 0.5, n - k + 0.5)
    return low, high


def _fisher_brute_force(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher p by enumeration: the hypergeometric probability of every table with the
    observed margins that is no more probable than the observed one."""
    total, successes = n1 + n2, k1 + k2
    pmf = [stats.hypergeom.pmf(x, total, successes, n1) for x in range(max(0, successes - n2), min(successes, n1) + 1)]
    observed = stats.hypergeom.pmf(k1, total, successes, n1)
    return float(sum(p for p in pmf if p <= observed * (1 + 1e-7)))


@pytest.mark.parametrize("name", NEW)
def test_registered_with_contract_and_run_dir_required(name, tmp_path):
    comp = plugins.get("evaluator", name)
    assert comp.distribution == "dhs-inject"
    with pytest.raises(ValidationError):
        comp.Config(no_such_option=1)
    cfg = comp.Config()
    with pytest.raises(ValidationError):
        cfg.plots = False  # frozen
    with pytest.raises(UserError, match=f"{name}.*run directory"):
        comp.impl(cfg).evaluate(None, tmp_path, EvaluationContext())
    with pytest.raises(UserError, match=f"{name}.*best.pt"):
        comp.impl(cfg).evaluate(None, tmp_path, EvaluationContext(run_dir=tmp_path))


def test_published_defaults():
    beta = plugins.get("evaluator", "beta_frac_ceiling").Config()
    assert beta.source_mag_edges == tuple(float(m) for m in range(18, 27)) and beta.n_per_bin * 8 == 1000
    assert beta.beta_frac_restricted == (0.1, 0.55) and beta.beta_frac_unrestricted == (0.1, 1.0)
    assert beta.thresholds == (0.3, 0.5) and beta.ceiling_rule == 0.4
    cond = plugins.get("evaluator", "host_conditioning").Config()
    assert cond.theta_e == (0.75, 1.0, 1.5, 2.0, 2.5, 3.0) and cond.n_per_point == 500 and cond.threshold == 0.5


@pytest.mark.parametrize(("options", "message"), [
    ({"source_mag_edges": [0.1, 0.2, 0.3]}, "AB magnitudes expected"),
    ({"source_mag_edges": [22.0, 21.0]}, "strictly increasing"),
    ({"source_mag_edges": [22.0]}, "at least two edges"),
    ({"beta_frac_restricted": [0.6, 0.5]}, "beta_frac_restricted.*0 <= lo <= hi <= 1"),
    ({"beta_frac_unrestricted": [0.1, 1.5]}, "beta_frac_unrestricted"),
    ({"thresholds": [0.3, 1.0]}, "probabilities in \\(0, 1\\)"),
    ({"thresholds": []}, "at least one"),
    ({"ceiling_rule": 40}, "ceiling_rule"),
])
def test_beta_frac_ceiling_bad_options(options, message):
    with pytest.raises(ValidationError, match=message):
        plugins.get("evaluator", "beta_frac_ceiling").Config(**options)


@pytest.mark.parametrize(("options", "message"), [
    ({"theta_e": [4.0, 12.0]}, "arcsec"),
    ({"theta_e": [1.0, 1.0]}, "repeats"),
    ({"threshold": 1.0}, "threshold"),
    ({"n_per_point": 0}, "n_per_point"),
])
def test_host_conditioning_bad_options(options, message):
    with pytest.raises(ValidationError, match=message):
        plugins.get("evaluator", "host_conditioning").Config(**options)


def test_bad_option_in_a_spec_names_its_path(tmp_path):
    spec = {"run": {"name": "x", "seed": 1, "out_dir": str(tmp_path / "x")},
            "data": {"name": "synthetic", "n_hosts": 20, "stamp": 64},
            "evaluate": [{"name": "beta_frac_ceiling", "source_mag_edges": [0.5, 1.0]}]}
    with pytest.raises(SpecError, match="evaluate.0.source_mag_edges.*AB magnitudes expected"):
        run(spec)


def _hosts(n: int, type_bin: str, size: int = 40):
    """Elliptical hosts (q = 0.5 along x) with a little sky noise, and their injector metadata."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    galaxy = 2.0 * np.exp(-0.5 * (xx**2 / 16 + yy**2 / 4))
    hosts = (galaxy[None, None] + rng.normal(0, 0.01, (n, 3, size, size))).astype(np.float32)
    meta = {"psfsize_r": np.full(n, 1.2), "psfdepth_r": np.full(n, 500.0), "type_bin": np.array([type_bin] * n),
            "galaxy_id": np.array([f"g{i}" for i in range(n)])}
    return hosts, meta


def test_model2_lrg_only_option_traces_any_host():
    from dhs_inject.injectors.model2 import host_shape

    hosts, meta = _hosts(4, "EXP")
    m1, m2 = plugins.get("injector", "model1"), plugins.get("injector", "model2")
    options = {"supersample": 1, "fast_kernel": False}
    strict = m2.impl(m2.Config(**options)).inject(hosts, meta, np.random.default_rng(2))
    assert strict.n_ok == 0 and strict.failures["host_not_lrg"] > 0
    traced = m2.impl(m2.Config(lrg_only=False, **options)).inject(hosts, meta, np.random.default_rng(2))
    assert traced.n_ok == 4 and not traced.failures
    shapes = np.array([host_shape(hosts[i, 1]) for i in traced.host_index])
    np.testing.assert_allclose(traced.params["lens_q"], np.clip(shapes[:, 0], 0.3, 1.0))
    np.testing.assert_allclose(traced.params["lens_phi"], shapes[:, 1])
    assert np.all(np.abs(shapes[:, 0] - 0.5) < 0.05)  # the hosts' own axis ratio
    # model 2 draws the prior's lens shape before replacing it, so with the same seed every other
    # parameter is model 1's: the conditioned and independent arms differ in the lens shape only
    independent = m1.impl(m1.Config(**options)).inject(hosts, meta, np.random.default_rng(2))
    for key in ("theta_e", "src_r_mag", "beta_frac", "src_x", "src_y", "gamma_ext", "src_r_e"):
        np.testing.assert_array_equal(traced.params[key], independent.params[key])
    assert not np.allclose(traced.params["lens_q"], independent.params["lens_q"])


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    out = tmp_path_factory.mktemp("injdiag") / "run"
    spec = {
        "run": {"name": "injdiag", "seed": 7, "out_dir": str(out)},
        # the synthetic survey renders 64 or 101 px stamps only
        "data": {"name": "synthetic", "n_hosts": 200, "stamp": 64, "positive_fraction": 0.3},
        "model": {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]},
        "train": {"epochs": 1, "micro_batch": 32, "effective_batch": 32, "cpu_threads": 1},
        "evaluate": [
            {"name": "classification", "n_bootstrap": 0, "plots": False},
            {"name": "beta_frac_ceiling", "injector": INJECTOR, "source_mag_edges": EDGES, "n_per_bin": N_PER_BIN},
            {"name": "host_conditioning", "independent": INJECTOR, "conditioned": CONDITIONED,
             "theta_e": THETA_E, "n_per_point": N_PER_POINT},
        ],
    }
    res = run(spec)
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    return res, out, metrics["evaluators"]


def test_beta_frac_ceiling_end_to_end(diagnosed):
    res, out, evaluators = diagnosed
    ev = evaluators["beta_frac_ceiling"]
    assert ev["component"]["distribution"] == "dhs-inject"
    assert [b["label"] for b in ev["bins"]] == ["18-20", "20-22", "22-24"]
    assert ev["counts"]["hosts"]["drawn"] == N_PER_BIN
    for name in ("restricted", "unrestricted"):
        for t in (0.3, 0.5):
            key = f"p>{t:g}"
            rates = [b["sets"][name]["thresholds"][key] for b in ev["bins"]]
            for b, r in zip(ev["bins"], rates):
                entry = b["sets"][name]
                assert entry["n_attempted"] == entry["n_ok"] + entry["n_failed"] and 0 < entry["n_ok"] <= N_PER_BIN
                assert r["n"] == entry["n_ok"] and r["completeness"] == pytest.approx(r["k"] / r["n"])
                np.testing.assert_allclose(r["interval_95"], _jeffreys(r["k"], r["n"], 0.95), rtol=1e-9, atol=1e-12)
                assert entry["mean_arc_snr"] > 0
            ceiling = ev["ceiling"][name][key]
            assert ceiling["ceiling"] == pytest.approx(max(r["k"] / r["n"] for r in rates))
            assert res.metrics[f"evaluate.beta_frac_ceiling.ceiling_{name}@{key}"] == pytest.approx(ceiling["ceiling"])
        # brighter sources give higher arc SNR: 2 mag per bin is a factor 10^0.8 in flux
        snr = [b["sets"][name]["mean_arc_snr"] for b in ev["bins"]]
        assert snr[0] > snr[1] > snr[2]
    verdict = ev["verdict"]
    top = ev["ceiling"]["restricted"]["p>0.3"]["ceiling"]
    assert verdict["verdict"] == ("geometry" if top >= 0.4 else "morphology")
    low, high = ev["ceiling"]["restricted"]["p>0.3"]["interval_95"]
    assert verdict["borderline"] == (low <= 0.4 <= high)
    assert (out / "evaluate" / "beta_frac_ceiling.png").stat().st_size > 1000
    assert ev["figures"] == ["beta_frac_ceiling.png"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "**beta_frac ceiling test (Q2.1)**" in card and f"Verdict: **{verdict['verdict']}**" in card
    assert "[beta_frac_ceiling.png](evaluate/beta_frac_ceiling.png)" in card


def test_host_conditioning_end_to_end(diagnosed):
    res, out, evaluators = diagnosed
    ev = evaluators["host_conditioning"]
    assert ev["reference_arm"] == "all_independent" and ev["threshold"] == 0.5
    assert [p["theta_e"] for p in ev["per_theta_e"]] == THETA_E
    assert ev["counts"]["hosts"]["lrg"]["available"] > 0  # the synthetic survey has DEV/SER hosts
    for arm in ARMS:
        rates = [p["arms"][arm] for p in ev["per_theta_e"]]
        for r in rates:
            assert r["status"] == "ok" and 0 < r["n"] <= N_PER_POINT and r["n_attempted"] == r["n"] + r["n_failed"]
            for tag, level in (("68", 0.68), ("95", 0.95)):
                np.testing.assert_allclose(r[f"interval_{tag}"], _jeffreys(r["k"], r["n"], level), rtol=1e-9,
                                           atol=1e-12)
            assert r["interval_95"][0] <= r["interval_68"][0] and r["interval_68"][1] <= r["interval_95"][1]
        pooled = ev["pooled"]["arms"][arm]
        assert pooled["k"] == sum(r["k"] for r in rates) and pooled["n"] == sum(r["n"] for r in rates)
        assert res.metrics[f"evaluate.host_conditioning.completeness_{arm}"] == pytest.approx(pooled["k"] / pooled["n"])
    for block in (*ev["per_theta_e"], ev["pooled"]):
        ref = block["arms"]["all_independent"]
        assert set(block["vs_reference"]) == {"lrg_conditioned", "lrg_independent", "all_conditioned"}
        for arm, test in block["vs_reference"].items():
            a = block["arms"][arm]
            assert test["status"] == "ok"
            assert test["difference"] == pytest.approx(a["k"] / a["n"] - ref["k"] / ref["n"])
            assert test["p_value"] == pytest.approx(_fisher_brute_force(a["k"], a["n"], ref["k"], ref["n"]), rel=1e-9)
            assert test["low"] <= test["difference"] <= test["high"]
    delta = ev["pooled"]["vs_reference"]["lrg_conditioned"]["difference"]
    assert res.metrics["evaluate.host_conditioning.delta_model2_vs_model1"] == pytest.approx(delta)
    assert (out / "evaluate" / "host_conditioning.png").stat().st_size > 1000
    card = (out / "MODEL_CARD.md").read_text()
    assert "**host conditioning (4-way test)**" in card
    assert "lrg_conditioned ~3.0 %" in card  # the published figures beside ours


def test_identical_beta_ranges_give_identical_sets(diagnosed):
    """Common random numbers: with both beta_frac ranges equal, the two sets are the same injections."""
    _, out, _ = diagnosed
    comp = plugins.get("evaluator", "beta_frac_ceiling")
    cfg = comp.Config(injector=INJECTOR, source_mag_edges=EDGES[:3], n_per_bin=4, beta_frac_restricted=(0.1, 0.55),
                      beta_frac_unrestricted=(0.1, 0.55), plots=False)
    result = comp.impl(cfg).evaluate(None, out / "evaluate", EvaluationContext(run_dir=out, seed=11))
    for b in result["bins"]:
        restricted, unrestricted = b["sets"]["restricted"], b["sets"]["unrestricted"]
        assert restricted == {**unrestricted, "beta_frac": restricted["beta_frac"]}
    assert result["headline"]["ceiling_restricted@p>0.3"] == result["headline"]["ceiling_unrestricted@p>0.3"]


def test_sets_differ_only_in_beta_frac(diagnosed):
    """The restricted and unrestricted configs, same hosts and seed: every drawn parameter but
    beta_frac (and the source position it sets) is equal, and beta_frac keeps its quantile."""
    _, out, _ = diagnosed
    finder = grp.load_run_model(out, "test")
    pool = hs.host_pool(out, splits=("test", "val"), lrg_only=False, metadata_columns=(), evaluator="test")
    hosts = hs.load_hosts(pool, hs.draw_rows(pool, 5, seed=3))
    comp, base = plugins.resolve("injector", INJECTOR)
    scored = {}
    for rng_range in ((0.1, 0.55), (0.1, 1.0), (0.1, 0.55)):
        config = hs.with_options(comp, base, "test", prior={"beta_frac": rng_range, "src_r_mag": (19.0, 20.0)})
        scored.setdefault(rng_range, []).append(hs.inject_and_score(finder, hosts, comp, config, seed=9, batch_size=2))
    a, again = scored[(0.1, 0.55)]
    np.testing.assert_array_equal(a.scores, again.scores)  # deterministic
    b = scored[(0.1, 1.0)][0]
    np.testing.assert_array_equal(a.host_index, b.host_index)
    for key in ("theta_e", "src_r_mag", "lens_q", "src_r_e", "gamma_ext"):
        np.testing.assert_array_equal(a.params[key], b.params[key])
    # beta = sqrt(lo^2 + u (hi^2 - lo^2)) with the same u in both sets
    u_a = (a.params["beta_frac"] ** 2 - 0.01) / (0.55**2 - 0.01)
    u_b = (b.params["beta_frac"] ** 2 - 0.01) / (1.0 - 0.01)
    np.testing.assert_allclose(u_a, u_b, rtol=1e-9)
    assert a.counts["n_ok"] == 5 and a.counts["n_attempted"] == 5 and not a.counts["failures"]


class _FluxFinder:
    """A stand-in finder whose score rises strictly with the r-band flux in the stamp."""

    metadata_columns = ()

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def score(self, images, *, meta=None, batch_size=64):
        flux = np.asarray(images, float)[:, 1].sum(axis=(1, 2))
        return flux / (flux + self.scale)


def test_brighter_bins_never_have_lower_completeness(diagnosed, monkeypatch):
    """Science check: with a score that rises with arc flux, completeness never falls towards
    brighter sources (the bins share hosts and draws, so each injection only gets brighter)."""
    _, out, _ = diagnosed
    pool = hs.host_pool(out, splits=("test", "val"), lrg_only=False, metadata_columns=(), evaluator="test")
    hosts = hs.load_hosts(pool, hs.draw_rows(pool, 6, seed=1))
    host_flux = hosts.images[:, 1].sum(axis=(1, 2))
    # scores of the bare hosts stay below 0.3; arcs of a few hundred nanomaggies cross 0.5
    monkeypatch.setattr(grp, "load_run_model", lambda run_dir, evaluator: _FluxFinder(2 * host_flux.max() + 50))
    comp = plugins.get("evaluator", "beta_frac_ceiling")
    edges = [16.0, 17.0, 18.0, 19.0, 20.0, 21.0]
    cfg = comp.Config(injector=INJECTOR, source_mag_edges=edges, n_per_bin=6, plots=False)
    result = comp.impl(cfg).evaluate(None, out / "evaluate", EvaluationContext(run_dir=out, seed=4))
    for name in ("restricted", "unrestricted"):
        for key in ("p>0.3", "p>0.5"):
            k = [b["sets"][name]["thresholds"][key]["k"] for b in result["bins"]]
            n = [b["sets"][name]["thresholds"][key]["n"] for b in result["bins"]]
            assert len(set(n)) == 1  # the same injections in every bin
            assert all(bright >= faint for bright, faint in zip(k, k[1:])), (name, key, k)
            assert k[0] > k[-1], (name, key, k)  # the check is not vacuous
        assert result["ceiling"][name]["p>0.3"]["bin"] == "16-17"


def test_host_conditioning_statistics_with_a_graded_scorer(diagnosed, monkeypatch):
    """With scores spread around the threshold (the tiny trained network scores everything alike),
    the per-arm rates, the Newcombe difference and the Fisher p-values are checked where they are
    not trivially 0 or 1."""
    _, out, _ = diagnosed
    pool = hs.host_pool(out, splits=("test", "val"), lrg_only=False, metadata_columns=(), evaluator="test")
    every = hs.load_hosts(pool, np.arange(pool.table.num_rows))
    # faint sources (the prior's r 23-26): detection is decided mostly by the host's own flux, so
    # about half the hosts are detected, and LRG-like hosts more often than the rest
    median_flux = float(np.median(every.images[:, 1].sum(axis=(1, 2))))
    monkeypatch.setattr(grp, "load_run_model", lambda run_dir, evaluator: _FluxFinder(median_flux))
    comp = plugins.get("evaluator", "host_conditioning")
    cfg = comp.Config(independent=INJECTOR, conditioned=CONDITIONED, theta_e=THETA_E, n_per_point=N_PER_POINT,
                      plots=False)
    result = comp.impl(cfg).evaluate(None, out / "evaluate", EvaluationContext(run_dir=out, seed=8))
    json.dumps(result, allow_nan=True)
    pooled = result["pooled"]
    ks = [pooled["arms"][arm]["k"] for arm in ARMS]
    assert any(0 < k < pooled["arms"][arm]["n"] for k, arm in zip(ks, ARMS))  # not all-or-nothing
    checked = 0
    for block in (*result["per_theta_e"], pooled):
        ref = block["arms"]["all_independent"]
        for arm, test in block["vs_reference"].items():
            a = block["arms"][arm]
            for tag, level in (("68", 0.68), ("95", 0.95)):
                np.testing.assert_allclose(a[f"interval_{tag}"], _jeffreys(a["k"], a["n"], level), rtol=1e-9)
            assert test["difference"] == pytest.approx(a["k"] / a["n"] - ref["k"] / ref["n"])
            assert test["p_value"] == pytest.approx(_fisher_brute_force(a["k"], a["n"], ref["k"], ref["n"]), rel=1e-9)
            assert -1 <= test["low"] <= test["difference"] <= test["high"] <= 1
            checked += test["p_value"] < 1
    assert checked > 0  # at least one comparison is not the trivial p = 1
    assert result["headline"]["delta_model2_vs_model1"] == pytest.approx(
        pooled["arms"]["lrg_conditioned"]["completeness"] - pooled["arms"]["all_independent"]["completeness"])


def test_no_lrg_hosts_leaves_lrg_arms_not_defined(diagnosed, monkeypatch):
    _, out, _ = diagnosed
    monkeypatch.setattr(hs, "LRG_TYPES", ("NO_SUCH_TYPE",))
    comp = plugins.get("evaluator", "host_conditioning")
    cfg = comp.Config(independent=INJECTOR, conditioned=CONDITIONED, theta_e=[1.5], n_per_point=3, plots=False)
    result = comp.impl(cfg).evaluate(None, out / "evaluate", EvaluationContext(run_dir=out, seed=2))
    json.dumps(result, allow_nan=True)
    for block in (result["per_theta_e"][0], result["pooled"]):
        for arm in ("lrg_conditioned", "lrg_independent"):
            assert block["arms"][arm]["status"] == "not defined: no LRG-like hosts"
            assert block["vs_reference"][arm]["status"] == "not defined: no LRG-like hosts"
        assert block["arms"]["all_conditioned"]["status"] == "ok"
        assert block["vs_reference"]["all_conditioned"]["status"] == "ok"
    assert set(result["headline"]) == {"completeness_all_independent", "completeness_all_conditioned"}
    assert math.isfinite(result["headline"]["completeness_all_conditioned"])
    # the ceiling test with an LRG-only injector (model 2) has no host at all: reported, not raised
    beta = plugins.get("evaluator", "beta_frac_ceiling")
    cfg = beta.Config(injector=CONDITIONED, source_mag_edges=EDGES, n_per_bin=2)
    result = beta.impl(cfg).evaluate(None, out / "evaluate", EvaluationContext(run_dir=out, seed=2))
    json.dumps(result, allow_nan=True)
    assert result["verdict"]["verdict"] == "not defined: no LRG-like hosts"
    assert result["headline"] == {} and result["figures"] == [] and result["counts"]["hosts"]["available"] == 0


def test_conditioned_injector_without_lrg_only_is_refused(diagnosed):
    _, out, _ = diagnosed
    comp = plugins.get("evaluator", "host_conditioning")
    cfg = comp.Config(conditioned=INJECTOR, theta_e=[1.0], n_per_point=2)
    with pytest.raises(UserError, match="evaluate.host_conditioning.conditioned.*lrg_only"):
        comp.impl(cfg).evaluate(None, out / "evaluate", EvaluationContext(run_dir=out))
