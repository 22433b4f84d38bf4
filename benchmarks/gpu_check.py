"""Every GPU measurement of the study in one process (<= 8 minutes on one GPU): a table and a JSON file.

Sections (``--sections``, all by default):

1. ``encoder``: the full Reducio ft4 encoder (``lib.vae.presets`` ``reducio-ft4``, random weights,
   ``ReducioVAE.from_config(..., parts="encoder")``, what latent extraction runs) on 16x224x288
   clips: clips/s at batch 1, 4, 8 and 16 under bf16 and fp16 autocast (as ``lib.cache`` runs it),
   peak memory (``torch.cuda.max_memory_allocated`` above what was held before; peak RSS on a
   CPU), analytic FLOPs per clip (``benchmarks/vae_encode.py``: convolutions and attention
   matmuls on the meta device) and the achieved TFLOP/s as a fraction of the device's dense
   bf16/fp16 tensor peak (:data:`PEAK_TFLOPS`, from NVIDIA's datasheets).
2. ``precision``: the posterior mean under bf16 and fp16 autocast against float32 (TF32 off) on
   two structured clips: maximum absolute error and RMS error relative to the RMS of the mean.
3. ``pipeline``: decode + encode with the cache builder (``lib.cache.build_cache``, the full
   ft4 model with random weights, content features on, as notebook 02 runs it) on a synthetic
   UCF101-layout set (:mod:`lib.data.synth_ucf101`; videos of 1.1-3 s instead of UCF101's ~7 s):
   clips/s and the share of wall time the encoder was busy.
4. ``classifiers``: training and inference clips/s of every registered latent classifier on
   100,000 random 16x4x7x9 latents with AMP (``benchmarks/classifier_throughput.py``'s
   ``bench_model``), and the extrapolated full ``conv3d_paper`` training on UCF101 (epochs and
   seeds of ``params/ucf101_reducio.yaml``, 100,000 clips per epoch).
5. ``pixel``: ``pixel_r2plus1d18`` training and inference clips/s on random 3x16x112x112 clips at
   the params file's ``pixel_batch_size``.
6. ``zoo``: every zoo adapter's released architecture (:mod:`lib.zoo.adapters`, random weights)
   encoding 16x224x288 clips through the cache's encoder path (clip policy and normalisation
   included) under bf16 autocast: clips/s at batch 1 and 4, peak memory, FLOPs per clip counted
   on the meta device. Skipped, saying so, without diffusers (``pip install -e '.[zoo]'``).

``--device cpu --quick`` runs every section at toy sizes (a reduced-width encoder at 16x64x96, a
few hundred latents, a 32x32 pixel clip, the zoo's tiny configs) in well under a minute: a check that the script works,
not a measurement.

Usage: ``python benchmarks/gpu_check.py [--device auto|cuda|cpu] [--quick] [--out outputs/benchmarks/gpu_check.json]
[--sections encoder,precision,pipeline,classifiers,pixel,zoo]`` (``make gpu-check``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

import classifier_throughput as ct  # noqa: E402
import vae_encode  # noqa: E402

from lib.env_check import cpu_model  # noqa: E402
from lib.models import MODEL_NAMES, model_info  # noqa: E402
from lib.paths import OUTPUTS_DIR, PARAMS_DIR  # noqa: E402

SECTIONS = ("encoder", "precision", "pipeline", "classifiers", "pixel", "zoo")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
# float16 autocast on a CPU has no fast convolution kernels (~200x slower than bfloat16 for this
# encoder on a 2-core EPYC): the CPU rows of float16 are skipped.
CPU_SKIPPED_DTYPES = ("float16",)
REAL_PARAMS = PARAMS_DIR / "ucf101_reducio.yaml"
UCF101_SCALE_CLIPS = 100_000  # ~ the 1-second clips of UCF101 (classifier_throughput's "UCF101 scale")

#: Dense (no sparsity) bf16/fp16 tensor-core peak TFLOP/s by device-name pattern, first match wins.
#: Source: NVIDIA datasheets (H100 / H200 / A100 / L40S / L4 / A10 Tensor Core GPU), whose
#: headline figures are "with sparsity", i.e. twice these.
PEAK_TFLOPS: tuple[tuple[tuple[str, ...], float, str], ...] = (
    (("H100", "PCIE"), 756.0, "NVIDIA H100 datasheet, H100 PCIe: 1,513 TFLOPS BF16/FP16 with sparsity"),
    (("H100", "NVL"), 0.0, ""),  # two board variants with different figures: not guessed
    (("H100",), 989.0, "NVIDIA H100 datasheet, H100 SXM: 1,979 TFLOPS BF16/FP16 with sparsity"),
    (("H200",), 989.0, "NVIDIA H200 datasheet, H200 SXM: 1,979 TFLOPS BF16/FP16 with sparsity"),
    (("A100",), 312.0, "NVIDIA A100 datasheet: 624 TFLOPS BF16/FP16 with sparsity"),
    (("L40S",), 362.0, "NVIDIA L40S datasheet: 733 TFLOPS BF16/FP16 with sparsity"),
    (("L4",), 121.0, "NVIDIA L4 datasheet: 242 TFLOPS BF16/FP16 with sparsity"),
    (("A10",), 125.0, "NVIDIA A10 datasheet: 250 TFLOPS BF16/FP16 with sparsity"),
)


def device_peak(name: str) -> tuple[float | None, str]:
    """(dense bf16/fp16 peak TFLOP/s, source) of a device name; (None, reason) when not known."""
    upper = name.upper()
    for patterns, peak, source in PEAK_TFLOPS:
        if all(p in upper for p in patterns):
            return (peak, source) if peak else (None, f"{name}: peak not tabulated")
    return None, f"{name}: peak not tabulated"


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
class Timer:
    """Wall time with device synchronisation before reading the clock."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def now(self) -> float:
        self.sync()
        return time.perf_counter()


def table(title: str, rows: list[dict[str, Any]]) -> None:
    """Print ``rows`` as a markdown table under ``title``."""
    print(f"\n## {title}\n")
    if not rows:
        print("(nothing measured)")
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    sys.stdout.flush()


def machine(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on (also printed as the first line)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {"line": ct.machine_line(device), "python": platform.python_version(),
                            "torch": torch.__version__, "device": device.type, "cpu": cpu_model(), "cores": cores}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        peak, source = device_peak(props.name)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), peak_tflops_bf16_fp16_dense=peak, peak_source=source)
    return info


def structured_clips(n: int, size: tuple[int, int, int]) -> torch.Tensor:
    """``n`` clips (3, T, H, W) in [-1, 1] with real image structure: frames of the UCF101-layout
    stand-in's renderer (a drifting striped background and a moving rectangle), centre-cropped."""
    from lib.data.synth_ucf101 import LayoutSelection, layout_specs

    t, h, w = size
    specs = layout_specs(LayoutSelection(classes=("Archery", "YoYo"), groups=(3,), clips_per_group=n))[:n]
    out = []
    for spec in specs:
        frames = []
        for i, frame in enumerate(spec.render_frames()):
            if i == t:
                break
            frames.append(torch.from_numpy(frame))
        while len(frames) < t:
            frames.append(frames[-1])
        video = torch.stack(frames).permute(3, 0, 1, 2).float() / 127.5 - 1  # (3, T, 240, 320)
        if h > video.shape[2] or w > video.shape[3]:
            video = torch.nn.functional.interpolate(video, size=(max(h, 240), max(w, 320)), mode="bilinear")
        top, left = (video.shape[2] - h) // 2, (video.shape[3] - w) // 2
        out.append(video[:, :, top:top + h, left:left + w])
    return torch.stack(out)


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """TF32 off inside (a float32 reference that is really float32)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------
def time_encode(call: Callable[[torch.Tensor], Any], batch: int, cfg: argparse.Namespace, device: torch.device,
                timer: Timer) -> dict[str, Any]:
    """Encode a random ``batch`` of ``cfg.size`` clips with ``call``: warm-up calls, then calls until
    ``min_reps`` and ``min_seconds`` (at most ``max_reps``); clips/s, seconds per call, calls and
    peak memory (GPU: above what was held before; CPU: process peak RSS), in MiB."""
    x = (torch.rand(batch, 3, *cfg.size, generator=torch.Generator().manual_seed(batch)) * 2 - 1).to(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device)
    for _ in range(cfg.warmup):
        call(x)
    start, reps = timer.now(), 0
    while reps < cfg.min_reps or time.perf_counter() - start < cfg.min_seconds:
        call(x)
        reps += 1
        if reps >= cfg.max_reps:
            break
    seconds = timer.now() - start
    peak = ((torch.cuda.max_memory_allocated(device) - held) / 2**20 if device.type == "cuda"
            else vae_encode.peak_rss_mib())
    return {"clips_per_s": batch * reps / seconds, "s_per_call": seconds / reps, "calls": reps, "peak_mem_mib": peak}


def bench_encoder(cfg: argparse.Namespace, device: torch.device, info: dict[str, Any]) -> dict[str, Any]:
    from lib.vae import ReducioVAE
    from lib.vae.presets import get_preset

    flops, params, latent = vae_encode.flops_per_clip(cfg.encoder_preset, cfg.size)
    torch.manual_seed(0)
    model = ReducioVAE.from_config(get_preset(cfg.encoder_preset), parts="encoder").eval().requires_grad_(False)
    model.to(device)
    timer = Timer(device)
    peak = info.get("peak_tflops_bf16_fp16_dense")
    rows = []
    for dtype_name, dtype in DTYPES.items():
        for batch in cfg.batches:
            row: dict[str, Any] = {"dtype": dtype_name, "batch": batch}
            if device.type == "cpu" and dtype_name in CPU_SKIPPED_DTYPES:
                rows.append({**row, "error": "skipped on CPU (no fast float16 kernels)"})
                continue
            try:
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
                    row.update(time_encode(model.encode_latents, batch, cfg, device, timer))
                row["achieved_tflops"] = flops * row["clips_per_s"] / 1e12
                row["fraction_of_peak"] = row["achieved_tflops"] / peak if peak else None
            except torch.OutOfMemoryError:
                row["error"] = "out of memory"
            rows.append(row)
            print(f"  encoder {dtype_name} batch {batch}: {row.get('clips_per_s', row.get('error'))}", flush=True)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    table(f"Encoder {cfg.encoder_preset} (random weights, parts=encoder) at {'x'.join(map(str, cfg.size))}: "
          f"{flops / 1e12:.2f} TFLOP/clip, {params / 1e6:.1f} M parameters, latent {latent}; memory column: "
          + ("GPU peak above the weights (MiB)" if device.type == "cuda" else "process peak RSS (MiB)"), rows)
    if peak:
        print(f"fraction of peak: achieved / {peak:g} TFLOP/s ({info['peak_source']})")
    return {"preset": cfg.encoder_preset, "size": list(cfg.size), "tflop_per_clip": flops / 1e12, "params": params,
            "latent_shape": list(latent), "peak_tflops": peak, "peak_source": info.get("peak_source"), "rows": rows}


def bench_precision(cfg: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from lib.vae import ReducioVAE
    from lib.vae.presets import get_preset

    torch.manual_seed(0)
    model = ReducioVAE.from_config(get_preset(cfg.encoder_preset), parts="encoder").eval().requires_grad_(False)
    model.to(device)
    clips = structured_clips(2, cfg.size).to(device)
    with torch.inference_mode():
        with exact_float32():
            reference = model.encode(clips).mean.float()
        rows = []
        for dtype_name, dtype in DTYPES.items():
            if device.type == "cpu" and dtype_name in CPU_SKIPPED_DTYPES:
                rows.append({"dtype": dtype_name, "finite": None, "error": "skipped on CPU (no fast float16 kernels)"})
                continue
            with torch.autocast(device.type, dtype=dtype):
                mean = model.encode(clips).mean.float()
            diff = mean - reference
            finite = bool(torch.isfinite(mean).all())
            rows.append({"dtype": dtype_name, "finite": finite,
                         "max_abs_error": float(diff.abs().max()) if finite else math.inf,
                         "rel_rms_error": float(diff.pow(2).mean().sqrt() / reference.pow(2).mean().sqrt())
                         if finite else math.inf,
                         "reference_rms": float(reference.pow(2).mean().sqrt())})
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    table(f"Posterior mean under autocast vs float32 (TF32 off), {cfg.encoder_preset}, 2 structured clips", rows)
    return {"preset": cfg.encoder_preset, "clips": 2, "rows": rows}


def bench_pipeline(cfg: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from lib.cache import BuildOptions, CacheSpec, build_cache
    from lib.data.spatial import CropPolicy
    from lib.data.synth_ucf101 import CLASS_NAMES, LayoutSelection, generate_layout

    # groups 1 (fold 1's test part) and 8-9 (its train part, one of them the validation group)
    selection = LayoutSelection(classes=CLASS_NAMES[: cfg.pipeline_classes], groups=(1, 8, 9),
                                clips_per_group=cfg.pipeline_clips)
    spatial = None if cfg.size == (16, 224, 288) else CropPolicy(short_side=cfg.size[1] + cfg.size[1] // 8,
                                                                  crop=cfg.size[1:])
    with tempfile.TemporaryDirectory(prefix="lvs_gpu_check_") as tmp:
        start = time.perf_counter()
        data = generate_layout(Path(tmp) / "data", selection, workers=cfg.gen_workers, progress=False)
        gen_s = time.perf_counter() - start
        spec = CacheSpec(data_root=data, vae_source=f"random:{cfg.pipeline_preset}", spatial=spatial, dtype="bfloat16",
                         content_features=True)
        options = BuildOptions(num_workers=cfg.decode_workers, device=str(device), batch_size=cfg.pipeline_batch,
                               progress=False)
        summary = build_cache(spec, Path(tmp) / "cache", options)
    row = {"videos": summary.num_videos, "clips": summary.clips_this_run, "decode workers": cfg.decode_workers,
           "batch": cfg.pipeline_batch, "wall_s": summary.wall_seconds, "clips_per_s": summary.clips_per_second,
           "encoder_busy": summary.encoder_busy_fraction, "decode_wait_s": summary.decode_wait_seconds,
           "dataset_made_s": gen_s}
    table(f"Pipeline: lib.cache build, random:{cfg.pipeline_preset}, bf16, content features, "
          f"{'x'.join(map(str, cfg.size))}", [row])
    return {"preset": cfg.pipeline_preset, **row}


def _bench_args(cfg: argparse.Namespace) -> argparse.Namespace:
    """The namespace classifier_throughput.bench_model reads."""
    return argparse.Namespace(classes=101, no_amp=False, pixel_batch=cfg.pixel_batch, batch=cfg.batch,
                              eval_batch=cfg.eval_batch, clips=cfg.clips, warmup=cfg.cls_warmup, seconds=cfg.seconds)


def bench_classifiers(cfg: argparse.Namespace, device: torch.device, real: dict[str, Any]) -> dict[str, Any]:
    args = _bench_args(cfg)
    latents = ct.random_fp16(cfg.clips, (16, 4, 7, 9), device, seed=0)
    content = ct.random_fp16(cfg.clips, (512,), device, seed=1)
    labels = torch.randint(0, 101, (cfg.clips,), generator=torch.Generator().manual_seed(2)).to(device)
    rows, results = [], {}
    for name in [n for n in MODEL_NAMES if model_info(n).input_kind != "pixels"]:
        r = ct.bench_model(name, ct.model_inputs(name, latents, content, device), labels, args, device)
        results[name] = r
        rows.append({"model": name, "params_M": r["params"] / 1e6, "MFLOPs/clip": r["flops"] / 1e6, "batch": r["batch"],
                     "train_clips_per_s": r["train_cps"], "infer_clips_per_s": r["infer_cps"],
                     "clips_timed": f"{r['train_clips']:,} / {r['infer_clips']:,}"})
        print(f"  {name}: train {r['train_cps']:,.0f} clips/s", flush=True)
    del latents, content
    table(f"Classifiers on {cfg.clips:,} random 16x4x7x9 latents (float16 in memory), "
          f"{'AMP (bf16/fp16 autocast)' if device.type == 'cuda' else 'float32 (AMP is CUDA only)'}, AdamW", rows)
    epochs, seeds = int(real["05_conv3d"]["epochs"]), len(real["05_conv3d"]["seeds"])
    train_s, total_s = ct.full_training_seconds(results["conv3d_paper"], epochs=epochs, scale_clips=UCF101_SCALE_CLIPS)
    full = {"model": "conv3d_paper", "epochs": epochs, "seeds": seeds, "clips_per_epoch": UCF101_SCALE_CLIPS,
            "train_steps_s": train_s, "with_validation_s": total_s, "all_seeds_s": seeds * total_s}
    print(f"\nFull conv3d_paper training on UCF101 ({REAL_PARAMS.name}: {epochs} epochs at most, {seeds} seeds; "
          f"{UCF101_SCALE_CLIPS:,} clips per epoch, validation 10 % of that): {ct.fmt_duration(train_s)} of training "
          f"steps, {ct.fmt_duration(total_s)} with validation per seed, {ct.fmt_duration(seeds * total_s)} for "
          f"{seeds} seeds (early stopping may end sooner; the published run: ~16 minutes on an RTX 4070)")
    return {"rows": rows, "conv3d_paper_full_training": full}


def bench_pixel(cfg: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    args = _bench_args(cfg)
    name = "pixel_r2plus1d18"
    inputs = ct.model_inputs(name, torch.empty(0), torch.empty(0), device, pixel_shape=cfg.pixel_shape)
    labels = torch.randint(0, 101, (64,), generator=torch.Generator().manual_seed(2)).to(device)
    r = ct.bench_model(name, inputs, labels, args, device)
    row = {"model": name, "input": "x".join(map(str, cfg.pixel_shape)), "params_M": r["params"] / 1e6,
           "GFLOPs/clip": r["flops"] / 1e9, "batch": r["batch"], "train_clips_per_s": r["train_cps"],
           "infer_clips_per_s": r["infer_cps"],
           "epoch_of_100k_clips": ct.fmt_duration(UCF101_SCALE_CLIPS / r["train_cps"])}
    table(f"{name} from scratch on random clips (decoding not included)", [row])
    return row


# ------------------------------------------------------------------------------------------------
def bench_zoo(cfg: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    try:
        import diffusers
    except ImportError:
        print("  zoo: skipped, diffusers is not installed (pip install -e '.[zoo]')")
        return {"skipped": "diffusers is not installed"}
    from lib.zoo.adapters import ADAPTERS
    from lib.zoo.cost import released_encode_cost
    from lib.zoo.encoder import DiffusersClipEncoder

    timer = Timer(device)
    rows = []
    for name, adapter in ADAPTERS.items():
        flops = released_encode_cost(name, (3, *cfg.size))["encode_flops"]
        torch.manual_seed(0)
        model = getattr(diffusers, adapter.class_name)(**(adapter.tiny if cfg.zoo_tiny else adapter.full))
        enc = DiffusersClipEncoder.from_model(model, adapter, device=device, dtype="bfloat16")
        for batch in cfg.zoo_batches:
            row: dict[str, Any] = {"vae": name, "batch": batch, "gflop_per_clip": flops / 1e9}
            try:
                row.update(time_encode(functools.partial(enc.encode, seeds=[0] * batch), batch, cfg, device, timer))
            except torch.OutOfMemoryError:
                row["error"] = "out of memory"
            rows.append(row)
            print(f"  zoo {name} batch {batch}: {row.get('clips_per_s', row.get('error'))}", flush=True)
        del enc, model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    what = "tiny configs (toy sizes)" if cfg.zoo_tiny else "released architectures, random weights"
    table(f"Zoo VAEs ({what}) at {'x'.join(map(str, cfg.size))}, bf16 autocast; GFLOP column: the released "
          "architecture, counted on the meta device", rows)
    return {"size": list(cfg.size), "tiny": cfg.zoo_tiny, "rows": rows}


def settings(args: argparse.Namespace, device: torch.device) -> argparse.Namespace:
    """Sizes of the full (GPU) run, or of ``--quick``."""
    real = yaml.safe_load(REAL_PARAMS.read_text())
    pixel_batch = int(real["06_pixel_baseline"]["pixel_batch_size"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.quick:
        return argparse.Namespace(
            encoder_preset="reducio-rehearsal", size=(16, 32, 32), batches=(1, 2), warmup=1, min_reps=1, max_reps=1,
            min_seconds=0.0, pipeline_preset="reducio-rehearsal", pipeline_classes=1, pipeline_clips=1,
            pipeline_batch=2, decode_workers=0, gen_workers=1, clips=64, batch=8, eval_batch=16, seconds=0.0,
            cls_warmup=0, pixel_batch=1, pixel_shape=(3, 8, 32, 32), zoo_tiny=True, zoo_batches=(1,))
    return argparse.Namespace(
        encoder_preset="reducio-ft4", size=(16, 224, 288), batches=(1, 4, 8, 16), warmup=2, min_reps=3, max_reps=200,
        min_seconds=3.0, pipeline_preset="reducio-ft4", pipeline_classes=20, pipeline_clips=2, pipeline_batch=8,
        decode_workers=min(8, max(1, cores - 1)), gen_workers=cores, clips=UCF101_SCALE_CLIPS, batch=256,
        eval_batch=1024, seconds=6.0, cls_warmup=3, pixel_batch=pixel_batch, pixel_shape=(3, 16, 112, 112),
        zoo_tiny=False, zoo_batches=(1, 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="toy sizes: checks the script, measures nothing")
    parser.add_argument("--out", type=Path, default=OUTPUTS_DIR / "benchmarks" / "gpu_check.json",
                        help="JSON result file")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    if device.type == "cpu" and not args.quick and {"encoder", "pipeline", "precision"} & set(sections):
        print("note: the full ft4 encoder takes ~45 s per clip on a CPU core; this run will take hours "
              "(use --quick, or a GPU)", file=sys.stderr)
    torch.backends.cudnn.benchmark = True
    cfg = settings(args, device)
    real = yaml.safe_load(REAL_PARAMS.read_text())
    start = time.perf_counter()
    info = machine(device)
    print(info["line"])
    if device.type == "cuda":
        print(f"GPU: {info['gpu']} ({info['gpu_memory_gib']} GiB), CUDA {info['cuda']}, cuDNN {info['cudnn']}; "
              f"dense bf16/fp16 peak: {info['peak_tflops_bf16_fp16_dense'] or 'not tabulated'} TFLOP/s")
    if args.quick:
        print("--quick: toy sizes, the numbers below check the script and measure nothing")
    result: dict[str, Any] = {"machine": info, "quick": args.quick, "sections": {}, "seconds": {}}
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "encoder": lambda: bench_encoder(cfg, device, info),
        "precision": lambda: bench_precision(cfg, device),
        "pipeline": lambda: bench_pipeline(cfg, device),
        "classifiers": lambda: bench_classifiers(cfg, device, real),
        "pixel": lambda: bench_pixel(cfg, device),
        "zoo": lambda: bench_zoo(cfg, device),
    }
    for name in SECTIONS:
        if name not in sections:
            continue
        t0 = time.perf_counter()
        result["sections"][name] = runners[name]()
        result["seconds"][name] = round(time.perf_counter() - t0, 1)
        print(f"[{name}: {result['seconds'][name]:.0f} s]", flush=True)
    result["seconds"]["total"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    os.replace(tmp, args.out)
    print(f"\ntotal {result['seconds']['total']:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
