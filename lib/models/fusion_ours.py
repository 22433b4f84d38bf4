"""``fusion_ours``: motion latent + content-frame appearance features, late fusion.

The latent cache stores, next to each clip's motion latent (B, C, T', H', W'), a pooled
feature vector of the clip's content frame (B, D) (the VAE's 2D content encoder, which the
Reducio decoder attends to). UCF101 classes are partly recognisable from appearance alone
(scene, objects), which the motion latent compresses away; this model adds it back.

Two streams: the ``conv3d_ours`` residual 3D trunk on the latent -> (B, 256), and an MLP on the
content vector (LayerNorm -> Linear(D, content_hidden) -> GELU -> Dropout) -> (B, content_hidden).
They are concatenated and classified by Linear -> GELU -> Dropout -> Linear. During training,
the whole content vector of a sample is zeroed with probability ``content_dropout`` (modality
dropout), so the motion stream cannot lean on appearance alone.

For a (16, 4, 7, 9) latent and D = 512: motion (256,) + content (256,) -> (512,) -> (256,) -> (K,).
``content_dim`` must equal the cache's content feature size (pass it as an override).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import nn

from lib.models.conv3d_ours import Conv3dOursConfig, ResidualConv3dTrunk
from lib.models.layers import VideoClassifier, check_fraction, check_positive
from lib.models.registry import register


@dataclass(frozen=True)
class FusionOursConfig:
    """``content_dim``: D of the content vector; ``content_hidden``: its MLP width;
    ``content_dropout``: per-sample probability of zeroing the content input in training;
    ``fusion_hidden``: width of the fused MLP; ``stages``/``blocks``/``norm``/``drop_path``: the
    motion trunk (as in ``conv3d_ours``); ``dropout``: in both MLPs."""

    content_dim: int = 512
    content_hidden: int = 256
    content_dropout: float = 0.1
    fusion_hidden: int = 256
    stages: tuple[int, ...] = (64, 128, 256)
    blocks: int = 1
    norm: Literal["batch", "group"] = "batch"
    drop_path: float = 0.1
    dropout: float = 0.3

    def __post_init__(self) -> None:
        check_positive(
            content_dim=self.content_dim, content_hidden=self.content_hidden, fusion_hidden=self.fusion_hidden
        )
        check_fraction("content_dropout", self.content_dropout, upper_inclusive=True)
        self.motion_config()  # validates the trunk fields

    def motion_config(self) -> Conv3dOursConfig:
        """The trunk's settings as a ``conv3d_ours`` config."""
        shared = {f.name for f in fields(Conv3dOursConfig)}
        return Conv3dOursConfig(**{k: getattr(self, k) for k in shared})


@register(
    "fusion_ours",
    family="fusion",
    input_kind="latent+content",
    config=FusionOursConfig,
    summary="ours: conv3d_ours motion trunk + MLP on the cached content-frame features, late fusion, modality dropout",
    recipe={"lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.1, "mixup_alpha": 0.2, "augment": "latent"},
)
class FusionOurs(VideoClassifier):
    """forward(latent (B, C, T', H', W'), content (B, D)) -> (B, K) logits."""

    def __init__(
        self, *, num_classes: int, input_shape: tuple[int, int, int, int], config: FusionOursConfig = FusionOursConfig()
    ) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, config=config)
        self.motion = ResidualConv3dTrunk(input_shape, config.motion_config())
        self.content = nn.Sequential(
            nn.LayerNorm(config.content_dim),
            nn.Linear(config.content_dim, config.content_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
        )
        fused = self.motion.feature_size + config.content_hidden
        self.head = nn.Sequential(
            nn.Linear(fused, config.fusion_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.fusion_hidden, num_classes),
        )

    @property
    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        return (self.input_shape, (self.config.content_dim,))

    def forward(self, latent: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        self.check_input(latent, what="latent")
        self.check_input(
            content,
            (self.config.content_dim,),
            what="content",
            fix="build the model with content_dim equal to the cache's content feature size",
        )
        if self.training and self.config.content_dropout > 0:
            keep = torch.rand(content.shape[0], 1, device=content.device) >= self.config.content_dropout
            content = content * keep.to(content.dtype)  # (B, D), whole vectors zeroed
        fused = torch.cat([self.motion(latent), self.content(content)], dim=1)  # (B, 256 + content_hidden)
        return self.head(fused)  # (B, K)
