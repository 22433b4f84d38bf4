"""One training epoch and the checks around it (used by :func:`lib.classify.engine.fit`).

Randomness of an epoch comes from generators seeded by (run seed, epoch, stream) - data order,
mixup partners, mixup lambda, latent augmentation - so an epoch is the same whether or not the
run was interrupted before it; dropout uses the global torch RNG, whose state ``last.pt`` keeps.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lib.classify import checkpoint as ckpt
from lib.classify.config import AugmentFn, TrainConfig
from lib.classify.data import BatchSource
from lib.classify.errors import InputMismatchError, TrainingDivergedError
from lib.classify.optim import mixup, soft_targets
from lib.classify.predict import autocast
from lib.runs import RunDir
from lib.training import WarmupCosine


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A distinct 63-bit seed per (run seed, epoch, random stream) via numpy's SeedSequence."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def refuse_test(source: BatchSource | None, role: str) -> None:
    if source is not None and getattr(source, "split", None) == "test":
        raise InputMismatchError(
            getattr(source, "source", None) or "test split",
            f"was passed to fit() as its {role} data",
            "fit() never sees the test split; score it once with train_and_evaluate()",
        )


def probe_model(model: nn.Module, data: BatchSource, device: torch.device) -> int:
    """Forward two clips in eval mode: the number of classes, and a clear error naming the data
    and the model when the input does not fit the model."""
    was_training = model.training
    model.eval()
    try:
        batches = data.on(device).batches(2, shuffle=False, generator=None, device=device)
        try:
            batch = next(iter(batches))
        finally:
            getattr(batches, "close", lambda: None)()  # stop a DataLoader's workers now
        with torch.no_grad():
            out = model(*batch.inputs)
    except (RuntimeError, TypeError, ValueError) as exc:
        where = getattr(data, "source", None) or f"{data.split} split"
        raise InputMismatchError(
            where,
            f"{ckpt.model_identity(model)} cannot take inputs of shape "
            f"{list(data.input_shapes())} ({type(exc).__name__}: {str(exc)[:300]})",
            "build the model with input_shape equal to the data's clip shape, or use data made for this model",
        ) from exc
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[0] != batch.size:
        raise InputMismatchError(
            None,
            f"{ckpt.model_identity(model)} returned shape {tuple(out.shape)}; expected (B, K) logits",
            "the model must map (B, ...) inputs to (B, num_classes)",
        )
    num_classes = int(out.shape[1])
    labels = getattr(data, "labels", None)
    if isinstance(labels, torch.Tensor) and labels.numel() and int(labels.max()) >= num_classes:
        raise InputMismatchError(
            getattr(data, "source", None),
            f"labels go up to {int(labels.max())} but the model has {num_classes} outputs",
            "build the model with num_classes equal to the dataset's class count",
        )
    return num_classes


def diverged_error(
    run: RunDir, config: TrainConfig, epoch: int, step: int, lr: float, value: float, inputs_finite: bool | None
) -> TrainingDivergedError:
    last = run.path / ckpt.LAST_NAME
    kept = (
        f"the last good checkpoint is kept: {last}"
        if last.exists()
        else "no epoch had finished, so there is no checkpoint yet"
    )
    if inputs_finite is False:
        reason = (
            f"training loss is {value} at epoch {epoch + 1}, step {step}: the input batch itself holds NaN/inf ({kept})"
        )
        fix = "check the latent cache / input data for NaN or inf values (rebuild the cache entries at fault)"
    else:
        reason = f"training loss became {value} at epoch {epoch + 1}, step {step} (lr {lr:.3g}) ({kept})"
        fix = (
            f"lower lr (e.g. {config.lr / 3:.3g} instead of {config.lr:.3g}), "
            f"keep grad_clip on (now {config.grad_clip}), "
            f"lengthen warmup_epochs (now {config.warmup_epochs}) or set amp=False; then rerun in a fresh run directory"
        )
    return TrainingDivergedError(
        run.path, reason, fix, epoch=epoch, step=step, last_good_checkpoint=last if last.exists() else None
    )


class Determinism:
    """Turn on deterministic algorithms for the fit and restore the caller's setting after."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        self.previous = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        self.benchmark = torch.backends.cudnn.benchmark
        if self.enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

    def __exit__(self, *exc: object) -> None:
        torch.use_deterministic_algorithms(self.previous[0], warn_only=self.previous[1])
        torch.backends.cudnn.benchmark = self.benchmark


@dataclass(frozen=True)
class EpochLoop:
    """What every epoch of one :func:`lib.classify.engine.fit` shares; built once per fit."""

    model: nn.Module
    train: BatchSource  # already placed on ``device``
    config: TrainConfig
    run: RunDir
    schedule: WarmupCosine
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    augment: AugmentFn | None
    num_classes: int
    device: torch.device
    drop_last: bool  # a trailing batch of 1 would break BatchNorm
    steps_per_epoch: int


def check_finite(
    loop: EpochLoop, epoch: int, pending: list[tuple[int, torch.Tensor]], inputs: tuple[torch.Tensor, ...] | None
) -> None:
    """Raise :class:`TrainingDivergedError` at the first non-finite loss of ``pending`` (step,
    loss) pairs, saying whether the batch ``inputs`` themselves held NaN/inf; then empty it."""
    if not pending:
        return
    losses = torch.stack([loss for _, loss in pending])
    bad = (~torch.isfinite(losses)).nonzero()
    if bad.numel():
        step, value = pending[int(bad[0])][0], losses[int(bad[0])].item()
        finite = None if inputs is None else all(bool(torch.isfinite(x).all()) for x in inputs)
        raise diverged_error(loop.run, loop.config, epoch, step, loop.schedule.lr_at(step), value, finite)
    pending.clear()


def train_one_epoch(*, loop: EpochLoop, epoch: int, state: dict[str, Any]) -> dict[str, Any]:
    """One pass over the training split; advances ``state["step"]`` and returns the epoch's
    history row (val fields empty)."""
    config, model, optimizer, scaler, device = loop.config, loop.model, loop.optimizer, loop.scaler, loop.device
    order_gen = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, 0))
    mix_gen = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, 1))
    mix_rng = np.random.default_rng(epoch_seed(config.seed, epoch, 2))
    aug_gen = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch, 3))
    # CPU: check every step (free, and the bad step is never applied); GPU: every 25 steps
    # (each check is a host sync), and always before the epoch's checkpoint is written.
    check_every = 1 if device.type == "cpu" else 25
    model.train()
    start = time.perf_counter()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    pending: list[tuple[int, torch.Tensor]] = []
    lr = loop.schedule.lr_at(state["step"])
    bar = tqdm(
        total=loop.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not config.progress
    )
    try:
        for batch in loop.train.batches(
            config.batch_size, shuffle=True, generator=order_gen, device=device, train=True, drop_last=loop.drop_last
        ):
            lr = loop.schedule.apply(optimizer, state["step"])
            inputs = batch.inputs
            if loop.augment is not None:
                inputs = (loop.augment(inputs[0], aug_gen),) + inputs[1:]
            targets = soft_targets(batch.labels, loop.num_classes, config.label_smoothing)
            if config.mixup_alpha > 0:
                inputs, targets = mixup(inputs, targets, config.mixup_alpha, mix_rng, mix_gen)
            with autocast(device, loop.amp_dtype):
                logits = model(*inputs)
            loss = F.cross_entropy(logits.float(), targets)
            pending.append((state["step"] + 1, loss.detach()))
            if len(pending) >= check_every:
                check_finite(loop, epoch, pending, batch.inputs)  # before backward: on CPU a NaN step never lands
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            state["step"] += 1
            loss_sum += loss.detach().double() * batch.size
            correct += (logits.detach().argmax(dim=1) == batch.labels).sum()  # vs. the unmixed labels
            seen += batch.size
            bar.update(1)
        check_finite(loop, epoch, pending, None)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch + 1,
        "step": state["step"],
        "lr": lr,
        "train_loss": loss_sum.item() / max(seen, 1),
        "train_acc": correct.item() / max(seen, 1),
        "val_loss": "",
        "val_clip_top1": "",
        "val_video_top1": "",
        "epoch_seconds": seconds,
        "val_seconds": 0.0,
        "train_clips_per_s": seen / seconds if seconds > 0 else float("nan"),
        "elapsed_seconds": 0.0,
    }
