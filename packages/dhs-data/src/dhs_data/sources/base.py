"""The data-source protocol (contract 1).

A data source is registered with ``register_data_sources``::

    register("manifest", manifest_source, config=ManifestSourceConfig)

and its ``impl`` is called by the ``data`` stage as ``impl(config, ctx, out_dir) -> None``:

* ``config`` — the validated config (a subclass of the registered ``Config`` with ``.name``);
  every data-source config has a field ``split: dhs_data.splits.SplitConfig``;
* ``ctx`` — the :class:`dhs_core.StageContext` (seeds: ``ctx.seed_for(...)``; progress; log);
* ``out_dir`` — a fresh directory to write into; write **only** there. It becomes
  ``run_dir/data/`` once the stage has checked it, so a failed source leaves no partial output.

It must write ``out_dir/manifest.parquet`` (DESIGN §5, via :func:`dhs_data.manifest.write_manifest`),
the cutouts and ``out_dir/store.json`` (:func:`dhs_data.stores.write_store_json`, with ``root``
relative to ``out_dir`` or absolute), and optionally ``out_dir/truth.parquet`` (simulation truth,
keyed by ``galaxy_id``; never a model input). ``split`` and ``healpix_128`` may be left null:
the stage assigns them from ``config.split``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from dhs_core import ComponentConfig, StageContext
from dhs_data.splits import SplitConfig


class DataSourceConfig(ComponentConfig):
    """Base of data-source configs: every source carries its split settings."""

    # how galaxies are split into train/val/test (HEALPix by default; DESIGN §6)
    split: SplitConfig = Field(default_factory=SplitConfig)


class DataSource(Protocol):
    def __call__(self, config: Any, ctx: StageContext, out_dir: Path) -> None: ...


MANIFEST = "manifest.parquet"
TRUTH = "truth.parquet"
