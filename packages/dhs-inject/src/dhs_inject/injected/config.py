"""Configuration of the ``injected`` data source: a training set of arcs injected into real hosts
(the ``[data]`` section with name = "injected"; torch-free, so validating a spec imports no torch).

The published Gen1 and Gen2 training sets were built this way: LRG hosts from the survey, every
positive an arc painted into one of them by an injection model over a grid of lens and source
configurations (``dhs_inject.grids``), every negative an un-injected host (a control).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from dhs_core import Slot
from dhs_data.sources.base import DataSourceConfig, cutout_bytes, file_fingerprint

#: the five axes of an injection grid (see dhs_inject.grids)
GRID_AXES = ("theta_e", "src_dmag", "src_reff", "src_e", "shear")
#: plausible values per axis: (low, high, what), inclusive
AXIS_RANGES = {
    "theta_e": (0.05, 10.0, "Einstein radius in arcsec"),
    # a source fainter than its lens by up to 10 mag, or brighter by up to 5
    "src_dmag": (-5.0, 10.0, "source r magnitude minus the host's r magnitude (mag)"),
    "src_reff": (0.005, 5.0, "source half-light radius in arcsec"),
    "src_e": (0.0, 0.95, "source ellipticity |e| = (1 - q) / (1 + q)"),
    "shear": (0.0, 0.5, "external shear magnitude"),
}


class InjectedConfig(DataSourceConfig):
    """Positives = arcs injected into hosts over a grid of configurations; negatives = controls.

    Hosts are the non-lenses (label 0) of another data source (``hosts``, rendered into a work
    directory first) or of an existing data directory (``hosts_dir``). The ``split`` field
    (HEALPix of the host, so a host and every injection into it share a split) comes from
    :class:`~dhs_data.sources.base.DataSourceConfig`.
    """

    # where the hosts come from: another data source, e.g. { name = "synthetic", n_hosts = 2000 }
    # (the default when hosts_dir is not given) ...
    hosts: Annotated[Any, Slot("data_source")] | None = None
    # ... or an existing data directory (manifest.parquet + store.json), e.g. runs/x/data
    hosts_dir: str | None = None
    # use at most this many hosts (the first in SHA-256 hash order of galaxy_id; None = all)
    n_hosts: int | None = Field(None, ge=1)
    # only hosts of these Tractor types (e.g. ["DEV", "SER"] for LRG-like hosts); None = all
    host_type_bins: tuple[str, ...] | None = None
    # the injection model (a registered injector); its prior's theta_e, src_r_e, src_q, shear and
    # src_r_mag are set per configuration and host, the rest (Sersic n, colours, clumps, lens q,
    # beta_frac) are drawn from its prior as usual
    injector: Annotated[Any, Slot("injector")] = {"name": "model1"}
    # the configuration grid: "grid_small" (Gen1, 48), "grid_sota" (Gen2, 1,008), or a table of
    # the five axes { theta_e = [...], src_dmag = [...], src_reff = [...], src_e = [...], shear = [...] }
    grid: str | dict[str, list[float]] = "grid_small"
    # configurations injected into each injected host ("all": the full hosts x grid product)
    configs_per_host: int | Literal["all"] = 1
    # "paired": every injected host also appears un-injected (needs split.paired_controls = true);
    # "unpaired": controls are other hosts, chosen by hash (disjoint from the injected hosts)
    controls: Literal["paired", "unpaired"] = "unpaired"
    # fraction of hosts that are controls (by hash of galaxy_id and the run seed)
    control_frac: float = Field(0.5, ge=0.0, lt=1.0)
    # drop (host, configuration) pairs with theta_E / PSF FWHM below this (0 = keep all)
    min_theta_over_psf: float = Field(0.0, ge=0.0, le=10.0)
    # radius (px) of the circular aperture measuring the host's r magnitude (src_dmag's zero
    # point); capped at half the stamp
    host_mag_aperture: float = Field(30.0, gt=0.0)
    # injections rendered per executor task (one task writes one file; a killed run resumes)
    chunk_size: int = Field(128, ge=1, le=100_000)

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: str | dict[str, list[float]]) -> str | dict[str, list[float]]:
        from dhs_inject.grids import GRID_PRESETS

        if isinstance(v, str):
            if v not in GRID_PRESETS:
                raise ValueError(f"unknown injection grid {v!r}; valid names: {', '.join(sorted(GRID_PRESETS))} "
                                 f"(or a table of the axes {', '.join(GRID_AXES)})")
            return v
        missing, extra = [a for a in GRID_AXES if a not in v], sorted(set(v) - set(GRID_AXES))
        if missing or extra:
            raise ValueError(f"a grid table needs exactly the axes {', '.join(GRID_AXES)}"
                             + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))
        for axis in GRID_AXES:
            values = v[axis]
            lo, hi, what = AXIS_RANGES[axis]
            if not values:
                raise ValueError(f"grid.{axis} is empty")
            bad = [x for x in values if not (math.isfinite(x) and lo <= x <= hi)]
            if bad:
                raise ValueError(f"grid.{axis} = {values}: {bad} outside [{lo:g}, {hi:g}] ({what})")
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_hosts(cls, data: Any) -> Any:
        # neither given: the embedded synthetic survey's non-lenses are the hosts
        if isinstance(data, dict) and "hosts" not in data and "hosts_dir" not in data:
            return {**data, "hosts": {"name": "synthetic"}}
        return data

    @model_validator(mode="after")
    def _check(self) -> InjectedConfig:
        if (self.hosts is None) == (self.hosts_dir is None):
            raise ValueError("give exactly one of hosts (a data source table, e.g. { name = \"synthetic\" }) and "
                             "hosts_dir (an existing data directory)")
        if self.hosts is not None and _name(self.hosts) == "injected":
            raise ValueError("hosts cannot be another 'injected' source: inject into survey or synthetic hosts")
        if isinstance(self.configs_per_host, int) and self.configs_per_host < 1:
            raise ValueError("configs_per_host must be >= 1 or \"all\"")
        if self.controls == "paired" and not self.split.paired_controls:
            raise ValueError("controls = \"paired\" puts each injected host in the set twice (with and without "
                             "an arc), which teaches a finder 'extra flux' rather than arcs; it needs "
                             "split.paired_controls = true to say that is meant (the Gen1 protocol)")
        return self

    def grid_table(self) -> dict[str, list[float]]:
        """The grid's axes (a named preset's or the table given)."""
        from dhs_inject.grids import GRID_PRESETS

        return dict(GRID_PRESETS[self.grid]) if isinstance(self.grid, str) else dict(self.grid)

    def _hosts_config(self) -> Any:
        from dhs_core import plugins

        return plugins.resolve("data_source", self.hosts, where="data.hosts")[1]

    def stamp_size(self) -> int | None:
        """The hosts' stamp: injections keep the host's size."""
        if self.hosts is not None:
            method = getattr(self._hosts_config(), "stamp_size", None)
            return method() if callable(method) else None
        import json
        from pathlib import Path

        try:
            stamp = json.loads((Path(self.hosts_dir) / "store.json").read_text()).get("stamp")
        except (OSError, ValueError):
            return None
        return int(stamp) if stamp else None

    def fingerprint(self) -> Any:
        """The host source's own digest, or the host directory's manifest and store description."""
        if self.hosts is not None:
            method = getattr(self._hosts_config(), "fingerprint", None)
            return method() if callable(method) else None
        from pathlib import Path

        return {"manifest": file_fingerprint(Path(self.hosts_dir) / "manifest.parquet"),
                "store": file_fingerprint(Path(self.hosts_dir) / "store.json")}

    def estimate_bytes(self) -> int | None:
        """Injections and controls as float32 stamps (the hosts' work directory is removed at the end,
        so counted once more); None when the number of hosts cannot be told without reading them."""
        stamp = self.stamp_size()
        n = self.n_hosts or getattr(self._hosts_config(), "n_hosts", None) if self.hosts is not None else self.n_hosts
        if stamp is None or n is None:
            return None
        n_cfg = math.prod(len(v) for v in self.grid_table().values())
        per_host = n_cfg if self.configs_per_host == "all" else self.configs_per_host
        return cutout_bytes(int(n) * (per_host + 2), stamp)


def _name(entry: Any) -> str | None:
    if isinstance(entry, dict):
        return entry.get("name")
    return getattr(entry, "name", entry if isinstance(entry, str) else None)
