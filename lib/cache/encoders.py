"""What turns a preprocessed clip into cached values: a Reducio-VAE, a zoo VAE, or the pixel control.

A ``diffusers:`` source is a video VAE of the zoo (:class:`lib.zoo.encoder.DiffusersClipEncoder`,
same interface; diffusers is only imported for such a source). All take clips as float32
``(B, 3, T, H, W)`` in ``[-1, 1]`` on their device and return a dict of float32 CPU tensors, one
row per clip:

* ``"latent"`` ``(B, C, T', H', W')``: the posterior mean (per-sample layer-normed when
  ``layer_norm``), or for :class:`PooledPixelsEncoder` the average-pooled clip;
* ``"sample"`` (optional): ``mean + std * eps`` with ``eps`` drawn from a CPU generator seeded
  per clip (:func:`clip_seed` of the sample seed, the video and the clip index), so a sample
  does not depend on batch composition, worker count or device;
* ``"logvar"`` (optional): the posterior log-variance, clamped to [-30, 20] as in the model;
* ``"content"`` (optional) ``(B, D)``: the content frame's (index ``(T - 1) // 2``) 2D-encoder
  feature maps, each averaged over space and concatenated (ft4: 3 x 512 = 1,536 values).

Pooled-pixels rule (:func:`pooled_shape`): for a ``(3, T, H, W)`` clip and a Reducio-style
latent of ``C`` channels with temporal factor 4 and spatial factor 32, pool to
``(3, T // 4, round(H / 32 * s), round(W / 32 * s))`` with ``s = sqrt(C / 3)``: the same
number of time steps as the latent, the frame's aspect ratio, and about the latent's number of
values (224x288 -> 3 x 4 x 16 x 21 = 4,032 values, exactly the ft4 latent's 16 x 4 x 7 x 9).
Pooling is ``adaptive_avg_pool3d`` (exact box averages when the sizes divide).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lib.cache.errors import CacheError
from lib.cache.key import weights_sha256
from lib.data.spatial import CropPolicy, SpatialPolicy
from lib.paths import REPO_ROOT
from lib.zoo.sources import DIFFUSERS_PREFIX

POOLED_PIXELS = "pooled-pixels"
RANDOM_PREFIX = "random:"  # "random:<preset>": a randomly initialised preset (timing only)
OUTPUT_NAMES = ("latent", "sample", "logvar", "content")
VAE_WEIGHTS_NAME = "vae.safetensors"  # what python -m lib.vae train writes into its output folder


def clip_seed(sample_seed: int, video_id: str, clip_index: int) -> int:
    """The seed of one clip's posterior sample: a hash of (seed, video, clip), independent of order."""
    digest = hashlib.sha256(f"{sample_seed}:{video_id}:{clip_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def resolve_vae_folder(source: str) -> str:
    """``source`` unchanged, unless it names a folder (relative to the working directory, else to
    the repository): then the one ``vae.safetensors`` in it (a training output folder; searched
    below it when not directly inside). CacheError when the folder holds none or several."""
    if source.startswith((RANDOM_PREFIX, DIFFUSERS_PREFIX)) or "://" in source:
        return source
    path = Path(source).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    folder = next((p for p in candidates if p.is_dir()), None)
    if folder is None:
        return source
    direct = folder / VAE_WEIGHTS_NAME
    found = [direct] if direct.is_file() else sorted(folder.rglob(VAE_WEIGHTS_NAME))
    if len(found) == 1:
        return str(found[0].resolve())
    if not found and ((folder / "config.json").is_file() or (folder / "vae" / "config.json").is_file()):
        raise CacheError(folder, "is a diffusers model folder, not a Reducio training output",
                         f"pass it as --vae {DIFFUSERS_PREFIX}{source} (a video VAE of the zoo)")
    if not found:
        raise CacheError(folder, f"is a folder without a {VAE_WEIGHTS_NAME} (not a finished training output)",
                         "pass the weights file itself, or finish the training (python -m lib.vae train ... writes it)")
    raise CacheError(folder, f"holds {len(found)} {VAE_WEIGHTS_NAME} files ({', '.join(str(p) for p in found[:4])})",
                     "pass the one you mean as --vae FILE")


def pooled_shape(clip_shape: Sequence[int], *, latent_channels: int = 16, temporal_factor: int = 4,
                 spatial_factor: int = 32) -> tuple[int, int, int, int]:
    """Pooled-pixels shape ``(3, T', h, w)`` with about the values of a Reducio latent (module doc)."""
    c, t, h, w = (int(v) for v in clip_shape)
    scale = math.sqrt(latent_channels / c)
    return (c, max(1, t // temporal_factor), max(1, round(h / spatial_factor * scale)),
            max(1, round(w / spatial_factor * scale)))


CHANNELS_LAST = "channels_last_3d"  # the encoder provenance's memory_format of a channels-last build


def to_channels_last_3d(model: torch.nn.Module) -> None:
    """Store every 3D convolution's weight channels-last (in place; values unchanged)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)


class VaeClipEncoder:
    """A Reducio-VAE (any ``load_reducio`` source, or ``random:<preset>``) as a clip encoder.

    ``dtype``: compute dtype; ``"float32"`` runs the model as is, ``"bfloat16"``/``"float16"``
    under autocast (weights stay float32). ``channels_last``: 3D convolutions on channels-last
    weights and inputs (None: on the CPU, where it is faster). Outputs are always float32 on the CPU.
    """

    kind = "vae"

    def __init__(self, source: str, *, device: torch.device | str = "cpu", dtype: str = "float32",
                 sample: bool = False, sample_seed: int = 0, logvar: bool = False, layer_norm: bool = False,
                 content_features: bool = False, init_seed: int = 0, channels_last: bool | None = None) -> None:
        from lib.vae import ReducioVAE, load_reducio
        from lib.vae.loading import ENCODER_PREFIXES, parse_dtype

        self.source = str(source)
        self.device = torch.device(device)
        self.compute_dtype = parse_dtype(dtype)
        self.sample, self.sample_seed, self.logvar = sample, sample_seed, logvar
        self.layer_norm, self.content_features, self.init_seed = layer_norm, content_features, init_seed
        parts = "all" if content_features else "encoder"
        if self.source.startswith(RANDOM_PREFIX):
            preset = self.source[len(RANDOM_PREFIX):]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                vae = ReducioVAE.from_preset(preset, parts=parts)
            vae.eval().requires_grad_(False)
            self.preset: str | None = preset
        else:
            self.source = resolve_vae_folder(self.source)
            vae = load_reducio(self.source, parts=parts, device="cpu", dtype=torch.float32)
            self.preset = vae.checkpoint_info.preset
        prefixes = ENCODER_PREFIXES + (("encoder_2d.",) if content_features else ())
        self.weights_sha256 = weights_sha256(vae, prefixes)  # before any move: the stored float32 weights
        self.vae = vae.to(self.device)
        # oneDNN's 3D convolutions run 15-20 % faster on channels-last weights and inputs (no
        # reorder per call; docs/results.md, "Latent cache"); the results differ from the default
        # layout only by the rounding of another summation order, as with another thread count.
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        if self.channels_last:
            to_channels_last_3d(self.vae)

    def key(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "weights_sha256": self.weights_sha256,
            "config": self.vae.config.to_params(),
            "compute_dtype": str(self.compute_dtype).removeprefix("torch."),
            # a random init is only reproducible with its seed (the hash covers it too)
            "init_seed": self.init_seed if self.source.startswith(RANDOM_PREFIX) else None,
        }

    def provenance(self) -> dict[str, Any]:
        info = getattr(self.vae, "checkpoint_info", None)
        return {"source": self.source, "preset": self.preset,
                "checkpoint": str(info.path) if info is not None else None, "device": str(self.device),
                "memory_format": CHANNELS_LAST if self.channels_last else "contiguous"}

    def default_spatial(self) -> SpatialPolicy:
        from lib.vae.local import input_policy

        if self.source.startswith(RANDOM_PREFIX):  # a random init (timing) has no training geometry
            return CropPolicy()
        return input_policy(self.vae)

    def latent_shape(self, clip_shape: Sequence[int]) -> tuple[int, int, int, int]:
        return tuple(self.vae.latent_shape(*clip_shape[1:]))  # type: ignore[return-value]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)

    @torch.inference_mode()
    def encode(self, clips: torch.Tensor, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        """``clips`` float32 (B, 3, T, H, W) in [-1, 1] on ``device``; ``seeds`` one per clip."""
        from lib.vae import normalize_latent

        if self.channels_last:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        with self._autocast():
            posterior = self.vae.encode(clips)
            content = None
            if self.content_features:
                maps = self.vae.content_features(self.vae.content_frame(clips))
                # only the 2D encoder's maps (a content_residual config appends the frame itself)
                maps = maps[: len(self.vae.config.content_feature_indices)]
                content = torch.cat([m.float().mean(dim=(-2, -1)) for m in maps], dim=1)  # (B, D)
        mean = posterior.mean.float()  # (B, C, T', H', W')
        out = {"latent": normalize_latent(mean) if self.layer_norm else mean}
        if self.sample:
            noise = torch.stack([torch.randn(mean.shape[1:], generator=torch.Generator().manual_seed(s))
                                 for s in seeds]).to(mean.device)
            drawn = mean + posterior.std.float() * noise
            out["sample"] = normalize_latent(drawn) if self.layer_norm else drawn
        if self.logvar:
            out["logvar"] = posterior.logvar.float()
        if content is not None:
            out["content"] = content
        return {name: value.to("cpu") for name, value in out.items()}


class PooledPixelsEncoder:
    """The pixel-space control: average-pool the preprocessed clip to ``pool_shape`` (or
    :func:`pooled_shape` of the clip), so classifiers compare on inputs of equal size."""

    kind = POOLED_PIXELS

    def __init__(self, *, pool_shape: Sequence[int] | None = None, device: torch.device | str = "cpu") -> None:
        if pool_shape is not None and (len(pool_shape) != 4 or min(pool_shape) < 1):
            raise ValueError(f"pool_shape must be (C, T, H, W) >= 1, got {pool_shape!r}")
        self.pool_shape = tuple(int(v) for v in pool_shape) if pool_shape is not None else None
        self.device = torch.device(device)

    def key(self) -> dict[str, Any]:
        return {"kind": self.kind, "pool_shape": list(self.pool_shape) if self.pool_shape else "rule:sqrt(16/3)/32,t/4"}

    def provenance(self) -> dict[str, Any]:
        return {"source": POOLED_PIXELS, "device": str(self.device)}

    def default_spatial(self) -> SpatialPolicy:
        return CropPolicy()  # the study's UCF101 bucket (224x288), as the released VAE sees it

    def latent_shape(self, clip_shape: Sequence[int]) -> tuple[int, int, int, int]:
        shape = self.pool_shape or pooled_shape(clip_shape)
        if shape[0] != clip_shape[0]:
            raise ValueError(f"pool_shape {shape} must keep the clip's {clip_shape[0]} channels")
        return shape  # type: ignore[return-value]

    @torch.inference_mode()
    def encode(self, clips: torch.Tensor, seeds: Sequence[int]) -> dict[str, torch.Tensor]:
        _, t, h, w = self.latent_shape(tuple(clips.shape[1:]))
        return {"latent": F.adaptive_avg_pool3d(clips.float(), (t, h, w)).to("cpu")}


def make_encoder(source: str, *, device: torch.device | str = "cpu", dtype: str = "float32", sample: bool = False,
                 sample_seed: int = 0, logvar: bool = False, layer_norm: bool = False, content_features: bool = False,
                 pool_shape: Sequence[int] | None = None, init_seed: int = 0) -> Any:
    """``"pooled-pixels"`` -> :class:`PooledPixelsEncoder`; ``"diffusers:..."`` ->
    :class:`lib.zoo.encoder.DiffusersClipEncoder`; anything else -> :class:`VaeClipEncoder`."""
    if source == POOLED_PIXELS:
        if sample or logvar or content_features or layer_norm:
            raise ValueError("the pooled-pixels control has no posterior: sample, logvar, layer_norm and "
                             "content_features apply to a VAE only")
        return PooledPixelsEncoder(pool_shape=pool_shape, device=device)
    if pool_shape is not None:
        raise ValueError("pool_shape applies to --vae pooled-pixels only")
    if source.startswith(DIFFUSERS_PREFIX):
        from lib.zoo.encoder import DiffusersClipEncoder

        return DiffusersClipEncoder(source, device=device, dtype=dtype, sample=sample, sample_seed=sample_seed,
                                    logvar=logvar, layer_norm=layer_norm, content_features=content_features)
    return VaeClipEncoder(source, device=device, dtype=dtype, sample=sample, sample_seed=sample_seed, logvar=logvar,
                          layer_norm=layer_norm, content_features=content_features, init_seed=init_seed)
