"""Losses and metrics for training and evaluating the Reducio-VAE on clips in [-1, 1].

The official recipe (``LPIPSWithDiscriminator`` in the released config) is L1 reconstruction +
0.1 x LPIPS (VGG16) + a 3D PatchGAN after 10k steps + ``kl_weight = 1e-6`` x KL, the
reconstruction and KL terms both **sums** over all values divided by the batch size. LPIPS
needs downloaded VGG weights and the GAN tens of thousands of steps, so the local recipe
(:class:`VAELossWeights`, :func:`vae_loss`) uses terms that work offline from step 0:

- ``l1``: mean absolute error over every pixel (the official reconstruction norm);
- ``ssim``: ``1 - SSIM`` with a gaussian window (11, sigma 1.5), the 2D SSIM of Wang et al. per
  frame, averaged: a structural term in place of LPIPS (it rewards the edges and texture that
  L1 alone blurs away);
- ``grad``: L1 between finite differences along H, W and T of reconstruction and target (sharp
  edges and, along T, the motion: a decoder that repeats the content frame has zero temporal
  gradient and pays for every moving pixel);
- ``pyramid``: L1 of 2x/4x/8x average-pooled frames, where a moving object outweighs per-frame
  sensor noise;
- ``mse``: mean squared error (0 in the official recipe). Its optimum is the conditional mean,
  which is what PSNR scores; under L1 alone a decoder neither moves uncertain pixels (the median
  is "no change") nor denoises the content frame. An MSE gradient is ~2|x - x'| per value against
  L1's 1, so with |x - x'| ~ 0.05 a weight of ~30 puts the two on a par. The local presets may
  apply it to the decoder's ``conv_out`` only (``TrainPreset.mse_head_only``);
- ``shift``: for decoders with a displacement field (``content_warp``), L1 in pixels between the
  field's per-frame spatial mean and each frame's global shift relative to the content frame,
  found from the clip itself by exhaustive search (:func:`global_shift_targets`): a consistent
  signal for the zero-initialised field head from step 0, using no label and no held-out data;
- ``motion``: L1 in pixels between the field and the pretraining pool's ground-truth
  displacements (:func:`motion_l1`), over the clips that have them;
- ``latent_motion``: squared error in pixels^2 between a linear readout of the latent and the pool's coarse
  ground-truth displacements (:mod:`lib.vae.latent_motion`, the stand-in's motion teacher);
- ``kl``: KL of the posterior to N(0, I), summed over the latent and divided by the number of
  pixel values of the clip. Dividing by the pixel count carries the official weight over: the
  official ``sum|x - x'| + 1e-6 * sum KL`` divided by the number of pixel values is mean L1 +
  1e-6 x this KL, a constant rescaling. The decoder sees the latent only after the per-sample
  layer norm, so the KL is a weak regulariser that keeps the log-variances off the clamp.

Measured effects of each term live in ``docs/results.md``. All functions take float tensors
shaped (B, C, T, H, W) (videos) or (B, C, H, W) (images) and work per sample, so metrics can be
averaged over clips.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from lib.vae.latent_motion import latent_motion_mse

# Stabilising constants of SSIM (Wang et al. 2004): C1 = (K1 L)^2, C2 = (K2 L)^2.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# Data range of clips in [-1, 1]: PSNR/SSIM on [-1, 1] with range 2 equal those on [0, 1] with 1.
UNIT_RANGE = 2.0


def _as_frames(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(B, C, T, H, W) -> (B*T, C, H, W), B, T; (B, C, H, W) passes through with T = 1."""
    if x.ndim == 5:
        b, c, t, h, w = x.shape
        return x.transpose(1, 2).reshape(b * t, c, h, w), b, t
    if x.ndim == 4:
        return x, x.shape[0], 1
    raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if not (x.is_floating_point() and y.is_floating_point()):
        raise ValueError(f"expected float tensors, got {x.dtype} and {y.dtype}")


def gaussian_window(
    size: int, sigma: float, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Normalised 1D gaussian (size,), centred on the middle tap (``size`` odd)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be a positive odd number, got {size}")
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur of images (B, C, H, W) (radius ceil(3 sigma), replicated borders)."""
    radius = max(1, math.ceil(3 * sigma))
    g = gaussian_window(2 * radius + 1, sigma, dtype=frames.dtype, device=frames.device)
    c = frames.shape[1]
    out = F.conv2d(
        F.pad(frames, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c
    )
    return F.conv2d(
        F.pad(out, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = UNIT_RANGE,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Per-sample SSIM (B,) of ``x`` against ``y``, each (B, C, T, H, W) or (B, C, H, W).

    Videos are scored frame by frame (2D SSIM per frame, then averaged over T, C, H, W), the
    usual "SSIM of a video" and what the official evaluation reports. The gaussian filter is
    separable and applied without padding ("valid"), so border pixels are not biased by a fake
    zero frame; a frame smaller than the window uses the largest odd window that fits (with the
    same sigma). 1 for identical inputs; differentiable.
    """
    _check_pair(x, y)
    xf, b, t = _as_frames(x.float())
    yf, _, _ = _as_frames(y.float())
    c, h, w = xf.shape[1:]
    size = min(window_size, h - (1 - h % 2), w - (1 - w % 2))  # largest odd size <= H, W
    g = gaussian_window(size, sigma, device=xf.device)
    kh = g.view(1, 1, size, 1).expand(c, 1, size, 1)  # depthwise: one filter per channel
    kw = g.view(1, 1, 1, size).expand(c, 1, 1, size)

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(v, kh, groups=c), kw, groups=c)

    # One batched blur of the five statistics: (5*B*T, C, H, W) -> (5*B*T, C, H', W').
    stats = blur(torch.cat([xf, yf, xf * xf, yf * yf, xf * yf], dim=0))
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.chunk(5, dim=0)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return ssim_map.reshape(b, t, -1).mean(dim=(1, 2))


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample mean absolute error (B,)."""
    _check_pair(x, y)
    return (x - y).abs().flatten(1).mean(dim=1)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error (B,)."""
    _check_pair(x, y)
    return (x - y).pow(2).flatten(1).mean(dim=1)


def psnr(x: torch.Tensor, y: torch.Tensor, *, data_range: float = UNIT_RANGE, max_db: float = 100.0) -> torch.Tensor:
    """Per-sample PSNR in dB (B,): ``10 log10(range^2 / MSE)``, capped at ``max_db`` (identical inputs).

    Compute it on reconstructions clamped to the data range, as the official evaluation does.
    """
    err = mse(x.float(), y.float())
    floor = data_range**2 * 10 ** (-max_db / 10)  # the MSE at which PSNR reaches max_db
    return 10 * torch.log10(data_range**2 / err.clamp_min(floor))


def gradient_l1(x: torch.Tensor, y: torch.Tensor, *, temporal: bool = True) -> torch.Tensor:
    """Per-sample L1 between finite differences of ``x`` and ``y`` (B,).

    Differences along H and W (and along T for videos when ``temporal``), each averaged over
    its own elements, then averaged over the axes.
    """
    _check_pair(x, y)
    axes = [-1, -2] + ([-3] if temporal and x.ndim == 5 else [])
    terms = [(torch.diff(x, dim=a) - torch.diff(y, dim=a)).abs().flatten(1).mean(dim=1) for a in axes]
    return torch.stack(terms).mean(dim=0)


PYRAMID_FACTORS = (2, 4, 8)


def pyramid_l1(x: torch.Tensor, y: torch.Tensor, factors: tuple[int, ...] = PYRAMID_FACTORS) -> torch.Tensor:
    """Sum over ``factors`` of the mean L1 between spatially average-pooled frames of ``x`` and
    ``y`` (B, C, T, H, W); dimensions not divisible by a factor are cropped first."""
    _check_pair(x, y)
    total = x.new_zeros(())
    for f in factors:
        h, w = (x.shape[-2] // f) * f, (x.shape[-1] // f) * f
        if h == 0 or w == 0:
            continue
        px = F.avg_pool3d(x[..., :h, :w], (1, f, f))
        py = F.avg_pool3d(y[..., :h, :w], (1, f, f))
        total = total + (px - py).abs().mean()
    return total


def motion_l1(flow: torch.Tensor, target: torch.Tensor, has_target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (px) of a displacement field (B, 2, T, H, W) against ``target`` over the
    clips that have one (``has_target`` bool (B,)); 0 (with a gradient path) when none has."""
    if flow.shape != target.shape:
        raise ValueError(f"flow {tuple(flow.shape)} and target {tuple(target.shape)} differ")
    weight = has_target.to(flow.dtype).view(-1, 1, 1, 1, 1)
    per_clip = (flow.float() - target.float()).abs().mean(dim=(1, 2, 3, 4))
    return (per_clip * weight.flatten()).sum() / weight.sum().clamp(min=1.0)


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over all non-batch dims (B,).

    The formula of the official ``DiagonalGaussianDistribution.kl()``; 0 for mean 0, logvar 0.
    """
    if mean.shape != logvar.shape:
        raise ValueError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ")
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1)


@dataclass(frozen=True)
class VAELossWeights:
    """Weights of the training loss terms (see the module docstring for the why).

    ``kl`` multiplies the latent-summed KL divided by the clip's number of pixel values, which is
    the official ``kl_weight = 1e-6`` against a summed L1.
    """

    l1: float = 1.0
    ssim: float = 0.2
    grad: float = 0.5
    kl: float = 1e-6
    mse: float = 0.0
    shift: float = 0.0  # per pixel of mean-field error (see the module docstring)
    pyramid: float = 0.0  # L1 of 2x, 4x and 8x average-pooled frames, summed over the scales
    motion: float = 0.0  # per pixel of displacement-field error against the ground truth (module doc)
    latent_motion: float = 0.0  # per px^2 of the latent readout's coarse-field error (lib.vae.latent_motion)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"loss weight {name} must be finite and >= 0, got {value!r}")


def vae_loss(
    x: torch.Tensor,
    x_rec: torch.Tensor,
    *,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    weights: VAELossWeights = VAELossWeights(),
    flow: torch.Tensor | None = None,
    content_index: int | None = None,
    motion: tuple[torch.Tensor, torch.Tensor] | None = None,
    readout: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of a batch and its terms.

    ``x``, ``x_rec``: (B, 3, T, H, W) in [-1, 1] (the reconstruction unclamped, so the gradient
    is not cut where it overshoots); ``mean``, ``logvar``: the posterior (B, z, T', H', W').
    Returns ``(scalar loss, {"loss", "l1", "ssim", "grad", "kl", "mse"} as floats)``; the logged
    ``ssim`` is the SSIM itself (higher is better), the loss uses ``1 - ssim``; ``kl`` is the raw
    latent-summed KL per clip. ``flow`` (B, 2, T, H, W) in pixels: the decoder's displacement
    field, needed when ``weights.shift > 0`` (with ``content_index``, the content frame's index);
    the logged ``shift`` is its mean-field error in pixels (0 without a field). ``readout``: the
    :class:`lib.vae.latent_motion.LatentMotionReadout` of the ``latent_motion`` term, applied to
    the posterior mean against ``motion``.
    """
    pixels_per_clip = x[0].numel()
    l1_term = l1(x_rec, x).mean()
    mse_term = (x_rec - x).square().mean()
    # Both are cheap next to the model and worth logging even when their weight is 0.
    ssim_val = ssim(x_rec, x).mean()
    grad_term = gradient_l1(x_rec, x).mean()
    kl_term = kl_standard_normal(mean, logvar).mean()
    pyramid_term = pyramid_l1(x_rec, x) if weights.pyramid > 0 else torch.zeros(())
    total = (
        weights.pyramid * pyramid_term
        + weights.l1 * l1_term
        + weights.mse * mse_term
        + weights.ssim * (1.0 - ssim_val)
        + weights.grad * grad_term
        + weights.kl * kl_term / pixels_per_clip
    )
    shift_term = torch.zeros(())
    if flow is not None and weights.shift > 0:
        if content_index is None:
            raise ValueError("the shift term needs content_index (the content frame's index)")
        target = global_shift_targets(x.detach(), content_index=content_index)  # (B, 2, T) px
        shift_term = (flow.float().mean(dim=(3, 4)) - target).abs().mean()
        total = total + weights.shift * shift_term
    elif weights.shift > 0:
        raise ValueError("loss weight shift > 0 needs the decoder's displacement field (a content_warp model)")
    motion_term = torch.zeros(())
    if weights.motion > 0:
        if flow is None or motion is None:
            raise ValueError("loss weight motion > 0 needs the displacement field and the ground-truth motion")
        total = total + weights.motion * (motion_term := motion_l1(flow, *motion))
    latent_motion_term = torch.zeros(())
    if weights.latent_motion > 0:
        if readout is None or motion is None:
            raise ValueError("loss weight latent_motion > 0 needs the latent readout and the ground-truth motion")
        total = total + weights.latent_motion * (latent_motion_term := latent_motion_mse(readout, mean, *motion))
    terms = {
        "loss": total.item(),
        "l1": l1_term.item(),
        "ssim": ssim_val.item(),
        "grad": grad_term.item(),
        "kl": kl_term.item(),
        "mse": mse_term.item(),
        "shift": shift_term.item(),
        "pyramid": pyramid_term.item(),
        "motion": motion_term.item(),
        "latent_motion": latent_motion_term.item(),
    }
    return total, terms


def _parabola_offset(lo: torch.Tensor, mid: torch.Tensor, hi: torch.Tensor, *, inner: torch.Tensor) -> torch.Tensor:
    """Sub-sample offset of the minimum of the parabola through (-1, lo), (0, mid), (1, hi),
    within +-0.5; 0 where the minimum lies on the search border or the cost is flat."""
    curvature = lo - 2 * mid + hi
    offset = 0.5 * (lo - hi) / curvature.clamp_min(1e-12)
    return torch.where(inner & (curvature > 1e-12), offset.clamp(-0.5, 0.5), torch.zeros_like(mid))


@torch.no_grad()
def global_shift_targets(x: torch.Tensor, *, content_index: int, max_shift: int = 3) -> torch.Tensor:
    """Per-frame global displacement of a clip relative to its content frame, in pixels.

    ``x`` (B, C, T, H, W). Returns (B, 2, T) float32, channel 0 = x (width), 1 = y (height), in
    the convention of :func:`lib.vae.decoder.warp_frame`: frame t ~ content frame sampled at
    (y + d_y, x + d_x). Found by exhaustive search over integer shifts in
    [-max_shift, max_shift]^2 minimising the mean absolute difference over the interior (a
    ``max_shift`` margin, so every candidate compares the same pixels), refined to sub-pixel
    precision by a parabola through the cost's minimum and its two neighbours along each axis
    (within +-0.5 px; none at the search border). The content frame itself gets (0, 0).
    """
    if x.ndim != 5:
        raise ValueError(f"expected (B, C, T, H, W), got {tuple(x.shape)}")
    b, _, t, h, w = x.shape
    m = max_shift
    if h <= 2 * m or w <= 2 * m:
        raise ValueError(f"frames {h}x{w} too small for a +-{m} px search")
    x = x.float()
    frames = x[:, :, :, m : h - m, m : w - m]  # (B, C, T, h', w')
    content = x[:, :, content_index]  # (B, C, H, W)
    n = 2 * m + 1
    cost = x.new_empty(b, t, n, n)  # [.., dy + m, dx + m]
    for row, dy in enumerate(range(-m, m + 1)):
        for col, dx in enumerate(range(-m, m + 1)):
            moved = content[:, :, m + dy : h - m + dy, m + dx : w - m + dx].unsqueeze(2)
            cost[:, :, row, col] = (frames - moved).abs().mean(dim=(1, 3, 4))
    best = cost.flatten(2).argmin(dim=2).reshape(-1)  # (B*T,) flat index into the (n, n) grid
    iy, ix = best // n, best % n
    flat, rows = cost.reshape(b * t, n, n), torch.arange(b * t, device=cost.device)
    dx = _parabola_offset(
        flat[rows, iy, (ix - 1).clamp(min=0)],
        flat[rows, iy, ix],
        flat[rows, iy, (ix + 1).clamp(max=n - 1)],
        inner=(ix > 0) & (ix < n - 1),
    )
    dy = _parabola_offset(
        flat[rows, (iy - 1).clamp(min=0), ix],
        flat[rows, iy, ix],
        flat[rows, (iy + 1).clamp(max=n - 1), ix],
        inner=(iy > 0) & (iy < n - 1),
    )
    out = torch.stack([ix - m + dx, iy - m + dy], dim=1).float().reshape(b, t, 2).transpose(1, 2).contiguous()
    out[:, :, content_index] = 0.0
    return out
