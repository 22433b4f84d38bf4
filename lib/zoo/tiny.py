"""Tiny random-init zoo VAEs: the adapters' own structure at narrow widths, written as diffusers folders.

``write_tiny_vae("wan2.1", DIR)`` instantiates the adapter's diffusers class from its tiny config
(:attr:`lib.zoo.adapters.Adapter.tiny`: every down block of the released model, so the factors and
channels are the released ones) under a fixed seed and saves it with ``save_pretrained``, next to
``zoo_tiny.json`` saying what it is. Such a folder is a ``diffusers:DIR`` source like a downloaded
one. Its latents are those of random weights: it checks the plumbing (shapes, frame rules, the
cache, the heads), never the question the zoo asks.

CLI: ``python -m lib.zoo tiny --out DIR [--arch NAME ...] [--seed N]``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from lib.zoo.adapters import get_adapter
from lib.zoo.sources import require_diffusers

TINY_RECORD = "zoo_tiny.json"  # marks a folder as a random-init plumbing check


def build_tiny_vae(name: str, *, seed: int = 0) -> Any:
    """The adapter ``name``'s diffusers model from its tiny config, random init under ``seed``."""
    diffusers = require_diffusers()
    adapter = get_adapter(name)
    cls = getattr(diffusers, adapter.class_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(**adapter.tiny).eval()


def write_tiny_vae(name: str, out_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Save the tiny model of adapter ``name`` to ``out_dir`` (a diffusers folder); returns it.

    An existing folder with the same record is kept as it is (the write is deterministic)."""
    out = Path(out_dir)
    record = {"adapter": name, "class_name": get_adapter(name).class_name, "seed": seed, "random_init": True,
              "config": "lib.zoo.adapters tiny config", "use": "plumbing check, not a result"}
    marker = out / TINY_RECORD
    if marker.is_file() and json.loads(marker.read_text()) == record:
        return out
    if out.exists() and not marker.is_file() and any(out.iterdir()):
        raise FileExistsError(f"{out}: a non-empty folder that is not a tiny zoo VAE; choose another --out")
    model = build_tiny_vae(name, seed=seed)
    tmp = out.with_name(f".{out.name}.tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / TINY_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():  # an empty folder, or another tiny VAE's (both rewritten whole)
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def tiny_record(folder: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The :data:`TINY_RECORD` of a folder, None when it is not a tiny random-init VAE."""
    if folder is None:
        return None
    path = Path(folder) / TINY_RECORD
    return json.loads(path.read_text()) if path.is_file() else None
