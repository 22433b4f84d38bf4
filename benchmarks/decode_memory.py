"""Peak memory of the cache's decode and preprocessing path against video length (4K by default).

For each length a synthetic MPEG-4 video (a moving gradient, ``--height`` x ``--width`` at 25
fps) is written, then a fresh child process runs one path of a cache build over it and reports
its peak resident memory (``ru_maxrss``) and the largest part it handled:

* ``workers``: what a decode worker does for a CPU encoder - decode and preprocess (crop policy
  224x288, float32 resize) every clip, parts of at most ``--budget-mb``;
* ``device``: a decode worker handing uint8 parts over, then the encoder side's preprocessing
  and encoding of each part (:class:`lib.cache.video_encoding.VideoEncoding`, here on the CPU
  with the pooled-pixels encoder so the encoder itself costs nothing);
* ``decord``: the floor, decord alone reading every frame in 16-frame batches and keeping none.

What the toolkit holds does not grow with the video: a video is handed over in parts of at
most the budget (at least one clip), the float32 resize holds one source-size frame at a time,
and a video of more than 1 GiB decoded is read by the forward-only PyAV stream
(:mod:`lib.data.video_stream`) instead of decord, whose read-ahead into unbounded frame queues
(the ``decord`` rows) holds up to the rest of the video. The last column is what one buffer per
video would hold (every clip's frames at once, as handed over: uint8 for ``device``,
preprocessed float32 for ``workers``).

Usage: ``python benchmarks/decode_memory.py [--height 2160] [--width 3840] [--lengths 1 2 4 8]
[--budget-mb 256] [--modes workers device]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.data.video_writer import write_video  # noqa: E402

FPS = 25


def write_gradient_video(path: Path, seconds: float, height: int, width: int) -> Path:
    """A smooth moving gradient (cheap to encode at 4K) of ``seconds`` at 25 fps."""
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    base = np.stack([(x + y) / 2, np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width))], -1)
    base = base.astype(np.uint8)
    frames = (np.roll(base, 8 * i, axis=1) for i in range(int(seconds * FPS)))
    return write_video(path, frames, fps=FPS, codec="xvid")


def child(path: str, mode: str, budget: int) -> None:
    """Run one path over the video at ``path`` and print one JSON line."""
    import torch

    from lib.cache.decode import DecodeSettings, iter_video_parts
    from lib.cache.encoders import make_encoder
    from lib.cache.plan import VideoJob
    from lib.cache.video_encoding import VideoEncoding
    from lib.data.clips import ClipSpec
    from lib.data.spatial import CropPolicy

    torch.set_num_threads(1)
    if mode == "decord":
        decord_alone(path)
        return
    st = os.stat(path)
    job = VideoJob(0, "Bench/v_Bench_g01_c01.avi", Path(path), "Bench", 0, 1, 1, st.st_size, st.st_mtime_ns)
    policy = CropPolicy()
    settings = DecodeSettings(ClipSpec(), "all", 0, policy if mode == "workers" else None, max_part_bytes=budget)
    state = VideoEncoding(job, policy, make_encoder("pooled-pixels"), batch_size=8, sample_seed=0)
    largest = clips = clip_bytes = 0
    start = time.perf_counter()
    parts = iter_video_parts(job, settings)
    while (part := next(parts, None)) is not None:
        if not part["ok"]:
            raise SystemExit(f"{path}: {part['error']}")
        largest = max(largest, part["frames"].numel() * part["frames"].element_size())
        clip_bytes = part["frames"][0].numel() * part["frames"].element_size()
        clips += len(part["clips"])
        if mode == "device":
            state.add(part)
        del part  # before the next part is decoded, as the build's loop does
    if mode == "device":
        state.finish()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"clips": clips, "clip_bytes": clip_bytes, "largest_part": largest, "peak_rss": peak,
                      "seconds": time.perf_counter() - start}))


def decord_alone(path: str) -> None:
    """The floor: decord itself reading every frame in 16-frame batches, nothing kept."""
    import decord
    from decord.bridge import use_torch

    start = time.perf_counter()
    reader = decord.VideoReader(path, num_threads=1)
    frames = len(reader)
    for first in range(0, frames, 16):
        with use_torch():
            batch = reader.get_batch(np.arange(first, min(first + 16, frames)))
        del batch
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"clips": 0, "clip_bytes": 0, "largest_part": 0, "peak_rss": peak,
                      "seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=2160)
    parser.add_argument("--width", type=int, default=3840)
    parser.add_argument("--lengths", type=float, nargs="+", default=[1, 2, 4, 8], help="video lengths in seconds")
    parser.add_argument("--budget-mb", type=float, default=256, help="bytes of frames per part (the batch budget)")
    parser.add_argument("--modes", nargs="+", default=["decord", "workers", "device"],
                        choices=("decord", "workers", "device"))
    parser.add_argument("--child", nargs=3, metavar=("PATH", "MODE", "BUDGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    budget = int(args.budget_mb * 2**20)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    print(f"frames {args.width}x{args.height} at {FPS} fps, budget {args.budget_mb:g} MB per part\n")
    print("| length s | clips | path | peak RSS MB | largest part MB | one buffer per video MB | s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="lvs_mem_") as tmp:
        for seconds in args.lengths:
            video = write_gradient_video(Path(tmp) / f"v{seconds:g}.avi", seconds, args.height, args.width)
            for mode in args.modes:
                out = subprocess.run([sys.executable, __file__, "--child", str(video), mode, str(budget)],
                                     capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                whole = row["clips"] * row["clip_bytes"]  # every clip of the video in one buffer
                part, buffer = ((f"{row['largest_part'] / 1e6:.0f}", f"{whole / 1e6:.0f}") if mode != "decord"
                                else ("-", "-"))
                clips = row["clips"] if mode != "decord" else "-"
                print(f"| {seconds:g} | {clips} | {mode} | {row['peak_rss'] / 1e6:.0f} | {part} | {buffer} | "
                      f"{row['seconds']:.1f} |", flush=True)
            video.unlink()


if __name__ == "__main__":
    main()
