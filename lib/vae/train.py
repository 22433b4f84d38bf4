"""Train a reduced-width Reducio-VAE on a dataset's TRAINING split: ``python -m lib.vae train``.

::

    python -m lib.vae train --data DIR --preset {smoke,default} --out DIR [--seed S] [overrides]

What a run does:

1. decodes the fold's train-split clips ONCE into a uint8 bank at reduced resolution, and the
   held-out val-split clips (one centre clip per video) for evaluation
   (:mod:`lib.vae.clip_data`; test videos are never read);
2. builds ``ReducioVAE.from_config(lib.vae.presets.get_preset(model_preset))`` (the released
   architecture at reduced width: temporal factor 4, spatial factor 32, 16 latent channels) with
   a seeded initialisation, the posterior log-variance bias started at -6 (see
   :attr:`TrainPreset.logvar_init` for why);
3. trains with AdamW on the official forward pass: posterior sample (seeded per step) -> per-sample
   latent layer norm -> decoder conditioned on the content frame ``(T - 1) // 2`` encoded by the
   2D encoder; loss = L1 + 0.2 (1 - SSIM) + 0.5 gradient-L1 + 1e-6 KL (:mod:`lib.vae.losses`:
   weights and why); random crops, horizontal flips and colour remapping (:mod:`lib.vae.clip_data`:
   why); bfloat16 autocast forward; linear warm-up then cosine learning-rate decay; gradient-norm
   clipping at 1;
4. checkpoints every ``checkpoint_every`` steps and at the end, then measures held-out PSNR/SSIM
   of the VAE and of the trivial baseline "repeat the content frame for all 16 frames".

Output folder (``--out``):

``vae.safetensors``
    weights + config metadata (:func:`lib.vae.loading.save_reducio`), loads with
    ``load_reducio(path)`` alone; training provenance under the metadata's ``training`` entry.
``train_state.pt``
    everything a resume needs: step, elapsed time, the run's config, model and AdamW state dicts,
    torch/numpy/python RNG states. Only tensors and plain containers, so
    ``torch.load(path, weights_only=True)`` reads it. It is the commit point of a checkpoint.
``history.csv``
    append-only, one row per step: loss terms, gradient norm, lr, elapsed seconds, clips/s, and a
    held-out probe PSNR/SSIM on checkpoint steps. Rows are flushed at checkpoints, and a resumed
    run only appends steps after the last logged one, so the file never holds a step twice.
``metrics.json``
    held-out PSNR/SSIM of the VAE and of the baseline, steps, wall time, clips/s, seed, data
    root, resolutions, split groups; written last (its presence means the run is complete).

Determinism and resume: every random choice is a function of ``(seed, step)``: batch order and
crops/flips (:class:`~lib.vae.clip_data.ClipBatchSampler`) and the posterior noise (a generator
seeded per step); the lr schedule is a function of the step; the model init is seeded. A resumed
run restores weights and AdamW moments exactly, so killing a run and re-running the same command
reproduces the uninterrupted run's weights bit for bit (same machine and thread count; the CPU
kernels are deterministic for a fixed thread count). Files are written to a temporary name and
renamed; ``train_state.pt`` is written before ``vae.safetensors``, so a kill between the two
leaves a state that is at most one checkpoint ahead of the export, and the export is refreshed
from the state at the end. A killed run loses at most ``checkpoint_every`` steps of work.
A rerun of a finished run does nothing (it re-evaluates if ``metrics.json`` is missing); a rerun
with different settings in the same folder is refused. One run per folder at a time (temp files
a killed run left behind are deleted at start).

Measured (2-core AMD EPYC with AVX512-BF16, uncontended; preset ``default``; the run's own
numbers land in ``metrics.json``). Session 5: decode 20 s (3,902 train clips, 110 val clips),
450 steps x 2 clips in 414-463 s (1.9-2.2 clips/s), final evaluation ~40 s. Held-out
(110 val clips, 64x96), by decoder design:

==============================================  =============  ====================================
decoder / loss (local presets)                   PSNR / SSIM    vs "repeat the content frame" (24.21 / 0.837)
==============================================  =============  ====================================
official (no extension)                          16.5 / 0.00    -7.7 dB: learns the mean look only
+ content_residual                               24.21 / 0.837  +0.00 dB: adds nothing
+ content_warp, conv_out lr x10 (session 3)      24.29 / 0.837  +0.08 dB, 548 s
+ level-1 width 32, coarse_flow, EMA 0.99        24.31 / 0.837  +0.10 dB, 428 s
+ shift teacher 0.05 (``--shift-weight 0.05``)   24.33 / 0.838  +0.11 dB, 421 s
+ MSE x30 in the loss, whole model               24.79 / 0.840  +0.58 dB, 414 s
+ MSE x30 on conv_out only (current presets)     24.64 / 0.839  +0.43 dB, ~420 s
==============================================  =============  ====================================

With the current presets every one of the 110 held-out clips beats the baseline (per-clip gain
+0.22 to +0.68 dB, median +0.40; paired t = 38).

The second trivial baseline of :func:`evaluate`, the content frame blurred (sigma 1 px), scores
25.30 / 0.831 on the same clips: the synthetic clips carry per-frame sensor noise, and most of
what the VAE gains over the raw content frame is filtering it (its conv_out is a 3x3 filter on
the content frame; the best 3x3-sized blur scores ~25.1), not motion. The VAE beats the
repeat-the-content-frame baseline clearly (+0.43 dB, SSIM +0.002, on every clip); against the
blurred one it wins on SSIM (0.839 vs 0.831: the blur smooths texture too) and loses 0.7 dB of
PSNR.

What the latents keep (the study's real question), by a probe on the fold-1 centre clips of the
synthetic set (860 train videos, 110 val videos, per-value standardised, 10 classes):
multinomial logistic regression (weight decay 1e-4) val accuracy / 1-nearest-neighbour val
accuracy: current presets (MSE on conv_out only) 32.7 % / 22.7 % (best weight decay of
1e-4..1e-1: 32.7 %); MSE on the whole model 19.1 % / 18.2 % (23.6 %), and in the study the LSTMs
lost ~10 points with it (lstm_ours 48.7 -> 39.6 %, lstm_paper 28.7 -> 19.0 %), hence
``mse_head_only``; without the MSE term 19.1 % / 27.3 % (25.5 %); with the shift teacher 11.8 % / 11.8 % (chance 10 %): the
teacher pulls the latent towards the camera shake, a nuisance here, so it is off by default; the
session-3 decoder (content_warp only, level-1 width 64) 10.0 % / 13.6 %. 110 val clips from 2
appearance groups: differences of a few points are within noise; the classifiers of the study
(notebooks 03-05) are the real measure.

Why motion stays hard, as measured on the session-4 checkpoints: the displacement fields stay
tiny (mean |field| 0.01 px coarse, 0.04 px fine after 450 steps; the heads' weights moved ~1
step's worth), i.e. the reconstruction loss gives the zero-initialised heads gradients too
inconsistent to grow; with the shift teacher the per-frame global-shift error falls only from
0.71 px (no motion) to ~0.5 px in 450 steps. What is reachable: on the same 110 clips, the best
global integer shift of the content frame per frame scores 26.25 dB and the clip's temporal mean
frame 26.86 dB.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import platform
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.data.clips import ClipSpec
from lib.runs import RunDir, atomic_write, atomic_write_text
from lib.vae.clip_data import (
    ClipBank,
    ClipBatchSampler,
    bank_summary,
    center_clips,
    decode_clip_bank,
    make_generator,
    train_val_records,
)
from lib.vae.losses import VAELossWeights, gaussian_blur, psnr, ssim, vae_loss
from lib.vae.presets import get_preset

WEIGHTS_NAME = "vae.safetensors"
STATE_NAME = "train_state.pt"
HISTORY_NAME = "history.csv"
METRICS_NAME = "metrics.json"
STATE_FORMAT = 1
_POSTERIOR_DOMAIN = 0x5A3F  # seed stream of the per-step posterior noise
HISTORY_COLUMNS = ("step", "loss", "l1", "ssim", "grad", "kl", "shift", "pyramid", "motion", "grad_norm", "lr", "elapsed_s", "clips_per_s",
                   "probe_psnr", "probe_ssim")


class TrainStateError(ValueError):
    """The output folder holds a run that this command cannot continue (other settings, bad file)."""


# =================================================================================================
# Presets
# =================================================================================================
@dataclass(frozen=True)
class TrainPreset:
    """Everything that determines a training run apart from the data root and the seed."""

    name: str
    model_preset: str  # lib.vae.presets name (architecture + widths)
    steps: int
    batch_size: int
    lr: float  # peak AdamW learning rate
    warmup_steps: int
    final_lr_fraction: float  # cosine decay ends at lr * this
    weight_decay: float
    grad_clip: float  # max global gradient norm (0 = off)
    bank_size: tuple[int, int]  # (H, W) frames are stored at (short side resized, centre crop)
    crop: tuple[int, int]  # (H, W) training crop / held-out centre crop: multiples of 32
    hflip: bool  # random horizontal flips (see lib.vae.clip_data on why they are harmless here)
    color_aug: bool  # random RGB permutation + per-channel negative (lib.vae.clip_data: why)
    max_train_clips_per_video: int | None  # None = every non-overlapping 1-s clip
    val_clips: int | None  # held-out clips evaluated at the end (None = one per val video)
    probe_clips: int  # held-out clips evaluated at each checkpoint (the curve; 0 = off)
    checkpoint_every: int
    eval_batch_size: int = 8
    bf16: bool = True  # bfloat16 autocast of the training forward (evaluation always float32)
    sample_posterior: bool = True  # train on posterior samples (official) or on the mean
    # Initial bias of the log-variance half of quant_conv (None: the default init, logvar ~ 0).
    # Why: at the default init the posterior std (~1) is ~10x the spread of the means, so the
    # (layer-normed) latent the decoder sees is almost pure noise and carries no clip information
    # for hundreds of steps; the official run had 10^5+ steps to grow out of that, we have ~10^3.
    logvar_init: float | None = None
    loss: VAELossWeights = field(default_factory=VAELossWeights)
    # lr multiplier of the decoder's conv_out. Why: with the local presets' zero-initialised
    # conv_out, what it must learn (filter the content frame it sees, a displacement field of a
    # few pixels) needs weights of order 0.1-1, and AdamW moves a weight by about lr per step:
    # at 5e-4 that takes thousands of steps, more than a 10-minute run has.
    out_lr_scale: float = 1.0
    # Exponential moving average of the weights (0 = off): probes, the final evaluation and the
    # exported weights use the average. Why: with 2 clips per step the raw weights wander (the
    # held-out probe swung by +-1 dB between checkpoints); the average keeps what the steps agree on.
    # The decay ramps up as min(ema_decay, (1 + step) / (10 + step)).
    ema_decay: float = 0.0
    # The MSE term trains only the decoder's conv_out (the filter on the content frame). Why: with
    # MSE on the whole model the held-out PSNR rose (24.31 -> 24.79 dB) but the latents lost class
    # information (centre-clip 1-NN probe 27 % -> 18 %; the study's LSTMs -10 points); the gain
    # is denoising the content frame, which needs no latent.
    mse_head_only: bool = False
    # What the VAE learns from: "labelled" = the dataset's training split (fold, minus the
    # validation groups); "pool" = an unlabelled pretraining pool (lib.data.synth_pool) plus the
    # real natural footage, with held-out metrics on a labelled dataset's validation split.
    data: str = "labelled"
    natural_repeats: int = 0  # copies of the natural-footage bank next to the pool (0 = none)
    # Multi-scale training: steps not divisible by full_crop_every train on random small_crop
    # windows instead of crop (held-out metrics and the recorded geometry stay at crop). Why: the
    # decoder's full-resolution levels dominate a step, so a 32x64 window costs ~1/3.4 of a 64x96
    # clip while showing the same motion at the same scale; every full_crop_every-th step keeps
    # the model at the deployment size.
    small_crop: tuple[int, int] | None = None
    full_crop_every: int = 1

    def crop_at(self, step: int) -> tuple[int, int]:
        """The training crop of optimizer step ``step`` (0-based)."""
        if self.small_crop is None or step % self.full_crop_every == self.full_crop_every - 1:
            return self.crop
        return self.small_crop

    def __post_init__(self) -> None:
        if self.data not in ("labelled", "pool"):
            raise ValueError(f"data must be 'labelled' or 'pool', got {self.data!r}")
        if self.small_crop is not None:
            object.__setattr__(self, "small_crop", tuple(int(v) for v in self.small_crop))
            if any(c % 32 for c in self.small_crop) or self.full_crop_every < 1:
                raise ValueError(f"small_crop {self.small_crop} must be multiples of 32 and full_crop_every >= 1")
        for name in ("steps", "batch_size", "checkpoint_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not (self.lr > 0 and 0 <= self.final_lr_fraction <= 1 and self.warmup_steps >= 0):
            raise ValueError("need lr > 0, 0 <= final_lr_fraction <= 1, warmup_steps >= 0")
        for name in ("bank_size", "crop"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if any(c % 32 for c in self.crop):
            raise ValueError(f"crop {self.crop} must be multiples of 32 (the spatial factor): the decoder "
                             "outputs 32x the latent, so other sizes would not reconstruct the input size")
        if not (self.crop[0] <= self.bank_size[0] and self.crop[1] <= self.bank_size[1]):
            raise ValueError(f"crop {self.crop} does not fit the bank frames {self.bank_size}")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (JSON, and torch.load(weights_only=True) of the train state)."""
        d = asdict(self)
        d["bank_size"], d["crop"] = list(self.bank_size), list(self.crop)
        d["small_crop"] = list(self.small_crop) if self.small_crop is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainPreset:
        d = dict(d)
        d["loss"] = VAELossWeights(**d["loss"])
        return cls(**d)


# Gaussian sigma (px at the evaluation crop) of the blurred-content-frame baseline of evaluate():
# the best of four on the default's held-out clips (sigma 0.5 / 0.7 / 1.0 / 1.5 score 24.74 / 25.11 /
# 25.30 / 25.09 dB, the raw frame 24.21), so this baseline is, if anything, optimistic.
BLUR_BASELINE_SIGMA = 1.0

# The local presets' loss: the official L1 (+ SSIM and gradient terms standing in for LPIPS) plus
# MSE at 30 (lib.vae.losses: without it the decoder never learns to filter the content frame),
# applied to the decoder's conv_out only (TrainPreset.mse_head_only).
LOCAL_LOSS = VAELossWeights(l1=1.0, ssim=0.2, grad=0.5, mse=30.0, kl=1e-6)

PRESETS: dict[str, TrainPreset] = {
    # CI: a few steps of the smallest model at 32x32 on the smoke dataset, seconds in all.
    "smoke": TrainPreset(
        name="smoke", model_preset="local-smoke", steps=6, batch_size=2, lr=1e-3, warmup_steps=2,
        final_lr_fraction=0.1, weight_decay=0.0, grad_clip=1.0, bank_size=(36, 48), crop=(32, 32), hflip=True,
        color_aug=True, max_train_clips_per_video=None, val_clips=None, probe_clips=2, checkpoint_every=3,
        eval_batch_size=4, logvar_init=-6.0, out_lr_scale=10.0, ema_decay=0.9, loss=LOCAL_LOSS, mse_head_only=True,
    ),
    # The study's local VAE, sized for ~10 minutes of training on a 2-core CPU (bf16 autocast:
    # 1.6-1.8 clips/s at 64x96; fp32 is 0.7-1.1). lr 5e-4: 1e-3 was noisier and 1e-4 slower in
    # 300-step probes. 240x320 -> 72x96 (exact 0.3x, antialiased), random 64x96 crops:
    # latent 16x4x2x3. Measured outcome in the module docstring.
    "default": TrainPreset(
        name="default", model_preset="local-default", steps=450, batch_size=2, lr=5e-4, warmup_steps=20,
        final_lr_fraction=0.05, weight_decay=0.0, grad_clip=1.0, bank_size=(72, 96), crop=(64, 96), hflip=True,
        color_aug=True, max_train_clips_per_video=None, val_clips=None, probe_clips=8, checkpoint_every=50,
        eval_batch_size=8, logvar_init=-6.0, out_lr_scale=10.0, ema_decay=0.99, loss=LOCAL_LOSS, mse_head_only=True,
        # loss.shift stays 0: the shift teacher (0.05) gained 0.01 dB but made the latents carry
        # camera shake instead of the action (linear probe, module docstring)
    ),
    # The shipped stand-in VAE: the local-default architecture pretrained on the unlabelled pool
    # (lib.data.synth_pool) + natural footage, never on the labelled set (make vae). About 3.5 s per
    # step on one CPU thread. Why these terms (docs/results.md): the pyramid L1 (2x/4x/8x pooled
    # frames, where a moving object outweighs the sensor noise) lifted the linear probe from 14.5 %
    # to 26.4 % in 480-step pilots; the ground-truth motion term (loss.motion) and 32x64 multi-scale
    # windows did not help within CPU-reachable steps, so they stay options (0 / None).
    "pretrain": TrainPreset(
        name="pretrain", model_preset="local-default", steps=2000, batch_size=2, lr=5e-4, warmup_steps=100,
        final_lr_fraction=0.05, weight_decay=0.0, grad_clip=1.0, bank_size=(72, 96), crop=(64, 96), hflip=True,
        color_aug=True, max_train_clips_per_video=None, val_clips=None, probe_clips=8, checkpoint_every=250,
        eval_batch_size=8, logvar_init=-6.0, out_lr_scale=10.0, ema_decay=0.999,
        loss=replace(LOCAL_LOSS, pyramid=1.0), mse_head_only=True, data="pool", natural_repeats=3,
    ),
    # CI: the pretraining path on the smoke pool, seconds.
    "pretrain_smoke": TrainPreset(
        name="pretrain_smoke", model_preset="local-smoke", steps=6, batch_size=2, lr=1e-3, warmup_steps=2,
        final_lr_fraction=0.1, weight_decay=0.0, grad_clip=1.0, bank_size=(36, 48), crop=(32, 32), hflip=True,
        color_aug=True, max_train_clips_per_video=2, val_clips=None, probe_clips=2, checkpoint_every=3,
        eval_batch_size=4, logvar_init=-6.0, out_lr_scale=10.0, ema_decay=0.9,
        loss=replace(LOCAL_LOSS, pyramid=1.0, motion=0.05), mse_head_only=True, data="pool", natural_repeats=0,
    ),
}


def lr_at(step: int, preset: TrainPreset) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up to ``lr`` over
    ``warmup_steps``, then cosine decay to ``lr * final_lr_fraction`` at the last step."""
    if step < preset.warmup_steps:
        return preset.lr * (step + 1) / preset.warmup_steps
    span = max(1, preset.steps - preset.warmup_steps - 1)
    progress = min(1.0, (step - preset.warmup_steps) / span)
    floor = preset.final_lr_fraction
    return preset.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# =================================================================================================
# Run configuration
# =================================================================================================
@dataclass(frozen=True)
class RunConfig:
    """A run's identity: the preset (after overrides), seed, data root and split settings.

    Two invocations may share an output folder (resume) only when their RunConfigs are equal.
    """

    preset: TrainPreset
    seed: int
    data_root: str
    fold: int = 1
    val_fraction: float = 0.1
    val_seed: int = 0
    # The labelled dataset whose validation split gives the held-out metrics of a "pool" run
    # ("" for "labelled" runs, which hold their validation split out of data_root itself).
    eval_root: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset.to_dict(), "seed": self.seed, "data_root": self.data_root, "fold": self.fold,
                "val_fraction": self.val_fraction, "val_seed": self.val_seed, "eval_root": self.eval_root}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        return cls(preset=TrainPreset.from_dict(d["preset"]), seed=int(d["seed"]), data_root=str(d["data_root"]),
                   fold=int(d["fold"]), val_fraction=float(d["val_fraction"]), val_seed=int(d["val_seed"]),
                   eval_root=str(d.get("eval_root", "")))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global generators (the loop itself uses per-step generators)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# =================================================================================================
# RNG state <-> plain types (torch.load(weights_only=True) accepts tensors and plain containers only)
# =================================================================================================
def capture_rng_state() -> dict[str, Any]:
    """torch, numpy and python global RNG states as tensors / ints / floats / lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": None if py_gauss is None else float(py_gauss)},
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


# =================================================================================================
# Files
# =================================================================================================
def _atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save atomically (temp file, fsync, rename): a kill leaves the old file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def remove_stale_temps(out: Path) -> list[Path]:
    """Delete temp files a killed run left in ``out`` (ours and save_reducio's); returns them."""
    stale = [p for name in (STATE_NAME, WEIGHTS_NAME, METRICS_NAME) for p in out.glob(f".{name}.*")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_train_state(out: Path) -> dict[str, Any] | None:
    """The saved training state of ``out`` (None when there is none), read with weights_only=True."""
    path = out / STATE_NAME
    if not path.is_file():
        return None
    from lib.errors import unsafe_load_cause

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable state is reported the same way
        cause = unsafe_load_cause(err)  # never torch's own text: its advice is to unpickle unsafely
        raise TrainStateError(f"{path}: unreadable training state ({cause}). Fix: delete {path} to restart from the "
                              "last exported weights' step 0, or the whole folder") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainStateError(f"{path}: not a train state of format {STATE_FORMAT}. Fix: use another --out")
    return state


def last_logged_step(path: Path) -> int:
    """Largest ``step`` in history.csv (0 when absent or empty)."""
    if not path.is_file():
        return 0
    last = 0
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                last = max(last, int(row["step"]))
            except (KeyError, TypeError, ValueError):
                continue  # a torn last line of a killed write: ignored, the step is re-logged
    return last


def _training_metadata(cfg: RunConfig, step: int) -> dict[str, Any]:
    p = cfg.preset
    return {"training": {"step": step, "steps": p.steps, "train_preset": p.name, "seed": cfg.seed,
                         "data_root": cfg.data_root, "fold": cfg.fold, "val_fraction": cfg.val_fraction,
                         "val_seed": cfg.val_seed, "crop": list(p.crop), "bank_size": list(p.bank_size)}}


def export_weights(model: torch.nn.Module, out: Path, cfg: RunConfig, step: int) -> Path:
    """Write ``vae.safetensors`` (weights + config metadata) atomically, loadable by load_reducio."""
    from lib.vae.loading import save_reducio

    return save_reducio(model, out / WEIGHTS_NAME, preset=cfg.preset.model_preset, extra=_training_metadata(cfg, step))


# =================================================================================================
# Evaluation
# =================================================================================================
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
    idx = list(range(len(bank))) if indices is None else list(indices)
    sums = {"psnr": 0.0, "ssim": 0.0, "baseline_psnr": 0.0, "baseline_ssim": 0.0, "blurred_psnr": 0.0,
            "blurred_ssim": 0.0}
    for start in range(0, len(idx), batch_size):
        x = center_clips(bank, idx[start:start + batch_size], crop=crop)  # (B, 3, T, h, w)
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


def _spread(n_total: int, n: int | None) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (all when n is None or >= n_total)."""
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted({int(round(i)) for i in np.linspace(0, n_total - 1, n)})


# =================================================================================================
# One optimisation step
# =================================================================================================
def train_step(model: Any, optimizer: torch.optim.Optimizer, x: torch.Tensor, *, weights: VAELossWeights,
               generator: torch.Generator | None, grad_clip: float, bf16: bool = False,
               sample: bool = True, mse_head_only: bool = False,
               motion: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """One AdamW step on clips ``x`` (B, 3, T, H, W) with the official forward pass.

    forward = posterior sample (``generator``) -> latent layer norm -> decode with the content
    frame (T - 1) // 2. ``bf16``: run the forward under CPU bfloat16 autocast (weights, gradients,
    optimizer and loss stay float32; the official model was trained under fp16 autocast, and on
    a CPU with AVX512-BF16 this makes the convolutions 1.6-2.8x faster). Returns the loss terms
    and the pre-clipping gradient norm. ``mse_head_only``: the MSE term's gradient reaches only the
    decoder's ``conv_out`` (the filter on the content frame); the rest of the model learns from
    the other terms (see :attr:`TrainPreset.mse_head_only` for why). ``motion``: the batch's
    ground-truth displacement fields (B, 2, T, H, W) px and which clips have one (B,), for the
    ``motion`` loss term.
    """
    model.train()
    flow = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if weights.shift > 0 or weights.motion > 0:  # the auxiliary terms need the displacement field
            x_rec, posterior, flow = model(x, sample=sample, generator=generator, return_flow=True)
        else:
            x_rec, posterior = model(x, sample=sample, generator=generator)  # (B, 3, T, H, W), posterior
    # The loss in float32: SSIM's variance terms are differences of nearly equal numbers.
    head_mse = mse_head_only and weights.mse > 0
    body_weights = replace(weights, mse=0.0) if head_mse else weights
    loss, terms = vae_loss(x, x_rec.float(), mean=posterior.mean.float(), logvar=posterior.logvar.float(),
                           weights=body_weights, flow=flow, content_index=(x.shape[2] - 1) // 2, motion=motion)
    if head_mse:
        terms["loss"] += weights.mse * terms["mse"]  # logged as the full objective
    if not math.isfinite(terms["loss"]):
        raise FloatingPointError(f"non-finite training loss {terms}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    if head_mse:
        head = output_layer_parameters(model)
        mse_term = weights.mse * (x_rec.float() - x).square().mean()
        # Backpropagates through the last layer only: autograd stops at conv_out's inputs.
        head_grads = torch.autograd.grad(mse_term, head, retain_graph=True)
        loss.backward()
        for param, grad in zip(head, head_grads):
            param.grad = grad if param.grad is None else param.grad + grad
    else:
        loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    terms["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    optimizer.step()
    return terms


def build_model(preset: TrainPreset, seed: int) -> Any:
    """The seeded initial model of a run (same seed -> same weights)."""
    from lib.vae.model import ReducioVAE

    torch.manual_seed(seed)
    model = ReducioVAE.from_config(get_preset(preset.model_preset))
    if preset.logvar_init is not None:
        with torch.no_grad():  # moments = [mean (z channels), logvar (z channels)]
            half = model.quant_conv.bias.shape[0] // 2
            model.quant_conv.bias[half:] = preset.logvar_init
    return model


def output_layer_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The decoder's ``conv_out`` parameters (its own lr group, the head-only MSE term); [] without
    a decoder."""
    decoder = getattr(model, "decoder", None)
    return list(decoder.conv_out.parameters()) if decoder is not None else []


def build_optimizer(model: torch.nn.Module, preset: TrainPreset) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (the frozen sinusoid tables of the fusion blocks stay
    out); the decoder's ``conv_out`` in a group of its own at ``out_lr_scale`` x the lr.
    (The coarse flow head stays at the body's lr: it has a 1728-wide fan-in, and at 10x the lr
    its field jumped by pixels per step and wrecked the reconstructions within 25 steps.)"""
    out_params = {id(p) for p in output_layer_parameters(model)}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in out_params]
    head = [p for p in model.parameters() if p.requires_grad and id(p) in out_params]
    groups = [{"params": body, "lr_scale": 1.0}]
    if head:
        groups.append({"params": head, "lr_scale": preset.out_lr_scale})
    return torch.optim.AdamW(groups, lr=preset.lr, betas=(0.9, 0.99), weight_decay=preset.weight_decay)


def ema_decay_at(step: int, preset: TrainPreset) -> float:
    """Decay of the weight average after optimizer step ``step`` (1-based): ramps up so the
    average is not dominated by the initialisation."""
    return min(preset.ema_decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for floating tensors; other buffers copied."""
    model_state = model.state_dict()
    for name, tensor in ema.state_dict().items():
        source = model_state[name]
        if tensor.is_floating_point():
            tensor.lerp_(source, 1.0 - decay)
        else:
            tensor.copy_(source)


# =================================================================================================
# The run
# =================================================================================================
@dataclass
class _Banks:
    train: ClipBank
    val: ClipBank
    groups: dict[str, list[int]]
    seconds: float


def load_banks(cfg: RunConfig, *, workers: int | None, progress: bool) -> _Banks:
    """Decode the training bank and the held-out val bank of a run (test never read).

    ``labelled`` runs train on the fold's train split of ``data_root``; ``pool`` runs on every
    clip of the pretraining pool ``data_root`` plus ``natural_repeats`` copies of the natural
    footage, and take their held-out clips from the val split of ``eval_root``.
    """
    from lib.vae.clip_data import attach_pool_motion, concat_banks, decode_natural_bank, pool_records

    start = time.perf_counter()
    p = cfg.preset
    held_root = cfg.eval_root if p.data == "pool" else cfg.data_root
    train_records, val_records, split = train_val_records(held_root, fold=cfg.fold, val_fraction=cfg.val_fraction,
                                                          val_seed=cfg.val_seed)
    if not val_records:
        raise ValueError(f"{held_root}: fold {cfg.fold} has no validation videos (val_fraction "
                         f"{cfg.val_fraction}); the held-out PSNR needs some")
    spec = ClipSpec()
    if p.data == "pool":
        train_records = pool_records(cfg.data_root)
    elif p.loss.motion > 0:
        raise ValueError("the motion term needs ground-truth displacements: a pool run (data 'pool')")
    train = decode_clip_bank(train_records, size=p.bank_size, spec=spec, mode="all",
                             max_clips_per_video=p.max_train_clips_per_video, workers=workers, progress=progress,
                             desc="decode train")
    if p.data == "pool" and p.loss.motion > 0:
        train = attach_pool_motion(train, cfg.data_root, workers=workers, progress=progress)
    if p.data == "pool" and p.natural_repeats > 0:
        from lib.data.natural import natural_video_paths

        natural = decode_natural_bank(natural_video_paths(), size=p.bank_size, spec=spec)
        train = concat_banks([train, natural], repeats=[1, p.natural_repeats])
    val = decode_clip_bank(val_records, size=p.bank_size, spec=spec, mode="center", workers=workers, progress=progress,
                           desc="decode val")
    if p.data == "labelled" and train.group_set & (set(split.val_groups) | set(split.groups("test"))):
        raise AssertionError("internal error: held-out groups in the training bank")
    groups = {s: list(split.groups(s)) for s in ("train", "val", "test")}
    if p.data == "pool":
        groups = {"pool": sorted(train.group_set), "val": list(split.val_groups)}
    return _Banks(train=train, val=val, groups=groups, seconds=time.perf_counter() - start)


def _history_row(step: int, terms: Mapping[str, float], lr: float, elapsed: float, clips_per_s: float) -> dict[str, Any]:
    row = {"step": step, **{k: f"{terms.get(k, 0.0):.6g}" for k in ("loss", "l1", "ssim", "grad", "kl", "shift", "pyramid",
                                                                  "motion", "grad_norm")},
           "lr": f"{lr:.6g}", "elapsed_s": f"{elapsed:.2f}", "clips_per_s": f"{clips_per_s:.3f}",
           "probe_psnr": "", "probe_ssim": ""}
    return {k: row[k] for k in HISTORY_COLUMNS}


def run(
    cfg: RunConfig,
    out: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    time_limit: float | None = None,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Train (or resume, or finish) the run ``cfg`` in ``out``; return its status.

    ``stop_after``: optimizer steps to run in THIS invocation before checkpointing and returning
    (as if the job had been killed right after that checkpoint; for preemptible jobs and tests).
    ``time_limit``: the same after this many seconds of training in this invocation.
    Returns ``{"status": "complete"|"stopped", "step": ..., "metrics": {...} (when complete)}``.
    """
    from tqdm.auto import tqdm

    p = cfg.preset
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    state = load_train_state(out)
    if state is not None:
        saved = RunConfig.from_dict(state["config"])
        # The preset NAME is part of cfg; the architecture behind a name can change between
        # versions (e.g. the residual decoder), and same-shaped weights would load silently.
        saved_arch = state.get("model_params")
        if saved_arch is not None and saved_arch != get_preset(p.model_preset):
            raise TrainStateError(f"{out} holds a run of an older/different {p.model_preset!r} architecture "
                                  f"({saved_arch['ddconfig']} vs now {get_preset(p.model_preset)['ddconfig']}). "
                                  "Fix: delete that folder (or pass another --out) to train the current one")
        if saved != cfg:
            diff = {k: (v, cfg.to_dict()[k]) for k, v in saved.to_dict().items() if cfg.to_dict()[k] != v}
            raise TrainStateError(f"{out} holds a run with other settings (saved vs asked: {diff}). Fix: rerun with "
                                  "the saved settings to resume it, or pass another --out")
        if state["step"] >= p.steps and (out / METRICS_NAME).is_file():
            log(f"{out}: run already complete ({state['step']} steps); nothing to do")
            return {"status": "complete", "step": state["step"],
                    "metrics": json.loads((out / METRICS_NAME).read_text())}

    seed_everything(cfg.seed)
    banks = load_banks(cfg, workers=workers, progress=progress)
    log(f"train bank: {bank_summary(banks.train)}; val bank: {bank_summary(banks.val)}; "
        f"decoded in {banks.seconds:.1f} s; groups {banks.groups}")

    model = build_model(p, cfg.seed)
    optimizer = build_optimizer(model, p)
    ema = copy.deepcopy(model).requires_grad_(False) if p.ema_decay > 0 else None
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        log(f"resuming {out} at step {step}/{p.steps} ({elapsed:.0f} s trained so far)")
    n_params = sum(t.numel() for t in model.parameters())
    log(f"model {p.model_preset}: {n_params / 1e6:.2f} M parameters; {p.steps} steps x {p.batch_size} clips of "
        f"{p.crop[0]}x{p.crop[1]}; torch threads {torch.get_num_threads()}")

    sampler = ClipBatchSampler(banks.train, batch_size=p.batch_size, crop=p.crop, hflip=p.hflip, seed=cfg.seed,
                               color=p.color_aug)
    history = RunDir(out)
    logged = last_logged_step(out / HISTORY_NAME)
    probe = _spread(len(banks.val), p.probe_clips) if p.probe_clips > 0 else []
    pending: list[dict[str, Any]] = []

    scored = ema if ema is not None else model  # what probes, the final evaluation and the export use

    def checkpoint(at_step: int) -> None:
        nonlocal logged
        if probe:
            m = evaluate(scored, banks.val, crop=p.crop, batch_size=p.eval_batch_size, indices=probe)
            if pending and pending[-1]["step"] == at_step:
                pending[-1]["probe_psnr"], pending[-1]["probe_ssim"] = f"{m['psnr']:.4f}", f"{m['ssim']:.4f}"
        for row in pending:
            if row["step"] > logged:  # steps a killed run already logged are not written twice
                history.append_history(row)
                logged = row["step"]
        pending.clear()
        _atomic_torch_save({"format": STATE_FORMAT, "step": at_step, "elapsed_s": elapsed, "config": cfg.to_dict(),
                            "model_params": get_preset(p.model_preset), "model": model.state_dict(),
                            **({"ema": ema.state_dict()} if ema is not None else {}),
                            "optimizer": optimizer.state_dict(), "rng": capture_rng_state(),
                            "torch": str(torch.__version__)}, out / STATE_NAME)
        export_weights(scored, out, cfg, at_step)

    start_step, run_start = step, time.perf_counter()
    clips_seen, train_seconds = 0, 0.0
    with tqdm(total=p.steps, initial=step, unit="step", desc=f"train {p.name}", disable=not progress) as bar:
        while step < p.steps:
            t0 = time.perf_counter()
            lr = lr_at(step, p)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            x = sampler.batch(step, p.crop_at(step))  # (B, 3, 16, h, w) in [-1, 1]
            motion = sampler.motion(step, p.crop_at(step)) if p.loss.motion > 0 else None
            terms = train_step(model, optimizer, x, weights=p.loss, motion=motion,
                               generator=make_generator(cfg.seed, _POSTERIOR_DOMAIN, step), grad_clip=p.grad_clip,
                               bf16=p.bf16, sample=p.sample_posterior, mse_head_only=p.mse_head_only)
            step += 1
            if ema is not None:
                update_ema(ema, model, ema_decay_at(step, p))
            dt = time.perf_counter() - t0
            elapsed += dt
            train_seconds += dt
            clips_seen += x.shape[0]
            rate = clips_seen / max(train_seconds, 1e-9)
            pending.append(_history_row(step, terms, lr, elapsed, rate))
            bar.set_postfix(loss=f"{terms['loss']:.4f}", l1=f"{terms['l1']:.4f}", clips_s=f"{rate:.2f}")
            bar.update()
            stop = (stop_after is not None and step - start_step >= stop_after) or (
                time_limit is not None and time.perf_counter() - run_start >= time_limit)
            if step % p.checkpoint_every == 0 or step == p.steps or stop:
                checkpoint(step)
            if stop and step < p.steps:
                log(f"stopped at step {step}/{p.steps} after {time.perf_counter() - run_start:.0f} s; rerun the same "
                    "command to resume")
                return {"status": "stopped", "step": step}
    if step == start_step:
        # Nothing trained in this invocation (the state was final, metrics missing): make sure the
        # export matches the state (a kill may have struck between the two writes).
        export_weights(scored, out, cfg, step)

    log(f"evaluating on {len(banks.val)} held-out clips ...")
    t_eval = time.perf_counter()
    held = evaluate(scored, banks.val, crop=p.crop, batch_size=p.eval_batch_size, indices=_spread(len(banks.val), p.val_clips))
    eval_seconds = time.perf_counter() - t_eval
    last_rows = _read_history(out / HISTORY_NAME)
    metrics = {
        "train_preset": p.name,
        "model_preset": p.model_preset,
        "parameters": n_params,
        "weights": f"exponential moving average (decay {p.ema_decay})" if ema is not None else "last step",
        "steps": step,
        "batch_size": p.batch_size,
        "clips_seen": step * p.batch_size,
        "seed": cfg.seed,
        "data_root": cfg.data_root,
        "fold": cfg.fold,
        "val_fraction": cfg.val_fraction,
        "val_seed": cfg.val_seed,
        "groups": banks.groups,
        "resolution": {"bank": list(p.bank_size), "crop": list(p.crop), "latent": list(model.latent_shape(16, *p.crop))},
        "train_bank": bank_summary(banks.train),
        "val_bank": bank_summary(banks.val),
        "heldout": {
            "clips": held["clips"],
            "vae": {"psnr": round(held["psnr"], 4), "ssim": round(held["ssim"], 5)},
            "baseline_repeat_content_frame": {"psnr": round(held["baseline_psnr"], 4),
                                              "ssim": round(held["baseline_ssim"], 5)},
            "psnr_gain_db": round(held["psnr"] - held["baseline_psnr"], 4),
            "baseline_blurred_content_frame": {"sigma_px": BLUR_BASELINE_SIGMA, "psnr": round(held["blurred_psnr"], 4),
                                               "ssim": round(held["blurred_ssim"], 5)},
        },
        "train_wall_time_s": round(elapsed, 2),
        "train_clips_per_s": round(step * p.batch_size / max(elapsed, 1e-9), 4),
        "decode_time_s": round(banks.seconds, 2),
        "eval_time_s": round(eval_seconds, 2),
        "final_train_loss_mean_last_10": _mean_last(last_rows, "loss", 10),
        "final_train_l1_mean_last_10": _mean_last(last_rows, "l1", 10),
        "config": cfg.to_dict(),
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "files": {"weights": WEIGHTS_NAME, "state": STATE_NAME, "history": HISTORY_NAME},
    }
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    log(f"held-out ({held['clips']} val clips, {p.crop[0]}x{p.crop[1]}): VAE PSNR {held['psnr']:.2f} dB / SSIM "
        f"{held['ssim']:.4f}; repeat-content-frame baseline {held['baseline_psnr']:.2f} dB / {held['baseline_ssim']:.4f} "
        f"(blurred {held['blurred_psnr']:.2f} / {held['blurred_ssim']:.4f}); "
        f"trained {elapsed:.0f} s ({metrics['train_clips_per_s']:.2f} clips/s)")
    return {"status": "complete", "step": step, "metrics": metrics}


def _read_history(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _mean_last(rows: Sequence[Mapping[str, str]], key: str, n: int) -> float | None:
    values = [float(r[key]) for r in rows[-n:] if r.get(key)]
    return round(sum(values) / len(values), 6) if values else None


# =================================================================================================
# CLI
# =================================================================================================
def _pair(text: str) -> tuple[int, int]:
    """argparse type: ``HxW`` -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 64x96), got {text!r}") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.vae train",
        description="Train a reduced-width Reducio-VAE on a UCF101-layout dataset's training split (fold's train "
                    "list minus the group-disjoint validation groups); resumable (rerun the same command).",
    )
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset root (UCF-101/ + ucfTrainTestlist/); default: the embedded synthetic dataset of "
                             "the same preset name, generated if missing")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="pool presets: the labelled dataset whose validation split gives the held-out metrics "
                             "(default: the embedded default dataset)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="training preset")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; resumed if it holds a run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of init, data order, crops and posterior noise")
    parser.add_argument("--fold", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--val-fraction", type=float, default=0.1, help="groups held out of the train list")
    parser.add_argument("--val-seed", type=int, default=0, help="seed of the validation-group draw")
    over = parser.add_argument_group("preset overrides (they change the run's identity: resume needs the same)")
    over.add_argument("--model-preset", default=None, help="lib.vae.presets name (widths)")
    over.add_argument("--steps", type=int, default=None)
    over.add_argument("--batch-size", type=int, default=None)
    over.add_argument("--lr", type=float, default=None)
    over.add_argument("--warmup-steps", type=int, default=None)
    over.add_argument("--out-lr-scale", type=float, default=None, help="lr multiplier of the decoder's conv_out")
    over.add_argument("--ema-decay", type=float, default=None, help="weight average decay (0 = off)")
    over.add_argument("--checkpoint-every", type=int, default=None)
    over.add_argument("--bank-size", type=_pair, default=None, help="stored frame size HxW (e.g. 72x96)")
    over.add_argument("--crop", type=_pair, default=None, help="training/eval crop HxW, multiples of 32")
    over.add_argument("--val-clips", type=int, default=None, help="held-out clips evaluated at the end")
    over.add_argument("--probe-clips", type=int, default=None, help="held-out clips evaluated at checkpoints")
    over.add_argument("--l1-weight", type=float, default=None)
    over.add_argument("--mse-weight", type=float, default=None)
    over.add_argument("--ssim-weight", type=float, default=None)
    over.add_argument("--grad-weight", type=float, default=None)
    over.add_argument("--kl-weight", type=float, default=None)
    over.add_argument("--shift-weight", type=float, default=None, help="auxiliary global-shift term (px)")
    over.add_argument("--pyramid-weight", type=float, default=None, help="L1 of 2x/4x/8x pooled frames")
    over.add_argument("--motion-weight", type=float, default=None,
                      help="L1 (px) of the displacement field against the pool's ground truth")
    over.add_argument("--mse-scope", choices=("all", "head"), default=None,
                      help="the MSE term trains the whole model or only the decoder's conv_out")
    over.add_argument("--no-hflip", action="store_true", help="disable random horizontal flips")
    over.add_argument("--no-color-aug", action="store_true", help="disable random channel permutation/negatives")
    over.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                      help="training forward under bfloat16 autocast or in float32")
    run_opts = parser.add_argument_group("this invocation only (not part of the run's identity)")
    run_opts.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores)")
    run_opts.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    run_opts.add_argument("--stop-after", type=int, default=None,
                          help="checkpoint and exit after this many steps (resume by rerunning without it)")
    run_opts.add_argument("--time-limit", type=float, default=None,
                          help="checkpoint and exit after this many seconds of training (resumable)")
    run_opts.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's :class:`RunConfig` from parsed arguments (preset + overrides + data root)."""
    preset = PRESETS[args.preset]
    changes: dict[str, Any] = {}
    for arg, name in (("model_preset", "model_preset"), ("steps", "steps"), ("batch_size", "batch_size"),
                      ("lr", "lr"), ("warmup_steps", "warmup_steps"), ("checkpoint_every", "checkpoint_every"),
                      ("bank_size", "bank_size"), ("crop", "crop"), ("val_clips", "val_clips"),
                      ("probe_clips", "probe_clips"), ("out_lr_scale", "out_lr_scale"),
                      ("ema_decay", "ema_decay")):
        if getattr(args, arg) is not None:
            changes[name] = getattr(args, arg)
    if args.mse_scope is not None:
        changes["mse_head_only"] = args.mse_scope == "head"
    if args.no_hflip:
        changes["hflip"] = False
    if args.no_color_aug:
        changes["color_aug"] = False
    if args.precision is not None:
        changes["bf16"] = args.precision == "bf16"
    loss_changes = {k: getattr(args, f"{k}_weight") for k in ("l1", "mse", "ssim", "grad", "kl", "shift", "pyramid", "motion")
                    if getattr(args, f"{k}_weight") is not None}
    if loss_changes:
        changes["loss"] = replace(preset.loss, **loss_changes)
    if changes.get("warmup_steps") is None and "steps" in changes:
        changes["warmup_steps"] = min(preset.warmup_steps, max(0, changes["steps"] // 5))
    preset = replace(preset, **changes)
    if preset.data == "pool":
        from lib.data.synth import ensure_synthetic
        from lib.data.synth_pool import ensure_pool

        smoke = preset.name.endswith("smoke")
        pool_root = (args.data.expanduser().resolve() if args.data is not None
                     else ensure_pool("pretrain_smoke" if smoke else "pretrain", progress=not args.no_progress))
        eval_root = (args.eval_data.expanduser().resolve() if args.eval_data is not None
                     else ensure_synthetic("smoke" if smoke else "default", progress=not args.no_progress))
        return RunConfig(preset=preset, seed=args.seed, data_root=str(pool_root), fold=args.fold,
                         val_fraction=args.val_fraction, val_seed=args.val_seed, eval_root=str(eval_root))
    if args.data is None:
        from lib.data.synth import PRESETS as SYNTH_PRESETS
        from lib.data.synth import ensure_synthetic

        if args.preset not in SYNTH_PRESETS:
            raise ValueError(f"no embedded synthetic dataset named {args.preset!r}; pass --data")
        data_root = ensure_synthetic(args.preset, seed=0, progress=not args.no_progress)
    else:
        data_root = args.data.expanduser().resolve()
    return RunConfig(preset=preset, seed=args.seed, data_root=str(data_root), fold=args.fold,
                     val_fraction=args.val_fraction, val_seed=args.val_seed)


def main(argv: list[str] | None = None) -> int:
    """``python -m lib.vae train ...``; returns the exit code (0 done or stopped, 1 error)."""
    from lib.data.errors import DataError

    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        cfg = config_from_args(args)  # ValueError here = an invalid setting, reported as such
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        result = run(cfg, args.out.expanduser().resolve(), workers=args.workers, progress=not args.no_progress,
                     stop_after=args.stop_after, time_limit=args.time_limit)
    except (DataError, TrainStateError) as err:  # anything else is a bug: keep its traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result["status"] == "complete":
        print(json.dumps({"out": str(args.out), **result["metrics"]["heldout"],
                          "steps": result["step"], "train_wall_time_s": result["metrics"]["train_wall_time_s"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
