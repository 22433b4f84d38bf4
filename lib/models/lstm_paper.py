"""``lstm_paper``: the published LSTM classifier on Reducio latents (54.30 % on UCF101 split 1).

The latent's C = 16 channels are read as a sequence of 16 items. Each channel's (T', H', W')
volume is adaptive-average-pooled to 2x2x2 and flattened to 8 values; a 2-layer LSTM with hidden
size 128 runs over the 16 items and its last hidden state (top layer, last item) feeds a linear
head. For a (16, 4, 7, 9) latent the adaptive windows are 2 x 4 x 5 (overlapping where the axis
is odd); the embedded default's (16, 4, 2, 3) pools 2 x 1 x 2; an axis shorter than 2 (e.g. a
one-step T') is repeated instead of failing, so the structure applies unchanged to any grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lib.models.layers import VideoClassifier, check_fraction, check_positive
from lib.models.registry import register


@dataclass(frozen=True)
class LSTMPaperConfig:
    """``pooled``: the (t, h, w) each channel is pooled to (8 values per item at 2x2x2);
    ``hidden``/``layers``: the LSTM; ``dropout``: between LSTM layers (0 = as published)."""

    pooled: tuple[int, ...] = (2, 2, 2)
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if len(self.pooled) != 3:
            raise ValueError(f"pooled must be 3 sizes (t, h, w), got {self.pooled!r}")
        check_positive(pooled=self.pooled, hidden=self.hidden, layers=self.layers)
        check_fraction("dropout", self.dropout)


@register(
    "lstm_paper",
    family="lstm",
    input_kind="latent",
    config=LSTMPaperConfig,
    origin="paper",
    summary="published: 16 channels as a sequence of 2x2x2-pooled items, 2-layer LSTM(128), last hidden -> linear",
    recipe={"lr": 1e-3, "weight_decay": 0.0, "label_smoothing": 0.0, "augment": None},
)
class LSTMPaper(VideoClassifier):
    """(B, C, T', H', W') latent -> (B, K) logits via an LSTM over the C channels."""

    def __init__(
        self, *, num_classes: int, input_shape: tuple[int, int, int, int], config: LSTMPaperConfig = LSTMPaperConfig()
    ) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        self.item_size = config.pooled[0] * config.pooled[1] * config.pooled[2]  # 8 values per channel
        self.lstm = nn.LSTM(
            self.item_size,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden, num_classes)

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T', H', W') -> the LSTM's input sequence (B, C items, 8 values)."""
        pooled = F.adaptive_avg_pool3d(x, self.config.pooled)  # (B, C, 2, 2, 2)
        return pooled.flatten(2)  # (B, C, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        _, (h_n, _) = self.lstm(self.sequence(x))  # h_n: (layers, B, hidden)
        return self.head(h_n[-1])  # last layer's final hidden state (B, hidden) -> (B, K)
