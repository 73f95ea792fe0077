"""The ``arc_morphology`` evaluator: do injected arcs look like real arcs, statistic by statistic?

Residual images of three samples are summarised by :mod:`dhs_eval.diagnostics.arc_morphology`
(high-frequency power fraction, structure-tensor anisotropy, colour-gradient coherence, local
variance ratio):

* ``real``: real lenses of the held-out splits, the lens galaxy removed by a median filter
  (:func:`~dhs_eval.diagnostics.arc_morphology.median_filter_residual`, ``median_size`` px);
* ``injected_arcs``: the injected arcs alone (``InjectionBatch.arcs``: the arc as rendered, after
  the PSF, without the host or its noise);
* ``injected_residuals``: the injected cutouts (host + arc) through the same median filter as the
  real lenses — the like-for-like comparison, since the median filter itself alters arcs and
  leaves host and noise residuals that a true arc image does not have.

Each statistic is compared between ``real`` and each injected sample with a two-sample KS test
(:func:`dhs_eval.stats.ks_test`). The KS statistic depends only on the ordering of the values, so an
infinite variance ratio (a noise-free arc: zero variance off the annulus) is ranked above every
finite value rather than dropped. Headline: the KS statistic of each statistic, real vs injected
arcs (``<statistic>_ks``) and real vs injected residuals (``<statistic>_ks_residuals``). Figure:
``arc_morphology_histograms.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dhs_eval.diagnostics import arc_morphology as am
from dhs_eval.evaluators.base import EvaluationContext
from dhs_eval.stats import ks_test
from dhs_inject.diagnostics import groups as grp
from dhs_inject.diagnostics.configs import ArcMorphologyConfig

SAMPLES = ("real", "injected_arcs", "injected_residuals")


def _summary(values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"n": int(values.size), "n_nan": int(np.isnan(values).sum()),
                           "n_inf": int(np.isinf(values).sum())}
    if finite.size:
        q16, q50, q84 = np.percentile(finite, [16, 50, 84])
        out.update(median=float(q50), p16=float(q16), p84=float(q84))
    return out


def _ranked(values: np.ndarray) -> np.ndarray:
    # KS depends on ordering only: +inf becomes the largest float, which keeps its rank
    return np.where(np.isposinf(values), np.finfo(np.float64).max, values)


def _plot(path: Path, stats: dict[str, dict[str, np.ndarray]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from dhs_eval.plots import save_figure

    fig = Figure(figsize=(9.0, 6.5))
    FigureCanvasAgg(fig)
    for i, name in enumerate(am.STATISTICS):
        ax = fig.add_subplot(2, 2, i + 1)
        log = name == "local_variance_ratio"
        for sample in SAMPLES:
            v = stats[sample][name]
            v = v[np.isfinite(v) & ((v > 0) if log else True)]
            if v.size:
                ax.hist(np.log10(v) if log else v, bins=20, histtype="step", density=True, label=sample)
        ax.set_xlabel(f"log10 {name}" if log else name, fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle("arc residuals: real lenses (median-filter residual) vs injections", fontsize=9)
    save_figure(fig, path)


class ArcMorphologyEvaluator:
    """KS tests of arc-morphology statistics between real lens residuals and injected arcs."""

    name = "arc_morphology"

    def __init__(self, config: ArcMorphologyConfig) -> None:
        self.config = config

    def evaluate(self, predictions: pa.Table, out_dir: Path, context: EvaluationContext) -> dict[str, Any]:
        from dhs_core.errors import UserError

        cfg = self.config
        if cfg.median_size % 2 == 0:
            raise UserError(f"evaluate.{self.name}.median_size = {cfg.median_size}: must be odd (e.g. 7)")
        run_dir = grp.require_run_dir(context, self.name)
        groups = grp.draw_groups(run_dir, splits=cfg.splits, n_per_group=cfg.n_per_group, injector=cfg.injector,
                                 metadata_columns=(), seed=context.seed, evaluator=self.name)
        context.log(f"arc_morphology: {groups.counts['positives']} real lenses, {groups.counts['injections']} injections")
        kw = {"k_cut": cfg.k_cut, "smoothing": cfg.smoothing, "half_width": cfg.half_width}
        residuals = {
            "real": am.median_filter_residual(groups.positives, size=cfg.median_size) if len(groups.positives) else None,
            "injected_arcs": groups.arcs if len(groups.arcs) else None,
            "injected_residuals": (am.median_filter_residual(groups.injections, size=cfg.median_size)
                                   if len(groups.injections) else None),
        }
        stats = {s: (am.arc_statistics(r, **kw) if r is not None else {n: np.zeros(0) for n in am.STATISTICS})
                 for s, r in residuals.items()}
        result: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "counts": groups.counts, "statistics": {},
                                  "figures": []}
        headline: dict[str, float] = {}
        for name in am.STATISTICS:
            entry: dict[str, Any] = {s: _summary(stats[s][name]) for s in SAMPLES}
            for other, suffix in (("injected_arcs", ""), ("injected_residuals", "_residuals")):
                test = ks_test(_ranked(stats["real"][name]), _ranked(stats[other][name]))
                entry[f"ks_real_vs_{other}"] = test
                if test["status"] == "ok":
                    headline[f"{name}_ks{suffix}"] = float(test["statistic"])
            result["statistics"][name] = entry
        if cfg.plots and any(len(v) for s in stats.values() for v in s.values()):
            out_dir.mkdir(parents=True, exist_ok=True)
            _plot(out_dir / "arc_morphology_histograms.png", stats)
            result["figures"].append("arc_morphology_histograms.png")
        result["headline"] = headline
        return result
