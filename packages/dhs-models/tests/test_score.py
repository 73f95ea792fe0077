"""``dhs score`` and the score stage on a tiny trained run (one epoch, a tiny bottlenecked ResNet)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from synthdata import data_section, make_survey

from dhs_core import run
from dhs_data.stores import write_npz, write_store_json

MODEL = {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]}


def spec(manifest, out, **extra):
    return {
        "run": {"name": "s", "seed": 5, "out_dir": str(out)},
        "data": data_section(manifest),
        "model": MODEL,
        "train": {"epochs": 1, "micro_batch": 8, "effective_batch": 16, "optimizer": {"lr": 2e-3},
                  "loss": {"name": "bce"}},
        **extra,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run dir, survey manifest): a run trained once for the whole module."""
    root = tmp_path_factory.mktemp("score")
    manifest = make_survey(root / "survey")
    run(spec(manifest, root / "run"))
    return root / "run", manifest


def cli(*args):
    from dhs_cli.main import main

    return main(["score", *map(str, args)])


def table(path):
    return pq.read_table(path).to_pydict()


def test_scores_equal_train_scores_bit_for_bit(trained, tmp_path):
    run_dir, _ = trained
    assert cli("--run", run_dir, "--out", tmp_path / "s", "--shard-size", 5, "--device", "cpu",
               "--executor", "local") == 0
    scores = table(tmp_path / "s" / "scores.parquet")
    assert len(scores["galaxy_id"]) == 40 and set(scores["status"]) == {"ok"}
    mine = dict(zip(scores["galaxy_id"], scores["score"]))
    train = table(run_dir / "train" / "scores.parquet")
    assert len(train["galaxy_id"]) == 16
    for g, s in zip(train["galaxy_id"], train["score"]):
        assert mine[g] == s, g  # exact float64 equality, not approx
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["n_shards"] == 8 and summary["n_scored"] == 40 and summary["n_failed"] == 0
    assert summary["device"] == "cpu" and len(summary["checkpoint_sha256"]) == 64
    assert summary["throughput_cutouts_per_s"] > 0
    assert summary["quantiles"]["0.5"] == pytest.approx(float(np.quantile(scores["score"], 0.5)))


def test_unreadable_and_nan_cutouts_counted_by_reason_never_scored(trained, tmp_path):
    run_dir, _ = trained
    data = tmp_path / "survey"
    make_survey(data)
    write_store_json(data, format="npz", root=".", stamp=32)
    (data / "cutouts/g0003.npz").write_bytes(b"not a zip file")  # unreadable
    nan = np.zeros((3, 32, 32), np.float32)
    nan[1, 4, 4] = np.nan
    write_npz(data, "cutouts/g0007.npz", nan)  # non-finite pixel
    (data / "cutouts/g0011.npz").unlink()  # missing
    out = tmp_path / "s"
    assert cli("--checkpoint", run_dir / "train/best.pt", "--data", data / "manifest.parquet", "--out", out,
               "--shard-size", 16) == 0
    scores = table(out / "scores.parquet")
    status = dict(zip(scores["galaxy_id"], scores["status"]))
    score = dict(zip(scores["galaxy_id"], scores["score"]))
    assert status["g0007"] == "non_finite" and status["g0011"] == "missing"
    assert status["g0003"] in ("unreadable", "truncated")
    for g in ("g0003", "g0007", "g0011"):
        assert score[g] is None
    assert sum(s == "ok" for s in scores["status"]) == 37
    assert all(s is not None and 0 <= s <= 1 for g, s in score.items() if status[g] == "ok")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_scored"] == 37 and summary["n_failed"] == 3
    assert summary["failed_by_reason"] == {status["g0003"]: 1, "missing": 1, "non_finite": 1}
    assert {g for g in table(out / "candidates.parquet")["galaxy_id"]}.isdisjoint({"g0003", "g0007", "g0011"})


def test_killed_run_resumes_by_shard_with_identical_scores(trained, tmp_path, monkeypatch):
    from dhs_models import scoring

    run_dir, _ = trained
    real = scoring.score_shard
    calls: list[str] = []

    def dies_on_third(task):
        calls.append(task.output)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(task)

    monkeypatch.setattr(scoring, "score_shard", dies_on_third)
    out = tmp_path / "broken"
    assert cli("--run", run_dir, "--out", out, "--shard-size", 7, "--device", "cpu") == 1
    assert len(list((out / "shards").glob("*.parquet"))) == 2 and not (out / "scores.parquet").exists()
    calls.clear()
    monkeypatch.setattr(scoring, "score_shard", lambda task: calls.append(task.output) or real(task))
    assert cli("--run", run_dir, "--out", out, "--shard-size", 7, "--device", "cpu") == 0
    assert len(calls) == 4  # 6 shards of 40 cutouts, 2 already written
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_shards"] == 2 and summary["shards_run"] == 4
    assert cli("--run", run_dir, "--out", tmp_path / "unbroken", "--shard-size", 7, "--device", "cpu") == 0
    assert table(out / "scores.parquet") == table(tmp_path / "unbroken" / "scores.parquet")


def test_candidates_are_top_k_and_fpr_thresholds_match_brute_force(trained, tmp_path):
    run_dir, manifest = trained
    out = tmp_path / "s"
    assert cli("--run", run_dir, "--out", out, "--top-k", 7, "--fpr", 0.25, "--fpr", 1e-3, "--device", "cpu") == 0
    scores = table(out / "scores.parquet")
    order = sorted(range(40), key=lambda i: -scores["score"][i])  # stable: ties keep manifest order
    cand = table(out / "candidates.parquet")
    assert cand["galaxy_id"] == [scores["galaxy_id"][i] for i in order[:7]]
    assert cand["rank"] == list(range(1, 8))

    rows = table(manifest)
    labels = dict(zip(rows["galaxy_id"], rows["label"]))
    train = table(run_dir / "train" / "scores.parquet")
    neg = sorted((s for g, sp, s in zip(train["galaxy_id"], train["split"], train["score"])
                  if sp == "val" and labels[g] == 0), reverse=True)
    assert len(neg) == 4
    t25, t3 = json.loads((out / "summary.json").read_text())["thresholds"]
    # FPR 0.25 of 4 negatives allows one false positive: the threshold lies just above the 2nd highest
    assert t25["resolvable"] and t25["n_valid"] == 4
    assert neg[1] < t25["threshold"] <= np.nextafter(neg[1], 1) and t25["n_false_positive"] == 1
    assert t25["n_above"] == sum(s >= t25["threshold"] for s in scores["score"])
    # 1e-3 < 1/4: no false positive allowed, reported as not resolvable
    assert not t3["resolvable"] and "not resolvable" in t3["status"] and t3["threshold"] > neg[0]


def test_refusals_exit_2(trained, tmp_path, capsys, monkeypatch):
    import torch

    run_dir, _ = trained
    out = tmp_path / "s"
    assert cli("--run", run_dir, "--out", out, "--shard-size", 20, "--device", "cpu") == 0
    # another checkpoint: same architecture, perturbed weights
    ckpt = torch.load(run_dir / "train/best.pt", weights_only=True)
    other = tmp_path / "other.pt"
    ckpt["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, other)
    capsys.readouterr()
    args = ("--checkpoint", other, "--data", run_dir / "data", "--out", out, "--device", "cpu")
    assert cli(*args) == 2
    assert "another checkpoint" in capsys.readouterr().err
    assert cli(*args, "--force") == 0
    assert json.loads((out / "score.json").read_text())["checkpoint"] == str(other.resolve())

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli("--run", run_dir, "--out", tmp_path / "c", "--device", "cuda") == 2
    assert "CUDA" in capsys.readouterr().err

    wide = tmp_path / "wide"
    make_survey(wide, stamp=40)
    write_store_json(wide, format="npz", root=".", stamp=40)
    assert cli("--run", run_dir, "--data", wide, "--out", tmp_path / "w", "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert "32-px" in err and "40-px" in err

    ckpt["architecture"] = {**ckpt["architecture"], "base_ch": 8}
    torch.save(ckpt, other)
    assert cli("--checkpoint", other, "--data", run_dir / "data", "--out", tmp_path / "a", "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert "bottlenecked_resnet" in err and "other.pt" in err


def test_score_stage_in_a_spec(trained, tmp_path):
    _, manifest = trained
    res = run(spec(manifest, tmp_path / "r", score={"shard_size": 9, "top_k": 3, "fpr": [0.25], "device": "cpu"}))
    assert res.stages["score"] == "ran"
    out = tmp_path / "r" / "score"
    train = table(tmp_path / "r" / "train" / "scores.parquet")
    mine = dict(zip(*(table(out / "scores.parquet")[k] for k in ("galaxy_id", "score"))))
    assert all(mine[g] == s for g, s in zip(train["galaxy_id"], train["score"]))
    assert len(table(out / "candidates.parquet")["galaxy_id"]) == 3
    assert json.loads((out / "summary.json").read_text())["n_shards"] == 5
    assert res.metrics["score.n_scored"] == 40


def test_cpu_inference_is_float32_whatever_precision_is_asked(trained):
    """Autocast is a CUDA-only branch: on the CPU bf16/fp16 requests score exactly as fp32."""
    from dhs_core.errors import UserError
    from dhs_data.stores import open_store
    from dhs_models.inference import load_finder

    run_dir, _ = trained
    finder = load_finder(run_dir / "train/best.pt", device="auto")
    assert finder.device.type in ("cpu", "cuda")
    cpu = load_finder(run_dir / "train/best.pt", device="cpu")
    store = open_store(run_dir / "data")
    images = np.stack([store.get(f"cutouts/g{i:04d}.npz") for i in range(6)])
    fp32 = cpu.score(images)
    for precision in ("bf16", "fp16"):
        assert np.array_equal(cpu.score(images, precision=precision), fp32)
    with pytest.raises(UserError, match="precision 'fp8'"):
        cpu.score(images, precision="fp8")


@pytest.mark.parametrize("name", ["spread", "clustered", "ties", "edges"])
def test_quantiles_exact_with_bounded_memory(name):
    """The summary's quantiles equal numpy's on all values at once, also when every interval is
    over the in-memory cap (cap = 8: the radix passes decide every rank) and with heavy ties."""
    from dhs_models.scoring import order_statistics, quantiles

    rng = np.random.default_rng(4)
    values = {"spread": 1 / (1 + np.exp(-rng.normal(0, 6, 20_001))),
              "clustered": 0.5 + rng.normal(0, 1e-12, 5_000),
              "ties": np.repeat([0.0, 0.25, 0.25000000000000006, 1.0], 3_000),
              "edges": np.array([0.0, -0.0, 1.0, 1.0, 5e-324])}[name]

    def chunks():
        return (values[i:i + 999] for i in range(0, len(values), 999))

    ranks = sorted({0, len(values) - 1, *rng.integers(0, len(values), 40).tolist()})
    stats = order_statistics(chunks, len(values), ranks, cap=8)
    ordered = np.sort(values)
    assert all(stats[r] == ordered[r] for r in ranks)
    qs = (0.01, 0.1, 0.5, 0.9, 0.99, 0.999)
    got = quantiles(chunks, len(values), qs)
    for q in qs:
        assert got[q] == pytest.approx(float(np.quantile(values, q)), rel=1e-12, abs=1e-300)


def test_large_stores_get_a_parquet_dataset_of_parts(trained, tmp_path):
    """Above --dataset-rows, scores.parquet is a directory of whole-shard parts of at most that
    many rows; read as one table it equals the single file, and a rerun into the same directory
    with the single-file layout replaces it."""
    run_dir, _ = trained
    single, parts = tmp_path / "single", tmp_path / "parts"
    assert cli("--run", run_dir, "--out", single, "--shard-size", 7, "--device", "cpu") == 0
    assert cli("--run", run_dir, "--out", parts, "--shard-size", 7, "--device", "cpu", "--dataset-rows", 15) == 0
    files = sorted((parts / "scores.parquet").iterdir())
    # 40 cutouts in shards of 7: parts of whole shards, <= 15 rows (7 + 7, 7 + 7, 7 + 5)
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.read_metadata(f).num_rows for f in files] == [14, 14, 12]
    assert pq.read_table(parts / "scores.parquet").to_pydict() == table(single / "scores.parquet")
    summary = json.loads((parts / "summary.json").read_text())
    assert summary["scores_layout"].startswith("dataset") and summary["n_scored"] == 40
    assert not list(parts.glob(".scores.parquet*"))  # nothing temporary left
    assert cli("--run", run_dir, "--out", parts, "--shard-size", 7, "--device", "cpu", "--force") == 0
    assert (parts / "scores.parquet").is_file() and table(parts / "scores.parquet") == table(single / "scores.parquet")


def test_score_section_takes_the_devices_dhs_score_takes():
    from pydantic import ValidationError

    from dhs_models.score_stage import ScoreConfig

    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert ScoreConfig(device=device).device == device
    with pytest.raises(ValidationError, match="not one of auto, cpu, cuda, cuda:N"):
        ScoreConfig(device="gpu")
