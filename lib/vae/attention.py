"""Cross-attention fusion of content-frame features into the 3D decoder, and its positional table.

The decoder injects the content frame (the clip's middle frame, encoded by the 2D encoder) at a
few resolutions through :class:`FusionBlock` (the official ``BasicTransformerBlock`` with
``norm_type='layer'``, ``pos_embed_mode='t'``): every video token attends to every position of
the content feature map. Names (``pos_embed``, ``attn.to_q`` ... ``attn.to_out.0``, ``norm``)
match the official checkpoint.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from lib.vae.config import FUSE_HEAD_DIM
from lib.vae.layers import merge_heads, split_heads

LAYER_NORM_EPS = 1e-5
# Above this many positions the official block switches to a windowed variant (not reproduced).
WINDOW_POSITIONS = 128 * 128


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """Classic transformer table (length, dim), float32: sin on even, cos on odd channels.

    Entry (t, j) = sin / cos(t / 10000^(2 * floor(j / 2) / dim)), interleaved (not concatenated).
    Computed in float64 like the original numpy code, then rounded once to float32.
    """
    cpu = torch.device("cpu")  # explicit: the table is real data even under a meta device context
    pos = torch.arange(length, dtype=torch.float64, device=cpu)[:, None]  # (L, 1)
    pair = torch.div(torch.arange(dim, device=cpu), 2, rounding_mode="floor").to(torch.float64)  # (C,)
    angle = pos / torch.pow(10000.0, 2.0 * pair / dim)  # (L, C)
    even = torch.arange(dim, device=cpu) % 2 == 0
    table = torch.where(even, torch.sin(angle), torch.cos(angle))
    return table.to(torch.float32)


class CrossAttention(nn.Module):
    """Multi-head attention of query tokens over context tokens (bias-free q/k/v, biased out)."""

    def __init__(self, *, query_dim: int, context_dim: int, heads: int, dim_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # x (B, N, Cq), context (B, M, Cc) -> (B, N, Cq); scale 1/sqrt(dim_head) (SDPA default).
        q = split_heads(self.to_q(x), self.heads)
        k = split_heads(self.to_k(context), self.heads)
        v = split_heads(self.to_v(context), self.heads)
        return self.to_out(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class LayerNorm32(nn.LayerNorm):
    """LayerNorm (affine, eps 1e-5) computed in float32 whatever the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)


class FusionBlock(nn.Module):
    """Video features attend to a content-frame feature map; the result is added residually.

    y = x_p + Attn(LayerNorm(x_p), context) with x_p = x + temporal sinusoid (per frame). The
    table therefore stays in the residual stream, and the context is used un-normalised.
    The table is a frozen ``nn.Parameter`` (as in the official code, so it is a checkpoint key
    and counts in ``parameters()``); its length fixes the number of frames at this level.
    """

    def __init__(self, *, dim: int, context_dim: int, temporal_length: int, dim_head: int = FUSE_HEAD_DIM) -> None:
        super().__init__()
        if dim % dim_head:
            raise ValueError(f"fusion width {dim} is not a multiple of the head width {dim_head}")
        self.dim, self.temporal_length = dim, temporal_length
        # Allocated on the current default device (meta builds stay allocation-free), then filled.
        self.pos_embed = nn.Parameter(torch.empty(1, temporal_length, 1, dim), requires_grad=False)
        self.reset_pos_embed()
        self.attn = CrossAttention(query_dim=dim, context_dim=context_dim, heads=dim // dim_head, dim_head=dim_head)
        self.norm = LayerNorm32(dim, eps=LAYER_NORM_EPS)

    def reset_pos_embed(self) -> None:
        """Recompute the fixed table (after ``to_empty()`` from the meta device, for instance)."""
        if self.pos_embed.device.type == "meta":
            return
        table = sinusoidal_table(self.temporal_length, self.dim).reshape(self.pos_embed.shape)
        with torch.no_grad():
            self.pos_embed.copy_(table.to(self.pos_embed.device, self.pos_embed.dtype))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # x (B, C, T, h, w), context (B, Cc, h', w') -> (B, C, T, h, w)
        b, c, t, h, w = x.shape
        if t != self.temporal_length:
            raise ValueError(
                f"fusion block expects {self.temporal_length} frames at this level (positional table), got {t}; "
                "the decoder only supports the latent length it was configured for (temp_res / 2**f_t)"
            )
        if context.shape[2] * context.shape[3] > WINDOW_POSITIONS and h * w * t >= WINDOW_POSITIONS:
            warnings.warn(
                "very large input: the official block would switch to windowed cross-attention here; "
                "this implementation keeps global attention", stacklevel=2,
            )
        tokens = x.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c)  # (B, T, hw, C)
        tokens = tokens + self.pos_embed.to(tokens.dtype)  # add the frame's table row to its tokens
        tokens = tokens.reshape(b, t * h * w, c)  # (B, N, C), N in (t, h, w) order
        ctx = context.flatten(2).transpose(1, 2)  # (B, h'w', Cc)
        out = tokens + self.attn(self.norm(tokens), ctx)
        return out.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3).contiguous()  # (B, C, T, h, w)
