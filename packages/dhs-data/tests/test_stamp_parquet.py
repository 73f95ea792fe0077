"""The earlier pipeline's stamp tables: the ``stamp_parquet`` store and ``dhs data import``.

The test writes a small dataset in that layout: parquet row groups partitioned by split
(``region_split=train/``...), the stamp as ``.npz`` bytes in a binary column (both layouts: one
(3, H, W) array, or image_g/r/z planes), manifest columns beside it, and damaged rows."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dhs_core.errors import UserError
from dhs_data.importer import import_stamp_parquet
from dhs_data.integrity import verify_data_dir
from dhs_data.manifest import read_manifest
from dhs_data.stores import CutoutError, open_store
from dhs_data.stores.stamp_parquet import StampParquetStore

STAMP = 16


def npz_bytes(arr=None, **arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **({"cutout": arr} if arr is not None else arrays))
    return buf.getvalue()


def write_dataset(root, *, bad=True):
    """Three splits; per split 4 good rows (two in each npz layout) and, with ``bad``, a corrupt,
    a wrong-shape and a band-missing row. Returns {galaxy_id: array} of the good rows."""
    rng = np.random.default_rng(0)
    good = {}
    for split in ("train", "val", "test"):
        rows = []
        for i in range(4):
            gid = f"{split}{i}"
            arr = rng.normal(0, 1, (3, STAMP, STAMP)).astype(np.float32)
            good[gid] = arr
            blob = npz_bytes(arr) if i % 2 else npz_bytes(image_g=arr[0], image_r=arr[1], image_z=arr[2])
            rows.append({"galaxy_id": gid, "ra": 150.0 + i, "dec": 2.0, "label": i % 2, "psfsize_r": 1.2,
                         "tier": "A" if i % 2 else None, "stamp_npz": blob})
        if bad:
            rows.append({"galaxy_id": f"{split}_corrupt", "ra": 1.0, "dec": 1.0, "label": 0, "psfsize_r": 1.2,
                         "tier": None, "stamp_npz": b"PK\x03\x04not really a zip"})
            rows.append({"galaxy_id": f"{split}_shape", "ra": 1.0, "dec": 1.0, "label": 0, "psfsize_r": 1.2,
                         "tier": None, "stamp_npz": npz_bytes(np.zeros((2, STAMP, STAMP), np.float32))})
            rows.append({"galaxy_id": f"{split}_bands", "ra": 1.0, "dec": 1.0, "label": 0, "psfsize_r": 1.2,
                         "tier": None, "stamp_npz": npz_bytes(image_g=np.zeros((STAMP, STAMP)),
                                                               image_r=np.zeros((STAMP, STAMP)))})
        part = root / f"region_split={split}"
        part.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), part / "part-0.parquet", row_group_size=3)
    return good


def test_store_reads_every_good_stamp_bit_exact_and_names_bad_ones(tmp_path):
    good = write_dataset(tmp_path / "p4c")
    store = StampParquetStore(tmp_path / "p4c")
    assert len(store) == 21
    for gid, arr in good.items():
        assert np.array_equal(store.get(gid), arr)
    reasons = {}
    for key in ("train_corrupt", "val_shape", "test_bands", "nope"):
        with pytest.raises(CutoutError) as info:
            store.get(key)
        reasons[key] = info.value.reason
    assert reasons == {"train_corrupt": "truncated", "val_shape": "wrong_shape", "test_bands": "unreadable",
                       "nope": "missing"}


def test_import_writes_verified_shards_manifest_with_partition_splits_and_counts(tmp_path):
    good = write_dataset(tmp_path / "p4c")
    report = import_stamp_parquet(tmp_path / "p4c", tmp_path / "data", shard_size=5)
    assert report["n_input"] == 21 and report["n_imported"] == 12 and report["n_excluded"] == 9
    assert report["excluded_by_reason"] == {"truncated": 3, "unreadable": 3, "wrong_shape": 3}
    data = tmp_path / "data"
    manifest = read_manifest(data / "manifest.parquet").to_pydict()
    assert manifest["split"] == [gid.rstrip("0123") for gid in manifest["galaxy_id"]]  # from region_split=
    assert manifest["tier"][1] == "A" and manifest["label"][:4] == [0, 1, 0, 1]
    store = open_store(data)
    for gid in manifest["galaxy_id"]:
        assert np.array_equal(store.get(gid), good[gid])
    check = verify_data_dir(data)
    assert check["clean"] and check["n_checked"] == 12  # every shard's CRC-32 matches
    assert json.loads((data / "import_report.json").read_text())["splits"] == {"train": 4, "val": 4, "test": 4}
    # a second import into the same directory is refused unless forced
    with pytest.raises(UserError, match="--force"):
        import_stamp_parquet(tmp_path / "p4c", data)
    assert import_stamp_parquet(tmp_path / "p4c", data, force=True)["n_imported"] == 12


def test_missing_stamp_or_manifest_columns_are_clear_errors(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    pq.write_table(pa.table({"galaxy_id": ["a"], "ra": [1.0], "dec": [1.0], "label": [0]}), root / "x.parquet")
    with pytest.raises(UserError, match="no stamp column 'stamp_npz'"):
        import_stamp_parquet(root, tmp_path / "out")
    pq.write_table(pa.table({"galaxy_id": ["a"], "stamp_npz": [npz_bytes(np.zeros((3, 4, 4)))]}), root / "x.parquet")
    with pytest.raises(UserError, match="ra, dec, label"):
        import_stamp_parquet(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dhs_data_import_command(tmp_path, capsys):
    from dhs_cli.main import main

    write_dataset(tmp_path / "p4c", bad=False)
    assert main(["data", "import", str(tmp_path / "p4c"), str(tmp_path / "d"), "--shard-size", "4"]) == 0
    assert "imported 12 of 12 stamps" in capsys.readouterr().out and (tmp_path / "d" / "store.json").is_file()
    assert main(["data", "import", str(tmp_path / "p4c"), str(tmp_path / "d")]) == 2  # exists: refused
