"""Reconstruction analysis behind notebook 01: which clips, how well the VAE rebuilds them, and
how much smaller the latent is. Figures live in :mod:`lib.viz`.

Tensors follow the reader's contract: clips are float32 (C, T, H, W) in [-1, 1]; batches add a
leading B. PSNR/SSIM are computed on the [0, 1] scale (i.e. (x + 1) / 2), per frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lib.data.clips import ClipSpec
from lib.data.spatial import SpatialPolicy
from lib.data.video import iter_clips

DEFAULT_CLIP_SPEC = ClipSpec()  # the data layer's clips: 16 frames at 16 fps


@dataclass(frozen=True)
class ClipSample:
    """One clip to reconstruct: where it came from and its pixels (C, T, H, W) in [-1, 1]."""

    name: str  # e.g. "MoveLeft/v_MoveLeft_g15_c01.avi @ 1.00s"
    source: Path
    start_time: float
    frame_indices: tuple[int, ...]
    pixels: torch.Tensor


def load_clip_samples(
    paths: Sequence[Path],
    *,
    spatial: SpatialPolicy,
    spec: ClipSpec = DEFAULT_CLIP_SPEC,
    names: Sequence[str] | None = None,
) -> list[ClipSample]:
    """The centre clip of each video, after ``spatial`` (the VAE's input policy)."""
    samples = []
    for i, path in enumerate(paths):
        clip, pixels = next(iter_clips(path, spec=spec, mode="center", spatial=spatial))
        label = names[i] if names is not None else Path(path).name
        samples.append(
            ClipSample(f"{label} @ {clip.start_time:.2f}s", Path(path), clip.start_time, clip.frame_indices, pixels)
        )
    return samples


@dataclass(frozen=True)
class Reconstruction:
    """Outputs of :func:`reconstruct` for a batch of clips (B, C, T, H, W)."""

    original: torch.Tensor
    reconstruction: torch.Tensor
    latent: torch.Tensor  # posterior mean, before layer norm: (B, z, T', H', W')
    content_index: int  # frame whose 2D features condition the decoder: (T - 1) // 2


@torch.inference_mode()
def reconstruct(
    vae: torch.nn.Module, clips: torch.Tensor, *, device: str | torch.device = "cpu", batch_size: int = 2
) -> Reconstruction:
    """Encode (posterior mean) and decode ``clips`` (B, 3, T, H, W) with ``vae``, in batches."""
    content_index = (clips.shape[2] - 1) // 2
    recon, latents = [], []
    for start in range(0, clips.shape[0], batch_size):
        x = clips[start : start + batch_size].to(device)
        z = vae.encode(x).mean  # (b, z, T', H', W')
        # the decode path of vae.reconstruct(x, sample=False), kept explicit to also return z
        x_rec = vae.decode(vae.normalize_latent(z), vae.content_features(x[:, :, content_index]))
        latents.append(z.float().cpu())
        recon.append(x_rec.float().clamp(-1, 1).cpu())
    return Reconstruction(clips, torch.cat(recon), torch.cat(latents), content_index)


def content_frame_baseline(clips: torch.Tensor) -> torch.Tensor:
    """The trivial reconstruction: the content frame (T - 1) // 2 repeated for every frame."""
    t_mid = (clips.shape[2] - 1) // 2
    return clips[:, :, t_mid : t_mid + 1].expand_as(clips).clone()


def per_frame(
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], original: torch.Tensor, reconstruction: torch.Tensor
) -> torch.Tensor:
    """Apply a per-sample image metric of :mod:`lib.vae.losses` (``psnr``, ``ssim``: data range
    2 on [-1, 1], the same as peak 1 on [0, 1]) to every frame: (B, C, T, H, W) -> (B, T)."""
    b, _, t = original.shape[:3]
    a, r = (v.float().transpose(1, 2).flatten(0, 1) for v in (original, reconstruction))  # (B*T, C, H, W)
    return metric(a, r).reshape(b, t)


def _estimates(rec: Reconstruction) -> tuple[tuple[str, torch.Tensor], ...]:
    """The methods the metrics compare: the VAE's reconstruction and the content-frame baseline."""
    return ("vae", rec.reconstruction), ("content-frame baseline", content_frame_baseline(rec.original))


def frame_metrics(rec: Reconstruction, names: Sequence[str]) -> list[dict[str, object]]:
    """Rows (clip, method, frame, psnr, ssim) for the VAE and the content-frame baseline."""
    from lib.vae.losses import psnr, ssim

    rows: list[dict[str, object]] = []
    for method, estimate in _estimates(rec):
        psnr_bt, ssim_bt = per_frame(psnr, rec.original, estimate), per_frame(ssim, rec.original, estimate)
        for i, name in enumerate(names):
            for t in range(rec.original.shape[2]):
                rows.append(
                    {
                        "clip": name,
                        "method": method,
                        "frame": t,
                        "psnr": float(psnr_bt[i, t]),
                        "ssim": float(ssim_bt[i, t]),
                    }
                )
    return rows


def clip_metrics(rec: Reconstruction, names: Sequence[str]) -> list[dict[str, object]]:
    """Rows (clip, method, psnr, ssim) per clip: PSNR of the whole clip's MSE and mean SSIM over
    its frames, the numbers the VAE trainer reports. Why not the mean of per-frame PSNR: the
    baseline reproduces its content frame exactly (PSNR capped at 100 dB), and averaging that
    frame in adds ~(100 - x) / 16 dB to the baseline that no reconstruction can earn."""
    from lib.vae.losses import psnr, ssim

    rows: list[dict[str, object]] = []
    for method, estimate in _estimates(rec):
        clip_psnr = psnr(rec.original.float(), estimate.float())  # (B,): over all frames at once
        clip_ssim = per_frame(ssim, rec.original, estimate).mean(dim=1)
        for i, name in enumerate(names):
            rows.append({"clip": name, "method": method, "psnr": float(clip_psnr[i]), "ssim": float(clip_ssim[i])})
    return rows


def compression_table(input_shape: Sequence[int], latent_shape: Sequence[int]) -> list[dict[str, object]]:
    """Values and bytes of one clip as pixels vs as latent. Shapes are per clip: (C, T, H, W)."""
    n_in, n_lat = math.prod(input_shape), math.prod(latent_shape)
    return [
        {
            "representation": "pixels (uint8 RGB)",
            "shape": "x".join(map(str, input_shape)),
            "values": n_in,
            "bytes": n_in,
            "ratio_values": 1.0,
        },
        {
            "representation": "pixels (fp16)",
            "shape": "x".join(map(str, input_shape)),
            "values": n_in,
            "bytes": 2 * n_in,
            "ratio_values": 1.0,
        },
        {
            "representation": "latent (fp16)",
            "shape": "x".join(map(str, latent_shape)),
            "values": n_lat,
            "bytes": 2 * n_lat,
            "ratio_values": round(n_in / n_lat, 1),
        },
    ]
