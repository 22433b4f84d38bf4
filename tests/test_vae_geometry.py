"""A locally trained VAE's input geometry travels with its weights through every format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lib.vae import load_reducio
from lib.vae.convert import convert_checkpoint
from lib.vae.local import UnknownGeometryError, ensure_local_vae, input_policy
from lib.vae.presets import get_preset


@pytest.fixture(scope="module")
def local_vae() -> Path:
    return ensure_local_vae(preset="smoke")  # trained at 32x32 crops of 36x48 frames


@pytest.mark.slow
def test_convert_keeps_the_training_geometry(tmp_path: Path, local_vae: Path) -> None:
    dst = tmp_path / "copy.safetensors"
    convert_checkpoint(local_vae, dst, parts="encoder", dtype="fp16")
    original, copy = load_reducio(str(local_vae)), load_reducio(str(dst))
    assert input_policy(copy) == input_policy(original)
    assert input_policy(copy).crop == (32, 32) and input_policy(copy).short_side == 36


@pytest.mark.slow
def test_a_local_vae_without_recorded_geometry_is_refused(tmp_path: Path, local_vae: Path) -> None:
    vae = load_reducio(str(local_vae))
    ckpt = tmp_path / "plain.ckpt"
    torch.save({"state_dict": vae.state_dict()}, ckpt)
    plain = load_reducio(str(ckpt), config=get_preset("local-smoke"))
    with pytest.raises(UnknownGeometryError, match=r"plain\.ckpt.*training geometry.*Fix: load the vae\.safetensors"):
        input_policy(plain)
