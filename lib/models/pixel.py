"""Pixel-space references, trained from scratch on the same clips' frames (no VAE).

Input: raw decoded clips (B, 3, T, H, W) float32 RGB in [-1, 1] (``SpatialPolicy.apply_to_frames``).

- ``pixel_r2plus1d18``: torchvision's R(2+1)D-18 (``r2plus1d_18(weights=None)``: random init, no
  Kinetics weights) with its 512 -> 400 head replaced by dropout + Linear(512, K). The UCF101
  reference at 16 x 112 x 112: 81.0 GFLOPs per clip forward (40.5 G multiply-adds, the "40.52
  GFLOPS" torchvision lists), 31.35 M parameters (K = 101).
- ``pixel_c3d_small``: a small 3D CNN the 2-core CPU can train in minutes on the embedded
  default's ~4-5k clips of 3 x 16 x 64 x 96: the frames and their temporal differences (6
  channels, see :class:`C3DSmallConfig` for why), four Conv3d + BatchNorm + ReLU stages
  (16-32-64-128 channels) with early striding, global average pooling, dropout, linear head.
  For (3, 16, 64, 96): stem k(3,7,7) s(2,4,4) -> (16, 8, 16, 24) -> s(1,2,2) (32, 8, 8, 12)
  -> s2 (64, 4, 4, 6) -> s2 (128, 2, 2, 3) -> pool (128,) -> (K,); 0.124 GFLOPs per clip
  forward (``lib.models.cost.forward_flops``; 0.256 at 16 x 112 x 112), 0.31 M parameters (K = 10).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.video import r2plus1d_18

from lib.models.layers import VideoClassifier, check_fraction, check_positive
from lib.models.registry import register


@dataclass(frozen=True)
class R2Plus1D18Config:
    """``dropout``: before the new linear head (torchvision's model has none; 0 keeps it so)."""

    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_fraction("dropout", self.dropout)


@register("pixel_r2plus1d18", family="pixel", input_kind="pixels", config=R2Plus1D18Config, origin="reference",
          summary="reference: torchvision R(2+1)D-18 from scratch on frames (UCF101: 3x16x112x112)",
          recipe={"lr": 1e-3, "weight_decay": 1e-4, "label_smoothing": 0.1, "augment": None})
class PixelR2Plus1D18(VideoClassifier):
    """(B, 3, T, H, W) frames in [-1, 1] -> (B, K) logits."""

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int, int],
                 config: R2Plus1D18Config = R2Plus1D18Config()) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        self.net = r2plus1d_18(weights=None)
        self.net.fc = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.net.fc.in_features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x, fix="build the model with input_shape equal to the decoded clip shape (3, T, H, W)")
        return self.net(x)  # stem (45 -> 64) ... layer4 (512) -> avg pool -> fc -> (B, K)


@dataclass(frozen=True)
class C3DSmallConfig:
    """``channels``: the four stage widths; ``dropout``: before the linear head;
    ``frame_diff``: also feed the temporal differences of the frames, x ``frame_diff_scale``
    (the "RGB difference" input of TSN, Wang et al. 2016). Why: on the embedded default the
    classes are motions over per-group textures; the frame-to-frame change is ~6 % of the pixel
    variance (per-clip temporal std 2.7 vs spatial 44 grey levels), and the RGB-only model stayed
    at chance (train loss ln 10 after 4-8 epochs at lr 1e-3 and 2e-3)."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.3
    frame_diff: bool = True
    frame_diff_scale: float = 8.0

    def __post_init__(self) -> None:
        if len(self.channels) != 4:
            raise ValueError(f"channels must list the 4 stage widths, got {self.channels!r}")
        check_positive(channels=self.channels)
        check_fraction("dropout", self.dropout)


def conv_bn_relu(c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
                         nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


@register("pixel_c3d_small", family="pixel", input_kind="pixels", config=C3DSmallConfig, origin="reference",
          summary="reference: 4-stage 3D CNN (16-32-64-128, early striding), CPU-trainable on 3x16x64x96 frames",
          recipe={"lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.1, "augment": None})
class PixelC3DSmall(VideoClassifier):
    """(B, 3, T, H, W) frames in [-1, 1] -> (B, K) logits."""

    def __init__(self, *, num_classes: int, input_shape: tuple[int, int, int, int],
                 config: C3DSmallConfig = C3DSmallConfig()) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        c1, c2, c3, c4 = config.channels
        stem = dict(kernel_size=(3, 7, 7), stride=(2, 4, 4), padding=(1, 3, 3), bias=False)
        # The frames and their differences get a 3-channel conv each, summed: the same function
        # as one conv over 6 stacked channels, but 3-channel convs take oneDNN's fast path
        # (measured: 4x faster per training step here) and nothing is concatenated.
        self.stem = nn.Conv3d(3, c1, **stem)  # (c1, T/2, H/4, W/4): cheap early downsampling
        self.stem_diff = nn.Conv3d(3, c1, **stem) if config.frame_diff else None
        self.stem_norm = nn.Sequential(nn.BatchNorm3d(c1), nn.ReLU(inplace=True))
        self.features = nn.Sequential(
            conv_bn_relu(c1, c2, (3, 3, 3), (1, 2, 2)),  # (c2, T/2, H/8, W/8)
            conv_bn_relu(c2, c3, (3, 3, 3), (2, 2, 2)),  # (c3, T/4, H/16, W/16)
            conv_bn_relu(c3, c4, (3, 3, 3), (2, 2, 2)),  # (c4, T/8, H/32, W/32)
        )
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(c4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x, fix="build the model with input_shape equal to the decoded clip shape (3, T, H, W)")
        h = self.stem(x)
        if self.stem_diff is not None:  # scaled temporal differences, the first frame's = 0
            diff = torch.zeros_like(x)
            torch.sub(x[:, :, 1:], x[:, :, :-1], out=diff[:, :, 1:])
            h = h + self.stem_diff(diff.mul_(self.config.frame_diff_scale))
        h = self.stem_norm(h)
        return self.head(self.features(h).mean(dim=(2, 3, 4)))  # global average pool (B, c4) -> (B, K)
