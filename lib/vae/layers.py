"""Convolutional building blocks shared by the 3D/2D encoders and the fusion decoder.

Every block works on 2D (B, C, H, W) or 3D (B, C, T, H, W) maps, chosen by ``dims``. Attribute
names follow the official checkpoint (``norm1``, ``conv1``, ``nin_shortcut``, ``q``,
``proj_out``...) so official state dicts load unchanged and forward hooks can target the same
module paths.

Mixed precision: norms compute in float32 and return the input dtype, because GroupNorm
statistics over large maps lose too much in bf16/fp16; attention goes through
``scaled_dot_product_attention``, whose kernels keep the softmax in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lib.vae.config import NUM_GROUPS

GROUP_NORM_EPS = 1e-6
SELF_ATTENTION_HEADS = 8  # the official mid-block attention is 8-head (despite its docstring)


def conv_nd(dims: int, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...], *,
            stride: int | tuple[int, ...] = 1, padding: int = 0) -> nn.Conv2d | nn.Conv3d:
    """A biased Conv2d or Conv3d."""
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    cls = nn.Conv3d if dims == 3 else nn.Conv2d
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm (32 groups, eps 1e-6, affine) computed in float32 whatever the input dtype."""

    def __init__(self, channels: int) -> None:
        super().__init__(NUM_GROUPS, channels, eps=GROUP_NORM_EPS, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)


def maybe_checkpoint(fn: Callable[..., torch.Tensor], *args: torch.Tensor, enabled: bool) -> torch.Tensor:
    """Gradient checkpointing (recompute in backward), only when training with gradients."""
    if enabled and torch.is_grad_enabled() and any(a.requires_grad for a in args if isinstance(a, torch.Tensor)):
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class ResnetBlock(nn.Module):
    """GN -> SiLU -> conv3 -> GN -> SiLU -> dropout -> conv3, plus a (1x1 when widths differ) shortcut."""

    def __init__(self, *, in_channels: int, out_channels: int, dims: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = GroupNorm32(in_channels)
        self.conv1 = conv_nd(dims, in_channels, out_channels, 3, padding=1)
        self.norm2 = GroupNorm32(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv_nd(dims, out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = conv_nd(dims, in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, [T,] H, W) -> (B, Cout, [T,] H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut = self.nin_shortcut(x) if self.in_channels != self.out_channels else x
        return shortcut + h


class Downsample(nn.Module):
    """Stride-2 conv after a zero pad of 1 at the *end* of each halved axis: n -> floor(n / 2).

    3D spatial-only levels use a (1, 3, 3) kernel with stride (1, 2, 2) and no temporal pad;
    spatio-temporal levels use a 3x3x3 kernel with stride 2. 2D uses a 3x3 kernel.
    """

    def __init__(self, channels: int, *, dims: int, temporal: bool = False) -> None:
        super().__init__()
        if dims == 2 and temporal:
            raise ValueError("a 2D downsample cannot be temporal")
        self.dims, self.temporal = dims, temporal
        if dims == 3 and not temporal:
            self.conv = conv_nd(3, channels, channels, (1, 3, 3), stride=(1, 2, 2))
        else:
            self.conv = conv_nd(dims, channels, channels, 3, stride=2)
        # F.pad order is (W_left, W_right, H_top, H_bottom, T_front, T_back).
        self.pad: tuple[int, ...] = (0, 1, 0, 1) + ((0, 1) if temporal else ((0, 0) if dims == 3 else ()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C, T', H//2, W//2)
        return self.conv(F.pad(x, self.pad))


class Upsample(nn.Module):
    """Nearest-neighbour x2 (H, W and optionally T), then a 3x3x3 conv of the same width."""

    def __init__(self, channels: int, *, temporal: bool) -> None:
        super().__init__()
        self.scale: tuple[float, float, float] = (2.0 if temporal else 1.0, 2.0, 2.0)
        self.conv = conv_nd(3, channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C, T*s, 2H, 2W)
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads); channels are split head-major (head h = slice h)."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class SelfAttentionBlock(nn.Module):
    """Multi-head self-attention over all positions of the map, residual (official mid ``attn_1``).

    GroupNorm, 1x1 convs ``q``/``k``/``v`` with bias, 8 heads with scale 1/sqrt(C/8), 1x1 conv
    ``proj_out``. No positional encoding, no mask.
    """

    def __init__(self, channels: int, *, dims: int, num_heads: int = SELF_ATTENTION_HEADS) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = GroupNorm32(channels)
        self.q = conv_nd(dims, channels, channels, 1)
        self.k = conv_nd(dims, channels, channels, 1)
        self.v = conv_nd(dims, channels, channels, 1)
        self.proj_out = conv_nd(dims, channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, C, *S)
        h = self.norm(x)
        # Tokens in (t, h, w) raster order: (B, C, *S) -> (B, N, C).
        q, k, v = (split_heads(proj(h).flatten(2).transpose(1, 2), self.num_heads) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        out = merge_heads(out).transpose(1, 2).reshape(x.shape)  # (B, C, *S)
        return x + self.proj_out(out)
