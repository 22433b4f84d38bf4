"""``transformer_paper``: the published Transformer classifier on Reducio latents (~30 % on UCF101).

Published structure: tokens from the latent projected to a hidden size, learnable positional
embeddings, a learnable class token, a stack of encoder layers (multi-head self-attention +
feed-forward), only the class token kept, dropout, linear head.

What a *token* is, is ambiguous in the published text. Two readings, both implemented
(config field ``token``):

- ``"channel"`` (default): like the published LSTM, the C = 16 latent channels are the sequence;
  token c is channel c's whole (T', H', W') volume flattened (4 x 7 x 9 = 252 values for UCF101)
  and linearly projected: 16 tokens + the class token. Chosen as the default because the
  published LSTM reads the latent the same way; space-time layout lives only in the projection.
- ``"position"``: each of the T' x H' x W' latent positions is a token of its C = 16 values
  (252 tokens + the class token), the ViT reading.

Sizes the text does not give (hidden 128, 4 layers, 4 heads, feed-forward 512, dropout 0.1) are
our choices, overridable. The encoder layers are post-norm with ReLU feed-forward, the same
computation as ``nn.TransformerEncoderLayer`` defaults (see :class:`lib.models.layers.TransformerBlock`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lib.models.layers import TransformerBlock, VideoClassifier, check_fraction, check_positive
from lib.models.registry import register


@dataclass(frozen=True)
class TransformerPaperConfig:
    """``token``: "channel" or "position" (see the module docstring); ``hidden``: token width;
    ``depth``: encoder layers; ``heads``; ``ff_dim``: feed-forward width; ``dropout``: inside
    the encoder layers; ``head_dropout``: on the class token before the linear head."""

    token: Literal["channel", "position"] = "channel"
    hidden: int = 128
    depth: int = 4
    heads: int = 4
    ff_dim: int = 512
    dropout: float = 0.1
    head_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.token not in ("channel", "position"):
            raise ValueError(f"token must be 'channel' or 'position', got {self.token!r}")
        check_positive(hidden=self.hidden, depth=self.depth, heads=self.heads, ff_dim=self.ff_dim)
        check_fraction("dropout", self.dropout)
        check_fraction("head_dropout", self.head_dropout)


@register("transformer_paper", family="transformer", input_kind="latent", config=TransformerPaperConfig,
          origin="paper",
          summary="published: tokens (default: the 16 channels) -> hidden, class token + learned positions, "
                  "post-norm encoder, class token -> dropout -> linear",
          recipe={"lr": 3e-4, "weight_decay": 0.0, "label_smoothing": 0.0, "augment": None})
class TransformerPaper(VideoClassifier):
    """(B, C, T', H', W') latent -> (B, K) logits from the class token of a Transformer encoder."""

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int, int],
                 config: TransformerPaperConfig = TransformerPaperConfig()) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        c, t, h, w = input_shape
        if config.token == "channel":
            self.num_tokens, token_size = c, t * h * w  # 16 tokens of 252 values (UCF101)
        else:
            self.num_tokens, token_size = t * h * w, c  # 252 tokens of 16 values (UCF101)
        self.embed = nn.Linear(token_size, config.hidden)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens + 1, config.hidden))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.embed_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.hidden, config.heads, config.ff_dim, dropout=config.dropout,
                             attn_dropout=config.dropout, norm_first=False)
            for _ in range(config.depth))
        self.head_drop = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(config.hidden, num_classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T', H', W') -> (B, N, token_size) in the configured reading."""
        if self.config.token == "channel":
            return x.flatten(2)  # (B, C, T'H'W')
        return x.flatten(2).transpose(1, 2)  # (B, T'H'W', C), positions in (t, h, w) row-major order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        z = self.embed(self.tokens(x))  # (B, N, hidden)
        z = torch.cat([self.cls_token.expand(z.shape[0], -1, -1), z], dim=1) + self.pos_embed  # (B, N+1, hidden)
        z = self.embed_drop(z)
        for block in self.blocks:
            z = block(z)  # (B, N+1, hidden)
        return self.head(self.head_drop(z[:, 0]))  # class token only (B, hidden) -> (B, K)
