"""Reducio-VAE: 3D encoder + diagonal Gaussian posterior + content-frame-conditioned decoder.

Official call sequence (training, validation and the latent-extraction script alike)::

    x (B, 3, 16, H, W) in [-1, 1]
    posterior = DiagonalGaussian(quant_conv(encoder_3d(x)))          # 16 channels, T/4, H/32, W/32
    z = layer_norm(posterior.sample(), over (C, T, H, W), no affine)   # per-sample latent norm
    features = encoder_2d(x[:, :, (T - 1) // 2])[2:5]                  # content frame, 3 maps
    x_rec = decoder(post_quant_conv(z), features)

There is no constant latent scale factor: the per-sample layer norm plays that role.
``parts="encoder"`` builds only ``encoder_3d`` + ``quant_conv`` (what latent extraction and
classification need: ~142 M of the 437 M parameters of the released model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lib.vae.attention import FusionBlock
from lib.vae.config import ReducioConfig
from lib.vae.decoder import FusionDecoder
from lib.vae.encoder import ContentEncoder, VideoEncoder
from lib.vae.layers import conv_nd
from lib.vae.presets import get_preset

Parts = Literal["all", "encoder"]
LATENT_NORM_EPS = 1e-5
LOGVAR_RANGE = (-30.0, 20.0)


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) from moments (B, 2C, ...): mean = first C channels.

    logvar is clamped to [-30, 20]. Half-precision moments (autocast) are promoted to float32
    so exp() and the KL stay accurate.
    """

    def __init__(self, moments: torch.Tensor) -> None:
        if moments.dtype in (torch.float16, torch.bfloat16):
            moments = moments.float()
        self.moments = moments
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(*LOGVAR_RANGE)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * eps. The noise is drawn on the generator's device (then moved), so a seeded
        CPU generator gives the same draw whatever device the latents live on."""
        device = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, summed over all latent dimensions: shape (B,)."""
        terms = self.mean.pow(2) + self.var - 1.0 - self.logvar
        return 0.5 * terms.flatten(1).sum(dim=1)


def _to_weight_dtype(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """Cast an input to the dtype of the weights it meets first, so a model converted with
    ``.to(torch.bfloat16)`` accepts float32 clips and latents. Under autocast the weights stay
    float32, so this is a no-op there and autocast picks the compute dtype."""
    return x.to(conv.weight.dtype) if x.is_floating_point() else x


def normalize_latent(z: torch.Tensor) -> torch.Tensor:
    """Per-sample layer norm over (C, T, H, W), no affine, eps 1e-5, computed in float32."""
    return F.layer_norm(z.float(), z.shape[1:], eps=LATENT_NORM_EPS).to(z.dtype)


class ReducioVAE(nn.Module):
    """Clean-room Reducio-VAE with the official module names (state dicts load unchanged).

    Inputs are (B, 3, T, H, W) clips in [-1, 1]; the decoder is defined for T = temp_res (16).
    """

    def __init__(self, config: ReducioConfig, *, parts: Parts = "all") -> None:
        super().__init__()
        if parts not in ("all", "encoder"):
            raise ValueError(f"parts must be 'all' or 'encoder', got {parts!r}")
        self.config = config
        self.parts: Parts = parts
        dd = config.ddconfig
        self.encoder_3d = VideoEncoder(config)
        if parts == "all":
            self.encoder_2d = ContentEncoder(config.ddconfig_2d)
            self.decoder = FusionDecoder(config)
        self.quant_conv = conv_nd(3, 2 * dd.z_channels, 2 * config.embed_dim, 1)
        if parts == "all":
            self.post_quant_conv = conv_nd(3, config.embed_dim, dd.z_channels, 1)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, params: Mapping[str, Any] | ReducioConfig, *, parts: Parts = "all",
                    device: torch.device | str | None = None) -> ReducioVAE:
        """Build from the official ``model.params`` dict (or a :class:`ReducioConfig`).

        ``device="meta"`` builds without allocating memory (shapes and key names only).
        """
        config = params if isinstance(params, ReducioConfig) else ReducioConfig.from_params(params)
        if device is None:
            return cls(config, parts=parts)
        with torch.device(device):
            return cls(config, parts=parts)

    @classmethod
    def from_preset(cls, name: str, *, parts: Parts = "all", device: torch.device | str | None = None) -> ReducioVAE:
        """Build a named preset (random init), e.g. ``"reducio-ft4"`` or ``"local-default"``."""
        return cls.from_config(get_preset(name), parts=parts, device=device)

    def reset_fixed_tables(self) -> None:
        """Refill the frozen sinusoid tables (needed after ``to_empty()`` of a meta-built model)."""
        for module in self.modules():
            if isinstance(module, FusionBlock):
                module.reset_pos_embed()

    @property
    def has_decoder(self) -> bool:
        return self.parts == "all"

    def _require_decoder(self, what: str) -> None:
        if not self.has_decoder:
            raise RuntimeError(
                f"{what} needs the decoder side, but this ReducioVAE was built with parts='encoder' "
                "(encoder_3d + quant_conv only); rebuild it with parts='all'"
            )

    # ---- shapes -------------------------------------------------------------------------------
    def latent_shape(self, t: int, h: int, w: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the latent of a (3, t, h, w) clip (floor division at every level)."""
        return self.config.latent_shape(t, h, w)

    # ---- encoder side -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """(B, 3, T, H, W) in [-1, 1] -> posterior over (B, 16, T/4, H/32, W/32)."""
        if x.ndim != 5 or x.shape[1] != self.config.ddconfig.in_channels:
            raise ValueError(
                f"expected a clip batch (B, {self.config.ddconfig.in_channels}, T, H, W), got {tuple(x.shape)}"
            )
        x = _to_weight_dtype(x, self.encoder_3d.conv_in)
        return DiagonalGaussian(self.quant_conv(self.encoder_3d(x)))

    @staticmethod
    def normalize_latent(z: torch.Tensor) -> torch.Tensor:
        """The official per-sample latent layer norm (what decode() expects and the DiT is fed)."""
        return normalize_latent(z)

    @torch.inference_mode()
    def encode_latents(self, x: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None,
                       layer_norm: bool = False) -> torch.Tensor:
        """Latents for feature extraction: posterior mean (or a seeded sample), optionally layer-normed."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return normalize_latent(z) if layer_norm else z

    # ---- decoder side -------------------------------------------------------------------------
    @staticmethod
    def content_frame(x: torch.Tensor) -> torch.Tensor:
        """The official content frame of a clip: index (T - 1) // 2. (B, 3, T, H, W) -> (B, 3, H, W)."""
        return x[:, :, ReducioConfig.content_frame_index(x.shape[2])]

    def content_features(self, frame: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Content frame (B, 3, H, W) -> the feature maps the decoder attends to.

        For the released configs: 2D encoder entries 2, 3 and 4, i.e. (B, 512, H/4, W/4),
        (B, 512, H/8, W/8) and the mid-attention output (B, 512, H/8, W/8). A config with the
        local ``content_residual`` extension also returns the frame itself, last.
        """
        self._require_decoder("content_features()")
        features = self.encoder_2d(_to_weight_dtype(frame, self.encoder_2d.conv_in))
        selected = tuple(features[i] for i in self.config.content_feature_indices)
        if self.config.ddconfig.content_residual:
            return (*selected, frame)  # the residual decoder adds the frame itself back
        return selected

    def decode(self, z: torch.Tensor, content_features: Sequence[torch.Tensor], *,
               return_flow: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Layer-normed latent (B, 16, T', h, w) + content features -> (B, 3, 16, 32h, 32w)
        (and, with ``return_flow``, a content_warp decoder's displacement field (B, 2, 16, 32h, 32w) px)."""
        self._require_decoder("decode()")
        z = _to_weight_dtype(z, self.post_quant_conv)
        return self.decoder(self.post_quant_conv(z), content_features, return_flow=return_flow)

    def reconstruct(self, x: torch.Tensor, sample: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """encode -> mean (or sample) -> latent layer norm -> decode with the clip's content frame."""
        self._require_decoder("reconstruct()")
        posterior = self.encode(x)
        z = normalize_latent(posterior.sample(generator) if sample else posterior.mode())
        return self.decode(z, self.content_features(self.content_frame(x)))

    def forward(self, x: torch.Tensor, *, sample: bool = True, generator: torch.Generator | None = None,
                return_flow: bool = False) -> tuple[torch.Tensor, ...]:
        """Training pass as in the official forward(): (reconstruction, posterior). Samples by default.
        ``return_flow`` (content_warp models): (reconstruction, posterior, displacement field in px)."""
        self._require_decoder("forward()")
        posterior = self.encode(x)
        z = normalize_latent(posterior.sample(generator) if sample else posterior.mode())
        decoded = self.decode(z, self.content_features(self.content_frame(x)), return_flow=return_flow)
        if return_flow:
            reconstruction, flow = decoded
            return reconstruction, posterior, flow
        return decoded, posterior
