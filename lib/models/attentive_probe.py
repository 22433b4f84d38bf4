"""``attentive_probe``: the frozen-feature head of V-JEPA, a few learned queries over the latent.

Every latent position (t', h', w') is a token of its C values, projected to ``dim`` with a
learned, factorised (time + height + width) position embedding. ``queries`` learned query vectors
cross-attend to all tokens in one multi-head attention block (pre-norm, then a residual MLP on
the queries, as in V-JEPA's attentive classifier); the queries' outputs are concatenated and a
linear layer gives the logits. It cannot build features of its own beyond one attention read-out
and an MLP, so, like the linear probe, it measures what the latent already holds, while reading
it position by position: the standard head for comparing frozen video encoders whose latents
have different shapes (4,032 values for Reducio, 16,128 for LTX-Video at 224x288, 64,512 for
Wan 2.1), where a flattened linear probe's size follows the latent.

Cost grows linearly with the number of positions (queries x positions attention), so it fits
every zoo latent, including a per-frame image VAE's 16 x 28 x 36 grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lib.models.layers import VideoClassifier, check_fraction, check_positive
from lib.models.registry import register


@dataclass(frozen=True)
class AttentiveProbeConfig:
    """``dim``: token and query width; ``queries``: learned queries (their outputs are
    concatenated); ``heads``: attention heads; ``mlp_ratio``: hidden width of the query MLP over
    ``dim``; ``dropout``: on the pooled queries before the linear layer."""

    dim: int = 128
    queries: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_positive(dim=self.dim, queries=self.queries, heads=self.heads)
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be a multiple of heads {self.heads}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        check_fraction("dropout", self.dropout)


@register("attentive_probe", family="probe", input_kind="latent", config=AttentiveProbeConfig, origin="reference",
          summary="frozen-feature head (V-JEPA): learned queries cross-attend to the latent positions -> linear",
          recipe={"lr": 1e-3, "weight_decay": 0.05, "label_smoothing": 0.0, "augment": None})
class AttentiveProbe(VideoClassifier):
    """(B, C, T', H', W') latent -> (B, K) logits from ``queries`` cross-attention read-outs."""

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int, int],
                 config: AttentiveProbeConfig = AttentiveProbeConfig()) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        c, t, h, w = input_shape
        d = config.dim
        self.embed = nn.Linear(c, d)
        self.pos_t = nn.Parameter(torch.zeros(t, 1, 1, d))
        self.pos_h = nn.Parameter(torch.zeros(1, h, 1, d))
        self.pos_w = nn.Parameter(torch.zeros(1, 1, w, d))
        self.query = nn.Parameter(torch.zeros(1, config.queries, d))
        for p in (self.pos_t, self.pos_h, self.pos_w, self.query):
            nn.init.trunc_normal_(p, std=0.02)
        self.norm_tokens = nn.LayerNorm(d)
        self.norm_query = nn.LayerNorm(d)
        self.heads = config.heads
        self.to_q = nn.Linear(d, d)
        self.to_kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        hidden = max(1, round(d * config.mlp_ratio))
        self.mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.queries * d, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        b = x.shape[0]
        tokens = self.embed(x.permute(0, 2, 3, 4, 1))  # (B, T', H', W', dim)
        tokens = (tokens + self.pos_t + self.pos_h + self.pos_w).flatten(1, 3)  # (B, N, dim)
        n, d, h = tokens.shape[1], tokens.shape[2], self.heads
        kv = self.to_kv(self.norm_tokens(tokens)).reshape(b, n, 2, h, d // h)
        kv = kv.permute(2, 0, 3, 1, 4)  # 2 x (B, h, N, d/h)
        # the queries are the same for every clip: project them once, then broadcast over the batch
        heads_q = self.to_q(self.norm_query(self.query)).reshape(1, -1, h, d // h).transpose(1, 2)  # (1, h, Q, d/h)
        read = F.scaled_dot_product_attention(heads_q.expand(b, -1, -1, -1), kv[0], kv[1])  # (B, h, Q, d/h)
        q = self.query + self.proj(read.transpose(1, 2).reshape(b, -1, d))  # (B, Q, dim)
        q = q + self.mlp(q)  # (B, Q, dim)
        return self.head(self.drop(q.flatten(1)))  # (B, K)
