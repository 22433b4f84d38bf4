"""``lstm_ours``: a per-time-step spatial CNN feeding a bidirectional LSTM over the T' latent steps.

Where the published LSTM runs over the 16 *channels* (an order without meaning) of a 2x2x2
summary, this one runs over *time*: each latent time step (C, H', W') goes through a shared 2D
conv stem (two Conv2d 3x3 + BatchNorm + GELU), is pooled over space (mean and max, concatenated)
and becomes one item of a T'-long sequence; a 2-layer bidirectional LSTM with dropout reads it;
the outputs are averaged over time, layer-normed, dropped out and classified.

For (16, 4, 7, 9): per step (16, 7, 9) -> conv (96, 7, 9) -> pool (192,) -> sequence (4, 192)
-> BiLSTM (4, 256) -> mean (256,) -> (K,). Any grid works (the pooling is global).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lib.models.layers import VideoClassifier, check_fraction, check_positive
from lib.models.registry import register


@dataclass(frozen=True)
class LSTMOursConfig:
    """``stem_channels``: width of the per-step 2D conv stem; ``hidden``: LSTM hidden size per
    direction; ``layers``: LSTM layers; ``bidirectional``; ``dropout``: on the step features,
    between LSTM layers and before the head."""

    stem_channels: int = 96
    hidden: int = 128
    layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.3

    def __post_init__(self) -> None:
        check_positive(stem_channels=self.stem_channels, hidden=self.hidden, layers=self.layers)
        check_fraction("dropout", self.dropout)


@register("lstm_ours", family="lstm", input_kind="latent", config=LSTMOursConfig,
          summary="ours: shared 2D conv per latent time step, mean+max pooled, 2-layer BiLSTM over T', mean -> linear",
          recipe={"lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.1, "mixup_alpha": 0.2, "augment": "latent"})
class LSTMOurs(VideoClassifier):
    """(B, C, T', H', W') latent -> (B, K) logits via a BiLSTM over the T' time steps."""

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int, int],
                 config: LSTMOursConfig = LSTMOursConfig()) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        c, s = input_shape[0], config.stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(c, s, 3, padding=1, bias=False), nn.BatchNorm2d(s), nn.GELU(),
            nn.Conv2d(s, s, 3, padding=1, bias=False), nn.BatchNorm2d(s), nn.GELU())
        self.step_drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(2 * s, config.hidden, num_layers=config.layers, batch_first=True,
                            bidirectional=config.bidirectional, dropout=config.dropout if config.layers > 1 else 0.0)
        out = config.hidden * (2 if config.bidirectional else 1)
        self.head = nn.Sequential(nn.LayerNorm(out), nn.Dropout(config.dropout), nn.Linear(out, num_classes))

    def step_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T', H', W') -> (B, T', 2 * stem_channels): one pooled feature vector per step."""
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T', C, H', W')
        maps = self.stem(frames)  # (B*T', S, H', W')
        pooled = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)  # (B*T', 2S)
        return pooled.reshape(b, t, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        outputs, _ = self.lstm(self.step_drop(self.step_features(x)))  # (B, T', hidden * directions)
        return self.head(outputs.mean(dim=1))  # (B, K)
