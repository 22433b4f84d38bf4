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


def _cpu_model() -> str:
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
        "cpu": _cpu_model(), "cpu_cores": os.cpu_count(), "ram_gib": _total_ram_gib(),
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
            rows.append({"where": "checkpoints/", "path": str(p), "present": True, "size_mb": round(p.stat().st_size / 1e6, 1)})
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
