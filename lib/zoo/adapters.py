"""The video VAEs of the zoo: one :class:`Adapter` per diffusers autoencoder class.

An adapter knows, for its diffusers class, the released checkpoint researchers use (hub repo and
subfolder) and its config (the class defaults, but for the image VAE), how to read the geometry
(:class:`lib.zoo.geometry.VaeGeometry`) off a model instance, how its pipelines normalise latents,
and a tiny config of the same structure (every down block kept, so the factors and channels equal
the released model's; narrow widths and one layer per block, so a random-init instance runs on a
CPU in milliseconds) for tests and the embedded zoo study. ``ADAPTERS`` maps short names;
:func:`adapter_for_class` maps the ``_class_name`` of a diffusers ``config.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from lib.zoo.geometry import VaeGeometry


@dataclass(frozen=True)
class Adapter:
    """How the toolkit drives one diffusers autoencoder class (module docstring)."""

    name: str
    class_name: str  # the diffusers class, e.g. "AutoencoderKLWan"
    repo: str  # the released checkpoint used on UCF101
    subfolder: str  # where its VAE lives in that repo ("" = the repo root)
    summary: str
    geometry_of: Callable[[Any], VaeGeometry]
    normalise: Callable[[torch.Tensor, Any], torch.Tensor]
    tiny: Mapping[str, Any] = field(default_factory=dict)  # narrow widths, every block kept
    full: Mapping[str, Any] = field(default_factory=dict)  # the released config, where the class defaults differ

    def geometry(self, model: Any) -> VaeGeometry:
        return self.geometry_of(model)


def _channel_view(values: Any, z: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device=z.device).view(1, -1, 1, 1, 1)


def _downsampling(n_blocks: int) -> int:
    """Spatial factor of ``n_blocks`` encoder blocks that halve the resolution between them."""
    return 2 ** (n_blocks - 1)


# --- geometry and normalisation per class ------------------------------------------------------------
def _wan_geometry(m: Any) -> VaeGeometry:
    c = m.config
    spatial = c.scale_factor_spatial or _downsampling(len(c.dim_mult)) * (c.patch_size or 1)
    temporal = c.scale_factor_temporal or 2 ** sum(bool(v) for v in c.temperal_downsample)
    return VaeGeometry("causal", temporal, spatial, c.z_dim, spatial, normalisation="(z - latents_mean) / latents_std")


def _wan_normalise(z: torch.Tensor, m: Any) -> torch.Tensor:
    return (z - _channel_view(m.config.latents_mean, z)) / _channel_view(m.config.latents_std, z)


def _hunyuan_geometry(m: Any) -> VaeGeometry:
    c = m.config
    return VaeGeometry("causal", c.temporal_compression_ratio, c.spatial_compression_ratio, c.latent_channels,
                       c.spatial_compression_ratio, normalisation="z * scaling_factor")


def _scaled(z: torch.Tensor, m: Any) -> torch.Tensor:
    shift = getattr(m.config, "shift_factor", None) or 0.0
    return (z - shift) * m.config.scaling_factor


def _ltx_geometry(m: Any) -> VaeGeometry:
    return VaeGeometry("causal", m.temporal_compression_ratio, m.spatial_compression_ratio, m.config.latent_channels,
                       m.spatial_compression_ratio, normalisation="(z - latents_mean) * scaling_factor / latents_std")


def _ltx_normalise(z: torch.Tensor, m: Any) -> torch.Tensor:
    mean, std = m.latents_mean.to(z), m.latents_std.to(z)  # buffers of the checkpoint
    return (z - mean.view(1, -1, 1, 1, 1)) * m.config.scaling_factor / std.view(1, -1, 1, 1, 1)


def _cogvideox_geometry(m: Any) -> VaeGeometry:
    c = m.config
    spatial = _downsampling(len(c.block_out_channels))
    return VaeGeometry("causal", int(c.temporal_compression_ratio), spatial, c.latent_channels, spatial,
                       normalisation="z * scaling_factor")


def _cosmos_geometry(m: Any) -> VaeGeometry:
    c = m.config
    norm = "(z - latents_mean) / latents_std per channel and step" if c.latents_mean is not None else "none"
    return VaeGeometry("causal", c.temporal_compression_ratio, c.spatial_compression_ratio, c.latent_channels,
                       c.spatial_compression_ratio, normalisation=norm, posterior="identity")


def _cosmos_normalise(z: torch.Tensor, m: Any) -> torch.Tensor:
    c = m.config
    if c.latents_mean is None:
        return z
    # (C, steps) statistics; the stored steps start at the causal first step, which the policy drops
    mean = torch.as_tensor(c.latents_mean, dtype=torch.float32, device=z.device).view(1, c.latent_channels, -1, 1, 1)
    std = torch.as_tensor(c.latents_std, dtype=torch.float32, device=z.device).view(1, c.latent_channels, -1, 1, 1)
    steps = z.shape[2]
    if mean.shape[2] < steps:
        raise ValueError(f"Cosmos latents_mean covers {mean.shape[2]} latent steps, the clip has {steps}")
    return (z - mean[:, :, :steps]) / std[:, :, :steps]


def _image_geometry(m: Any) -> VaeGeometry:
    c = m.config
    spatial = _downsampling(len(c.block_out_channels))
    norm = "(z - shift_factor) * scaling_factor" if getattr(c, "shift_factor", None) else "z * scaling_factor"
    return VaeGeometry("per_frame", 1, spatial, c.latent_channels, spatial, normalisation=norm)


ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter("wan2.1", "AutoencoderKLWan", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "vae",
                "Wan 2.1 causal 3D VAE, 4x8x8, 16 channels", _wan_geometry, _wan_normalise,
                tiny={"base_dim": 8, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1}),
        Adapter("hunyuanvideo", "AutoencoderKLHunyuanVideo", "hunyuanvideo-community/HunyuanVideo", "vae",
                "HunyuanVideo causal 3D VAE, 4x8x8, 16 channels", _hunyuan_geometry, _scaled,
                tiny={"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4}),
        Adapter("ltx-video", "AutoencoderKLLTXVideo", "Lightricks/LTX-Video", "vae",
                "LTX-Video causal VAE, 8x32x32, 128 channels", _ltx_geometry, _ltx_normalise,
                tiny={"block_out_channels": [8, 16, 32, 32], "decoder_block_out_channels": [8, 16, 32, 32],
                      "layers_per_block": [1, 1, 1, 1, 1], "decoder_layers_per_block": [1, 1, 1, 1, 1]}),
        Adapter("cogvideox", "AutoencoderKLCogVideoX", "THUDM/CogVideoX-2b", "vae",
                "CogVideoX causal 3D VAE, 4x8x8, 16 channels", _cogvideox_geometry, _scaled,
                tiny={"block_out_channels": [8, 16, 16, 32], "layers_per_block": 1, "norm_num_groups": 4}),
        Adapter("cosmos", "AutoencoderKLCosmos", "nvidia/Cosmos-1.0-Diffusion-7B-Video2World", "vae",
                "Cosmos continuous tokenizer CV8x8x8, 16 channels", _cosmos_geometry, _cosmos_normalise,
                tiny={"encoder_block_out_channels": [8, 16, 32, 32], "decode_block_out_channels": [16, 32, 32, 32],
                      "num_layers": 1}),
        Adapter("sd-vae", "AutoencoderKL", "stabilityai/sd-vae-ft-mse", "",
                "Stable Diffusion image VAE per frame, 1x8x8, 4 channels", _image_geometry, _scaled,
                tiny={"block_out_channels": [8, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 4,
                      "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4},
                full={"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "sample_size": 256,
                      "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}),
    )
}


def adapter_for_class(class_name: str, *, origin: str = "") -> Adapter:
    """The adapter of a diffusers ``_class_name``; ValueError listing the supported classes."""
    for adapter in ADAPTERS.values():
        if adapter.class_name == class_name:
            return adapter
    known = ", ".join(sorted(a.class_name for a in ADAPTERS.values()))
    where = f"{origin}: " if origin else ""
    raise ValueError(f"{where}diffusers class {class_name!r} has no adapter; supported: {known}")


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name`` (a key of :data:`ADAPTERS`); ValueError listing them."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown zoo VAE {name!r}; known: {', '.join(ADAPTERS)}")
    return ADAPTERS[name]
