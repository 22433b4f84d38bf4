"""What a VAE training run is: :class:`TrainPreset` (everything but the data root and the seed),
the named :data:`PRESETS`, and :class:`RunConfig` (a run's identity: preset after overrides,
seed, data root, split settings). A preset's ``to_dict()`` is what ``train_state.pt`` and
``metrics.json`` record, so its fields and values are part of those files' format.

The learning rate (:func:`lr_at`) and the weight-average decay (:func:`ema_decay_at`) are pure
functions of the optimizer step, so a resumed run needs only its step count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from lib.training import WarmupCosine
from lib.vae.losses import VAELossWeights


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
    # lr multiplier of the latent motion readout (loss.latent_motion > 0). Why: the zero-initialised
    # linear readout needs weights of order 1 (px of displacement per unit of latent), which AdamW
    # at the body's lr reaches only after thousands of steps. (Measured outcome of the term, at 1x
    # and 20x: docs/results.md, VAE pretraining.)
    readout_lr_scale: float = 20.0

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
    # latent 16x4x2x3. Measured outcome: docs/results.md.
    "default": TrainPreset(
        name="default", model_preset="local-default", steps=450, batch_size=2, lr=5e-4, warmup_steps=20,
        final_lr_fraction=0.05, weight_decay=0.0, grad_clip=1.0, bank_size=(72, 96), crop=(64, 96), hflip=True,
        color_aug=True, max_train_clips_per_video=None, val_clips=None, probe_clips=8, checkpoint_every=50,
        eval_batch_size=8, logvar_init=-6.0, out_lr_scale=10.0, ema_decay=0.99, loss=LOCAL_LOSS, mse_head_only=True,
        # loss.shift stays 0: the shift teacher (0.05) gained 0.01 dB but made the latents carry
        # camera shake instead of the action (linear probe, docs/results.md)
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

# The same pretraining on a GPU (python benchmarks/gpu_pretrain.py, --device cuda): 16x the batch,
# lr 1e-3 and 6,000 steps (192,000 clips, 380x the shipped stand-in's 500), checkpoints every 250
# steps so a run stopped by its time limit keeps all but its last few hundred.
PRESETS["pretrain_gpu"] = replace(PRESETS["pretrain"], name="pretrain_gpu", steps=6000, batch_size=32, lr=1e-3,
                                  warmup_steps=200, probe_clips=32, eval_batch_size=32)


def lr_schedule(preset: TrainPreset) -> WarmupCosine:
    """The preset's schedule: linear warm-up to ``lr`` over ``warmup_steps``, the peak held one
    more step, then cosine decay to ``lr * final_lr_fraction`` at the last step."""
    return WarmupCosine.with_floor_fraction(preset.lr, preset.final_lr_fraction, warmup_steps=preset.warmup_steps,
                                            total_steps=preset.steps, hold_peak=True)


def lr_at(step: int, preset: TrainPreset) -> float:
    """Learning rate of optimizer step ``step`` (0-based) under :func:`lr_schedule`."""
    return lr_schedule(preset).lr_at(step)


def ema_decay_at(step: int, preset: TrainPreset) -> float:
    """Decay of the weight average after optimizer step ``step`` (1-based): ramps up so the
    average is not dominated by the initialisation."""
    return min(preset.ema_decay, (1 + step) / (10 + step))


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

