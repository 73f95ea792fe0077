"""The ``host_conditioning`` evaluator (the published 4-way test, model 2 vs model 1): does tying the
lens mass shape to the host's light change the measured completeness?

Four arms per theta_E point: hosts LRG-like (``type_bin`` DEV/SER) or all non-lenses, times the lens
axis ratio and position angle traced by the host's r-band light (``conditioned``: model 2; for all
hosts with ``lrg_only = false``) or drawn from the prior independently of the host
(``independent``: model 1). The reference arm is ``all_independent`` — model 1 as the selection
function uses it — and ``lrg_conditioned`` is model 2, so their difference is the published
"model 2 vs model 1" (-0.77 pp). The published completeness at p > 0.5, 500 per point at six theta_E
points: LRG + conditioned ~3.0 %, LRG + random ~3.2 %, all + random ~3.3 %, all + conditioned ~3.4 %.

Hosts: per host set, ``n_per_point`` hosts per theta_E point, distinct across points while the pool
allows (the question is about hosts, so pooling over theta_E should see as many as it can). The two
arms of a host set inject into the same hosts with the same random stream (common random numbers):
they differ in the lens q and PA only (model 2 draws the prior's q and PA, then replaces them).
Each arm: k/n (detected: score > threshold) with Jeffreys 68 % and 95 % intervals, per theta_E and
pooled. Each arm against the reference: the difference with Newcombe's hybrid score 95 % interval
and a two-sided Fisher exact p-value (:func:`dhs_eval.stats.compare_proportions`); both treat the
arms as independent samples, which is conservative for arms that share hosts and draws.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dhs_core import plugins
from dhs_core.errors import UserError
from dhs_core.seeds import derive_seed
from dhs_eval.evaluators.base import EvaluationContext
from dhs_eval.intervals import binomial_interval
from dhs_eval.stats import compare_proportions
from dhs_inject.diagnostics import groups as grp
from dhs_inject.diagnostics import hosts as hs
from dhs_inject.diagnostics.configs import HostConditioningConfig

#: arm -> (host set, lens shape)
ARMS = {"lrg_conditioned": ("lrg", "conditioned"), "lrg_independent": ("lrg", "independent"),
        "all_independent": ("all", "independent"), "all_conditioned": ("all", "conditioned")}
REFERENCE = "all_independent"
FIGURE = "host_conditioning.png"
NO_LRG = "not defined: no LRG-like hosts"
#: published completeness at p > 0.5 (500 per point, 6 theta_E points), for the card
PUBLISHED = {"lrg_conditioned": "~3.0 %", "lrg_independent": "~3.2 %", "all_independent": "~3.3 %",
             "all_conditioned": "~3.4 %"}


def completeness(k: int, n: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """k/n with Jeffreys 68 % and 95 % intervals (None when n = 0)."""
    out: dict[str, Any] = {"k": int(k), "n": int(n), **(extra or {})}
    if n == 0:
        return {**out, "completeness": math.nan, "interval_68": None, "interval_95": None,
                "status": "not defined: no valid injection"}
    intervals = {f"interval_{name}": [float(x) for x in binomial_interval(k, n, level=level, method="jeffreys")]
                 for name, level in (("68", 0.68), ("95", 0.95))}
    return {**out, "completeness": k / n, **intervals, "status": "ok"}


def _versus(arm: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    if arm.get("status", "").startswith("not defined") or ref.get("status", "").startswith("not defined"):
        return {"difference": math.nan, "status": arm["status"] if arm["status"] != "ok" else ref["status"]}
    return compare_proportions(arm["k"], arm["n"], ref["k"], ref["n"], level=0.95)


def _plot(path: Path, theta_e: tuple[float, ...], points: list[dict[str, Any]], threshold: float) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from dhs_eval.plots import save_figure

    fig = Figure(figsize=(6.5, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.asarray(theta_e, float)
    spread = 0.015 * (x.max() - x.min() if x.size > 1 else 1.0)
    for j, arm in enumerate(ARMS):
        rates = [p["arms"][arm] for p in points]
        if all(r["status"] != "ok" for r in rates):
            continue
        y = np.array([r["completeness"] for r in rates], float)
        lo = np.array([r["interval_68"][0] if r["interval_68"] else np.nan for r in rates])
        hi = np.array([r["interval_68"][1] if r["interval_68"] else np.nan for r in rates])
        ax.errorbar(x + (j - 1.5) * spread, y, yerr=[y - lo, hi - y], marker="os^v"[j], ms=4, capsize=2,
                    label=arm.replace("_", " + ") + (" (reference: model 1)" if arm == REFERENCE else ""))
    ax.set_xlabel("theta_E (arcsec)")
    ax.set_ylabel(f"completeness p > {threshold:g} (68 % Jeffreys interval)")
    ax.set_title("host conditioning: LRG vs all hosts x lens shape from host light vs prior", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _rate_text(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        return r["status"]
    lo68, hi68 = r["interval_68"]
    lo95, hi95 = r["interval_95"]
    return f"{r['completeness']:.4f} ({r['k']}/{r['n']}) [68 %: {lo68:.4f}, {hi68:.4f}; 95 %: {lo95:.4f}, {hi95:.4f}]"


def _diff_text(d: dict[str, Any]) -> str:
    if d.get("status") != "ok":
        return d.get("status", "—")
    return f"{d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def _card(result: dict[str, Any], threshold: float) -> dict[str, Any]:
    columns = ["theta_E (arcsec)", "arm", f"completeness p > {threshold:g} (k/n) [Jeffreys]",
               "difference vs all_independent [95 % Newcombe]", "Fisher exact p (two-sided)"]
    rows = []
    for label, block in [*((f"{p['theta_e']:g}", p) for p in result["per_theta_e"]), ("pooled", result["pooled"])]:
        for arm in ARMS:
            d = block["vs_reference"].get(arm)
            rows.append([label, arm, _rate_text(block["arms"][arm]), _diff_text(d) if d else "reference",
                         d["p_value"] if d and d.get("status") == "ok" else None])
    pooled = result["pooled"]["arms"]
    published = "; ".join(f"{arm} {PUBLISHED[arm]}" for arm in ARMS)
    ours = "; ".join(f"{arm} {pooled[arm]['completeness']:.4f}" if pooled[arm]["status"] == "ok"
                     else f"{arm} {pooled[arm]['status']}" for arm in ARMS)
    delta = result["pooled"]["vs_reference"]["lrg_conditioned"]
    notes = [f"Pooled over theta_E: {ours}. Published (C(p > 0.5), 500 per point, 6 theta_E points): {published}; "
             "model 2 vs model 1 -0.77 pp.",
             f"Model 2 - model 1 (lrg_conditioned - all_independent, pooled): {_diff_text(delta)}"
             + (f", Fisher p = {delta['p_value']:.3g}" if delta.get("status") == "ok" else "") + ". "
             "The two arms of a host set share hosts and random draws (common random numbers); the Fisher test "
             "and the Newcombe interval treat arms as independent samples, so they are conservative there."]
    return {"tables": [{"title": "host conditioning (4-way test)", "columns": columns, "rows": rows}], "notes": notes}


class HostConditioningEvaluator:
    """Completeness of LRG vs all hosts x lens shape conditioned on the host vs from the prior."""

    name = "host_conditioning"

    def __init__(self, config: HostConditioningConfig) -> None:
        self.config = config

    def _configs(self) -> dict[str, tuple[Any, list[Any]]]:
        """arm -> (injector component, config per theta_E point), validated before any work."""
        cfg = self.config
        out = {}
        resolved = {shape: plugins.resolve("injector", getattr(cfg, shape), where=f"evaluate.{self.name}.{shape}")
                    for shape in ("independent", "conditioned")}
        comp, _ = resolved["conditioned"]
        if "lrg_only" not in comp.Config.model_fields:
            raise UserError(f"evaluate.{self.name}.conditioned: injector {comp.name!r} has no 'lrg_only' option, so the "
                            "all-hosts conditioned arm cannot be built; use model2 (lens q and PA from the host light)")
        for arm, (host_set, shape) in ARMS.items():
            comp, base = resolved[shape]
            where = f"evaluate.{self.name}.{shape}"
            options = {"lrg_only": False} if (shape, host_set) == ("conditioned", "all") else {}
            out[arm] = (comp, [hs.with_options(comp, base, where, prior={"theta_e": (t, t)}, **options)
                               for t in cfg.theta_e])
        return out

    def evaluate(self, predictions: pa.Table, out_dir: Path, context: EvaluationContext) -> dict[str, Any]:
        cfg = self.config
        run_dir = grp.require_run_dir(context, self.name)
        configs = self._configs()
        finder = grp.load_run_model(run_dir, self.name)
        pools = {host_set: hs.host_pool(run_dir, splits=cfg.splits, lrg_only=host_set == "lrg",
                                        metadata_columns=finder.metadata_columns, evaluator=self.name)
                 for host_set in ("lrg", "all")}
        n_points = len(cfg.theta_e)
        rows = {s: hs.draw_rows(pool, n_points * cfg.n_per_point, derive_seed(context.seed, "hosts", s))
                for s, pool in pools.items()}
        host_counts = {s: {**pool.counts, "requested": int(rows[s].size), "unique": int(np.unique(rows[s]).size)}
                       for s, pool in pools.items()}
        for s in pools:
            host_counts[s]["reused"] = host_counts[s]["requested"] - host_counts[s]["unique"]
            host_counts[s]["unreadable"] = 0
        context.log(f"{self.name}: {n_points} theta_E points x {cfg.n_per_point} injections x 4 arms "
                    f"({pools['lrg'].counts['available']} LRG-like of {pools['all'].counts['available']} hosts)")
        points: list[dict[str, Any]] = []
        pooled_counts = {arm: {"k": 0, "n": 0, "n_attempted": 0, "n_failed": 0, "failures": {}} for arm in ARMS}
        for i, theta_e in enumerate(cfg.theta_e):
            point: dict[str, Any] = {"theta_e": theta_e, "arms": {}, "vs_reference": {}}
            for host_set, pool in pools.items():
                if pool.counts["available"] == 0:
                    for arm in (a for a, (s, _) in ARMS.items() if s == host_set):
                        point["arms"][arm] = {"k": 0, "n": 0, "completeness": math.nan, "interval_68": None,
                                              "interval_95": None, "status": NO_LRG if host_set == "lrg" else
                                              "not defined: no non-lens hosts in the held-out splits"}
                    continue
                hosts = hs.load_hosts(pool, rows[host_set][i * cfg.n_per_point:(i + 1) * cfg.n_per_point])
                host_counts[host_set]["unreadable"] += hosts.counts["unreadable"]
                seed = derive_seed(context.seed, "injections", host_set, i)  # shared by both arms of the set
                for arm in (a for a, (s, _) in ARMS.items() if s == host_set):
                    comp, per_point = configs[arm]
                    scored = hs.inject_and_score(finder, hosts, comp, per_point[i], seed=seed,
                                                 batch_size=cfg.batch_size)
                    k = int((scored.scores > cfg.threshold).sum())
                    snr = scored.params.get("arc_snr", np.zeros(0))
                    point["arms"][arm] = completeness(k, scored.counts["n_ok"], {
                        "n_attempted": scored.counts["n_attempted"], "n_failed": scored.counts["n_failed"],
                        "failures": scored.counts["failures"],
                        "mean_arc_snr": float(snr.mean()) if snr.size else math.nan})
                    _accumulate(pooled_counts[arm], point["arms"][arm], k)
            points.append(point)
        pooled: dict[str, Any] = {"arms": {}, "vs_reference": {}}
        for arm, (host_set, _) in ARMS.items():
            c = pooled_counts[arm]
            if pools[host_set].counts["available"] == 0:
                pooled["arms"][arm] = points[0]["arms"][arm] if points else {"status": NO_LRG}
            else:
                pooled["arms"][arm] = completeness(c["k"], c["n"], {k: c[k] for k in ("n_attempted", "n_failed",
                                                                                       "failures")})
        for block in (*points, pooled):
            for arm in ARMS:
                if arm != REFERENCE:
                    block["vs_reference"][arm] = _versus(block["arms"][arm], block["arms"][REFERENCE])
        result: dict[str, Any] = {
            "config": cfg.model_dump(mode="json"),
            "counts": {"hosts": host_counts,
                       "injectors": {shape: {"name": configs[arm][0].name, "distribution": configs[arm][0].distribution,
                                             "version": configs[arm][0].version}
                                     for arm, shape in (("all_independent", "independent"),
                                                        ("all_conditioned", "conditioned"))}},
            "arms": {arm: {"host_set": s, "lens_shape": shape} for arm, (s, shape) in ARMS.items()},
            "reference_arm": REFERENCE,
            "threshold": cfg.threshold,
            "per_theta_e": points,
            "pooled": pooled,
            "figures": [],
        }
        headline = {f"completeness_{arm}": float(r["completeness"]) for arm, r in pooled["arms"].items()
                    if r.get("status") == "ok"}
        delta = pooled["vs_reference"]["lrg_conditioned"]
        if delta.get("status") == "ok":
            headline["delta_model2_vs_model1"] = float(delta["difference"])
        result["headline"] = headline
        if cfg.plots and points and any(p["arms"][a]["status"] == "ok" for p in points for a in ARMS):
            out_dir.mkdir(parents=True, exist_ok=True)
            _plot(out_dir / FIGURE, cfg.theta_e, points, cfg.threshold)
            result["figures"].append(FIGURE)
        result["card"] = _card(result, cfg.threshold)
        return result


def _accumulate(total: dict[str, Any], arm: dict[str, Any], k: int) -> None:
    total["k"] += k
    total["n"] += arm["n"]
    total["n_attempted"] += arm["n_attempted"]
    total["n_failed"] += arm["n_failed"]
    for reason, count in arm["failures"].items():
        total["failures"][reason] = total["failures"].get(reason, 0) + count
