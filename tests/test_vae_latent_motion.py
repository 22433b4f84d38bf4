"""The latent motion readout (the stand-in's motion teacher): geometry, target, masking, training
and resume of a pool run that uses it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lib.data.synth import ensure_synthetic
from lib.data.synth_pool import generate_pool
from lib.vae.latent_motion import (
    LatentMotionReadout,
    cells_to_field,
    coarse_field,
    field_to_cells,
    latent_motion_mse,
)
from lib.vae.losses import VAELossWeights
from lib.vae.train import STATE_NAME, main


def test_readout_places_each_cell_over_the_block_of_frames_and_pixels_it_covers() -> None:
    readout = LatentMotionReadout(latent_channels=3, temporal_factor=4, spatial_factor=32, block=8)
    nb = readout.blocks
    assert nb == 4 and readout.proj.out_channels == 2 * 4 * 4 * 4
    with torch.no_grad():  # output channel (c, dt, bh, bw) = latent channel 0 x a code of (c, dt, bh, bw)
        readout.proj.weight.zero_()
        codes = torch.arange(readout.proj.out_channels, dtype=torch.float32) + 1
        readout.proj.weight[:, 0, 0, 0, 0] = codes
    z = torch.zeros(1, 3, 2, 2, 3)
    cell_values = torch.arange(1, 13, dtype=torch.float32).view(2, 2, 3)
    z[0, 0] = cell_values
    out = readout(z)  # (1, 2, 8, 8, 12)
    assert out.shape == (1, 2, 8, 8, 12)
    for c, dt, bh, bw, tl, hl, wl in [(0, 0, 0, 0, 0, 0, 0), (1, 3, 2, 1, 1, 1, 2), (0, 2, 3, 3, 1, 0, 1)]:
        code = codes[((c * 4 + dt) * nb + bh) * nb + bw]
        value = out[0, c, tl * 4 + dt, hl * nb + bh, wl * nb + bw]
        assert value == cell_values[tl, hl, wl] * code


def test_field_to_cells_inverts_cells_to_field() -> None:
    cells = torch.randn(2, 2 * 4 * 4 * 4, 3, 2, 3)
    field = cells_to_field(cells, temporal_factor=4, blocks=4)
    assert field.shape == (2, 2, 12, 8, 12)
    assert torch.equal(field_to_cells(field, temporal_factor=4, blocks=4), cells)


def test_coarse_field_is_the_block_mean() -> None:
    field = torch.zeros(1, 2, 3, 16, 24)
    field[0, 0, :, :8, :8] = 2.0  # one block moves 2 px right
    field[0, 1, :, 8:, 16:] = torch.arange(64, dtype=torch.float32).view(8, 8)
    coarse = coarse_field(field, 8)
    assert coarse.shape == (1, 2, 3, 2, 3)
    assert torch.all(coarse[0, 0, :, 0, 0] == 2.0) and coarse[0, 0].sum() == 2.0 * 3
    assert torch.allclose(coarse[0, 1, :, 1, 2], torch.full((3,), 31.5))
    with pytest.raises(ValueError, match="multiple of the block"):
        coarse_field(torch.zeros(1, 2, 1, 12, 16), 8)


def test_latent_motion_mse_counts_only_clips_with_ground_truth_and_reaches_the_latent() -> None:
    readout = LatentMotionReadout(latent_channels=4)
    with torch.no_grad():
        readout.proj.weight.normal_()
    z = torch.randn(2, 4, 4, 1, 1, requires_grad=True)
    field = torch.ones(2, 2, 16, 32, 32)
    field[1] = 1000.0  # natural footage: no ground truth, must not count
    zero = LatentMotionReadout(latent_channels=4)
    assert latent_motion_mse(zero, z, field, torch.tensor([True, False])).item() == pytest.approx(1.0)
    loss = latent_motion_mse(readout, z, field, torch.tensor([True, False]))
    loss.backward()
    assert z.grad[0].abs().sum() > 0 and z.grad[1].abs().sum() == 0
    assert latent_motion_mse(readout, z, field, torch.tensor([False, False])).item() == 0.0


def test_the_term_needs_a_readout_and_ground_truth() -> None:
    from lib.vae.losses import vae_loss

    x = torch.zeros(1, 3, 16, 32, 32)
    with pytest.raises(ValueError, match="latent readout"):
        vae_loss(x, x, mean=torch.zeros(1, 16, 4, 1, 1), logvar=torch.zeros(1, 16, 4, 1, 1),
                 weights=VAELossWeights(latent_motion=1.0))


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pool = generate_pool(tmp_path_factory.mktemp("pool"), preset="pretrain_smoke", workers=1, progress=False)
    return pool, ensure_synthetic("smoke", seed=0, progress=False)


def _cli(roots: tuple[Path, Path], out: Path, *extra: str) -> int:
    pool, labelled = roots
    return main(["--preset", "pretrain_smoke", "--data", str(pool), "--eval-data", str(labelled), "--out", str(out),
                 "--steps", "4", "--checkpoint-every", "2", "--motion-weight", "0", "--latent-motion-weight", "1.0",
                 "--workers", "1", "--no-progress", *extra])


@pytest.mark.slow
def test_pool_run_trains_the_readout_and_resumes_it_bit_for_bit(roots: tuple[Path, Path], tmp_path: Path) -> None:
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert _cli(roots, full) == 0
    state = torch.load(full / STATE_NAME, weights_only=True)
    assert state["readout"]["proj.weight"].abs().sum() > 0  # zero-initialised, then trained
    assert _cli(roots, resumed, "--stop-after", "1") == 0
    assert torch.load(resumed / STATE_NAME, weights_only=True)["step"] == 1
    assert _cli(roots, resumed) == 0
    again = torch.load(resumed / STATE_NAME, weights_only=True)
    for key, value in state["readout"].items():
        assert torch.equal(again["readout"][key], value), key
    for key, value in state["model"].items():
        assert torch.equal(again["model"][key], value), key


def test_the_readout_trains_in_its_own_lr_group() -> None:
    from lib.vae.train import PRESETS, build_model, build_optimizer
    from lib.vae.train_loop import build_readout

    preset = PRESETS["pretrain_smoke"]
    assert build_readout(build_model(preset, 0), preset) is None  # no term, no readout
    preset = replace(preset, loss=replace(preset.loss, latent_motion=1.0))
    model = build_model(preset, 0)
    readout = build_readout(model, preset)
    groups = build_optimizer(model, preset, readout).param_groups
    assert groups[-1]["lr_scale"] == preset.readout_lr_scale > 1
    assert {id(p) for p in groups[-1]["params"]} == {id(p) for p in readout.parameters()}
