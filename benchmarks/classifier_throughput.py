"""Training and inference throughput of every classifier on a UCF101-sized random latent set.

The data: an in-memory random tensor of ``--clips`` latents (default 100,000 x 16 x 4 x 7 x 9,
about the number of 1-second clips in UCF101) stored as float16 like the latent cache, on the
training device, sliced into batches and cast to float32 per batch (what the engine's
``TensorClips`` does). Fusion models also get a (clips, ``--content-dim``) float16 content
tensor. Labels are random (``--classes``, default 101): throughput does not depend on them.

Per model: build (seed 0), AdamW (lr 1e-3), then

- training: ``--warmup`` steps, then timed steps of ``--batch`` clips (forward, cross-entropy,
  backward, optimiser step) until ``--seconds`` pass or one full pass over the clips is done;
- inference: eval mode, ``torch.inference_mode``, batches of ``--eval-batch``, timed the same way;
- params and forward FLOPs per clip (``lib.models.cost``).

On CUDA (``--device cuda``) the steps run under bf16 autocast (fp16 + GradScaler where bf16 is
missing), ``cudnn.benchmark`` on, and time is measured after ``torch.cuda.synchronize()``.
From the measured rate the script extrapolates a full ``conv3d_paper`` training at UCF101 scale:
``--epochs`` (default 30, the engine's default) x ``--scale-clips`` (default 100,000) training
clips, plus a validation pass of 10 % of that per epoch at the inference rate.

``--pixel`` adds the pixel references on random frames (``--pixel-batch``, a pool of 64 clips
cycled): ``pixel_c3d_small`` at 3 x 16 x 64 x 96 (extrapolated to the embedded default's 4,500
training clips) and, on CUDA only unless named in ``--models``, ``pixel_r2plus1d18`` at
3 x 16 x 112 x 112.

Usage: ``python benchmarks/classifier_throughput.py [--device auto|cpu|cuda] [--clips 100000]
[--seconds 10] [--batch 256] [--models all|name,...] [--threads N] [--pixel]``. Prints the machine and a
markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.env_check import cpu_model  # noqa: E402
from lib.models import MODEL_NAMES, build_model, count_parameters, forward_flops, model_info  # noqa: E402

EMBEDDED_TRAIN_CLIPS = 4_500  # ~ the embedded default's training clips (see README)


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


def random_fp16(rows: int, shape: tuple[int, ...], device: torch.device, seed: int) -> torch.Tensor:
    """(rows, *shape) float16 N(0, 1), generated in chunks (no float32 copy of the whole set)."""
    out = torch.empty((rows, *shape), dtype=torch.float16, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    for start in range(0, rows, 8192):
        stop = min(rows, start + 8192)
        out[start:stop] = torch.randn((stop - start, *shape), generator=gen, device=device)
    return out


def timed_loop(
    step: Callable[[int], None], *, total_items: int, batch: int, warmup: int, seconds: float, sync: Callable[[], None]
) -> tuple[int, float]:
    """Run ``step(start)`` over consecutive batches: ``warmup`` untimed, then timed until
    ``seconds`` pass or one pass over ``total_items`` is done. Returns (items, seconds)."""
    starts = range(0, max(1, total_items - batch + 1), batch)
    for i in range(warmup):
        step(starts[i % len(starts)])
    sync()
    t0 = time.perf_counter()
    done = 0
    for i, start in enumerate(starts):
        step(start)
        done += batch
        if (i + 1) % 4 == 0:  # sync rarely on CUDA (keeps the queue full); always check on CPU
            sync()
        if time.perf_counter() - t0 > seconds:
            break
    sync()
    return done, time.perf_counter() - t0


def bench_model(
    name: str, inputs: list[torch.Tensor], labels: torch.Tensor, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Training and inference clips/s of one model on ``inputs`` (fp16 tensors, one per argument)."""
    torch.manual_seed(0)
    shape = tuple(inputs[0].shape[1:])
    overrides = {"content_dim": inputs[1].shape[1]} if len(inputs) > 1 else {}
    model = build_model(name, num_classes=args.classes, input_shape=shape, **overrides).to(device)
    params, flops = count_parameters(model), forward_flops(model)
    use_amp = device.type == "cuda" and not args.no_amp
    amp_dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    pixels = model_info(name).input_kind == "pixels"
    batch = args.pixel_batch if pixels else args.batch
    eval_batch = args.pixel_batch if pixels else args.eval_batch
    total = 10**9 if pixels else args.clips  # the small pixel pool is cycled; latents: one pass at most
    rows = inputs[0].shape[0]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def batch_inputs(start: int, size: int) -> list[torch.Tensor]:
        start = start % max(1, rows - size + 1)
        return [t[start : start + size].float() for t in inputs]

    def train_step(start: int) -> None:
        xs = batch_inputs(start, batch)
        y = labels[start % labels.shape[0] :][:batch]
        y = torch.cat([y, labels[: batch - y.shape[0]]]) if y.shape[0] < batch else y
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            loss = F.cross_entropy(model(*xs), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def infer_step(start: int) -> None:
        xs = batch_inputs(start, eval_batch)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            model(*xs)

    model.train()
    train_items, train_s = timed_loop(
        train_step, total_items=total, batch=batch, warmup=args.warmup, seconds=args.seconds, sync=sync
    )
    model.eval()
    with torch.inference_mode():
        infer_items, infer_s = timed_loop(
            infer_step, total_items=total, batch=eval_batch, warmup=args.warmup, seconds=args.seconds / 2, sync=sync
        )
    return {
        "name": name,
        "shape": shape,
        "params": params,
        "flops": flops,
        "batch": batch,
        "train_cps": train_items / train_s,
        "train_clips": train_items,
        "infer_cps": infer_items / infer_s,
        "infer_clips": infer_items,
    }


def model_inputs(
    name: str,
    latents: torch.Tensor,
    content: torch.Tensor,
    device: torch.device,
    *,
    pixel_shape: tuple[int, ...] | None = None,
) -> list[torch.Tensor]:
    """The input tensors :func:`bench_model` times ``name`` on: the latents (plus the content
    features for fusion models), or a pool of 64 random clips for pixel models (``pixel_shape``,
    default 3x16x112x112 for ``pixel_r2plus1d18``, 3x16x64x96 otherwise)."""
    kind = model_info(name).input_kind
    if kind == "pixels":
        shape = pixel_shape or ((3, 16, 112, 112) if name == "pixel_r2plus1d18" else (3, 16, 64, 96))
        return [random_fp16(64, shape, device, seed=3).clamp_(-1, 1)]
    return [latents, content] if kind == "latent+content" else [latents]


def machine_line(device: torch.device) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "none used"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())  # other jobs on a shared machine skew timings
    return (
        f"CPU: {cpu_model()} | logical cores available: {cores} | torch threads: {torch.get_num_threads()} | "
        f"torch {torch.__version__} | Python {platform.python_version()} | GPU: {gpu} | load average at start: {load}"
    )


def full_training_seconds(result: dict[str, Any], *, epochs: int, scale_clips: int) -> tuple[float, float]:
    """(training-step seconds, seconds with a validation pass over 10 % of ``scale_clips`` per epoch)
    of ``epochs`` epochs of ``scale_clips`` clips at the rates of a :func:`bench_model` result."""
    train_s = epochs * scale_clips / result["train_cps"]
    return train_s, train_s + epochs * 0.1 * scale_clips / result["infer_cps"]


def fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--clips", type=int, default=100_000, help="clips in the in-memory random latent set")
    parser.add_argument("--latent", default="16x4x7x9", help="C x T' x H' x W' of one latent")
    parser.add_argument("--content-dim", type=int, default=512, help="content feature size for fusion models")
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--batch", type=int, default=256, help="training batch (latent models)")
    parser.add_argument("--eval-batch", type=int, default=1024, help="inference batch (latent models)")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="time budget per model for training (inference: half)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each timing")
    parser.add_argument("--models", default="all", help="comma-separated names, or 'all' latent-input models")
    parser.add_argument("--epochs", type=int, default=30, help="epochs assumed for the full-training extrapolation")
    parser.add_argument("--scale-clips", type=int, default=100_000, help="training clips per epoch at UCF101 scale")
    parser.add_argument("--pixel", action="store_true", help="also time the pixel references on random frames")
    parser.add_argument("--pixel-batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    args = parser.parse_args()

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    if args.models == "all":
        names = [n for n in MODEL_NAMES if model_info(n).input_kind != "pixels"]
    else:
        names = args.models.split(",")
        unknown = sorted(set(names) - set(MODEL_NAMES))
        if unknown:
            parser.error(f"unknown model(s) {unknown}; known: {list(MODEL_NAMES)}")
    if args.pixel:
        names += [
            n
            for n in ("pixel_c3d_small", "pixel_r2plus1d18")
            if n not in names and (n != "pixel_r2plus1d18" or device.type == "cuda")
        ]

    latent_shape = parse_shape(args.latent)
    t0 = time.perf_counter()
    latents = random_fp16(args.clips, latent_shape, device, seed=0)
    content = random_fp16(args.clips, (args.content_dim,), device, seed=1)
    labels = torch.randint(0, args.classes, (args.clips,), generator=torch.Generator().manual_seed(2)).to(device)
    setup_s = time.perf_counter() - t0
    print(machine_line(device))
    print(
        f"data: {args.clips:,} random latents {args.latent} float16 ({latents.numel() * 2 / 2**20:.0f} MiB) "
        f"on {device} (made in {setup_s:.1f} s), cast to float32 per batch; "
        f"{'bf16/fp16 autocast' if device.type == 'cuda' and not args.no_amp else 'float32'}; "
        f"AdamW; per model <= {args.seconds:g} s training, <= {args.seconds / 2:g} s inference\n"
    )
    print(
        "| model | input (per clip) | params (M) | MFLOPs/clip (fwd) | train batch | train clips/s "
        "| inference clips/s | "
        f"epoch of {args.scale_clips:,} clips | clips timed (train / infer) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        kind = model_info(name).input_kind
        r = bench_model(name, model_inputs(name, latents, content, device), labels, args, device)
        results[name] = r
        shape = "x".join(map(str, r["shape"])) + (f" + {args.content_dim}" if kind == "latent+content" else "")
        epoch = fmt_duration(args.scale_clips / r["train_cps"]) if kind != "pixels" else "-"
        print(
            f"| {name} | {shape} | {r['params'] / 1e6:.2f} | {r['flops'] / 1e6:.1f} | {r['batch']} | "
            f"{r['train_cps']:,.0f} | {r['infer_cps']:,.0f} | {epoch} | {r['train_clips']:,} / {r['infer_clips']:,} |",
            flush=True,
        )

    print()
    if "conv3d_paper" in results:
        train_s, total_s = full_training_seconds(
            results["conv3d_paper"], epochs=args.epochs, scale_clips=args.scale_clips
        )
        scale = "UCF101 scale" if args.scale_clips == 100_000 else "--scale-clips"
        print(
            f"Full conv3d_paper training ({scale}) on this {device.type.upper()}: {args.epochs} epochs x "
            f"{args.scale_clips:,} clips = {fmt_duration(train_s)} of training steps, {fmt_duration(total_s)} "
            f"with a validation pass over {int(0.1 * args.scale_clips):,} clips per epoch "
            f"(the published run: ~16 minutes on an RTX 4070)."
        )
    if "pixel_c3d_small" in results:
        r = results["pixel_c3d_small"]
        print(
            f"pixel_c3d_small on 3x16x64x96 frames: one epoch of the embedded default's ~{EMBEDDED_TRAIN_CLIPS:,} "
            f"training clips = {fmt_duration(EMBEDDED_TRAIN_CLIPS / r['train_cps'])} of training steps "
            f"(decoding not included; frames come from the clip decoder in the study)."
        )


if __name__ == "__main__":
    main()
