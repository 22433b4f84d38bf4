"""A linear motion readout of the latent, the stand-in VAE's motion teacher during pretraining.

The released Reducio learns to put motion into its latent from reconstruction alone, over
10^5+ GPU steps on footage with large, varied motion. A CPU-scale run of 10^3 steps does not get
there: the decoder is handed the content frame, so most of the reconstruction loss is paid by
copying and denoising it, and the latent drifted towards the appearance of the clip (the linear
probe fell from 27 % to chance between steps 250 and 750 while the held-out PSNR kept rising;
docs/results.md).

This readout makes the motion a direct target of the encoder: a 1x1x1 convolution (linear, no
bias beyond one per output) maps each latent cell to the coarse displacement field of the
space-time block it covers, and its squared error against the pretraining pool's ground-truth
displacements (lib.data.synth_motion, rendered with the pool; no class label exists there) is a
loss term (``VAELossWeights.latent_motion``). The readout is linear on purpose: whatever it reads,
a linear probe can read too. It exists only during training; the exported VAE is the plain
Reducio architecture. Squared, not absolute, error: most blocks barely move, so the L1 optimum
of a weakly informed readout is "no motion" everywhere. What the term achieved within
CPU-reachable steps (so far: nothing measurable) is in docs/results.md.

Geometry: a latent cell (t', h', w') covers frames ``4t' .. 4t'+3`` and a ``32 x 32`` pixel
square; the target splits that square into ``block`` x ``block`` pixel blocks (default 8: 4 x 4
blocks), so each cell predicts ``2 x 4 x (32 / block)^2`` values (x/y displacement per frame
and block), 128 at the default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LatentMotionReadout(nn.Module):
    """Linear map latent (B, C, T', H', W') -> coarse displacement field (B, 2, T, H/b, W/b) px."""

    def __init__(self, *, latent_channels: int, temporal_factor: int = 4, spatial_factor: int = 32,
                 block: int = 8) -> None:
        super().__init__()
        if spatial_factor % block:
            raise ValueError(f"block {block} must divide the spatial factor {spatial_factor}")
        self.temporal_factor = temporal_factor
        self.blocks = spatial_factor // block  # blocks per latent cell along H and W
        self.block = block
        out = 2 * temporal_factor * self.blocks * self.blocks
        self.proj = nn.Conv3d(latent_channels, out, kernel_size=1)  # (B, 2*tf*nb*nb, T', H', W')
        nn.init.zeros_(self.proj.weight)  # predicts "no motion" at step 0
        nn.init.zeros_(self.proj.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return cells_to_field(self.proj(z.float()), temporal_factor=self.temporal_factor, blocks=self.blocks)


def cells_to_field(cells: torch.Tensor, *, temporal_factor: int, blocks: int) -> torch.Tensor:
    """Per-cell values (B, 2*tf*nb*nb, T', H', W'), channel order (x/y, frame, block row, block
    column), as the coarse field (B, 2, T'*tf, H'*nb, W'*nb) they describe."""
    b, _, tl, hl, wl = cells.shape
    tf, nb = temporal_factor, blocks
    y = cells.view(b, 2, tf, nb, nb, tl, hl, wl).permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, 2, T', tf, H', nb, W', nb)
    return y.reshape(b, 2, tl * tf, hl * nb, wl * nb)


def field_to_cells(field: torch.Tensor, *, temporal_factor: int, blocks: int) -> torch.Tensor:
    """The inverse of :func:`cells_to_field`: coarse field (B, 2, T, H, W) -> (B, 2*tf*nb*nb, T/tf, H/nb, W/nb)."""
    b, _, t, h, w = field.shape
    tf, nb = temporal_factor, blocks
    y = field.reshape(b, 2, t // tf, tf, h // nb, nb, w // nb, nb).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return y.reshape(b, 2 * tf * nb * nb, t // tf, h // nb, w // nb)


def coarse_field(field: torch.Tensor, block: int) -> torch.Tensor:
    """Average displacement per ``block`` x ``block`` pixel block: (B, 2, T, H, W) -> (B, 2, T, H/b, W/b)."""
    b, c, t, h, w = field.shape
    if h % block or w % block:
        raise ValueError(f"field {h}x{w} is not a multiple of the block {block}")
    return F.avg_pool2d(field.float().reshape(b, c * t, h, w), block).view(b, c, t, h // block, w // block)


def latent_motion_mse(readout: LatentMotionReadout, z: torch.Tensor, field: torch.Tensor,
                     has_field: torch.Tensor) -> torch.Tensor:
    """Mean squared error (px^2) of the readout of latent ``z`` against the coarse ground-truth
    ``field`` (B, 2, T, H, W), over the clips that have one (``has_field`` bool (B,)); 0 with a
    gradient path when none has (natural footage carries no ground truth)."""
    pred = readout(z)
    target = coarse_field(field, readout.block)
    if pred.shape != target.shape:
        raise ValueError(f"readout {tuple(pred.shape)} and coarse field {tuple(target.shape)} differ")
    weight = has_field.to(pred.dtype)
    per_clip = (pred - target).square().mean(dim=(1, 2, 3, 4))
    return (per_clip * weight).sum() / weight.sum().clamp(min=1.0)
