"""``conv3d_ours``: a wider residual 3D CNN on the latent grid, with strong regularisation.

Stem Conv3d(C -> stages[0], 3x3x3) + norm + ReLU, then one stage per entry of ``stages``, each
``blocks`` ResNet basic blocks (two 3x3x3 convs, norm, ReLU, identity or
1x1x1 projection shortcut, stochastic depth on the residual branch). Stages after the first
downsample each axis of length >= 4 by 2 (a 2 x 3 map is left alone, so the embedded default's
(4, 2, 3) grid works), then global average pooling, dropout and a linear head.

For (16, 4, 7, 9) with the defaults: stem (64, 4, 7, 9) -> stage 1 (64, 4, 7, 9) -> stage 2
(128, 2, 4, 5) -> stage 3 (256, 2, 2, 3) -> pool (256,) -> (K,).
The trunk (everything but the head) is :class:`ResidualConv3dTrunk`, reused by ``fusion_ours``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lib.models.layers import DropPath, VideoClassifier, check_fraction, check_positive, down_stride, halve, norm3d
from lib.models.registry import register


@dataclass(frozen=True)
class Conv3dOursConfig:
    """``stages``: channels per stage; ``blocks``: residual blocks per stage; ``norm``: "batch" or
    "group"; ``drop_path``: stochastic-depth rate of the last block (linear from 0);
    ``dropout``: before the linear head."""

    stages: tuple[int, ...] = (64, 128, 256)
    blocks: int = 1
    norm: Literal["batch", "group"] = "batch"
    drop_path: float = 0.1
    dropout: float = 0.3

    def __post_init__(self) -> None:
        check_positive(stages=self.stages, blocks=self.blocks)
        if self.norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {self.norm!r}")
        check_fraction("drop_path", self.drop_path)
        check_fraction("dropout", self.dropout)


class ResBlock3d(nn.Module):
    """ResNet basic block in 3D: (B, c_in, T, H, W) -> (B, c_out, T/s_t, H/s_h, W/s_w)."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int, int], norm: str, drop_path: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm3d(norm, c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = norm3d(norm, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if c_in != c_out or stride != (1, 1, 1):
            self.shortcut = nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False), norm3d(norm, c_out))
        self.drop_path = DropPath(drop_path)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(self.shortcut(x) + self.drop_path(y))


class ResidualConv3dTrunk(nn.Module):
    """(B, C, T', H', W') -> (B, stages[-1]) pooled features."""

    def __init__(self, input_shape: tuple[int, int, int, int], config: Conv3dOursConfig) -> None:
        super().__init__()
        c, *grid = input_shape
        self.stem = nn.Sequential(nn.Conv3d(c, config.stages[0], 3, padding=1, bias=False),
                                  norm3d(config.norm, config.stages[0]), nn.ReLU(inplace=True))
        total = len(config.stages) * config.blocks
        rates = [config.drop_path * i / max(1, total - 1) for i in range(total)]
        blocks: list[nn.Module] = []
        c_in = config.stages[0]
        for s, c_out in enumerate(config.stages):
            for b in range(config.blocks):
                stride = (1, 1, 1)
                if s > 0 and b == 0:
                    stride = tuple(down_stride(n) for n in grid)  # type: ignore[assignment]
                    grid = [halve(n) if st == 2 else n for n, st in zip(grid, stride)]
                blocks.append(ResBlock3d(c_in, c_out, stride, config.norm, rates[len(blocks)]))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.output_grid: tuple[int, ...] = tuple(grid)
        self.feature_size = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(self.stem(x))  # (B, stages[-1], t, h, w)
        return y.mean(dim=(2, 3, 4))  # global average pool -> (B, stages[-1])


@register("conv3d_ours", family="conv3d", input_kind="latent", config=Conv3dOursConfig,
          summary="ours: residual 3D CNN 64-128-256 (BN, stochastic depth), global pooling, dropout",
          recipe={"lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.1, "mixup_alpha": 0.2, "augment": "latent"})
class Conv3dOurs(VideoClassifier):
    """(B, C, T', H', W') latent -> (B, K) logits."""

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int, int],
                 config: Conv3dOursConfig = Conv3dOursConfig()) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        self.trunk = ResidualConv3dTrunk(input_shape, config)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.trunk.feature_size, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.head(self.trunk(x))  # (B, 256) -> (B, K)
