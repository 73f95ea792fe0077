"""The data-source protocol.

A data source is registered with ``register_data_sources``::

    register("manifest", "dhs_data.sources.manifest_source:manifest_source", config=ManifestSourceConfig)

and its ``impl`` is called by the ``data`` stage as ``impl(config, ctx, out_dir) -> None``:

* ``config`` — the validated config (a subclass of the registered ``Config`` with ``.name``);
  every data-source config has a field ``split: dhs_data.splits.SplitConfig``;
* ``ctx`` — the :class:`dhs_core.StageContext` (seeds: ``ctx.seed_for(...)``; progress; log);
* ``out_dir`` — a fresh directory to write into; write **only** there. It becomes
  ``run_dir/data/`` once the stage has checked it, so a failed source leaves no partial output.

It must write ``out_dir/manifest.parquet`` (the manifest columns of :mod:`dhs_data.manifest`,
via :func:`dhs_data.manifest.write_manifest`), the cutouts and ``out_dir/store.json``
(:func:`dhs_data.stores.write_store_json`, with ``root`` relative to ``out_dir`` or absolute),
and optionally ``out_dir/truth.parquet`` (simulation truth, keyed by ``galaxy_id``; never a
model input). ``split`` and ``healpix_128`` may be left null: the stage assigns them from
``config.split``. File names are the constants of :mod:`dhs_data.layout`.

Stamp size. Before any stage writes (``dhs run`` and ``dhs validate``), the data stage checks
the spec's ``[preprocess]`` against the stamp the source will provide — an annulus wider than
the stamp fails there rather than in training. It learns the stamp from the config's
:meth:`DataSourceConfig.stamp_size`: the side in pixels, stated without rendering or copying
any cutout (a configured size, or the shape of one existing cutout), or ``None`` when the
source cannot tell, which skips the check. A source whose cutouts have a configured size
overrides it, e.g. a simulated source with a ``stamp`` option::

    class SyntheticConfig(DataSourceConfig):
        stamp: Literal[64, 101] = 64

        def stamp_size(self) -> int | None:
            return self.stamp

``stamp_size`` runs while a spec is validated, so it imports heavy libraries only inside its
body, and it must write nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from dhs_core import ComponentConfig, StageContext
from dhs_data.layout import MANIFEST, TRUTH
from dhs_data.splits import SplitConfig

__all__ = ["MANIFEST", "TRUTH", "DataSource", "DataSourceConfig"]


class DataSourceConfig(ComponentConfig):
    """Base of data-source configs: every source carries its split settings."""

    # how galaxies are split into train/val/test (HEALPix pixels by default, so neighbours on the
    # sky never straddle splits)
    split: SplitConfig = Field(default_factory=SplitConfig)

    def stamp_size(self) -> int | None:
        """Side in pixels of the cutouts this source will provide, or None when it cannot say
        without rendering them (the data stage then skips its stamp checks)."""
        return None


class DataSource(Protocol):
    def __call__(self, config: Any, ctx: StageContext, out_dir: Path) -> None: ...
