"""Optimiser pieces of the loop: AdamW parameter groups, the warm-up + cosine schedule of a
:class:`TrainConfig` (:class:`lib.training.WarmupCosine`), mixup with soft targets, and the latent
augmentation hook."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.classify.config import AugmentFn, TrainConfig
from lib.classify.errors import UnknownNameError
from lib.training import WarmupCosine

__all__ = ["WarmupCosine", "mixup", "parameter_groups", "resolve_augment", "schedule_for_config", "soft_targets"]

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Two AdamW groups: decayed weights, and no decay for biases, 1-D parameters, parameters
    of normalisation layers and names the model lists in ``no_weight_decay()`` (the timm
    convention, e.g. positional embeddings and class tokens). Decaying a norm's scale or a
    bias only pulls it towards 0 and has no regularising effect on the function."""
    skip: set[str] = set()
    listed = getattr(model, "no_weight_decay", None)
    if callable(listed):
        skip |= set(listed())
    for module_name, module in model.named_modules():
        if isinstance(module, _NORM_TYPES):
            skip |= {f"{module_name}.{n}" if module_name else n for n, _ in module.named_parameters(recurse=False)}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip or name.endswith(".bias") else decay).append(param)
    groups: list[dict[str, object]] = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def schedule_for_config(config: TrainConfig, steps_per_epoch: int) -> WarmupCosine:
    """The per-step schedule of ``config``: warm-up over ``warmup_epochs`` (at most all steps
    but one), then a half cosine from ``lr`` to ``min_lr`` at the last step."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(total - 1, round(config.warmup_epochs * steps_per_epoch)) if total > 1 else 0
    return WarmupCosine(config.lr, config.min_lr, max(0, warmup), total)


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(B,) int64 -> (B, K) float32 targets: one-hot * (1 - s) + s / K."""
    one_hot = F.one_hot(labels, num_classes).float()
    return one_hot * (1.0 - smoothing) + smoothing / num_classes if smoothing else one_hot


def mixup(
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    alpha: float,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Mix each clip with a partner from the same batch: ``x = lam x + (1 - lam) x[perm]`` for
    every input (latent and content alike) and the same for the soft targets (B, K).
    ``lam ~ Beta(alpha, alpha)`` from ``rng``, ``perm`` from ``generator`` (CPU); one ``lam``
    per batch (the original formulation)."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(targets.shape[0], generator=generator).to(targets.device)
    mixed = tuple(lam * x + (1.0 - lam) * x.index_select(0, perm) for x in inputs)
    return mixed, lam * targets + (1.0 - lam) * targets.index_select(0, perm)


def resolve_augment(augment: str | AugmentFn | None) -> AugmentFn | None:
    """The latent augmentation hook: a callable ``augment(x, generator) -> x`` applied to the
    first input (the latent, (B, C, T, H, W) float32) of training batches only, or the name of
    a preset of :mod:`lib.models.augment` (``get_augment(name)``; an unknown name lists them)."""
    if augment is None or callable(augment):
        return augment
    try:
        from lib.models.augment import get_augment
    except ImportError as exc:
        raise UnknownNameError(
            None,
            f"augmentation {augment!r} needs lib.models.augment, which is not importable ({exc})",
            "pass augment=None or a callable augment(x, generator)",
        ) from exc
    return get_augment(augment)
