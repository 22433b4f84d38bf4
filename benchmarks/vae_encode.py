"""Reducio-VAE encode throughput, peak memory and FLOPs (encoder-only model, random init).

For each config (default: ``reference-small`` and the released ``reducio-ft4``) a fresh
subprocess builds ``ReducioVAE.from_preset(name, parts="encoder")`` (encoder_3d + quant_conv,
what latent extraction needs), runs ``encode_latents`` on random clips in [-1, 1] (warm-up, then
timed repetitions) and reports:

- throughput: clips/s and s/clip over the timed repetitions (one clip per call by default);
- memory: on CPU the process's peak RSS (``resource.getrusage().ru_maxrss``) and its increase
  over the RSS just before the first encode (model weights and input already resident), so the
  delta is the working memory of the forward pass (tracemalloc does not see torch's allocator);
  on CUDA ``torch.cuda.max_memory_allocated`` above the memory held before encoding;
- FLOPs: analytic count of one clip's encode from ``torch.utils.flop_counter.FlopCounterMode``
  (convolutions + attention matmuls; norms and activations are not counted), obtained by running
  the model on the meta device, and the achieved FLOP/s = FLOPs x clips/s.

One subprocess per config keeps the peak-RSS numbers independent of each other.

Usage: ``python benchmarks/vae_encode.py [--device auto|cpu|cuda] [--configs reference-small,reducio-ft4]
[--size 16x224x288] [--batch 1] [--reps 1] [--warmup 1] [--dtype auto|float32|bfloat16|float16] [--threads N]``
(``--dtype auto`` = float32 on CPU, bfloat16 autocast on CUDA). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.env_check import cpu_model  # noqa: E402
from lib.vae import ReducioVAE  # noqa: E402
from lib.zoo.cost import reducio_encode_cost  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def current_rss_mib() -> float:
    """Resident set size now (Linux /proc; falls back to the peak where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def parse_size(text: str) -> tuple[int, int, int]:
    t, h, w = (int(v) for v in text.lower().split("x"))
    return t, h, w


def resolve(device: str, dtype: str) -> tuple[str, torch.dtype]:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return device, DTYPES[dtype]


def flops_per_clip(config: str, size: tuple[int, int, int]) -> tuple[int, int, tuple[int, ...]]:
    """(FLOPs of one clip's encode, encoder-path parameters, latent shape) on the meta device."""
    cost = reducio_encode_cost(config, (3, *size))
    return cost["encode_flops"], cost["encoder_params"], tuple(cost["latent_shape"])


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in its own process: build, warm up, time, measure memory."""
    device, dtype = resolve(args.device, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ReducioVAE.from_preset(args.worker, parts="encoder").eval().requires_grad_(False).to(device)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(args.batch, 3, *parse_size(args.size), generator=gen) * 2 - 1).to(device)
    autocast = torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    rss_before = current_rss_mib()
    if device == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats()
        held_before = torch.cuda.memory_allocated()
    with autocast:
        for _ in range(args.warmup):
            model.encode_latents(x)
        sync()
        start = time.perf_counter()
        for _ in range(args.reps):
            z = model.encode_latents(x)
        sync()
        elapsed = time.perf_counter() - start
    out: dict[str, Any] = {
        "seconds": elapsed,
        "clips": args.batch * args.reps,
        "threads": torch.get_num_threads(),
        "latent_dtype": str(z.dtype).removeprefix("torch."),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
    }
    if device == "cuda":
        out["gpu_peak_mib"] = (torch.cuda.max_memory_allocated() - held_before) / 2**20
        out["gpu_name"] = torch.cuda.get_device_name()
    return out


def run_config(args: argparse.Namespace, config: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", config] + [
        f"--{k}={getattr(args, k)}" for k in ("device", "dtype", "size", "batch", "reps", "warmup", "threads")
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker for {config} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_line(device: str) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name() if device == "cuda" else "none used"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())  # other jobs on a shared machine skew timings
    return (f"CPU: {cpu_model()} | logical cores available: {cores} | torch {torch.__version__} | "
            f"Python {platform.python_version()} | GPU: {gpu} | load average at start: {load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    parser.add_argument("--configs", default="reference-small,reducio-ft4")
    parser.add_argument("--size", default="16x224x288", help="T x H x W of one clip")
    parser.add_argument("--batch", type=int, default=1, help="clips per encode call")
    parser.add_argument("--reps", type=int, default=1, help="timed encode calls after the warm-up")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    device, dtype = resolve(args.device, args.dtype)
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    size = parse_size(args.size)
    print(machine_line(device))
    print(f"encode of {args.batch} clip(s) of {args.size} per call, {args.warmup} warm-up + {args.reps} timed call(s), "
          f"{device} {str(dtype).removeprefix('torch.')}{' autocast' if dtype != torch.float32 else ''}\n")
    mem_head = "GPU peak alloc (MiB)" if device == "cuda" else "peak RSS (MiB) | RSS increase in encode (MiB)"
    print("| config | encoder params (M) | latent (C,T,H,W) | GFLOP/clip | s/clip | clips/s | achieved GFLOP/s "
          f"| threads | {mem_head} |")
    print("|---|---|---|---|---|---|---|---|" + ("---|" if device == "cuda" else "---|---|"))
    for config in args.configs.split(","):
        flops, params, latent = flops_per_clip(config, size)
        r = run_config(args, config)
        clips_per_s = r["clips"] / r["seconds"]
        mem = (f"{r['gpu_peak_mib']:.0f}" if device == "cuda"
               else f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['rss_before_mib']:.0f}")
        print(f"| {config} | {params / 1e6:.1f} | {latent} | {flops / 1e9:.0f} | {1 / clips_per_s:.2f} | "
              f"{clips_per_s:.3f} | {flops * clips_per_s / 1e9:.0f} | {r['threads']} | {mem} |", flush=True)


if __name__ == "__main__":
    main()
