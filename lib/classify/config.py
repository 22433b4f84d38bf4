"""The training configuration shared by every classifier (latent and pixel models alike)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

import torch

from lib.classify.errors import UnknownNameError

# Metrics a run can select its checkpoint on, and whether larger is better.
SELECTION_METRICS: Final[dict[str, bool]] = {
    "val_video_top1": True,
    "val_clip_top1": True,
    "val_loss": False,
}
# Fields that may differ between a run and its resumption (they do not change the numbers the
# run computes on one machine, or, for the budget, only where it stops).
RESUME_FREE_FIELDS: Final[frozenset[str]] = frozenset(
    {"device", "num_workers", "progress", "max_train_seconds", "eval_batch_size"}
)

_NUMBER_FIELDS: Final[tuple[str, ...]] = (
    "lr",
    "weight_decay",
    "warmup_epochs",
    "min_lr",
    "label_smoothing",
    "mixup_alpha",
    "grad_clip",
    "min_delta",
    "max_train_seconds",
)

AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
STANDARDIZE_MODES = ("none", "element", "channel")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and run settings of :func:`lib.classify.engine.fit`.

    Optimisation: AdamW (``lr``, ``weight_decay``; no decay on biases and normalisation
    parameters), per-step linear warm-up over ``warmup_epochs`` epochs (fractions allowed) from
    ~0 to ``lr``, then cosine decay to ``min_lr`` at the last step of ``epochs``. ``grad_clip``:
    max global gradient norm (None: off). ``label_smoothing`` in [0, 1); ``mixup_alpha`` > 0
    mixes pairs of clips (all inputs) and their soft targets with ``lambda ~ Beta(a, a)``.

    Selection: every ``eval_every`` epochs (and at the last) the validation split is evaluated;
    the checkpoint with the best ``select_on`` is kept as ``best.pt``. Early stopping after
    ``patience`` evaluations without an improvement larger than ``min_delta`` (None: off).

    Runtime: ``amp`` "auto" = mixed precision on CUDA only (bf16 where supported, else fp16
    with loss scaling); ``device`` "auto" = CUDA if available. ``seed`` drives weight-free
    randomness of the loop (data order, mixup, augmentation, dropout); seed the model's
    initialisation yourself before building it (:func:`lib.classify.experiment.run_experiment`
    does). ``max_train_seconds``: stop (resumably) after the epoch that exceeds this budget of
    training wall time, summed over resumptions. ``num_workers``: decode worker processes of
    the pixel sources :func:`lib.classify.experiment.run_experiment` builds. ``deterministic``:
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` during the fit.

    Input: ``input_standardize`` (cached latents / pooled pixels only) "none" feeds the stored
    values; "element" subtracts the training split's mean and divides by its std for every
    value position (C, T, H, W) separately, "channel" per channel; statistics from the TRAIN
    split only, applied to every split (:func:`lib.classify.data.standardize_splits`). Why: a
    briefly trained local VAE's latents are dominated by a clip-independent pattern (per-channel
    means ~0.5, clip-to-clip std ~0.1); on one such cache both LSTMs stayed at chance, training
    accuracy included, on the raw values.
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr: float = 1e-6
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    grad_clip: float | None = 1.0
    patience: int | None = 10
    min_delta: float = 0.0
    select_on: str = "val_video_top1"
    amp: Literal["auto"] | bool = "auto"
    seed: int = 0
    device: str = "auto"
    augment: str | AugmentFn | None = None
    eval_every: int = 1
    eval_batch_size: int | None = None
    num_workers: int = 0
    max_train_seconds: float | None = None
    deterministic: bool = True
    progress: bool = True
    input_standardize: str = "none"

    def __post_init__(self) -> None:
        for name in _NUMBER_FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
                raise ValueError(f"TrainConfig: {name} must be a number, got {value!r}{hint}")
        checks: list[tuple[bool, str]] = [
            (isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be an int >= 1, got {self.epochs!r}"),
            (
                isinstance(self.batch_size, int) and self.batch_size >= 1,
                f"batch_size must be an int >= 1, got {self.batch_size!r}",
            ),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be > 0, got {self.lr!r}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}"),
            (0 <= self.min_lr <= self.lr, f"min_lr must be in [0, lr], got {self.min_lr!r}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}"),
            (self.mixup_alpha >= 0, f"mixup_alpha must be >= 0, got {self.mixup_alpha!r}"),
            (self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or None, got {self.grad_clip!r}"),
            (self.patience is None or self.patience >= 1, f"patience must be >= 1 or None, got {self.patience!r}"),
            (self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every!r}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers!r}"),
            (self.amp in ("auto", True, False), f"amp must be 'auto', True or False, got {self.amp!r}"),
            (
                self.max_train_seconds is None or self.max_train_seconds > 0,
                f"max_train_seconds must be > 0 or None, got {self.max_train_seconds!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")
        if self.input_standardize not in STANDARDIZE_MODES:
            raise ValueError(
                f"TrainConfig: input_standardize must be one of {STANDARDIZE_MODES}, got {self.input_standardize!r}"
            )
        if self.select_on not in SELECTION_METRICS:
            raise UnknownNameError(
                None,
                f"TrainConfig.select_on={self.select_on!r} is not a selection metric",
                f"use one of {sorted(SELECTION_METRICS)}",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | TrainConfig | None, **overrides: Any) -> TrainConfig:
        """Build from a params-file mapping (plus ``overrides``); an unknown key is an error
        naming the valid fields, so a typo never trains silently on a default."""
        base: dict[str, Any] = {}
        if isinstance(values, TrainConfig):
            base = {f.name: getattr(values, f.name) for f in fields(cls)}
        elif values is not None:
            base = dict(values)
        base.update(overrides)
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(base) - valid)
        if unknown:
            raise UnknownNameError(None, f"unknown training setting(s) {unknown}", f"valid settings: {sorted(valid)}")
        return cls(**base)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype, or None when mixed precision is off (always off on CPU)."""
        use = (device.type == "cuda") if self.amp == "auto" else bool(self.amp)
        if not use or device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def record(self) -> dict[str, Any]:
        """JSON/checkpoint-safe view (a callable ``augment`` becomes its qualified name)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if callable(value):
                qualname = getattr(value, "__qualname__", type(value).__name__)
                value = f"callable:{getattr(value, '__module__', '?')}.{qualname}"
            out[f.name] = value
        return out
