"""``dhs data show``: a labelled gallery of random cutouts per category, as gri colour composites.

Colour follows Lupton et al. (2004): one asinh stretch of the summed intensity shared by the
three channels, so colours (ratios between bands) are preserved from the faint sky to bright
cores, unlike a per-band stretch. z -> red, r -> green, g -> blue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def lupton_rgb(cutout: np.ndarray, *, stretch: float = 0.08, q: float = 10.0) -> np.ndarray:
    """(3, H, W) g, r, z nanomaggies -> (H, W, 3) RGB in [0, 1] with an asinh stretch of the mean."""
    g, r, z = (np.asarray(cutout, dtype=np.float64)[i] for i in range(3))
    # per-band weights bring a typical galaxy's g, r, z to comparable channel values
    red, green, blue = z * 0.8, r * 1.0, g * 1.6
    intensity = (red + green + blue) / 3.0
    safe = np.where(intensity > 1e-12, intensity, 1e-12)
    factor = np.arcsinh(q * intensity / stretch) / q / safe
    rgb = np.stack([red, green, blue], axis=-1) * np.where(intensity > 1e-12, factor, 0.0)[..., None]
    peak = rgb.max(axis=-1, keepdims=True)
    rgb = np.where(peak > 1, rgb / np.maximum(peak, 1e-12), rgb)  # saturate in hue, not to white
    return np.clip(rgb, 0, 1)


def category_of(label, tier, pool, confuser) -> str:
    if label == 1:
        return f"lens tier {tier}" if tier else "lens"
    if pool == "N2" and confuser:
        return f"N2 {confuser}"
    return str(pool or "negative")


def show_gallery(manifest: Path, out: Path, *, n: int = 25, seed: int = 0, columns: int | None = None) -> int:
    """Write a PNG gallery of about ``n`` random cutouts, one row per category; returns the count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dhs_data.manifest import read_manifest
    from dhs_data.stores import open_store

    table = read_manifest(manifest).to_pydict()
    store = open_store(Path(manifest).parent)
    cats = np.array([category_of(*v) for v in zip(table["label"], table["tier"], table["pool"],
                                                   table["confuser_category"])])
    names = sorted(set(cats.tolist()), key=lambda c: (not c.startswith("lens"), c))
    per_row = columns or max(1, int(np.ceil(n / max(len(names), 1))))
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(names), per_row, figsize=(1.6 * per_row, 1.75 * len(names)), squeeze=False)
    shown = 0
    for i, name in enumerate(names):
        pick = rng.permutation(np.flatnonzero(cats == name))[:per_row]
        for j in range(per_row):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= pick.size:
                ax.axis("off")
                continue
            row = int(pick[j])
            ax.imshow(lupton_rgb(store.get(table["cutout_path"][row])), origin="lower")
            ax.set_title(f"{name}\n{table['galaxy_id'][row]}", fontsize=6)
            shown += 1
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return shown


def register_show_command(app: Any) -> None:
    """Add ``dhs data show`` to the ``data`` group of ``app`` (created if no package made it yet)."""
    import typer

    group = None
    for info in getattr(app, "registered_groups", []):
        if info.name == "data" and info.typer_instance is not None:
            group = info.typer_instance
    if group is None:
        group = typer.Typer(help="Manifests and cutout stores.", no_args_is_help=True)
        app.add_typer(group, name="data")

    @group.command("show")
    def show_command(
        manifest: Path = typer.Argument(..., help="manifest.parquet next to its store.json"),
        n: int = typer.Option(25, "--n", min=1, help="number of cutouts (spread over the categories)"),
        out: Path = typer.Option(Path("grid.png"), "--out", help="PNG file to write"),
        seed: int = typer.Option(0, "--seed", help="seed of the random choice of cutouts"),
    ) -> None:
        """Labelled gallery of random cutouts per category (gri Lupton asinh composites)."""
        from dhs_core.errors import UserError

        if not manifest.is_file():
            raise UserError(f"dhs data show: {manifest} does not exist; pass a manifest.parquet path")
        shown = show_gallery(manifest, out, n=n, seed=seed)
        typer.echo(f"wrote {out} ({shown} cutouts)")
