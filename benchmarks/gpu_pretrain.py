"""Pretrain the stand-in VAE on a GPU in one bounded process, and measure what came out.

The stand-in's recipe (``lib.vae.train_presets`` ``pretrain``: the ``local-default`` Reducio
architecture on the unlabelled pool plus natural footage) at GPU scale: preset ``pretrain_gpu``
(batch 32, 6,000 steps planned), stopped by ``--minutes`` of training at its last checkpoint.
Steps, each timed:

1. ``data``: the pretraining pool (``python -m lib.data synth``'s ``pretrain`` pool, seed 1) and
   the labelled default (for the held-out figures and the probe), generated with every core;
2. ``train``: ``python -m lib.vae train --preset pretrain_gpu --device DEVICE --time-limit``
   into ``<out>/run`` (resumable: rerunning continues the run);
3. ``export``: ``lib.vae.standin.export_standin`` writes the fp16 candidate
   ``<out>/reducio-standin-candidate.safetensors`` and its record (provenance: command, commit,
   pool, steps, wall time, the training device; probe figures measured on the fp16 file with the
   fixed protocol of ``python -m lib.vae probe``).

It prints a table and writes ``<out>/gpu_pretrain.json``. The candidate replaces the shipped
stand-in only if its figures are better: copy it and its record over
``lib/vae/weights/reducio-standin-v1.*`` (the record's sha256 is checked on load).

Running it on a GPU machine that has PyTorch but not decord or PyAV (``pip download`` them as
cp312 manylinux wheels into an ignored ``.whl/`` folder first)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python3 benchmarks/gpu_pretrain.py --device cuda --minutes 6 --out $OUT

``--device cpu --quick`` runs the same steps on the smoke pool with the ``pretrain_smoke``
preset in about a minute: a check that the script works, not a measurement.

Usage: ``python benchmarks/gpu_pretrain.py [--device auto|cuda|cpu] [--minutes M] [--quick]
[--out outputs/benchmarks/gpu_pretrain] [--workers N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.data.synth import ensure_synthetic  # noqa: E402
from lib.data.synth_pool import ensure_pool  # noqa: E402
from lib.paths import OUTPUTS_DIR  # noqa: E402
from lib.runs import atomic_write_text  # noqa: E402
from lib.vae.standin import export_standin  # noqa: E402
from lib.vae.train import main as train_main  # noqa: E402
from lib.vae.train_step import describe_device, resolve_device  # noqa: E402

CANDIDATE = "reducio-standin-candidate.safetensors"


def run(*, device: str, minutes: float, quick: bool, out: Path, workers: int | None) -> dict[str, Any]:
    """The three steps of the module docstring; returns what ``gpu_pretrain.json`` holds."""
    dev = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    pool = ensure_pool("pretrain_smoke" if quick else "pretrain", workers=workers, progress=False)
    labelled = ensure_synthetic("smoke" if quick else "default", workers=workers, progress=False)
    timings["data_s"] = time.perf_counter() - t

    run_dir = out / "run"
    preset = "pretrain_smoke" if quick else "pretrain_gpu"
    argv = ["--preset", preset, "--data", str(pool), "--eval-data", str(labelled), "--out", str(run_dir),
            "--device", str(dev), "--time-limit", str(minutes * 60), "--no-progress"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    t = time.perf_counter()
    code = train_main(argv)
    timings["train_s"] = time.perf_counter() - t
    if code != 0:
        raise SystemExit(f"training failed (exit {code}); its message is above")

    command = "python benchmarks/gpu_pretrain.py " + " ".join(sys.argv[1:])
    t = time.perf_counter()
    candidate = out / CANDIDATE
    record = export_standin(run_dir, command=command, out=candidate, record=candidate.with_suffix(".json"),
                            progress=False, device=str(dev), probe_data=labelled)
    timings["export_and_probe_s"] = time.perf_counter() - t
    history = (run_dir / "history.csv").read_text().splitlines()
    last = dict(zip(history[0].split(","), history[-1].split(","), strict=True)) if len(history) > 1 else {}
    quality = record["quality"]
    return {
        "device": describe_device(dev),
        "machine": {"cpu_cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
        "quick": quick,
        "preset": preset,
        "steps": record["steps"],
        "batch_size": record["batch_size"],
        "train_wall_time_s": record["train_wall_time_s"],
        "train_clips_per_s": round(record["steps"] * record["batch_size"] / max(record["train_wall_time_s"], 1e-9), 2),
        "last_history_row": last,
        "latent_probe_val_accuracy": quality["latent_probe"]["val_accuracy"],
        "pooled_pixels_probe_val_accuracy": quality["pooled_pixels_probe"]["val_accuracy"],
        "reconstruction": quality.get("reconstruction"),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "candidate": str(candidate),
        "sha256": record["sha256"],
    }


def table(result: dict[str, Any]) -> str:
    """The printed summary."""
    rec = result["reconstruction"] or {}
    rows = [
        ("device", result["device"]),
        ("preset / steps x batch", f"{result['preset']} / {result['steps']} x {result['batch_size']}"),
        ("training", f"{result['train_wall_time_s']:.0f} s, {result['train_clips_per_s']:.1f} clips/s"),
        ("linear probe (val)", f"{100 * result['latent_probe_val_accuracy']:.1f} % "
                               f"(pooled pixels {100 * result['pooled_pixels_probe_val_accuracy']:.1f} %)"),
    ]
    if rec:
        rows.append(("held-out PSNR", f"{rec['vae']['psnr']:.2f} dB ({rec['gain_over_content_frame_db']:+.2f} vs "
                                      f"content frame, {rec['gain_over_blurred_content_frame_db']:+.2f} vs blurred)"))
    rows.append(("timings", ", ".join(f"{k} {v:.0f}" for k, v in result["timings_s"].items())))
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default)")
    parser.add_argument("--minutes", type=float, default=6.0, help="training time limit of this invocation")
    parser.add_argument("--quick", action="store_true", help="smoke pool and preset: checks the script only")
    parser.add_argument("--out", type=Path, default=OUTPUTS_DIR / "benchmarks" / "gpu_pretrain")
    parser.add_argument("--workers", type=int, default=None, help="data generation and decode processes")
    args = parser.parse_args()
    result = run(device=args.device, minutes=args.minutes, quick=args.quick, out=args.out.expanduser().absolute(),
                 workers=args.workers)
    atomic_write_text(args.out / "gpu_pretrain.json", json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {args.out / 'gpu_pretrain.json'} and {result['candidate']}")


if __name__ == "__main__":
    main()
