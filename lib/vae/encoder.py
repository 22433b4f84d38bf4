"""The two encoders: the 3D video encoder (``encoder_3d``) and the 2D content-frame encoder.

Both share the Stable-Diffusion encoder layout: ``conv_in``; levels ``down.i`` of res blocks
(``down.i.block.j``) followed by a ``down.i.downsample`` except at the last level; a ``mid``
block (res block, 8-head self-attention, res block); ``norm_out``. The 3D encoder ends with
SiLU and ``conv_out`` to 2 * z_channels moments; the 2D one returns multi-scale features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lib.vae.config import ContentEncoderConfig, ReducioConfig
from lib.vae.layers import Downsample, GroupNorm32, ResnetBlock, SelfAttentionBlock, conv_nd, maybe_checkpoint


class DownLevel(nn.Module):
    """One encoder resolution level: res blocks, then an optional downsample."""

    def __init__(self, *, in_channels: int, out_channels: int, num_res_blocks: int, dims: int,
                 dropout: float, downsample: bool, temporal: bool) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * num_res_blocks
        self.block = nn.ModuleList(
            ResnetBlock(in_channels=widths[j], out_channels=widths[j + 1], dims=dims, dropout=dropout)
            for j in range(num_res_blocks)
        )
        if downsample:
            self.downsample = Downsample(out_channels, dims=dims, temporal=temporal)


class EncoderMid(nn.Module):
    """Res block -> multi-head self-attention -> res block, at the lowest resolution."""

    def __init__(self, channels: int, *, dims: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(in_channels=channels, out_channels=channels, dims=dims, dropout=dropout)
        self.attn_1 = SelfAttentionBlock(channels, dims=dims)
        self.block_2 = ResnetBlock(in_channels=channels, out_channels=channels, dims=dims, dropout=dropout)


class EncoderTrunk(nn.Module):
    """Shared layout of both encoders (everything except what happens after the levels)."""

    def __init__(self, *, in_channels: int, ch: int, ch_mult: Sequence[int], num_res_blocks: int, dims: int,
                 dropout: float, temporal_levels: frozenset[int], use_checkpoint: bool) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.conv_in = conv_nd(dims, in_channels, ch, 3, padding=1)
        in_mult = (1, *ch_mult)
        last = len(ch_mult) - 1
        self.down = nn.ModuleList(
            DownLevel(in_channels=ch * in_mult[i], out_channels=ch * ch_mult[i], num_res_blocks=num_res_blocks,
                      dims=dims, dropout=dropout, downsample=i != last, temporal=i in temporal_levels)
            for i in range(len(ch_mult))
        )
        self.out_channels = ch * ch_mult[-1]
        self.mid = EncoderMid(self.out_channels, dims=dims, dropout=dropout)
        self.norm_out = GroupNorm32(self.out_channels)

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(module, x, enabled=self.use_checkpoint and self.training)

    def levels(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run conv_in and all levels; returns the final map and each level's pre-downsample output."""
        h = self.conv_in(x)
        skips: list[torch.Tensor] = []
        for level in self.down:
            for block in level.block:
                h = self._run(block, h)
            skips.append(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return h, skips


class VideoEncoder(EncoderTrunk):
    """``encoder_3d``: (B, 3, T, H, W) in [-1, 1] -> (B, 2 * z_channels, T', H/32, W/32) moments."""

    def __init__(self, config: ReducioConfig) -> None:
        dd = config.ddconfig
        super().__init__(in_channels=dd.in_channels, ch=dd.ch, ch_mult=dd.ch_mult, num_res_blocks=dd.num_res_blocks,
                         dims=3, dropout=dd.dropout, temporal_levels=config.encoder_temporal_levels,
                         use_checkpoint=dd.use_checkpoint)
        self.conv_out = conv_nd(3, self.out_channels, 2 * dd.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, 2z, T', H', W')
        if x.ndim != 5:
            raise ValueError(f"encoder_3d expects (B, C, T, H, W), got shape {tuple(x.shape)}")
        h, _ = self.levels(x)
        h = self._run(self.mid.block_1, h)
        h = self.mid.attn_1(h)
        h = self._run(self.mid.block_2, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class ContentEncoder(EncoderTrunk):
    """``encoder_2d``: content frame (B, 3, H, W) -> [level_0, ..., level_{L-1}, mid_attention].

    Level i's map is taken after its res blocks and before its downsample (H / 2^i). The last
    entry is the output of ``mid.attn_1`` (H / 2^(L-1)). ``mid.block_2`` and ``norm_out`` exist
    (their weights are in the checkpoint) but the official model discards their result, so they
    are not computed here.
    """

    def __init__(self, config: ContentEncoderConfig) -> None:
        super().__init__(in_channels=config.in_channels, ch=config.ch, ch_mult=config.ch_mult,
                         num_res_blocks=config.num_res_blocks, dims=2, dropout=config.dropout,
                         temporal_levels=frozenset(), use_checkpoint=config.use_checkpoint)

    def forward(self, frame: torch.Tensor) -> list[torch.Tensor]:  # (B, 3, H, W) -> L + 1 maps
        if frame.ndim != 4:
            raise ValueError(f"encoder_2d expects a frame (B, C, H, W), got shape {tuple(frame.shape)}")
        h, skips = self.levels(frame)
        h = self._run(self.mid.block_1, h)
        skips.append(self.mid.attn_1(h))
        return skips
