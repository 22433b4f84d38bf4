"""``conv3d_paper``: the published 3D-conv classifier on Reducio latents (72.47 % on UCF101).

Published structure: a 3D-conv block (Conv3d + BatchNorm + ReLU + max-pool) that reduces the
latent grid (T', H', W') to 1 x 1 x 1 with 128 channels, then an MLP classifier with residual
connections and dropout 0.5; trained with cross-entropy on the raw logits (no softmax layer: the
model returns logits and ``nn.CrossEntropyLoss`` applies log-softmax itself).

Our reading: ``channels`` = (64, 128) conv stages, each Conv3d(3x3x3, padding 1) + BatchNorm3d +
ReLU + max-pool. Every stage but the last max-pools by 2 per axis (ceil, and never below 1: an
axis of length 1 is not pooled, so the embedded default's (4, 2, 3) grid works); the last
stage's max-pool is global (adaptive to 1 x 1 x 1), so any grid reduces to (128, 1, 1, 1).
For (16, 4, 7, 9): (64, 4, 7, 9) -> pool (64, 2, 4, 5) -> (128, 2, 4, 5) -> pool (128, 1, 1, 1).
MLP: ``mlp_blocks`` residual blocks h + Dropout(ReLU(Linear(h))) at width 128, then Linear(128, K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lib.models.layers import ResidualMLPBlock, VideoClassifier, check_fraction, check_positive
from lib.models.registry import register


@dataclass(frozen=True)
class Conv3dPaperConfig:
    """``channels``: output channels of each conv stage (the last is the feature size, 128 as
    published); ``kernel``: conv kernel (odd); ``mlp_blocks``: residual MLP blocks; ``dropout``."""

    channels: tuple[int, ...] = (64, 128)
    kernel: int = 3
    mlp_blocks: int = 2
    dropout: float = 0.5

    def __post_init__(self) -> None:
        check_positive(channels=self.channels, kernel=self.kernel)
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (same-size padding), got {self.kernel}")
        if self.mlp_blocks < 0:
            raise ValueError(f"mlp_blocks must be >= 0, got {self.mlp_blocks}")
        check_fraction("dropout", self.dropout)


def conv_stage(c_in: int, c_out: int, kernel: int, pool: nn.Module) -> nn.Sequential:
    """Conv3d + BatchNorm3d + ReLU + the given max-pool: the published block."""
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, padding=kernel // 2),
                         nn.BatchNorm3d(c_out), nn.ReLU(inplace=True), pool)


@register("conv3d_paper", family="conv3d", input_kind="latent", config=Conv3dPaperConfig, origin="paper",
          summary="published: Conv3d+BN+ReLU+max-pool stages down to (128,1,1,1), residual MLP with dropout 0.5",
          recipe={"lr": 1e-3, "weight_decay": 0.0, "label_smoothing": 0.0, "augment": None})
class Conv3dPaper(VideoClassifier):
    """(B, C, T', H', W') latent -> (B, K) logits: conv stages to a 128-vector, residual MLP head."""

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int, int],
                 config: Conv3dPaperConfig = Conv3dPaperConfig()) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        c_in, t, h, w = input_shape
        grid = [t, h, w]
        stages = []
        for i, c_out in enumerate(config.channels):
            if i == len(config.channels) - 1:
                pool: nn.Module = nn.AdaptiveMaxPool3d(1)  # global: (c, t, h, w) -> (c, 1, 1, 1)
            else:
                kernel = tuple(min(2, s) for s in grid)  # never pool an axis of length 1
                pool = nn.MaxPool3d(kernel, stride=kernel, ceil_mode=True)
                grid = [math.ceil(s / k) for s, k in zip(grid, kernel)]
            stages.append(conv_stage(c_in, c_out, config.kernel, pool))
            c_in = c_out
        self.features = nn.Sequential(*stages)
        self.feature_size = c_in  # 128
        self.mlp = nn.Sequential(*(ResidualMLPBlock(c_in, config.dropout) for _ in range(config.mlp_blocks)))
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        v = self.features(x)  # (B, 128, 1, 1, 1)
        return self.head(self.mlp(v.flatten(1)))  # (B, 128) -> (B, K) raw logits
