"""Which dataset a notebook or CLI works on: a UCF101-layout root given by the user, or the
embedded synthetic dataset (generated on first use). One function, so every notebook agrees."""

from __future__ import annotations

from pathlib import Path

from lib.data.ucf101 import dataset_dirs
from lib.paths import resolve_path


def resolve_dataset_root(dataset_root: str, *, synthetic_preset: str = "smoke", synthetic_seed: int = 0) -> Path:
    """``""`` -> the synthetic dataset of ``synthetic_preset`` (generated if missing or
    incomplete); otherwise ``dataset_root`` (repo-relative or absolute), which must hold
    ``UCF-101/`` and ``ucfTrainTestlist/`` side by side (else DatasetNotFoundError saying how to
    get it)."""
    if not dataset_root:
        from lib.data.synth import ensure_synthetic

        return ensure_synthetic(preset=synthetic_preset, seed=synthetic_seed)
    root = resolve_path(dataset_root)
    dataset_dirs(root)
    return root
