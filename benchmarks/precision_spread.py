"""Precision spread: how much the study's numbers depend on the CPU's bfloat16 arithmetic in the cache.

With the VAE a fixed shipped file, the cache encoding's arithmetic is what still moves the
embedded default's table between machines (its cache is built under CPU bfloat16 autocast). This
script (:mod:`lib.precision` does the work):

1. re-encodes the clips of a latent cache's test split (``--max-videos``: an evenly spread
   subset) with the cache's own VAE, clip plan, spatial policy and batch size, in float32 and
   under bfloat16 autocast, and reports the relative RMS difference of the two, and which of them
   the stored rows reproduce (bit-identical, after the cast to the storage dtype);
2. scores every trained classifier of the study (``best.pt`` of each seed of notebooks 03-05
   trained on that cache) on the stored rows, the float32 and the bfloat16 re-encodings,
   standardised as in training (statistics of the stored train split), and prints per model the
   test video top-1 (mean over seeds) of each, the bf16 - fp32 difference and, for comparison,
   the seed std of the study's table (from the seeds' metrics.json).

The stored column on the whole test split reproduces the study's table (the same weights, inputs
and evaluation); bit-identity with the stored rows also needs the build's torch thread count
(``--threads``; the build's is printed). CPU only, ~10 min on 2 cores for the default cache's
test split. The tables also go to ``outputs/benchmarks/precision_spread.json`` (atomically).

Usage: ``python benchmarks/precision_spread.py [--cache default] [--study default] [--fold 1]
[--max-videos N] [--threads 2] [--batch-size N] [--vae FILE] [--study-dir DIR] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.cache.report import cache_paths  # noqa: E402
from lib.env_check import cpu_model  # noqa: E402
from lib.paths import OUTPUTS_DIR, RUNS_DIR, resolve_path  # noqa: E402
from lib.precision import (  # noqa: E402
    COMPUTE_DTYPES,
    STORED,
    ReencodeSpec,
    latent_differences,
    model_rows,
    reencode_split,
    score_seeds,
    trained_seeds,
)
from lib.runs import atomic_write_text  # noqa: E402

DEFAULT_OUT = OUTPUTS_DIR / "benchmarks" / "precision_spread.json"
FP32, BF16 = COMPUTE_DTYPES


def machine_lines() -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [f"CPU: {cpu_model()} | logical cores available: {cores} | torch threads: {torch.get_num_threads()} | "
            "GPU: none used",
            f"Python {platform.python_version()} | torch {torch.__version__}",
            f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]


def table(rows: list[dict[str, Any]]) -> list[str]:
    """A Markdown table of ``rows`` (their keys as columns), as lines."""
    columns = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["| " + " | ".join(c.ljust(width[c]) for c in columns) + " |",
             "|" + "|".join("-" * (width[c] + 2) for c in columns) + "|"]
    lines += ["| " + " | ".join(str(r[c]).rjust(width[c]) for c in columns) + " |" for r in rows]
    return lines


def _pct(value: float | None, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def latent_table(rows: list[dict[str, Any]], seconds: dict[str, float], clips: int) -> list[str]:
    shown = [{"array": r["array"], "values/clip": r["values_per_clip"],
              "rel. RMS bf16 vs fp32": f"{r[f'rel_rms_{BF16}_vs_{FP32}']:.2e}",
              "max abs bf16 - fp32": f"{r[f'max_abs_{BF16}_vs_{FP32}']:.2e}",
              "fp32 == stored": "yes" if r[f"{FP32}_bit_identical"] else "no",
              "bf16 == stored": "yes" if r[f"{BF16}_bit_identical"] else "no",
              "rel. RMS fp32 vs stored": f"{r[f'rel_rms_{FP32}_vs_stored']:.2e}",
              "rel. RMS bf16 vs stored": f"{r[f'rel_rms_{BF16}_vs_stored']:.2e}",
              "cache matches": r["matches"]} for r in rows]
    timing = ", ".join(f"{d} {seconds[d] / max(clips, 1):.3f} s/clip" for d in seconds)
    return table(shown) + ["", f"encoder time: {timing}"]


def model_table(rows: list[dict[str, Any]]) -> list[str]:
    shown = [{"model": r["model"], "notebook": r["notebook"], "seeds": len(r["seeds"]),
              "test (video), table": _pct(r["table_top1_mean"]),
              "stored latents": _pct(r[f"{STORED}_top1_mean"]),
              "fp32 latents": _pct(r[f"{FP32}_top1_mean"]),
              "bf16 latents": _pct(r[f"{BF16}_top1_mean"]),
              "bf16 - fp32": _pct(r["diff_mean"], signed=True),
              "largest seed abs diff": _pct(r["diff_max_abs_seed"]),
              "seed std (table)": _pct(r["table_top1_std"]),
              "videos flipped": f"{r['videos_flipped']}/{r['videos'] * len(r['seeds'])}"} for r in rows]
    return table(shown)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="default", help="cache name: data/caches/<name>/latent")
    parser.add_argument("--study", default="default", help="study name: outputs/runs/<name>")
    parser.add_argument("--study-dir", default="", help="the study's run folder (default: outputs/runs/<study>)")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--max-videos", type=int, default=None, help="an evenly spread subset of the test videos")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (bit-identity needs the build's)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per encoder call (default: the build's)")
    parser.add_argument("--vae", default=None, help="the cache's VAE weights, when moved (default: as recorded)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the JSON record")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (module doc); prints the report and returns the record written to ``--out``."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cache_dir = cache_paths(args.cache)[0]
    study_dir = resolve_path(args.study_dir) if args.study_dir else RUNS_DIR / args.study
    lines = machine_lines()
    print("\n".join(lines), flush=True)
    start = time.perf_counter()
    split = reencode_split(ReencodeSpec(cache_dir, fold=args.fold, max_videos=args.max_videos,
                                        batch_size=args.batch_size, vae_source=args.vae, progress=sys.stderr))
    differences = latent_differences(split)
    seeds, skipped = trained_seeds(study_dir, split.cache.key_hash)
    per_seed = score_seeds(seeds, split, progress=sys.stderr)
    models = model_rows(per_seed)
    setting = (f"cache {cache_dir} (built with {split.build_dtype}, batch size {split.batch_size}, "
               f"{split.build_threads or 'unrecorded'} thread(s); stored as {str(split.storage_dtype).split('.')[-1]})")
    report = [*lines[:2], "", setting,
              f"re-encoded: {len(split.video_ids)} test videos of fold {args.fold}, {split.num_clips} clips, with "
              f"{args.threads} thread(s)", ""]
    if split.build_threads and split.build_threads != args.threads:
        report += [f"the build ran with {split.build_threads} thread(s): rows re-encoded with {args.threads} may "
                   "differ from the stored ones by float noise even in the build's dtype", ""]
    report += ["## Latents: bf16 autocast vs float32, and the stored cache", "",
               *latent_table(differences, split.encode_seconds, split.num_clips), "",
               f"## Trained classifiers of {study_dir} on each encoding (test video top-1, %)", ""]
    report += model_table(models) if models else ["no trained classifier of this cache found"]
    report += [f"skipped {s}" for s in skipped]
    report += ["", f"total {time.perf_counter() - start:.0f} s; load average at end: "
               f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    print("\n".join(report[2:]), flush=True)
    record = {"machine": lines, "cache": str(cache_dir), "study_dir": str(study_dir), "fold": args.fold,
              "videos": len(split.video_ids), "clips": split.num_clips, "threads": args.threads,
              "build": {"dtype": split.build_dtype, "batch_size": split.batch_size, "threads": split.build_threads},
              "encode_seconds": split.encode_seconds, "latents": differences, "models": models, "per_seed": per_seed,
              "skipped": skipped, "markdown": "\n".join(report)}
    out = resolve_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    print(f"written: {out}")
    return record


if __name__ == "__main__":
    main()
