"""A diffusers video VAE as a cache encoder: the interface of :class:`lib.cache.encoders.VaeClipEncoder`.

Takes float32 clips ``(B, 3, T, H, W)`` in ``[-1, 1]`` and returns float32 CPU tensors: ``latent``
``(B, C, T', H', W')`` = the posterior mode (the output of a deterministic encoder such as
Cosmos'), normalised the way the model's pipelines normalise it, after the clip policy of
:mod:`lib.zoo.geometry` (causal models: first frame repeated in front, padding steps dropped;
image VAEs: every frame encoded alone). ``sample`` draws ``mode + std * eps`` before
normalisation with ``eps`` seeded per clip; ``logvar`` is the raw posterior log-variance.

The cache key (:meth:`DiffusersClipEncoder.key`) holds the diffusers class, where the model came
from (hub repo and revision, or the local folder's name), the hash of every encoder-side weight,
the model config, the geometry, the clip policy and the compute dtype: two models, revisions or
dtypes never share a cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from lib.cache.key import weights_sha256
from lib.data.spatial import CropPolicy, SpatialPolicy
from lib.zoo.cost import DECODER_PREFIXES
from lib.zoo.geometry import causal_input, drop_padding_steps
from lib.zoo.sources import load_zoo_vae

CLIP_POLICY = "causal: first frame repeated to n*k+1 frames, padding steps dropped; per_frame: frames encoded alone"


def json_config(model: Any) -> dict[str, Any]:
    """The model's diffusers config as plain JSON values, without file or version bookkeeping."""
    out: dict[str, Any] = {}
    for name, value in dict(model.config).items():
        if name.startswith("_") and name != "_class_name":
            continue
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def encoder_weights_sha256(model: torch.nn.Module) -> str:
    """Hash of every state-dict tensor the encoder side uses (all but the decoder's)."""
    names = [n for n in model.state_dict() if not n.startswith(DECODER_PREFIXES)]
    return weights_sha256(model, tuple(names))


class DiffusersClipEncoder:
    """A ``diffusers:`` source (:mod:`lib.zoo.sources`) as a clip encoder (module docstring)."""

    kind = "diffusers"

    def __init__(self, source: str, *, device: torch.device | str = "cpu", dtype: str = "float32",
                 sample: bool = False, sample_seed: int = 0, logvar: bool = False, layer_norm: bool = False,
                 content_features: bool = False) -> None:
        from lib.vae.loading import parse_dtype

        self.device = torch.device(device)
        self.model, self.adapter, self.src = load_zoo_vae(source, device="cpu")
        self.geometry = self.adapter.geometry(self.model)
        if content_features:
            raise ValueError(f"{source}: content_features are Reducio's content-frame features; a "
                             f"{self.adapter.class_name} has none (set content_features: false)")
        if (sample or logvar) and self.geometry.posterior == "identity":
            raise ValueError(f"{source}: {self.adapter.class_name} encodes deterministically: no sample or logvar")
        self.source = source
        self.compute_dtype = parse_dtype(dtype)
        self.sample, self.sample_seed, self.logvar, self.layer_norm = sample, sample_seed, logvar, layer_norm
        self.weights_sha256 = encoder_weights_sha256(self.model)
        self.model = self.model.to(self.device)

    @classmethod
    def from_model(cls, model: Any, adapter: Any, *, device: torch.device | str = "cpu",
                   dtype: str = "float32") -> DiffusersClipEncoder:
        """An encoder over a model already in memory (benchmarks of random-init architectures);
        it has no source, so it cannot key a cache."""
        from lib.vae.loading import parse_dtype
        from lib.zoo.sources import ZooSource

        enc = cls.__new__(cls)
        enc.device = torch.device(device)
        enc.model, enc.adapter = model.eval().requires_grad_(False).to(enc.device), adapter
        enc.src = ZooSource(f"memory:{adapter.class_name}")
        enc.geometry = adapter.geometry(model)
        enc.source, enc.compute_dtype = enc.src.text, parse_dtype(dtype)
        enc.sample = enc.logvar = enc.layer_norm = False
        enc.sample_seed, enc.weights_sha256 = 0, ""
        return enc

    def key(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "class_name": self.adapter.class_name,
            "model": self.src.identity(),
            "weights_sha256": self.weights_sha256,
            "config": json_config(self.model),
            "geometry": self.geometry.to_dict(),
            "clip_policy": CLIP_POLICY,
            "compute_dtype": str(self.compute_dtype).removeprefix("torch."),
        }

    def provenance(self) -> dict[str, Any]:
        where = str(self.src.folder) if self.src.is_local else f"{self.src.repo}@{self.src.revision or 'main'}"
        return {"source": self.source, "class_name": self.adapter.class_name, "adapter": self.adapter.name,
                "checkpoint": where, "subfolder": self.src.subfolder, "device": str(self.device)}

    def default_spatial(self) -> SpatialPolicy:
        return CropPolicy()  # the study's UCF101 bucket, 224x288: a multiple of every adapter's 8 or 32

    def latent_shape(self, clip_shape: Sequence[int]) -> tuple[int, int, int, int]:
        _, t, h, w = (int(v) for v in clip_shape)
        return self.geometry.latent_shape(t, h, w)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)

    def _posterior(self, clips: torch.Tensor) -> Any:
        """The model's latent distribution of the prepared input; per-frame models fold T into B."""
        g = self.geometry
        if g.frame_rule == "per_frame":
            b, c, t, h, w = clips.shape
            return self.model.encode(clips.transpose(1, 2).reshape(b * t, c, h, w)).latent_dist
        x = causal_input(clips, g.temporal_factor) if g.frame_rule == "causal" else clips
        return self.model.encode(x).latent_dist

    def _finish(self, z: torch.Tensor, batch: int, num_frames: int) -> torch.Tensor:
        """Raw latent -> normalised (B, C, T', H', W') after the clip policy."""
        g = self.geometry
        if g.frame_rule == "per_frame":
            z = z.reshape(batch, num_frames, *z.shape[1:]).transpose(1, 2)  # (B, C, T, h, w)
        z = self.adapter.normalise(z.float(), self.model)
        if g.frame_rule == "causal":
            z = drop_padding_steps(z, num_frames, g.temporal_factor)
        return z.contiguous()

    @torch.inference_mode()
    def encode(self, clips: torch.Tensor, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        """``clips`` float32 (B, 3, T, H, W) in [-1, 1] on ``device``; ``seeds`` one per clip."""
        from lib.vae import normalize_latent

        b, _, t, h, w = clips.shape
        self.geometry.check_clip(t, h, w)
        with self._autocast():
            posterior = self._posterior(clips)
            mode = posterior.mode().float()
        out = {"latent": self._finish(mode, b, t)}
        if self.sample:
            std = posterior.std.float()
            per_clip = std.shape[0] // b
            noise = torch.cat([torch.randn((per_clip, *std.shape[1:]), generator=torch.Generator().manual_seed(s))
                               for s in seeds]).to(std.device)
            out["sample"] = self._finish(mode + std * noise, b, t)
        if self.layer_norm:
            out = {name: normalize_latent(value) for name, value in out.items()}
        if self.logvar:
            logvar = posterior.logvar.float()
            if self.geometry.frame_rule == "per_frame":
                logvar = logvar.reshape(b, t, *logvar.shape[1:]).transpose(1, 2)
            elif self.geometry.frame_rule == "causal":
                logvar = drop_padding_steps(logvar, t, self.geometry.temporal_factor)
            out["logvar"] = logvar.contiguous()
        return {name: value.to("cpu") for name, value in out.items()}
