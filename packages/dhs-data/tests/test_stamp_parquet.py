"""The earlier pipeline's stamp tables: the ``stamp_parquet`` store and ``dhs data import``.

Each test writes a small dataset in that layout: parquet files partitioned hive-style by split
(``split=train/part-0.parquet`` ...), several row groups, the stamp as ``.npz`` bytes in a binary
column (every archive layout: one (3, H, W) array under any name, channel-last (H, W, 3), or
image_g/r/z planes), manifest columns and a ``cutout_ok`` flag beside it, and damaged rows of
every kind."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dhs_core.errors import UserError
from dhs_data.importer import import_stamp_parquet
from dhs_data.integrity import verify_data_dir
from dhs_data.manifest import read_manifest
from dhs_data.stores import CutoutError, open_store, write_store_json
from dhs_data.stores.stamp_parquet import StampParquetStore

STAMP = 16
SPLITS = ("train", "val", "test")


def npz_bytes(compress: bool = True, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def crc_damaged() -> bytes:
    """An uncompressed archive with one pixel byte changed: the zip member's CRC-32 no longer matches."""
    pix = np.full((3, STAMP, STAMP), 0.5, np.float32)
    blob = bytearray(npz_bytes(False, cutout=pix))
    at = blob.index(pix.tobytes()[:64]) + 100
    blob[at] ^= 0xFF
    return bytes(blob)


#: damaged rows: id -> (split, stamp bytes or None, cutout_ok, reason from the store, reason on import)
BAD = {
    "corrupt": ("train", b"PK\x03\x04not really a zip archive", True, "truncated", "truncated"),
    "two_planes": ("train", npz_bytes(cutout=np.zeros((2, STAMP, STAMP), np.float32)), True, "wrong_shape",
                   "wrong_shape"),
    "flipped": ("train", crc_damaged(), True, "checksum", "checksum"),
    "no_z_band": ("val", npz_bytes(image_g=np.zeros((STAMP, STAMP)), image_r=np.zeros((STAMP, STAMP))), True,
                  "unreadable", "unreadable"),
    "null_stamp": ("val", None, True, "missing", "missing"),
    "nan_pixel": ("val", npz_bytes(cutout=np.full((3, STAMP, STAMP), np.nan, np.float32)), True, "non_finite",
                  "non_finite"),
    "text": ("test", npz_bytes(cutout=np.full((3, STAMP, STAMP), "x")), True, "unreadable", "unreadable"),
    "small": ("test", npz_bytes(cutout=np.ones((3, 12, 12), np.float32)), True, None, "wrong_shape"),
    "rejected": ("test", npz_bytes(cutout=np.ones((3, STAMP, STAMP), np.float32)), False, None, "cutout_ok_false"),
}


def good_blob(i: int, arr: np.ndarray) -> bytes:
    """The archive layouts in turn: per-band planes, one (3, H, W) array under an arbitrary name,
    channel-last (H, W, 3), and planes again uncompressed."""
    if i % 4 == 0:
        return npz_bytes(image_g=arr[0], image_r=arr[1], image_z=arr[2])
    if i % 4 == 1:
        return npz_bytes(stamp=arr)
    if i % 4 == 2:
        return npz_bytes(cutout=np.moveaxis(arr, 0, -1))
    return npz_bytes(False, image_g=arr[0], image_r=arr[1], image_z=arr[2])


def row(gid, split, i, blob, ok=True):
    # each split in its own patch of sky: whole HEALPix pixels per split, as the data stage checks
    return {"galaxy_id": gid, "ra": 40.0 * (SPLITS.index(split) + 1) + i, "dec": 5.0 + i, "label": i % 2,
            "psfsize_r": 1.0 + 0.25 * i, "psfdepth_r": 1500.0, "tier": "A" if i % 2 else None, "cutout_ok": ok,
            "brickname": "0001p000", "stamp_npz": blob}


def write_dataset(root, *, bad=True, key="split"):
    """Per split 4 good rows (train in two files) and, with ``bad``, the rows of :data:`BAD`, a
    galaxy_id in both val and test, and a null galaxy_id. Returns ({id: pixels}, {id: split})."""
    rng = np.random.default_rng(0)
    good, split_of = {}, {}
    for split in SPLITS:
        rows = []
        for i in range(4):
            gid = f"{split}{i}"
            good[gid] = rng.normal(0, 0.01, (3, STAMP, STAMP)).astype(np.float32)
            split_of[gid] = split
            rows.append(row(gid, split, i, good_blob(i, good[gid])))
        if bad:
            rows += [row(gid, split, 5, blob, ok) for gid, (s, blob, ok, _, _) in BAD.items() if s == split]
            if split != "train":
                rows.append(row("twice", split, 6, good_blob(1, good[f"{split}1"])))
            if split == "test":
                rows.append(row(None, split, 7, good_blob(1, good["test1"])))
        part = root / f"{key}={split}"
        part.mkdir(parents=True)
        chunks = [rows[:2], rows[2:]] if split == "train" else [rows]
        for n, chunk in enumerate(chunks):
            pq.write_table(pa.Table.from_pylist(chunk), part / f"part-{n}.parquet", row_group_size=2)
    return good, split_of


def test_store_reads_every_layout_bit_exact_and_names_each_bad_row(tmp_path):
    good, _ = write_dataset(tmp_path / "p4c")
    store = StampParquetStore(tmp_path / "p4c")
    assert len(store.files) == 4 and store.repeated == {"twice": 2}
    assert len(store) == 12 + len(BAD) + 1  # the null id names no row
    for gid, arr in good.items():
        got = store.get(gid)
        assert got.dtype == np.float32 and np.array_equal(got, arr)
    keys = list(good)[::-1]
    assert np.array_equal(store.get_many(keys), np.stack([good[k] for k in keys]))
    reasons = {}
    for gid in [*BAD, "twice", "nope"]:
        try:
            store.get(gid)
        except CutoutError as exc:
            reasons[gid] = exc.reason
    assert reasons == {**{g: b[3] for g, b in BAD.items() if b[3]}, "twice": "unreadable", "nope": "missing"}
    with pytest.raises(CutoutError, match="this store holds"):
        StampParquetStore(tmp_path / "p4c", STAMP).get("small")
    clone = pickle.loads(pickle.dumps(store))  # as DataLoader workers receive it
    assert np.array_equal(clone.get("val2"), good["val2"])


def test_store_json_opens_a_table_in_place_with_its_own_column_names(tmp_path):
    arr = np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    table = pa.table({"objid": pa.array([7, 8], pa.int64()),
                      "cutout_bytes": [npz_bytes(cutout=arr), npz_bytes(cutout=arr + 1)]})
    pq.write_table(table, tmp_path / "stamps.parquet")
    write_store_json(tmp_path, format="stamp_parquet", root="stamps.parquet", stamp=8,
                     options={"stamp_column": "cutout_bytes", "id_column": "objid"})
    store = open_store(tmp_path)
    assert store.format == "stamp_parquet" and np.array_equal(store.get("8"), arr + 1)
    with pytest.raises(UserError, match="allowed: stamp_column, id_column"):
        write_store_json(tmp_path, format="stamp_parquet", root="stamps.parquet", options={"column": "x"})
    with pytest.raises(UserError, match="no stamp column 'stamp_npz'.*--stamp-column"):
        StampParquetStore(tmp_path / "stamps.parquet")


def test_import_writes_verified_shards_with_partition_splits_and_counts_bad_rows(tmp_path):
    good, split_of = write_dataset(tmp_path / "p4c")
    report = import_stamp_parquet(tmp_path / "p4c", tmp_path / "data", shard_size=5)
    expected = {"truncated": 1, "wrong_shape": 2, "checksum": 1, "unreadable": 2, "missing": 1, "non_finite": 1,
                "cutout_ok_false": 1, "duplicate_id": 2, "missing_id": 1}
    assert report["excluded_by_reason"] == expected
    assert report["n_input"] == 24 and report["n_imported"] == 12 and report["n_excluded"] == sum(expected.values())
    assert report["excluded_by_split"] == {
        "train": {"truncated": 1, "wrong_shape": 1, "checksum": 1},
        "val": {"unreadable": 1, "missing": 1, "non_finite": 1, "duplicate_id": 1},
        "test": {"unreadable": 1, "wrong_shape": 1, "cutout_ok_false": 1, "duplicate_id": 1, "missing_id": 1}}
    assert report["splits"] == {"train": 4, "val": 4, "test": 4} and report["stamp"] == STAMP
    data = tmp_path / "data"
    manifest = read_manifest(data / "manifest.parquet")
    m = manifest.to_pydict()
    assert sorted(m["galaxy_id"]) == sorted(good) and m["cutout_path"] == m["galaxy_id"]
    assert m["split"] == [split_of[g] for g in m["galaxy_id"]]  # from the split=... directories
    i = m["galaxy_id"].index("val1")
    assert (m["label"][i], m["tier"][i], m["psfsize_r"][i], m["sample_weight"][i]) == (1, "A", 1.25, 1.0)
    assert "cutout_ok" not in manifest.column_names and "brickname" not in manifest.column_names
    store = open_store(data)
    assert store.format == "shards"
    for gid in m["galaxy_id"]:
        assert np.array_equal(store.get(gid), good[gid])
    check = verify_data_dir(data)
    assert check["clean"] and check["n_checked"] == 12 and check["n_shards"] == 3  # every CRC-32 matches
    written = json.loads((data / "import_report.json").read_text())
    assert written["excluded_by_reason"] == expected and len(written["excluded_rows"]) == 12
    excluded = pq.read_table(data / "import_excluded.parquet").to_pydict()
    assert dict(zip(excluded["galaxy_id"], excluded["reason"]))["flipped"] == "checksum"
    assert {(g, s) for g, s in zip(excluded["galaxy_id"], excluded["split"]) if g in BAD} == \
        {(g, b[0]) for g, b in BAD.items()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "p4c"]  # no staging left behind


def test_import_refuses_to_overwrite_unless_forced_and_only_a_data_directory(tmp_path):
    write_dataset(tmp_path / "p4c", bad=False)
    data = tmp_path / "data"
    import_stamp_parquet(tmp_path / "p4c", data)
    before = (data / "manifest.parquet").read_bytes()
    with pytest.raises(UserError, match="not empty.*--force"):
        import_stamp_parquet(tmp_path / "p4c", data)
    assert (data / "manifest.parquet").read_bytes() == before
    assert import_stamp_parquet(tmp_path / "p4c", data, force=True, shard_size=3)["n_imported"] == 12
    assert len(list((data / "shards").glob("shard_*.npy"))) == 4
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="not a data directory"):
        import_stamp_parquet(tmp_path / "p4c", tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_split_from_a_column_or_none_and_unpartitioned_files(tmp_path):
    rows = [row(f"g{i}", "train", i, good_blob(i, np.ones((3, 8, 8), np.float32))) for i in range(3)]
    for r, region in zip(rows, ["train", "test", "train"]):
        r["region"] = region
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "flat.parquet")
    with pytest.raises(UserError, match="not under a split=... or region_split=... directory.*--split-from"):
        import_stamp_parquet(tmp_path / "flat.parquet", tmp_path / "a")
    import_stamp_parquet(tmp_path / "flat.parquet", tmp_path / "a", split_from="region")
    assert read_manifest(tmp_path / "a/manifest.parquet").column("split").to_pylist() == ["train", "test", "train"]
    import_stamp_parquet(tmp_path / "flat.parquet", tmp_path / "b", split_from="none")
    assert read_manifest(tmp_path / "b/manifest.parquet").column("split").null_count == 3
    write_dataset(tmp_path / "gen", bad=False, key="region_split")  # the earlier pipeline's partition key
    report = import_stamp_parquet(tmp_path / "gen", tmp_path / "c")
    assert report["splits"] == {"train": 4, "val": 4, "test": 4}
    report = import_stamp_parquet(tmp_path / "gen/region_split=val/part-0.parquet", tmp_path / "d")  # one file
    assert report["splits"] == {"val": 4}


def test_bad_tables_are_clear_errors_and_write_nothing(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    blob = npz_bytes(cutout=np.zeros((3, 4, 4), np.float32))
    cases = [
        ({"galaxy_id": ["a"], "ra": [1.0], "dec": [1.0], "label": [0]}, "no stamp column 'stamp_npz'"),
        ({"galaxy_id": ["a"], "stamp_npz": [blob]}, r"lacks ra, dec, label"),
        ({"objid": ["a"], "ra": [1.0], "dec": [1.0], "label": [0], "stamp_npz": [blob]},
         "no id column 'galaxy_id'.*--id-column"),
        ({"galaxy_id": ["a"], "ra": [1.0], "dec": [1.0], "label": [0], "stamp_npz": ["text"]},
         "has type string; the stamps are binary"),
        ({"galaxy_id": ["a", "b"], "ra": [1.0, 2.0], "dec": [1.0, 1.0], "label": [0, 3], "stamp_npz": [blob, blob]},
         "column 'label' must be 0 or 1"),
    ]
    for columns, message in cases:
        pq.write_table(pa.table(columns), root / "x.parquet")
        with pytest.raises(UserError, match=message):
            import_stamp_parquet(root, tmp_path / "out", split_from="none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no parquet files"):
        import_stamp_parquet(tmp_path / "empty", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "t"]


def test_imported_directory_is_a_manifest_data_source(tmp_path):
    from dhs_core import run

    good, split_of = write_dataset(tmp_path / "p4c")
    import_stamp_parquet(tmp_path / "p4c", tmp_path / "data")
    spec = {"run": {"name": "imported", "seed": 1, "out_dir": str(tmp_path / "run")},
            "data": {"name": "manifest", "path": str(tmp_path / "data/manifest.parquet"),
                     "split": {"scheme": "manifest"}}}
    data = run(spec).run_dir / "data"
    m = read_manifest(data / "manifest.parquet").to_pydict()
    assert dict(zip(m["galaxy_id"], m["split"])) == split_of  # the partitions survive the data stage
    assert json.loads((data / "data_report.json").read_text())["n_kept"] == 12
    store = open_store(data)
    assert all(np.array_equal(store.get(k), good[g]) for k, g in zip(m["cutout_path"], m["galaxy_id"]))


def test_dhs_data_import_and_verify_commands(tmp_path, capsys):
    from dhs_cli.main import main

    write_dataset(tmp_path / "p4c")
    assert main(["data", "import", str(tmp_path / "p4c"), str(tmp_path / "d"), "--shard-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "imported 12 of 24 stamps (16 px)" in out and "12 excluded by reason" in out and "'checksum': 1" in out
    assert main(["data", "import", str(tmp_path / "p4c"), str(tmp_path / "d")]) == 2  # exists: refused
    assert "--force" in capsys.readouterr().err
    assert main(["data", "verify", str(tmp_path / "d")]) == 0
    assert "clean" in capsys.readouterr().out


def test_a_damaged_row_group_loses_its_rows_not_the_table(tmp_path):
    good, _ = write_dataset(tmp_path / "p4c", bad=False)
    path = tmp_path / "p4c/split=val/part-0.parquet"  # val0..val3 in row groups of 2
    meta = pq.ParquetFile(path)
    column = meta.metadata.row_group(1).column(meta.schema_arrow.get_field_index("stamp_npz"))
    start = column.dictionary_page_offset or column.data_page_offset
    end = start + column.total_compressed_size
    raw = bytearray(path.read_bytes())
    raw[start:end] = bytes(b ^ 0x5A for b in raw[start:end])  # the second row group's stamp pages garbled
    path.write_bytes(bytes(raw))
    store = StampParquetStore(tmp_path / "p4c")
    assert np.array_equal(store.get("val1"), good["val1"])
    with pytest.raises(CutoutError, match="row group 1 cannot be read") as info:
        store.get("val2")
    assert info.value.reason == "unreadable" and info.value.path == str(path)
    report = import_stamp_parquet(tmp_path / "p4c", tmp_path / "data")
    assert report["n_imported"] == 10 and report["excluded_by_split"] == {"val": {"unreadable": 2}}
