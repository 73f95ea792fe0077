"""Training-step throughput of EfficientNetV2-S on 101 px cutouts: images/s of forward + backward + AdamW.

    python benchmarks/bench_train_step.py [--quick] [--device auto|cpu|cuda] [--precision auto|fp32|bf16|fp16]
                                          [--batch 64] [--channels-last | --no-channels-last]
                                          [--warmup W] [--steps S] [--threads N]

The dhs ``efficientnet_v2_s`` architecture, built as the train stage builds it (resolved from the
registry, then :func:`dhs_models.inference.build_network`), trains on one fixed batch of random
3-band 101 x 101 px cutouts already on the device: no data loading (bench_loader.py measures that).
Each step is the trainer's (dhs_models/training/trainer.py): autocast on CUDA only (``auto``: bfloat16
where the GPU has it, else float16), loss on the float32 logits, BCE-with-logits, float16 through a
GradScaler, AdamW, the loss read back each step (the trainer checks it is finite); weights and inputs
channels_last when asked (``train.channels_last``; here the default on CUDA, where inference always
uses it). On the CPU the step is always float32, as in the trainer: CPU autocast is slow and changes
results.

Warm-up steps (cuDNN algorithm choice, the caching allocator) are not timed; each timed round ends
with ``torch.cuda.synchronize()``. The rate is an absolute one, not a ratio: it sizes GPU training
(images/s -> epochs per hour), it checks no budget of DESIGN §7.

The last line is
``train_step: <N> images/s (efficientnet_v2_s, 101 px, batch B, device D, precision P)``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time

import torch

os.environ.setdefault("DHS_LOAD_PLUGINS", "builtin")

ARCH = {"name": "efficientnet_v2_s"}
STAMP, BANDS = 101, 3
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def build(device: torch.device, channels_last: bool) -> torch.nn.Module:
    from dhs_core import plugins
    from dhs_models.inference import build_network

    torch.manual_seed(0)
    _, config = plugins.resolve("architecture", ARCH, where="model")
    model = build_network({"name": ARCH["name"], **config.model_dump(mode="json")}).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.train()


def pick_precision(requested: str, device: torch.device) -> str:
    """The trainer's rule (Trainer._amp_dtype): float32 on the CPU whatever was asked."""
    if device.type != "cuda":
        if requested not in ("auto", "fp32"):
            print(f"--precision {requested} ignored: on the CPU the training step is always float32 "
                  "(as in the trainer)")
        return "fp32"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        print(f"bench_train_step: --precision bf16, but {torch.cuda.get_device_name(device)} has no bfloat16; "
              "use fp16 or fp32", file=sys.stderr)
        sys.exit(2)
    return requested


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds of fewer steps (under a minute on 2 CPU cores)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (auto: CUDA when present)")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                    help="autocast dtype on CUDA (auto: bf16 where supported, else fp16); CPU: always fp32")
    ap.add_argument("--batch", type=int, default=64, help="images per step")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="channels_last weights and inputs (default: on for CUDA, off for the CPU)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps (CUDA: 10, 5 with --quick; CPU: 2, 1 with --quick)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per round (CUDA: 50, 20 with --quick; CPU: 5, 2 with --quick)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from dhs_core.errors import UserError
    from dhs_models.inference import require_device

    try:
        device = require_device(args.device)
    except UserError as exc:
        print(f"bench_train_step: {exc}", file=sys.stderr)
        sys.exit(2)
    cuda = device.type == "cuda"
    precision = pick_precision(args.precision, device)
    channels_last = cuda if args.channels_last is None else args.channels_last
    if cuda:  # a step takes milliseconds
        warmup, steps = (5, 20) if args.quick else (10, 50)
    else:  # a step of batch 64 takes seconds
        warmup, steps = (1, 2) if args.quick else (2, 5)
    warmup = args.warmup if args.warmup is not None else warmup
    steps = args.steps if args.steps is not None else steps
    rounds = 2 if args.quick else 3

    model = build(device, channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    amp_dtype = AMP_DTYPES.get(precision)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    g = torch.Generator().manual_seed(0)
    images = (torch.randn(args.batch, BANDS, STAMP, STAMP, generator=g) * 0.05).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = (torch.arange(args.batch) % 2).float().to(device)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = model(images).reshape(-1)
        loss = loss_fn(logits.float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"torch {torch.__version__}, device {device} ({where})")
    how = {"fp32": "", "bf16": " (autocast)", "fp16": " (autocast, GradScaler)"}[precision]
    print(f"efficientnet_v2_s: {n_params:,} parameters, {STAMP} px, {BANDS} bands, batch {args.batch}, "
          f"precision {precision}{how}, channels_last {'on' if channels_last else 'off'}, AdamW, BCE-with-logits")
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    print(f"  warm-up: {warmup} step(s) in {time.perf_counter() - t0:.1f} s (not timed)")
    rates, losses = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        losses += [step() for _ in range(steps)]
        sync()
        rates.append(steps * args.batch / (time.perf_counter() - t0))
    if not all(math.isfinite(v) for v in losses):
        sys.exit(f"bench_train_step: the loss is not finite ({losses}); the rate would be meaningless")
    print(f"  {rounds} rounds of {steps} timed steps: {', '.join(f'{r:.1f}' for r in rates)} images/s; "
          f"last loss {losses[-1]:.4f}")
    if cuda:
        print(f"  peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(f"train_step: {statistics.median(rates):.1f} images/s (efficientnet_v2_s, {STAMP} px, batch {args.batch}, device {device}, "
          f"precision {precision})")


if __name__ == "__main__":
    main()
