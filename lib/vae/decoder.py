"""The fusion decoder (``decoder``): 3D latent + content-frame features -> 16-frame video.

Layout (official names): ``conv_in``; ``mid`` = ``block_1``, ``fuse.0`` (cross-attention to the
content encoder's mid-attention map), ``attn_1`` (8-head self-attention), ``block_2``; levels
``up.i`` stored 0..L-1 but run from L-1 down to 0, each ``block_1`` (res blocks, the first one
changes the width) -> optional ``fuse.0`` -> ``block_2`` (res blocks) -> ``upsample`` (not at
level 0); then ``norm_out`` -> SiLU -> ``conv_out``. No tanh: outputs are roughly in [-1, 1].

The temporal upsamples come first (``upsample_first``): the f_t highest levels double T, the
others only H and W. Each fusion block's positional table is sized for the number of frames
at its level, which pins the decoder to ``temp_res`` output frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lib.vae.attention import FusionBlock
from lib.vae.config import ReducioConfig
from lib.vae.layers import GroupNorm32, ResnetBlock, SelfAttentionBlock, Upsample, conv_nd, maybe_checkpoint


def _res_blocks(in_channels: int, out_channels: int, n: int, dropout: float) -> nn.ModuleList:
    widths = [in_channels] + [out_channels] * n
    return nn.ModuleList(
        ResnetBlock(in_channels=widths[j], out_channels=widths[j + 1], dims=3, dropout=dropout) for j in range(n)
    )


class DecoderMid(nn.Module):
    """Res block -> (cross-attention to the content mid features) -> self-attention -> res block."""

    def __init__(self, channels: int, *, context_dim: int | None, frames: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(in_channels=channels, out_channels=channels, dims=3, dropout=dropout)
        self.fuse = nn.ModuleList()
        if context_dim is not None:
            self.fuse.append(FusionBlock(dim=channels, context_dim=context_dim, temporal_length=frames))
        self.attn_1 = SelfAttentionBlock(channels, dims=3)
        self.block_2 = ResnetBlock(in_channels=channels, out_channels=channels, dims=3, dropout=dropout)


class UpLevel(nn.Module):
    """One decoder resolution level (see the module docstring for the order)."""

    def __init__(self, *, in_channels: int, out_channels: int, num_res_blocks: int, dropout: float,
                 context_dim: int | None, frames: int, upsample: bool, temporal: bool) -> None:
        super().__init__()
        self.block_1 = _res_blocks(in_channels, out_channels, num_res_blocks, dropout)
        self.fuse = nn.ModuleList()
        if context_dim is not None:
            self.fuse.append(FusionBlock(dim=out_channels, context_dim=context_dim, temporal_length=frames))
        self.block_2 = _res_blocks(out_channels, out_channels, num_res_blocks, dropout)
        if upsample:
            self.upsample = Upsample(out_channels, temporal=temporal)


class FusionDecoder(nn.Module):
    """(B, z, T', h, w) latent (after post_quant_conv) + content features -> (B, 3, T, 32h, 32w)."""

    def __init__(self, config: ReducioConfig) -> None:
        super().__init__()
        dd = config.ddconfig
        content_channels = config.ddconfig_2d.feature_channels  # channels of each 2D feature entry
        self.feature_indices = config.content_feature_indices  # which entries decode() receives
        self.ch_fuse: tuple[int, ...] = dd.ch_fuse
        self.use_checkpoint = dd.use_checkpoint
        n = dd.num_levels
        block_in = dd.ch * dd.ch_mult[-1]
        frames = config.latent_frames
        self.latent_frames = frames
        self.conv_in = conv_nd(3, dd.z_channels, block_in, 3, padding=1)
        mid_index = config.ddconfig_2d.num_levels  # the mid-attention entry of the 2D features
        self.mid_feature: int | None = mid_index if dd.fuse_mid else None
        self.mid = DecoderMid(block_in, context_dim=content_channels[mid_index] if dd.fuse_mid else None,
                              frames=frames, dropout=dd.dropout)
        levels: list[UpLevel | None] = [None] * n
        for i in reversed(range(n)):  # built in execution order, stored by level index
            block_out = dd.ch * dd.ch_mult[i]
            k = dd.ch_fuse[i]
            temporal = i in config.decoder_temporal_levels
            levels[i] = UpLevel(in_channels=block_in, out_channels=block_out, num_res_blocks=dd.num_res_blocks,
                                dropout=dd.dropout, context_dim=content_channels[k] if k >= 0 else None,
                                frames=frames, upsample=i != 0, temporal=temporal)
            block_in = block_out
            if i != 0 and temporal:
                frames *= 2
        self.up = nn.ModuleList(levels)
        self.norm_out = GroupNorm32(block_in)
        self.content_warp = bool(dd.content_warp)
        # with content_warp, 2 more output channels: the displacement field (see warp_frame)
        # with content_warp the last conv also sees the content frame's pixels (3 more input
        # channels), so it can filter (denoise) and place what it moves
        self.conv_out = conv_nd(3, block_in + 3 * self.content_warp, dd.out_ch + 2 * self.content_warp, 3, padding=1)
        # Local extension (see VideoAutoencoderConfig.content_residual): predict the difference
        # to the content frame, starting exactly at the repeat-the-content-frame baseline.
        self.content_residual = bool(dd.content_residual)
        if self.content_residual:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)
        # Local extension (VideoAutoencoderConfig.coarse_flow): a zero-initialised coarse field
        # from the features after the last temporal upsample (all frames present).
        self.coarse_flow_level: int | None = None
        if dd.coarse_flow:
            level = min(config.decoder_temporal_levels, default=n - 1)
            width = dd.ch * dd.ch_mult[level]
            self.coarse_flow_level = level
            self.flow_norm = GroupNorm32(width)
            self.flow_out = conv_nd(3, width, 2, 3, padding=1)
            nn.init.zeros_(self.flow_out.weight)
            nn.init.zeros_(self.flow_out.bias)

    def _run(self, module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(module, *args, enabled=self.use_checkpoint and self.training)

    def _context(self, features: Sequence[torch.Tensor], index: int) -> torch.Tensor:
        return features[self.feature_indices.index(index)]

    def forward(self, z: torch.Tensor, features: Sequence[torch.Tensor], *,
                return_flow: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        # z (B, z, T', h, w); features[j] is content entry feature_indices[j], (B, Cj, Hj, Wj)
        # return_flow (content_warp models): also the displacement field applied, (B, 2, T, H, W) px
        if return_flow and not self.content_warp:
            raise ValueError("return_flow needs a decoder with content_warp (no displacement field otherwise)")
        if z.ndim != 5 or z.shape[2] != self.latent_frames:
            raise ValueError(f"decoder expects a latent (B, C, {self.latent_frames}, h, w), got {tuple(z.shape)}")
        expected = len(self.feature_indices) + self.content_residual
        if len(features) != expected:
            raise ValueError(
                f"decoder expects {expected} content feature maps (2D encoder entries {self.feature_indices}"
                f"{' + the content frame' if self.content_residual else ''}), got {len(features)}"
            )
        frame = features[-1] if self.content_residual else None  # (B, 3, H, W)
        h = self.conv_in(z)
        h = self._run(self.mid.block_1, h)
        for fuse in self.mid.fuse:
            h = self._run(fuse, h, self._context(features, self.mid_feature))
        h = self.mid.attn_1(h)
        h = self._run(self.mid.block_2, h)
        coarse = None  # (B, 2, T, h', w') with coarse_flow
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for block in level.block_1:
                h = self._run(block, h)
            for fuse in level.fuse:
                h = self._run(fuse, h, self._context(features, self.ch_fuse[i]))
            for block in level.block_2:
                h = self._run(block, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
            if i == self.coarse_flow_level:
                coarse = self.flow_out(F.silu(self.flow_norm(h)))
        h = F.silu(self.norm_out(h))
        if self.content_warp:  # (B, C + 3, T, H, W): the content frame's pixels on every frame
            h = torch.cat([h, frame.to(h.dtype).unsqueeze(2).expand(-1, -1, h.shape[2], -1, -1)], dim=1)
        out = self.conv_out(h)  # (B, 3 [+ 2], T, H, W)
        if frame is None:
            return out
        if self.content_warp:  # motion-compensated: the frame moved by the field, plus the residual
            residual, flow = out[:, :3], out[:, 3:]
            if coarse is not None:  # the smooth field, upsampled to every output pixel
                flow = flow + COARSE_FLOW_SCALE * F.interpolate(coarse.float(), size=flow.shape[2:], mode="trilinear",
                                                                align_corners=False)
            pixels = flow.float() * CONTENT_WARP_SCALE
            out = residual + warp_frame(frame, pixels)
            return (out, pixels) if return_flow else out
        return out + frame.unsqueeze(2)  # the content frame on every output frame (dtype promotes)


# Displacement (pixels) per unit of the decoder's flow output: the zero-initialised conv_out
# starts at 0 px and, with weights of a usual size, reaches the few pixels camera shake and object
# motion span within a second at these resolutions.
CONTENT_WARP_SCALE = 4.0
# The coarse field's unit, relative to conv_out's (so 1 px per unit): its head has a wide fan-in
# (all features of a 3x3x3 neighbourhood), so each optimizer step moves its output more.
COARSE_FLOW_SCALE = 0.25


def warp_frame(frame: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp a frame by a per-frame displacement field.

    frame (B, 3, H, W); flow (B, 2, T, H, W) in pixels, channel 0 = x (width), 1 = y (height):
    output pixel (t, y, x) samples the frame at (y + flow_y, x + flow_x), bilinear, borders
    repeated. Returns (B, 3, T, H, W) in float32 (sampling positions need the precision).
    """
    b, _, t, h, w = flow.shape
    flow = flow.float().permute(0, 2, 3, 4, 1).reshape(b * t, h, w, 2)  # (B*T, H, W, xy)
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=flow.device)  # pixel centres, align_corners=False
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=flow.device)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, xy)
    grid = base + flow * flow.new_tensor([2 / w, 2 / h])
    source = frame.float().unsqueeze(1).expand(b, t, *frame.shape[1:]).reshape(b * t, *frame.shape[1:])
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped.reshape(b, t, *warped.shape[1:]).transpose(1, 2)  # (B, 3, T, H, W)
