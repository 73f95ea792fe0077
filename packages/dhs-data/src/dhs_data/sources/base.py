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

Inputs changed in place. The runner skips the data stage when its input hash is unchanged, and
the spec only *names* a source's input files: a manifest rewritten in place (same path, other
rows) would look up to date and its stale data be reused. :meth:`DataSourceConfig.fingerprint`
returns a JSON-able digest of those files, which the data stage adds to its input hash
(``Stage.fingerprint``), so changed inputs rerun it. It runs before every ``dhs run``, so it must
be cheap: sizes, modification times and content digests of the files the spec names (a
manifest, a shard store's ``index.parquet`` — whose per-cutout CRC-32 column covers the pixels),
never one read per cutout. Use :func:`file_fingerprint`. ``None`` (the default) adds nothing.

Disk space. :meth:`DataSourceConfig.estimate_bytes` is an upper estimate of the bytes the source
writes into ``out_dir`` (cutouts x 3 bands x stamp^2 x 4 bytes plus tables, see
:func:`cutout_bytes`), or ``None`` when it cannot tell without doing the work; ``dhs run``
compares the enabled stages' estimates with the free space before anything is written. Like
``stamp_size``, both import nothing heavy at module level and write nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from dhs_core import ComponentConfig, StageContext
from dhs_data.layout import MANIFEST, TRUTH
from dhs_data.splits import SplitConfig

__all__ = ["MANIFEST", "TRUTH", "DataSource", "DataSourceConfig", "cutout_bytes", "file_fingerprint"]

#: bytes a data directory holds besides its cutouts (manifest, report, exclusions, index) per cutout,
#: and once: generous, since an estimate that is too low lets a run start that will fill the disk
TABLE_BYTES_PER_CUTOUT = 512
TABLE_BYTES = 4 << 20


class DataSourceConfig(ComponentConfig):
    """Base of data-source configs: every source carries its split settings."""

    # how galaxies are split into train/val/test (HEALPix pixels by default, so neighbours on the
    # sky never straddle splits)
    split: SplitConfig = Field(default_factory=SplitConfig)

    def stamp_size(self) -> int | None:
        """Side in pixels of the cutouts this source will provide, or None when it cannot say
        without rendering them (the data stage then skips its stamp checks)."""
        return None

    def fingerprint(self) -> Any:
        """JSON-able digest of the input files this config names (see the module docstring), or
        None. Cheap: never reads every cutout."""
        return None

    def estimate_bytes(self) -> int | None:
        """Upper estimate of the bytes this source writes into its output directory, or None."""
        return None


def file_fingerprint(path: str | Path, *, digest_limit: int | None = None) -> dict[str, Any]:
    """Size, modification time and SHA-256 of ``path`` (the digest only up to ``digest_limit``
    bytes of file size, for inputs too large to hash on every run); ``{"missing": True}`` when
    the file does not exist (the source reports that when it runs)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p), "missing": True}
    out: dict[str, Any] = {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if digest_limit is None or st.st_size <= digest_limit:
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        out["sha256"] = digest.hexdigest()
    return out


def cutout_bytes(n_cutouts: int, stamp: int) -> int:
    """Bytes of ``n_cutouts`` float32 g, r, z stamps of ``stamp`` px plus their tables."""
    return int(n_cutouts) * (3 * int(stamp) ** 2 * 4 + TABLE_BYTES_PER_CUTOUT) + TABLE_BYTES


class DataSource(Protocol):
    def __call__(self, config: Any, ctx: StageContext, out_dir: Path) -> None: ...
