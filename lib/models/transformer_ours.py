"""``transformer_ours``: a small pre-norm space-time Transformer over the T' x H' x W' latent positions.

Every latent position is a token. The tokens are embedded by a 3x3x3 Conv3d (C -> dim; each
token sees its neighbourhood, a convolutional stem that makes small-data training far easier
than a linear patch embedding; ``embed="linear"`` gives the per-position Linear(C, dim) instead),
plus *factorised* learnable positional embeddings pos_t[t] + pos_h[h] + pos_w[w] (T' + H' + W'
vectors instead of T'H'W'). Joint attention over all positions (252 tokens for UCF101, 24 for
the embedded default) in ``depth`` pre-norm blocks with dropout and stochastic depth (rate
growing linearly to ``drop_path``), a final LayerNorm, mean pooling over tokens (or a class
token, ``pool="cls"``), dropout and a linear head.

For (16, 4, 7, 9): embed (128, 4, 7, 9) -> tokens (252, 128) -> blocks (252, 128) -> mean (128,) -> (K,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lib.models.layers import TransformerBlock, VideoClassifier, check_fraction, check_positive
from lib.models.registry import register


@dataclass(frozen=True)
class TransformerOursConfig:
    """``dim``: token width; ``depth``: blocks; ``heads``; ``mlp_ratio``: feed-forward width /
    dim; ``dropout``: embeddings, attention output, feed-forward and head; ``attn_dropout``: on
    attention weights; ``drop_path``: stochastic depth of the last block; ``embed``: "conv" or
    "linear"; ``pool``: "mean" or "cls"; ``max_tokens``: the most latent positions it accepts
    (joint attention costs positions^2: a per-frame image VAE's 16 x 28 x 36 = 16,128 positions
    take ~10 s per clip forward on a CPU core, untrainable)."""

    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    attn_dropout: float = 0.0
    drop_path: float = 0.1
    embed: Literal["conv", "linear"] = "conv"
    pool: Literal["mean", "cls"] = "mean"
    max_tokens: int = 4096

    def __post_init__(self) -> None:
        check_positive(dim=self.dim, depth=self.depth, heads=self.heads, mlp_ratio=self.mlp_ratio,
                       max_tokens=self.max_tokens)
        for name in ("dropout", "attn_dropout", "drop_path"):
            check_fraction(name, getattr(self, name))
        if self.embed not in ("conv", "linear") or self.pool not in ("mean", "cls"):
            raise ValueError(f"embed must be 'conv'/'linear' and pool 'mean'/'cls', got {self.embed!r}, {self.pool!r}")


@register("transformer_ours", family="transformer", input_kind="latent", config=TransformerOursConfig,
          summary="ours: conv-embedded space-time tokens, factorised positions, pre-norm joint attention, "
                  "stochastic depth, mean pool",
          recipe={"lr": 1e-3, "weight_decay": 0.05, "label_smoothing": 0.1, "mixup_alpha": 0.2, "augment": "latent"})
class TransformerOurs(VideoClassifier):
    """(B, C, T', H', W') latent -> (B, K) logits via joint space-time self-attention."""

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int, int],
                 config: TransformerOursConfig = TransformerOursConfig()) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        c, t, h, w = input_shape
        if t * h * w > config.max_tokens:
            raise ValueError(f"{t * h * w} latent positions exceed max_tokens={config.max_tokens} (joint attention "
                             "is quadratic in them); use attentive_probe or conv3d_ours for this latent, or raise "
                             "max_tokens")
        d = config.dim
        kernel = 3 if config.embed == "conv" else 1
        self.embed = nn.Conv3d(c, d, kernel, padding=kernel // 2)
        self.pos_t = nn.Parameter(torch.zeros(1, d, t, 1, 1))
        self.pos_h = nn.Parameter(torch.zeros(1, d, 1, h, 1))
        self.pos_w = nn.Parameter(torch.zeros(1, d, 1, 1, w))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if config.pool == "cls" else None
        for p in (self.pos_t, self.pos_h, self.pos_w, self.cls_token):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        self.embed_drop = nn.Dropout(config.dropout)
        ff_dim = int(round(d * config.mlp_ratio))
        self.blocks = nn.ModuleList(
            TransformerBlock(d, config.heads, ff_dim, dropout=config.dropout, attn_dropout=config.attn_dropout,
                             drop_path=config.drop_path * i / max(1, config.depth - 1), norm_first=True)
            for i in range(config.depth))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(d, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        grid = self.embed(x) + self.pos_t + self.pos_h + self.pos_w  # (B, dim, T', H', W')
        z = grid.flatten(2).transpose(1, 2)  # (B, T'H'W', dim), (t, h, w) row-major
        if self.cls_token is not None:
            z = torch.cat([self.cls_token.expand(z.shape[0], -1, -1), z], dim=1)  # (B, 1 + T'H'W', dim)
        z = self.embed_drop(z)
        for block in self.blocks:
            z = block(z)
        z = self.norm(z)
        pooled = z[:, 0] if self.cls_token is not None else z.mean(dim=1)  # (B, dim)
        return self.head(pooled)  # (B, K)
