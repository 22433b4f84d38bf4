"""What a video VAE expects of a clip and what it returns: :class:`VaeGeometry` and the clip policy.

Every adapter of :mod:`lib.zoo.adapters` declares one geometry, derived from the model's config,
so a tiny test config and the released model of the same class follow the same rules:

* **frame rule** - ``"fixed"``: the clip's 16 frames as they are (Reducio: 16 -> 4 steps);
  ``"causal"``: ``n * k + 1`` frames for a temporal factor ``n`` (Wan, HunyuanVideo, CogVideoX:
  4k+1; LTX-Video, Cosmos: 8k+1), whose first latent step encodes the first frame alone;
  ``"per_frame"``: an image VAE run on every frame (``T' = T``).
* **clip policy for causal models** (:func:`causal_input`, :func:`drop_padding_steps`): the
  clip's first frame is repeated ``pad = n * ceil(T / n) + 1 - T`` times in front (16 frames ->
  one copy, 17 frames), the model encodes that, and the ``1 + (pad - 1) // n`` leading latent
  steps that cover only copies are dropped. A 16-frame clip thus gives ``16 / n`` steps, each
  encoding ``n`` consecutive frames of the clip, as Reducio's 4 steps do.
* **spatial multiple** - height and width must be multiples of it (the spatial factor; 32 for
  LTX-Video, whose 4x4 patchify precedes three 2x downsamplings).
* **value range** - every adapter here takes RGB in ``[-1, 1]``, the data layer's range.
* **latent normalisation** - what the model's own generative pipeline applies after encoding
  (``(z - mean) / std`` per channel for Wan and Cosmos, ``z * scaling_factor`` for HunyuanVideo
  and CogVideoX, ``(z - mean) * scaling_factor / std`` for LTX-Video, ``(z - shift) * scale`` for
  an image ``AutoencoderKL``), written as ``normalisation`` in the geometry table. Cosmos'
  pipelines multiply by the scheduler's ``sigma_data`` on top; that constant belongs to the
  diffusion schedule, not to the VAE, and is not applied.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

FrameRule = Literal["fixed", "causal", "per_frame"]
FRAME_RULES: tuple[str, ...] = ("fixed", "causal", "per_frame")


@dataclass(frozen=True)
class VaeGeometry:
    """Input and latent geometry of one video VAE (see the module docstring)."""

    frame_rule: FrameRule
    temporal_factor: int  # input frames per latent step (1 for per-frame image VAEs)
    spatial_factor: int  # input pixels per latent cell along H and W
    channels: int  # latent channels
    spatial_multiple: int  # H and W must be multiples of it
    value_range: tuple[float, float] = (-1.0, 1.0)
    normalisation: str = "none"  # how the cached latent is scaled (module docstring)
    posterior: str = "mode"  # "mode" of a diagonal Gaussian, or "identity" for a deterministic encoder

    def __post_init__(self) -> None:
        if self.frame_rule not in FRAME_RULES:
            raise ValueError(f"frame_rule must be one of {FRAME_RULES}, got {self.frame_rule!r}")
        if min(self.temporal_factor, self.spatial_factor, self.channels, self.spatial_multiple) < 1:
            raise ValueError(f"factors, channels and the spatial multiple must be >= 1: {self}")

    def check_clip(self, num_frames: int, height: int, width: int) -> None:
        """ValueError naming the rule a ``num_frames`` x ``height`` x ``width`` clip breaks."""
        if self.frame_rule in ("fixed", "causal") and num_frames % self.temporal_factor:
            raise ValueError(f"{num_frames} frames per clip: this VAE needs a multiple of {self.temporal_factor} "
                             f"({self.frame_rule} frame rule)")
        if height % self.spatial_multiple or width % self.spatial_multiple:
            raise ValueError(f"{height}x{width} frames: this VAE needs height and width multiples of "
                             f"{self.spatial_multiple}; choose a crop such as 224x288")

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, T', H', W')`` the cache stores for one clip of this size."""
        self.check_clip(num_frames, height, width)
        steps = num_frames if self.frame_rule == "per_frame" else num_frames // self.temporal_factor
        return (self.channels, steps, height // self.spatial_factor, width // self.spatial_factor)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["value_range"] = list(self.value_range)
        return out


def causal_padding(num_frames: int, temporal_factor: int) -> int:
    """Copies of the first frame that make a ``num_frames`` clip ``n * k + 1`` frames long."""
    return temporal_factor * math.ceil(num_frames / temporal_factor) + 1 - num_frames


def causal_input(clips: torch.Tensor, temporal_factor: int) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, 3, T + pad, H, W): the first frame repeated ``pad`` times in front."""
    pad = causal_padding(clips.shape[2], temporal_factor)
    return torch.cat([clips[:, :, :1].expand(-1, -1, pad, -1, -1), clips], dim=2)


def drop_padding_steps(latent: torch.Tensor, num_frames: int, temporal_factor: int) -> torch.Tensor:
    """The latent steps of a causal encoding that cover real frames: (B, C, T'', h, w) -> (B, C, T / n, h, w)."""
    pad = causal_padding(num_frames, temporal_factor)
    drop = 1 + (pad - 1) // temporal_factor
    kept = latent[:, :, drop:]
    if kept.shape[2] != num_frames // temporal_factor:
        raise ValueError(f"a causal encoding of {num_frames} + {pad} frames gave {latent.shape[2]} latent steps, "
                         f"expected {drop + num_frames // temporal_factor}")
    return kept
