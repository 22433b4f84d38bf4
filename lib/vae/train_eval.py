"""Held-out evaluation of a VAE training run (:func:`evaluate`) and the record of it that
``metrics.json`` holds (:func:`heldout_record`). Used at checkpoints (the probe curve), at the
end of a run, and by :mod:`lib.vae.probe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lib.vae.clip_data import ClipBank, center_clips
from lib.vae.losses import gaussian_blur, psnr, ssim

# Gaussian sigma (px at the evaluation crop) of the blurred-content-frame baseline of evaluate():
# the best of four on the default's held-out clips (sigma 0.5 / 0.7 / 1.0 / 1.5 score 24.74 / 25.11 /
# 25.30 / 25.09 dB, the raw frame 24.21), so this baseline is, if anything, optimistic.
BLUR_BASELINE_SIGMA = 1.0


@torch.no_grad()
def evaluate(model: Any, bank: ClipBank, *, crop: tuple[int, int], batch_size: int = 8,
             indices: Sequence[int] | None = None) -> dict[str, float]:
    """Held-out reconstruction quality of ``model`` and of the repeat-the-content-frame baseline.

    Clips are centre-cropped to ``crop``; the VAE reconstructs from the posterior MEAN
    (deterministic) and the output is clamped to [-1, 1] as in the official evaluation. The
    baseline repeats frame ``(T - 1) // 2`` (the very frame the decoder is conditioned on) for all
    T frames: a VAE must beat it to show that its latent carries the motion. A second, stronger
    trivial baseline repeats that frame blurred by a gaussian of ``BLUR_BASELINE_SIGMA`` px: the
    synthetic clips carry per-frame sensor noise, so a denoised content frame beats the raw one
    without knowing anything about the motion, and the gap between the two says how much of a
    decoder's gain could come from filtering alone. PSNR/SSIM are means over clips (per-clip PSNR
    over all frames; SSIM per frame, averaged).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device  # the bank stays on the CPU; batches go to the model
    idx = list(range(len(bank))) if indices is None else list(indices)
    sums = {"psnr": 0.0, "ssim": 0.0, "baseline_psnr": 0.0, "baseline_ssim": 0.0, "blurred_psnr": 0.0,
            "blurred_ssim": 0.0}
    for start in range(0, len(idx), batch_size):
        x = center_clips(bank, idx[start:start + batch_size], crop=crop).to(device)  # (B, 3, T, h, w)
        rec = model.reconstruct(x, sample=False).clamp(-1.0, 1.0)
        k = (x.shape[2] - 1) // 2
        base = x[:, :, k:k + 1].expand_as(x)
        sums["psnr"] += psnr(rec, x).sum().item()
        sums["ssim"] += ssim(rec, x).sum().item()
        sums["baseline_psnr"] += psnr(base, x).sum().item()
        sums["baseline_ssim"] += ssim(base, x).sum().item()
        blurred = gaussian_blur(x[:, :, k], BLUR_BASELINE_SIGMA).unsqueeze(2).expand_as(x)
        sums["blurred_psnr"] += psnr(blurred, x).sum().item()
        sums["blurred_ssim"] += ssim(blurred, x).sum().item()
    model.train(was_training)
    n = max(1, len(idx))
    return {**{k: v / n for k, v in sums.items()}, "clips": len(idx)}


def spread_indices(n_total: int, n: int | None) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (all when n is None or >= n_total)."""
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted({int(round(i)) for i in np.linspace(0, n_total - 1, n)})


def heldout_record(held: Mapping[str, float]) -> dict[str, Any]:
    """The ``heldout`` entry of ``metrics.json`` from an :func:`evaluate` result (rounded)."""
    return {
        "clips": held["clips"],
        "vae": {"psnr": round(held["psnr"], 4), "ssim": round(held["ssim"], 5)},
        "baseline_repeat_content_frame": {"psnr": round(held["baseline_psnr"], 4),
                                          "ssim": round(held["baseline_ssim"], 5)},
        "psnr_gain_db": round(held["psnr"] - held["baseline_psnr"], 4),
        "baseline_blurred_content_frame": {"sigma_px": BLUR_BASELINE_SIGMA, "psnr": round(held["blurred_psnr"], 4),
                                           "ssim": round(held["blurred_ssim"], 5)},
    }
