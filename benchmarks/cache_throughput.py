"""Latent-cache throughput: decode only vs decode + encode, and reading a finished cache.

1. **Decode, one core** (decord ``num_threads=1``, torch 1 thread), on real videos of a dataset
   (default: the synthetic default set, else smoke), interleaved rounds, median:
   raw decord (``get_batch`` of every frame) vs the cache's decode worker
   (:func:`lib.cache.decode.decode_video`: open + checks + every clip's uint8 frames into one
   output tensor), and the worker with CPU preprocessing to the small (72 -> 64x96) and the full
   (224 -> 224x288) input geometry, float32 and uint8 resize. Goal: the worker path >= 0.90 of
   raw; preprocessing belongs on the encoder's device (GPU) or in extra workers (CPU).
2. **Pipeline**: ``build_cache`` on a subset of the videos with ``--workers`` decode processes and
   a randomly initialised encoder (``random:local-default`` = small, ``random:reducio-ft4`` =
   full; the full one only on a GPU unless ``--full-on-cpu``), next to the same DataLoader
   decoding without encoding: clips/s, and the share of wall time the encoder was busy (near 1.0:
   decoding is not the bottleneck). On CUDA also the GPU utilisation sampled by nvidia-smi.
3. **Read**: a cache of ``--read-clips`` clips of the ft4 latent shape (16x4x7x9, UCF101 scale
   by default: 100,000 clips, 0.8 GB fp16; values are random, written through the real entry and
   merge code), then ``open_cache``, ``load_split`` in RAM and memory-mapped (warm page cache).

Usage: ``python benchmarks/cache_throughput.py [--data DIR] [--videos 16] [--rounds 5] [--workers 2]
[--device auto] [--pipeline-videos 24] [--full-on-cpu] [--read-clips 100000] [--skip decode,pipeline,read]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import decord
import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.cache import BuildOptions, CacheSpec, build_cache, load_split, open_cache  # noqa: E402
from lib.cache.decode import DecodeSettings, VideoDecodeDataset, decode_video, identity_collate  # noqa: E402
from lib.cache.entries import write_entry  # noqa: E402
from lib.cache.merge import merge_cache  # noqa: E402
from lib.cache.plan import entry_path, make_plan  # noqa: E402
from lib.data.clips import ClipSpec  # noqa: E402
from lib.data.spatial import CropPolicy  # noqa: E402
from lib.data.ucf101 import write_split_lists  # noqa: E402
from lib.env_check import cpu_model  # noqa: E402
from lib.paths import synthetic_dataset_dir  # noqa: E402

GOAL = 0.90
SMALL, FULL = CropPolicy(short_side=72, crop=(64, 96)), CropPolicy()


def machine_lines(device: str) -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name() if device == "cuda" else "none used"
    return [f"CPU: {cpu_model()} | logical cores available: {cores} | GPU: {gpu}",
            f"Python {platform.python_version()} | torch {torch.__version__} | decord {decord.__version__}",
            f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]


def table(rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    width = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print("| " + " | ".join(c.ljust(width[c]) for c in columns) + " |")
    print("|" + "|".join("-" * (width[c] + 2) for c in columns) + "|")
    for r in rows:
        print("| " + " | ".join(_fmt(r[c]).rjust(width[c]) for c in columns) + " |")
    print()


def _fmt(v: object) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def bench_decode(jobs: list, rounds: int) -> None:
    torch.set_num_threads(1)
    spec = ClipSpec()
    variants = {
        "raw decord get_batch (all frames)": None,
        "cache worker: uint8 clips": DecodeSettings(spec, "all", 0, None),
        "+ preprocess small 64x96, uint8 resize": DecodeSettings(spec, "all", 0, CropPolicy(72, (64, 96), "uint8")),
        "+ preprocess small 64x96, float32 resize": DecodeSettings(spec, "all", 0, SMALL),
        "+ preprocess full 224x288, uint8 resize": DecodeSettings(spec, "all", 0, CropPolicy(resize_precision="uint8")),
        "+ preprocess full 224x288, float32 resize": DecodeSettings(spec, "all", 0, FULL),
    }
    frames = sum(len(decord.VideoReader(str(j.path), num_threads=1)) for j in jobs)
    clips = sum(len(decode_video(j, variants["cache worker: uint8 clips"])["clips"]) for j in jobs)

    def run(settings: DecodeSettings | None) -> None:
        for job in jobs:
            if settings is None:
                reader = decord.VideoReader(str(job.path), num_threads=1)
                reader.get_batch(np.arange(len(reader)))
                del reader
            else:
                assert decode_video(job, settings)["ok"]

    # wall time, and CPU time of this process (decord's decoder thread included): on a shared
    # machine other jobs stretch wall times at random, CPU seconds are what a core really spends
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for settings in variants.values():
        run(settings)  # warm-up: page cache, allocator
    for _ in range(rounds):
        for name, settings in variants.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run(settings)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    raw = statistics.median(times["raw decord get_batch (all frames)"])
    raw_cpu = statistics.median(cpu["raw decord get_batch (all frames)"])
    rows = []
    for name in variants:
        t, c = statistics.median(times[name]), statistics.median(cpu[name])
        rows.append({"path (1 core)": name, "src frames/s": round(frames / t), "clips/s": clips / t,
                     "vs raw (wall)": raw / t, "src frames per CPU-s": round(frames / c), "vs raw (CPU)": raw_cpu / c})
    print(f"## Decode, one core: {len(jobs)} videos, {frames} source frames, {clips} clips, {rounds} rounds (median)\n")
    table(rows)
    worker = raw / statistics.median(times["cache worker: uint8 clips"])
    worker_cpu = raw_cpu / statistics.median(cpu["cache worker: uint8 clips"])
    print(f"cache decode worker: {worker:.2f} of raw decord by wall time, {worker_cpu:.2f} by CPU time "
          f"(goal {GOAL:.2f}: {'met' if max(worker, worker_cpu) >= GOAL else 'missed'})\n")


class GpuSampler:
    """nvidia-smi utilisation samples every 0.5 s while running (CUDA only)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      f"--id={torch.cuda.current_device()}"], capture_output=True, text=True, timeout=5)
                self.samples.append(float(out.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def subset_dataset(root: Path, jobs: list, dest: Path) -> Path:
    """A UCF101-layout folder of symlinks to ``jobs``' videos, with split lists for them."""
    classes = make_plan(root).classes
    for job in jobs:
        link = dest / "UCF-101" / job.video_id
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(job.path)
    write_split_lists(dest / "ucfTrainTestlist", classes, [j.video_id for j in jobs])
    return dest


def bench_pipeline(root: Path, jobs: list, *, workers: int, device: str, full_on_cpu: bool, batch_size: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lvs_cache_bench_") as tmp:
        data = subset_dataset(root, jobs, Path(tmp) / "data")
        for label, policy in (("small 64x96", SMALL), ("full 224x288", FULL)):
            settings = DecodeSettings(ClipSpec(), "all", 0, policy if device == "cpu" else None)
            plan_jobs = make_plan(data).videos
            loader = DataLoader(VideoDecodeDataset(plan_jobs, settings), batch_size=None, num_workers=workers,
                                collate_fn=identity_collate, prefetch_factor=4 if workers else None)
            start = time.perf_counter()
            clips = sum(len(item["clips"]) for item in loader if item["ok"])
            decode_only = clips / (time.perf_counter() - start)
            rows.append({"config": label, "stage": f"decode only ({workers} workers)", "clips/s": decode_only,
                         "encoder busy": "-", "GPU util %": "-"})
            preset = "local-default" if policy is SMALL else "reducio-ft4"
            if policy is FULL and device == "cpu" and not full_on_cpu:
                rows.append({"config": label, "stage": "decode + encode", "clips/s": "skipped on CPU (~45 s/clip)",
                             "encoder busy": "-", "GPU util %": "-"})
                continue
            sampler = GpuSampler() if device == "cuda" else None
            if sampler:
                sampler.__enter__()
            spec = CacheSpec(data_root=data, vae_source=f"random:{preset}", spatial=policy,
                             dtype="bfloat16" if device == "cuda" else "float32")
            options = BuildOptions(num_workers=workers, device=device, batch_size=batch_size, progress=False)
            summary = build_cache(spec, Path(tmp) / f"cache-{preset}", options)
            if sampler:
                sampler.__exit__()
            util = f"{statistics.mean(sampler.samples):.0f}" if sampler and sampler.samples else "-"
            rows.append({"config": label, "stage": f"decode + encode ({preset}, random init)",
                         "clips/s": summary.clips_per_second, "encoder busy": f"{summary.encoder_busy_fraction:.0%}",
                         "GPU util %": util})
    print(f"## Pipeline: {len(jobs)} videos, {workers} decode workers, device {device}\n")
    table(rows)


def bench_read(clips_total: int, clips_per_video: int = 8) -> None:
    shape = (16, 4, 7, 9)
    n_videos = -(-clips_total // clips_per_video)
    with tempfile.TemporaryDirectory(prefix="lvs_cache_read_") as tmp:
        data = Path(tmp) / "data"
        relpaths = [f"C{c:03d}/v_C{c:03d}_g{g:02d}_c{k:02d}.avi"
                    for c in range(101) for g in range(1, 26) for k in range(1, 7)][:n_videos]
        write_split_lists(data / "ucfTrainTestlist", [f"C{c:03d}" for c in range(101)], relpaths)
        for rel in relpaths:
            (data / "UCF-101" / rel).parent.mkdir(parents=True, exist_ok=True)
            (data / "UCF-101" / rel).write_bytes(b"")  # never decoded: the entries are written directly
        plan = make_plan(data)
        cache_dir = Path(tmp) / "cache"
        from lib.cache.encoders import PooledPixelsEncoder
        from lib.cache.manifest import claim, make_key

        key = make_key(CacheSpec(data_root=data, vae_source="pooled-pixels"),
                       encoder=PooledPixelsEncoder(pool_shape=(16, 4, 7, 9)), spatial=FULL, plan=plan)
        from lib.cache.key import key_hash

        claim(cache_dir, key, plan, {})
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for job in plan.videos:
            latent = torch.from_numpy(rng.standard_normal((clips_per_video, *shape), dtype=np.float32)).half()
            clips = [[k, float(k), list(range(16 * k, 16 * k + 16))] for k in range(clips_per_video)]
            write_entry(entry_path(cache_dir, job.video_id), {"latent": latent}, key_hash=key_hash(key),
                        video={"id": job.video_id, "class_name": job.class_name, "label": job.label, "group": job.group,
                               "clip_number": job.clip_number, "fps": 25.0, "num_frames": 200, "height": 240,
                               "width": 320, "source_bytes": 0, "clips": clips, "clip_shape": [3, 16, 224, 288]})
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        merge_cache(cache_dir)
        merge_s = time.perf_counter() - start
        start = time.perf_counter()
        cache = open_cache(cache_dir)
        open_s = time.perf_counter() - start
        rows = [{"step": f"write {len(plan.videos)} entries (fsync each)", "seconds": write_s, "GB/s": "-"},
                {"step": "merge into latent.npy + index.json", "seconds": merge_s, "GB/s": "-"},
                {"step": "open_cache (parse index.json)", "seconds": open_s, "GB/s": "-"}]
        for split in ("train", "test"):
            for mmap in (False, True):
                start = time.perf_counter()
                data_split = load_split(cache_dir, split, mmap=mmap)
                touched = float(data_split.latents.float().sum()) if mmap else 0.0  # a map reads on first touch
                seconds = time.perf_counter() - start
                nbytes = data_split.latents.numel() * 2
                rows.append({"step": f"load_split({split!r}, mmap={mmap}): {len(data_split.labels)} clips"
                             + (" + one pass over it" if mmap else ""), "seconds": seconds,
                             "GB/s": nbytes / seconds / 1e9})
                del data_split, touched
        print(f"## Read: {cache.num_clips} clips of {shape} float16 ({cache.bytes_on_disk['latent'] / 1e9:.2f} GB), "
              "warm page cache\n")
        table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="", help="UCF101-layout root (default: data/synth_default, else synth_smoke)")
    parser.add_argument("--videos", type=int, default=16, help="videos in the one-core decode benchmark")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pipeline-videos", type=int, default=24)
    parser.add_argument("--full-on-cpu", action="store_true", help="also encode with the full config on a CPU")
    parser.add_argument("--read-clips", type=int, default=100_000)
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: decode, pipeline, read")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    skip = set(filter(None, args.skip.split(",")))
    candidates = (synthetic_dataset_dir("default"), synthetic_dataset_dir("smoke"))
    root = Path(args.data) if args.data else next(
        (d for d in candidates if (d / "ucfTrainTestlist").is_dir()), synthetic_dataset_dir("smoke"))
    for line in machine_lines(device):
        print(line)
    print(f"dataset: {root}\n")
    videos = make_plan(root).videos
    spread = videos[:: max(1, len(videos) // max(args.videos, args.pipeline_videos))]  # every class and group
    if "decode" not in skip:
        bench_decode(spread[: args.videos], args.rounds)
    if "pipeline" not in skip:
        bench_pipeline(root, spread[: args.pipeline_videos], workers=args.workers, device=device,
                       full_on_cpu=args.full_on_cpu, batch_size=args.batch_size)
    if "read" not in skip:
        bench_read(args.read_clips)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
