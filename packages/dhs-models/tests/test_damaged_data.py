"""Damaged shards after the data stage: the train stage stops with exit 1 instead of training on them."""

from __future__ import annotations

import pytest
from synthdata import data_section, make_survey

from dhs_core import run
from dhs_core.errors import DataIntegrityError
from dhs_data.pack import pack


def test_train_stage_refuses_shards_damaged_after_the_data_stage(tmp_path):
    packed = tmp_path / "packed"
    pack(make_survey(tmp_path / "survey"), packed, shard_size=16)
    data = data_section(packed / "manifest.parquet")
    data.pop("stamp")  # the packed store.json states it
    s = {"run": {"name": "t", "seed": 3, "out_dir": str(tmp_path / "r")}, "data": data,
         "model": {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]},
         "train": {"epochs": 1, "micro_batch": 8, "effective_batch": 16}}
    assert run(s, stages=["data"]).stages["data"] == "ran"
    # 4 KiB in the middle of the first shard flipped in their lowest bit: every pixel stays finite
    shard = packed / "shards/shard_00000.npy"
    raw = bytearray(shard.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 4096] = bytes(b ^ 0x01 for b in raw[mid:mid + 4096])
    shard.write_bytes(bytes(raw))
    with pytest.raises(DataIntegrityError) as info:
        run(s)
    assert info.value.exit_code == 1
    assert "checksum" in str(info.value) and "dhs data verify" in str(info.value)
    assert not (tmp_path / "r/train/last.pt").exists()
