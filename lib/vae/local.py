"""The locally trained VAE of the embedded default, and the input geometry a VAE expects.

Notebooks call :func:`ensure_local_vae` so their defaults work on a fresh clone: the first call
trains the VAE of a training preset on the synthetic dataset (seconds for ``smoke``, ~10 min for
``default``) into ``checkpoints/local-<preset>-seed<seed>/``, later calls reuse it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lib.data.spatial import CropPolicy
from lib.paths import CHECKPOINTS_DIR


def local_vae_dir(preset: str, seed: int = 0) -> Path:
    return CHECKPOINTS_DIR / f"local-{preset}-seed{seed}"


def ensure_local_vae(*, preset: str = "smoke", seed: int = 0, data_root: str | Path | None = None, progress: bool = False) -> Path:
    """Path of the trained ``vae.safetensors`` of training ``preset``, training it first if the
    run directory has no finished run (an interrupted run resumes)."""
    from lib.vae import train

    out = local_vae_dir(preset, seed)
    weights = out / train.WEIGHTS_NAME
    if weights.is_file() and (out / train.METRICS_NAME).is_file():
        return weights
    if data_root is None:
        from lib.data.synth import ensure_synthetic

        data_root = ensure_synthetic(preset="smoke" if preset == "smoke" else "default")
    args = ["--data", str(data_root), "--preset", preset, "--out", str(out), "--seed", str(seed)]
    if not progress:
        args.append("--no-progress")
    code = train.main(args)
    if code != 0 or not weights.is_file():
        raise RuntimeError(f"training the local VAE ({preset}) into {out} failed (exit {code}); rerun to resume")
    return weights


def input_policy(vae: Any) -> CropPolicy:
    """The spatial policy a loaded VAE expects: a locally trained one records its training
    geometry (short side of the stored frames, centre crop) in its checkpoint metadata; anything
    else gets the study's bucket for Reducio (240x320 -> short side 224 -> centre crop 224x288)."""
    info = getattr(vae, "checkpoint_info", None)
    training = ((info.metadata or {}).get("training") if info is not None else None) or {}
    if "crop" in training and "bank_size" in training:
        return CropPolicy(short_side=int(training["bank_size"][0]), crop=tuple(int(v) for v in training["crop"]))
    return CropPolicy()
