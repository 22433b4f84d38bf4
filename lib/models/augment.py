"""Latent-space augmentation for training classifiers on cached latents (B, C, T', H', W').

Cached latents are computed once, so the usual pixel augmentations are gone; these act on the
latent itself, per sample, and are cheap enough to run on every batch on the training device:

- :func:`flip_w`: mirror along W' with probability p. Off by default: the embedded synthetic
  dataset has direction classes (MoveLeft/MoveRight, RotateClockwise/CounterClockwise) that a
  mirror maps onto each other; for UCF101 (whose classes are mirror-invariant) use the
  ``"latent_flip"`` preset. The VAE is not exactly mirror-equivariant, so a mirrored latent is an
  approximation of the mirrored clip's latent.
- :func:`time_shift`: shift along T' by up to ``max_shift`` steps (edge step repeated).
- :func:`gaussian_noise`: add N(0, (std * s)^2) where s is each clip's own standard deviation,
  so the strength does not depend on the latent's scale (layer-normed or not).
- :func:`channel_dropout`: replace whole channels of a clip, with probability p each, by that
  channel's mean over (T', H', W') (its DC value survives, its pattern is gone).

Every function takes an optional ``torch.Generator`` for reproducibility; a generator on another
device than the tensor (e.g. the engine's CPU generator with CUDA batches) seeds a generator on
the tensor's device, so results are deterministic for a given generator state either way.
:class:`LatentAugment` chains them and is the identity in eval mode; :func:`get_augment` maps a
preset name to an ``(x, generator) -> x`` callable (the engine's ``TrainConfig.augment``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lib.errors import ActionableError


def _generator_on(device: torch.device, generator: torch.Generator | None) -> torch.Generator | None:
    """``generator`` if it lives on ``device``, else a new one there seeded from it (or None)."""
    if generator is None or generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return torch.Generator(device=device).manual_seed(seed)


def _sample_mask(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """(B,) bool, True with probability p per sample."""
    return torch.rand(x.shape[0], device=x.device, generator=generator) < p


def flip_w(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, C, T, H, W) -> same, each sample mirrored along W with probability ``p``."""
    if p <= 0:
        return x
    g = _generator_on(x.device, generator)
    flip = _sample_mask(x, p, g).view(-1, 1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def time_shift(
    x: torch.Tensor, max_shift: int, p: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, C, T, H, W) -> same, each sample (with probability ``p``) shifted along T by a uniform
    integer in [-max_shift, max_shift]; steps shifted in repeat the edge step."""
    t = x.shape[2]
    if max_shift <= 0 or p <= 0 or t < 2:
        return x
    g = _generator_on(x.device, generator)
    shift = torch.randint(-max_shift, max_shift + 1, (x.shape[0],), device=x.device, generator=g)
    shift = torch.where(_sample_mask(x, p, g), shift, torch.zeros_like(shift))
    index = (torch.arange(t, device=x.device).view(1, t) - shift.view(-1, 1)).clamp(0, t - 1)  # (B, T)
    index = index.view(-1, 1, t, 1, 1).expand(-1, x.shape[1], -1, x.shape[3], x.shape[4])
    return torch.gather(x, 2, index)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + N(0, (std * per-clip std)^2), elementwise."""
    if std <= 0:
        return x
    g = _generator_on(x.device, generator)
    scale = x.flatten(1).std(dim=1).view(-1, 1, 1, 1, 1) * std
    return x + torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=g) * scale


def channel_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each (sample, channel) with probability ``p`` replaced by its mean over (T, H, W)."""
    if p <= 0:
        return x
    g = _generator_on(x.device, generator)
    drop = torch.rand(x.shape[0], x.shape[1], 1, 1, 1, device=x.device, generator=g) < p  # (B, C, 1, 1, 1)
    return torch.where(drop, x.mean(dim=(2, 3, 4), keepdim=True).expand_as(x), x)


@dataclass(frozen=True)
class LatentAugmentConfig:
    """Strengths of each augmentation (0 = off); applied in the order of the fields."""

    flip_w_p: float = 0.0
    time_shift_max: int = 1
    time_shift_p: float = 0.5
    noise_std: float = 0.1
    channel_drop_p: float = 0.1


AUGMENT_PRESETS: dict[str, LatentAugmentConfig] = {
    # direction-sensitive classes (the embedded synthetic set): no mirror
    "latent": LatentAugmentConfig(),
    # mirror-invariant classes (UCF101): add mirroring
    "latent_flip": LatentAugmentConfig(flip_w_p=0.5),
    # mild: noise only
    "latent_light": LatentAugmentConfig(time_shift_max=0, channel_drop_p=0.0, noise_std=0.05),
}


class LatentAugment(nn.Module):
    """Applies the configured augmentations in training mode; identity in eval mode.

    ``forward(x, generator=None)``: x (B, C, T', H', W') float -> same shape and dtype.
    """

    def __init__(self, config: LatentAugmentConfig = LatentAugmentConfig()) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training:
            return x
        if x.ndim != 5:
            raise ValueError(f"LatentAugment expects latents (B, C, T, H, W), got shape {tuple(x.shape)}")
        c = self.config
        x = flip_w(x, c.flip_w_p, generator)
        x = time_shift(x, c.time_shift_max, c.time_shift_p, generator)
        x = gaussian_noise(x, c.noise_std, generator)
        return channel_dropout(x, c.channel_drop_p, generator)


def get_augment(name: str) -> LatentAugment:
    """The preset ``name`` (see :data:`AUGMENT_PRESETS`) as a training-mode :class:`LatentAugment`,
    callable as ``augment(x, generator)``; an unknown name lists the presets."""
    if name not in AUGMENT_PRESETS:
        raise ActionableError(
            None, f"unknown latent augmentation preset {name!r}", f"use one of {sorted(AUGMENT_PRESETS)} (or none)"
        )
    return LatentAugment(AUGMENT_PRESETS[name]).train()
