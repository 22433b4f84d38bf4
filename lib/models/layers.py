"""Building blocks shared by the classifiers: the base class, input checks, attention blocks,
stochastic depth, residual MLP blocks and grid arithmetic that never shrinks an axis below 1.

Tensor layout everywhere: clips (B, C, T, H, W) float32; token sequences (B, N, D).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class VideoClassifier(nn.Module):
    """Base of every registered model: keeps ``num_classes``, the per-clip ``input_shape``
    (C, T, H, W) and the ``config`` dataclass, and checks inputs against them."""

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int, int], config: Any) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_shape: tuple[int, int, int, int] = tuple(input_shape)  # type: ignore[assignment]
        self.config = config

    @property
    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-clip shape of each forward() argument (fusion models add the content vector)."""
        return (self.input_shape,)

    def check_input(
        self,
        x: torch.Tensor,
        expected: tuple[int, ...] | None = None,
        what: str = "input",
        fix: str = "build the model with input_shape equal to the data's per-clip shape",
    ) -> None:
        """Raise a clear error when ``x`` is not (B, *expected): feeding other data than the model
        was built for (wrong cache, wrong crop) must not run silently."""
        expected = self.input_shape if expected is None else expected
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != tuple(expected):
            raise ValueError(
                f"{type(self).__name__}: {what} must have shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}. Fix: {fix}"
            )


def halve(size: int) -> int:
    """Axis length after a stride-2 step that never goes below 1 (ceil division)."""
    return max(1, math.ceil(size / 2))


def down_stride(size: int, min_size: int = 4) -> int:
    """Stride 2 on an axis at least ``min_size`` long, else 1 (a 2x3 map is not shrunk further)."""
    return 2 if size >= min_size else 1


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples with probability ``p`` during
    training (survivors scaled by 1/(1-p)); identity in eval mode."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


class SelfAttention(nn.Module):
    """Multi-head self-attention (B, N, D) -> (B, N, D) with ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, *, attn_dropout: float = 0.0, proj_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"hidden size {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, d/h)
        out = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))  # (B, N, D)


class TransformerBlock(nn.Module):
    """One encoder layer: self-attention + feed-forward, each with a residual connection.

    ``norm_first=False`` is the original post-norm layer, the same computation as
    ``nn.TransformerEncoderLayer(dim, heads, ff_dim, dropout, batch_first=True)`` when
    ``attn_dropout == dropout`` (ReLU feed-forward; dropout on the attention weights, after
    attention, inside and after the feed-forward; tested); ``norm_first=True`` is the pre-norm layer of
    ViT-style models (GELU), with stochastic depth ``drop_path`` on both residual branches.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ff_dim: int,
        *,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        norm_first: bool = True,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = SelfAttention(dim, heads, attn_dropout=attn_dropout, proj_dropout=dropout)
        act: nn.Module = nn.GELU() if norm_first else nn.ReLU()
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_dim), act, nn.Dropout(dropout), nn.Linear(ff_dim, dim), nn.Dropout(dropout)
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, N, D)
        if self.norm_first:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop_path(self.attn(x)))
        return self.norm2(x + self.drop_path(self.ff(x)))


class ResidualMLPBlock(nn.Module):
    """(B, D) -> (B, D): x + Dropout(ReLU(Linear(x))), optionally with a LayerNorm first."""

    def __init__(self, dim: int, dropout: float, *, pre_norm: bool = False) -> None:
        super().__init__()
        self.norm: nn.Module = nn.LayerNorm(dim) if pre_norm else nn.Identity()
        self.linear = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(F.relu(self.linear(self.norm(x))))


def norm3d(kind: str, channels: int) -> nn.Module:
    """BatchNorm3d (``"batch"``) or GroupNorm with up to 8 groups (``"group"``: batch-size free)."""
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        groups = math.gcd(8, channels)
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


def check_fraction(name: str, value: float, *, upper_inclusive: bool = False) -> None:
    """Config check: a probability in [0, 1) (or [0, 1])."""
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"{name} must be in [0, 1{']' if upper_inclusive else ')'}, got {value!r}")


def check_positive(**values: int | float | tuple[int, ...]) -> None:
    """Config check: every value (or every element of a tuple value) is > 0 and tuples are non-empty."""
    for name, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        if not items or any(v <= 0 for v in items):
            raise ValueError(f"{name} must be > 0 (non-empty), got {value!r}")
