"""Which dataset a notebook or CLI works on: a UCF101-layout root given by the user, or the
embedded synthetic dataset (generated on first use). One function, so every notebook agrees."""

from __future__ import annotations

from pathlib import Path

from lib.data.errors import DatasetError
from lib.data.ucf101 import dataset_dirs
from lib.paths import resolve_path, unwritable_error


def resolve_dataset_root(dataset_root: str, *, synthetic_preset: str = "smoke", synthetic_seed: int = 0) -> Path:
    """``""`` -> the synthetic dataset of ``synthetic_preset`` (generated if missing or
    incomplete); otherwise ``dataset_root`` (repo-relative or absolute), which must hold
    ``UCF-101/`` and ``ucfTrainTestlist/`` side by side (else DatasetNotFoundError saying how to
    get it). A data folder that cannot be written while generating is a DatasetError naming it
    (and ``LVS_DATA_DIR``)."""
    if not dataset_root:
        from lib.data.synth import ensure_synthetic

        try:
            return ensure_synthetic(preset=synthetic_preset, seed=synthetic_seed)
        except OSError as err:
            typed = unwritable_error(err, what="the folder of the generated synthetic dataset",
                                     fix="make it writable", error=DatasetError)
            if typed is None:
                raise
            raise typed from err
    root = resolve_path(dataset_root)
    dataset_dirs(root)
    return root
