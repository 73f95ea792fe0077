"""Gallery stamps for the report: injected examples, detected and missed, per θE value, and the
highest-scoring false positives of the test split.

A reader of a completeness map wants to see what a detected and a missed arc look like at each
Einstein radius, and which real non-lenses the finder mistakes for lenses. The injected examples
are drawn exactly as the grid draws them (the cell's injector, prior pinned to the cell's θE and
magnitude bin, the cell's hosts, the stage's threshold), from their own seed: they illustrate the
grid, they are not extra grid injections. The stamps are raw nanomaggies (3, H, W) in g, r, z, stored as float16 (enough for a picture);
the report (dhs-eval) draws them in colour. One compressed ``gallery.npz``, a few hundred kB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: stamps per θE value drawn for the gallery (detected and missed are kept from them)
PER_THETA_E = 8
#: of each kind (detected, missed) per θE value
KEEP = 2
#: highest-scoring false positives kept
N_FALSE_POSITIVES = 8


def injected_examples(tasks: Sequence[Any], threshold: float, seed: int) -> dict[str, np.ndarray]:
    """Up to KEEP detected and KEEP missed injections per θE value, from the first cell with hosts
    of each θE value (the brightest magnitude bin, where arcs are visible)."""
    from dhs_data.stores import open_store, read_readable
    from dhs_inject.selection.cell import cell_injector_config
    from dhs_models.inference import load_finder, score_images

    by_theta: dict[float, Any] = {}
    for t in sorted(tasks, key=lambda t: (t.cell["theta_e"], t.cell["source_mag_lo"])):
        if t.host_keys and t.cell["theta_e"] not in by_theta:
            by_theta[t.cell["theta_e"]] = t
    images, scores, theta, detected = [], [], [], []
    for i, (theta_e, task) in enumerate(sorted(by_theta.items())):
        comp, cfg = cell_injector_config(task.injector, theta_e, task.cell["source_mag_lo"], task.cell["source_mag_hi"])
        finder = load_finder(task.checkpoint, preprocess=task.preprocess, what="selection_function: checkpoint")
        if finder.metadata_columns:
            return {}  # a metadata-fusing finder needs each host's columns; the gallery is skipped
        keys = task.host_keys[:PER_THETA_E]
        meta = {k: np.asarray(v[:PER_THETA_E]) for k, v in task.host_meta.items()}
        hosts, readable, _ = read_readable(open_store(task.data_dir), keys)
        if hosts is None:
            continue
        meta = {k: v[readable] for k, v in meta.items()}
        batch = comp.impl(cfg).inject(hosts, meta, np.random.default_rng([seed, i]))
        ok = np.isfinite(batch.images).all(axis=(1, 2, 3))
        imgs = batch.images[ok]
        s = score_images(finder.model, imgs, preprocess=finder.preprocess, batch_size=len(imgs) or 1,
                         device=finder.device)
        for want in (True, False):
            pick = np.flatnonzero(np.isfinite(s) & ((s >= threshold) == want))[:KEEP]
            images += list(imgs[pick])
            scores += list(s[pick])
            theta += [theta_e] * len(pick)
            detected += [want] * len(pick)
    if not images:
        return {}
    return {"inj_images": np.stack(images).astype(np.float16), "inj_scores": np.asarray(scores, float),
            "inj_theta_e": np.asarray(theta, float), "inj_detected": np.asarray(detected, bool)}


def false_positives(run_dir: Path, data_dir: Path, threshold: float) -> dict[str, np.ndarray]:
    """The N_FALSE_POSITIVES highest-scoring test negatives (whether or not above the threshold:
    the report says which are), with their scores and ids."""
    import pyarrow.parquet as pq

    from dhs_data import layout as data_layout
    from dhs_data.stores import open_store, read_readable
    from dhs_models import layout as models_layout

    scores_path = Path(run_dir) / models_layout.ARTIFACTS["scores"]
    manifest_path = Path(data_dir) / data_layout.MANIFEST
    if not scores_path.is_file() or not manifest_path.is_file():
        return {}
    sc = pq.read_table(scores_path).to_pydict()
    m = pq.read_table(manifest_path, columns=["galaxy_id", "cutout_path", "label"]).to_pydict()
    label = dict(zip(m["galaxy_id"], m["label"]))
    path = dict(zip(m["galaxy_id"], m["cutout_path"]))
    rows = sorted(((s, g) for g, sp, s in zip(sc["galaxy_id"], sc["split"], sc["score"])
                   if sp == "test" and label.get(g) == 0 and np.isfinite(s)), reverse=True)[:N_FALSE_POSITIVES]
    if not rows:
        return {}
    hosts, readable, _ = read_readable(open_store(data_dir), [path[g] for _, g in rows])
    if hosts is None:
        return {}
    rows = [r for r, ok in zip(rows, readable) if ok]
    return {"fp_images": hosts.astype(np.float16), "fp_scores": np.asarray([s for s, _ in rows], float),
            "fp_ids": np.asarray([g for _, g in rows], dtype=str), "threshold": np.asarray(threshold, float)}



def write(path: Path, tasks: Sequence[Any], run_dir: Path, data_dir: Path, threshold: float, seed: int) -> bool:
    """Write ``gallery.npz``; False (and nothing written) when there is nothing to show."""
    from dhs_core.io import atomic_path

    arrays = {**injected_examples(tasks, threshold, seed), **false_positives(run_dir, data_dir, threshold)}
    if not arrays:
        return False
    arrays.setdefault("threshold", np.asarray(threshold, float))
    # an .npz written member by member with a fixed time stamp: rerunning the stage rewrites the
    # file byte for byte (np.savez stamps each member with the current time)
    import io
    import zipfile

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, value in sorted(arrays.items()):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(value), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, buf.getvalue())
    return True
