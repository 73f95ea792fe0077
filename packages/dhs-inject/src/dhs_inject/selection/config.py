"""The ``[selection_function]`` spec section: grid axes, injector, thresholds and host choice.

Every axis is given in the field's units and checked for them: theta_E and the PSF FWHM in
arcsec, the host's 5-sigma point-source depth and the source magnitude in AB mag, beta_frac as a
fraction of theta_E. Edges that are implausible for their unit (a depth of 24 given as an
inverse variance, a PSF of 4 given in pixels) are a spec error naming the unit expected.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from dhs_core import ComponentConfig, Slot
from dhs_inject.injectors.configs import Perturbation

#: default detection operating point: ~1 false positive per 1000 non-lenses, as a survey search runs
DEFAULT_TARGET_FPR = 1e-3
#: plausible ranges of each axis in its unit (beyond them the value is almost surely another unit)
THETA_E_MAX = 10.0  # arcsec: galaxy- and group-scale lenses
PSF_FWHM_MAX = 5.0  # arcsec: 5" is ~19 DECam pixels of 0.262"
DEPTH_MAG_RANGE = (18.0, 30.0)  # 5-sigma point-source depth, AB mag
SOURCE_MAG_RANGE = (15.0, 32.0)  # unlensed source r magnitude, AB mag
#: psfdepth_r (inverse variance, 1/nanomaggy^2) edges all below this are magnitudes in disguise:
#: psfdepth 35 is a 5-sigma depth of 22.6 mag, far shallower than any survey this grid is for
PSFDEPTH_MIN_PLAUSIBLE = 35.0


class SensitivityVariant(Perturbation):
    """One sensitivity variant: a named perturbation of the injected population (see
    :class:`dhs_inject.injectors.configs.Perturbation`), re-rendered into the same hosts with the
    same random draws and scored by the same model."""

    # variant name (letters, digits, + - . _ %): a column value of sensitivity.parquet
    name: str = Field(pattern=r"^[A-Za-z0-9+._%-]{1,40}$")


#: ``sensitivity = "published"``: the published sensitivity variants, PSF FWHM +-10 %, source R_e
#: +-30 %, source g - r +-0.2 mag, lens q broad [0.3, 1] and narrow [0.7, 1]. The publication's
#: text counts nine variants but its table lists these eight; the ninth is not identified, so the
#: preset adds an unperturbed re-render instead, labelled as a check (its Delta C must be exactly 0
#: in every cell: common random numbers), not as a published variant
PUBLISHED_SENSITIVITY = (
    {"name": "psf+10%", "psf_fwhm_scale": 1.1}, {"name": "psf-10%", "psf_fwhm_scale": 0.9},
    {"name": "re+30%", "src_r_e_scale": 1.3}, {"name": "re-30%", "src_r_e_scale": 0.7},
    {"name": "g-r+0.2", "src_g_r_shift": 0.2}, {"name": "g-r-0.2", "src_g_r_shift": -0.2},
    {"name": "lens_q_broad", "lens_q": (0.3, 1.0)}, {"name": "lens_q_narrow", "lens_q": (0.7, 1.0)},
    {"name": "identity_check"},
)


class PriorSet(ComponentConfig):
    """A named injection prior for the dual-prior report: the grid cells whose theta_E lies in its
    range, injected with source magnitudes in the overlap of the cell's bin and its magnitude range
    and with its beta_frac range."""

    # prior-set name (letters, digits, + - . _)
    name: str = Field(pattern=r"^[A-Za-z0-9+._-]{1,40}$")
    # Einstein radii included (arcsec): the grid's theta_E values inside [lo, hi]
    theta_e: tuple[float, float]
    # source offset / theta_E drawn inside [lo, hi] (area-weighted, as the prior)
    beta_frac: tuple[float, float]
    # unlensed source r magnitudes (AB) drawn inside [lo, hi] (within each cell's magnitude bin)
    src_r_mag: tuple[float, float]

    @model_validator(mode="after")
    def _ranges(self) -> PriorSet:
        for field in ("theta_e", "beta_frac", "src_r_mag"):
            lo, hi = getattr(self, field)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ValueError(f"prior set {self.name!r}: {field} = [{lo}, {hi}] needs lo <= hi")
        if self.beta_frac[0] < 0 or self.beta_frac[1] > 1:
            raise ValueError(f"prior set {self.name!r}: beta_frac = {list(self.beta_frac)} must lie in [0, 1]")
        return self


#: the published dual priors (docs/papers.md, the selection-function prior sets): "broad" and
#: the observationally "anchored" ranges of theta_E, beta_frac and the source r magnitude
PRIOR_PRESETS = {
    "broad": {"theta_e": (0.5, 3.0), "beta_frac": (0.1, 1.0), "src_r_mag": (23.0, 26.0)},
    "anchored": {"theta_e": (0.8, 2.5), "beta_frac": (0.1, 0.55), "src_r_mag": (23.0, 25.0)},
}


class ThresholdsConfig(ComponentConfig):
    """Detection thresholds applied to one set of scores: fixed probabilities and target FPRs.

    Each gives its own completeness per cell (``cells.parquet`` has one row per cell and
    threshold). The first ``fixed`` value (or, without fixed values, the first ``fpr``) is the
    primary threshold: the one the plots, the gallery and the headline metric use.
    """

    # fixed score thresholds (sigmoid probability): a lens is called when score >= value
    fixed: list[float] = []
    # target false-positive rates on the validly scored negatives of threshold_split
    fpr: list[float] = []

    @model_validator(mode="after")
    def _valid(self) -> ThresholdsConfig:
        if not self.fixed and not self.fpr:
            raise ValueError("thresholds needs at least one value, e.g. { fixed = [0.5], fpr = [1e-3] }")
        for name, values in (("fixed", self.fixed), ("fpr", self.fpr)):
            bad = [v for v in values if not (math.isfinite(v) and 0 < v < 1)]
            if bad:
                what = "score thresholds (probabilities)" if name == "fixed" else "false-positive rates"
                raise ValueError(f"thresholds.{name} = {values!r}: {what} must lie in (0, 1); got {bad!r}")
            if len(set(values)) != len(values):
                raise ValueError(f"thresholds.{name} = {values!r} repeats a value")
        return self

    def entries(self) -> list[tuple[str, str, float]]:
        """(name, kind, value) per threshold, primary first: kind "fixed" or "target_fpr"."""
        return ([(f"p>={v:g}", "fixed", float(v)) for v in self.fixed]
                + [(f"fpr={v:g}", "target_fpr", float(v)) for v in self.fpr])


class ThetaEGrid(ComponentConfig):
    """Einstein radii injected: start, start + step, ... up to and including stop (arcsec)."""

    # smallest Einstein radius injected, arcsec
    start: float = Field(0.5, gt=0)
    # largest Einstein radius injected (included when on the step lattice), arcsec
    stop: float = Field(3.0, gt=0)
    # spacing of the grid, arcsec
    step: float = Field(0.25, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> ThetaEGrid:
        if self.stop < self.start:
            raise ValueError(f"theta_e stop = {self.stop} is below start = {self.start}; give start <= stop (arcsec)")
        if self.stop > THETA_E_MAX:
            raise ValueError(f"theta_e stop = {self.stop}: theta_E is in arcsec and at most {THETA_E_MAX:g} for "
                             "galaxy-scale lenses (was it given in pixels of 0.262\"?)")
        if (self.stop - self.start) / self.step > 1000:
            raise ValueError(f"theta_e grid start={self.start}, stop={self.stop}, step={self.step} has more than "
                             "1000 values; use a coarser step")
        return self

    def values(self) -> list[float]:
        """The grid values, rounded to 1e-9 arcsec so 0.1-type steps do not drift."""
        n = int(math.floor((self.stop - self.start) / self.step + 1e-9)) + 1
        return [round(self.start + i * self.step, 9) for i in range(n)]


def _check_edges(value: list[float] | None, what: str) -> list[float] | None:
    if value is None:
        return None
    if len(value) < 2:
        raise ValueError(f"{what} needs at least two edges (one bin); got {value!r}")
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"{what} edges must be finite numbers; got {value!r}")
    if any(b <= a for a, b in zip(value, value[1:])):
        raise ValueError(f"{what} edges must increase strictly (empty bins are not allowed); got {value!r}")
    return value


class SelectionFunctionConfig(ComponentConfig):
    """Injection-recovery grid: theta_E x PSF bin x depth bin x source magnitude bin (x beta_frac bin).

    Hosts are binned by their own observing conditions (``psfsize_r``, ``psfdepth_r`` from the
    manifest; depth bins in 5-sigma AB mag with ``depth_mag_edges``); arcs are convolved with the
    host's PSF, never re-blurred to a bin value. Detection (``score >= threshold``) at every entry
    of ``thresholds`` from one scoring pass; the single ``target_fpr`` / ``threshold`` forms are
    one-entry shorthands (at most one of the three; with none, ``target_fpr`` = 1e-3).
    """

    # injection model (a registered injector, selected by name); its prior's theta_e and
    # src_r_mag ranges are replaced per cell by the grid value and the magnitude bin
    injector: Annotated[Any, Slot("injector")] = {"name": "model1"}
    # Einstein radii injected (each cell injects exactly one value), arcsec
    theta_e: ThetaEGrid = ThetaEGrid()
    # edges of the host r-band PSF FWHM bins, arcsec; None = one bin holding every host
    psfsize_r_edges: list[float] | None = None
    # edges of the host r-band psfdepth bins (inverse variance, 1/nanomaggy^2; 5-sigma depth
    # m5 = 22.5 - 2.5 log10(5/sqrt(psfdepth))); None = one bin holding every host
    psfdepth_r_edges: list[float] | None = None
    # edges of the host r-band 5-sigma point-source depth bins, AB mag (the published grid:
    # 24.0-25.5); instead of psfdepth_r_edges, never with them
    depth_mag_edges: list[float] | None = None
    # edges of beta_frac bins (source offset / theta_E); each cell draws beta_frac inside its bin
    # (area-weighted, as the prior does); None = the injector prior's range, one bin
    beta_frac_edges: list[float] | None = None
    # edges of the unlensed source r-band AB magnitude bins; magnitudes are drawn uniformly inside
    source_mag_edges: list[float] = [23.0, 24.0, 25.0, 26.0]
    # injections requested per cell (failed attempts are retried on new hosts by the injector)
    per_cell: int = Field(200, ge=1, le=1_000_000)
    # split whose non-lens cutouts (label 0) serve as hosts; test keeps them unseen by training
    host_split: str = "test"
    # pools the hosts come from (e.g. ["N1"] for ordinary galaxies only); None = every non-lens
    host_pools: list[str] | None = None
    # detection thresholds, all from one scoring pass: { fixed = [0.3, 0.5, 0.7], fpr = [1e-3, 1e-4] }
    thresholds: ThresholdsConfig | None = None
    # false-positive rate on the validly scored negatives of threshold_split fixing the threshold
    target_fpr: float | None = Field(None, gt=0, lt=1)
    # fixed score threshold instead of target_fpr (sigmoid probability)
    threshold: float | None = Field(None, ge=0, le=1)
    # split of train/scores.parquet whose negatives set the target-FPR threshold
    threshold_split: Literal["val", "test"] = "val"
    # prior sets reported side by side, each with its own cells and summary: preset names
    # ("broad", "anchored": the published dual priors) and/or tables {name, theta_e, beta_frac, src_r_mag}
    priors: list[str | PriorSet] = []
    # sensitivity variants re-rendered in the same run ([[selection_function.sensitivity]] tables,
    # or "published" for the published nine); each writes Delta C per cell to sensitivity.parquet
    sensitivity: list[SensitivityVariant] | Literal["published"] = []
    # injection QA before the grid (qa.json): "stop" = a failed check stops the stage with the
    # reason, "warn" = logged and the grid goes on, "off" = not run
    qa: Literal["stop", "warn", "off"] = "stop"
    # hosts (one injection each) in the QA sample
    qa_n: int = Field(100, ge=1, le=100_000)
    # injections rendered and scored per batch (memory ~ a few x batch_size x 3 x H x W floats)
    batch_size: int = Field(128, ge=1, le=100_000)
    # where the finder scores the injections: "auto" = CUDA when present, else the CPU (float32 on
    # the CPU: the train stage's own scores); "cuda" without CUDA is refused when the stage starts
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # write completeness PNGs (vs theta_E per magnitude bin; theta_E x PSF heatmap)
    plots: bool = True

    @model_validator(mode="before")
    @classmethod
    def _one_threshold_rule(cls, data: Any) -> Any:
        if isinstance(data, dict):
            has_fpr, has_thr = data.get("target_fpr") is not None, data.get("threshold") is not None
            has_many = data.get("thresholds") is not None
            if has_many and (has_fpr or has_thr):
                raise ValueError("give thresholds = { fixed = [...], fpr = [...] } or the single target_fpr / threshold, "
                                 "not both")
            if has_fpr and has_thr:
                raise ValueError("give either target_fpr (threshold from the negatives) or threshold (fixed), not both")
            if not has_fpr and not has_thr and not has_many:
                data = {**data, "target_fpr": DEFAULT_TARGET_FPR}
        return data

    @field_validator("psfsize_r_edges")
    @classmethod
    def _psf_edges(cls, v: list[float] | None) -> list[float] | None:
        v = _check_edges(v, "psfsize_r_edges")
        if v is not None and v[0] < 0:
            raise ValueError(f"psfsize_r_edges are PSF FWHM in arcsec and cannot be negative; got {v!r}")
        if v is not None and v[-1] > PSF_FWHM_MAX:
            raise ValueError(f"psfsize_r_edges = {v!r}: the PSF FWHM is in arcsec (DR10 seeing ~0.8-2\"); edges above "
                             f"{PSF_FWHM_MAX:g}\" look like pixels (multiply pixels by 0.262\"/px)")
        return v

    @field_validator("psfdepth_r_edges")
    @classmethod
    def _depth_edges(cls, v: list[float] | None) -> list[float] | None:
        v = _check_edges(v, "psfdepth_r_edges")
        if v is not None and v[0] <= 0:
            raise ValueError(f"psfdepth_r_edges are inverse variances (1/nanomaggy^2) and must be > 0; got {v!r}")
        if v is not None and v[-1] < PSFDEPTH_MIN_PLAUSIBLE:
            raise ValueError(f"psfdepth_r_edges = {v!r} look like 5-sigma depths in AB mag, not inverse variances "
                             "(1/nanomaggy^2, ~400-6000 for 24-25.5 mag); give them as depth_mag_edges")
        return v

    @field_validator("depth_mag_edges")
    @classmethod
    def _depth_mag_edges(cls, v: list[float] | None) -> list[float] | None:
        v = _check_edges(v, "depth_mag_edges")
        lo, hi = DEPTH_MAG_RANGE
        if v is not None and (v[0] < lo or v[-1] > hi):
            raise ValueError(f"depth_mag_edges = {v!r}: 5-sigma point-source depths in AB mag lie within [{lo:g}, {hi:g}] "
                             "(DR10: ~23.5-25.5); inverse variances go in psfdepth_r_edges")
        return v

    @field_validator("beta_frac_edges")
    @classmethod
    def _beta_edges(cls, v: list[float] | None) -> list[float] | None:
        v = _check_edges(v, "beta_frac_edges")
        if v is not None and (v[0] < 0 or v[-1] > 1):
            raise ValueError(f"beta_frac_edges = {v!r}: beta_frac is the source offset in units of theta_E and lies "
                             "in [0, 1] for a strongly lensed source")
        return v

    @field_validator("source_mag_edges")
    @classmethod
    def _mag_edges(cls, v: list[float]) -> list[float]:
        v = _check_edges(v, "source_mag_edges")
        lo, hi = SOURCE_MAG_RANGE
        if v[0] < lo or v[-1] > hi:
            raise ValueError(f"source_mag_edges = {v!r}: unlensed source r magnitudes (AB) lie within [{lo:g}, {hi:g}]")
        return v

    @field_validator("sensitivity")
    @classmethod
    def _variants(cls, v):
        if v == "published":
            return [SensitivityVariant(**d) for d in PUBLISHED_SENSITIVITY]
        names = [x.name for x in v]
        if len(set(names)) != len(names):
            raise ValueError(f"sensitivity variant names repeat: {names}")
        if "baseline" in names:
            raise ValueError("'baseline' names the unperturbed grid; give the variant another name")
        return v

    @field_validator("priors")
    @classmethod
    def _prior_sets(cls, v):
        out = []
        for item in v:
            if isinstance(item, str):
                if item not in PRIOR_PRESETS:
                    raise ValueError(f"priors: unknown preset {item!r}; presets: {', '.join(PRIOR_PRESETS)} "
                                     "(or give a table {name, theta_e, beta_frac, src_r_mag})")
                item = PriorSet(name=item, **PRIOR_PRESETS[item])
            out.append(item)
        names = [p.name for p in out]
        if len(set(names)) != len(names):
            raise ValueError(f"prior set names repeat: {names}")
        return out

    def prior_sets(self) -> list[PriorSet]:
        """The prior sets (the ``priors`` validator has already expanded preset names)."""
        return list(self.priors)

    @model_validator(mode="after")
    def _variants_fit_the_injector(self) -> SelectionFunctionConfig:
        """Each sensitivity variant must be a valid perturbation of this injector (e.g. model2 takes
        lens q from the host, so a lens-q variant is refused) — checked when the spec is read."""
        inj = self.injector
        if not self.sensitivity or not hasattr(inj, "model_dump"):
            return self
        base = inj.model_dump()
        if "perturb" not in type(inj).model_fields:
            raise ValueError(f"injector {base.get('name')!r} has no 'perturb' option, so sensitivity variants cannot "
                             "perturb it; use an injector built on dhs_inject's InjectorConfig (model1, model2, model3)")
        for v in self.sensitivity:
            try:
                type(inj)(**{**base, "perturb": v.model_dump(exclude={"name"})})
            except ValueError as exc:
                raise ValueError(f"sensitivity variant {v.name!r} does not fit injector {base.get('name')!r}: "
                                 f"{exc}") from None
        return self

    @model_validator(mode="after")
    def _one_depth_axis(self) -> SelectionFunctionConfig:
        if self.psfdepth_r_edges is not None and self.depth_mag_edges is not None:
            raise ValueError("give the depth bins once: depth_mag_edges (5-sigma AB mag) or psfdepth_r_edges "
                             "(inverse variance), not both")
        return self

    def threshold_entries(self) -> list[tuple[str, str, float]]:
        """(name, kind, value) of every detection threshold, the primary first."""
        if self.thresholds is not None:
            return self.thresholds.entries()
        if self.threshold is not None:  # the legacy fixed form also allows 0 and 1
            return [(f"p>={self.threshold:g}", "fixed", float(self.threshold))]
        return ThresholdsConfig(fpr=[self.target_fpr]).entries()

    @field_validator("host_pools")
    @classmethod
    def _pools(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("host_pools is empty, which selects no host; give e.g. [\"N1\"] or leave it out")
        return v
