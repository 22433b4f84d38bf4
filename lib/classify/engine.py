"""The one training loop of the study (:func:`fit`) and the evaluation protocol around it
(:func:`train_and_evaluate`: fit on train, select on val, then score the test split once).

Per epoch: a seeded shuffle of the training split (generator seeded from (seed, epoch), so the
order never depends on where a run was interrupted), optional latent augmentation and mixup,
AdamW with a per-step warm-up + cosine learning rate, label smoothing, gradient clipping, AMP
on CUDA; then the validation split is scored, ``best.pt`` is kept for the best ``select_on``,
``last.pt`` is written (atomically) and one row is appended to ``history.csv``. A killed run
resumes from ``last.pt`` at the next epoch and ends with the same weights as an uninterrupted
one (exactly, on CPU; tested). A non-finite loss stops the run with
:class:`~lib.classify.errors.TrainingDivergedError`; the last good ``last.pt``/``best.pt`` stay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lib.classify import checkpoint as ckpt
from lib.classify.config import RESUME_FREE_FIELDS, SELECTION_METRICS, TrainConfig
from lib.classify.data import BatchSource, num_batches
from lib.classify.epoch import Determinism, EpochLoop, probe_model, refuse_test, train_one_epoch
from lib.classify.errors import RunMismatchError
from lib.classify.metrics import classification_metrics
from lib.classify.optim import parameter_groups, resolve_augment, schedule_for_config
from lib.classify.predict import PREDICTIONS_NAME, Predictions, evaluate, save_predictions
from lib.runs import RunDir
from lib.training import refuse_other_settings, restore_rng_state, settings_differences

__all__ = ["FitResult", "fit", "evaluate", "Predictions", "train_and_evaluate"]

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    """Outcome of :func:`fit`. ``history`` holds one dict per epoch (the rows of history.csv)."""

    run_dir: Path
    epochs_completed: int
    steps: int
    best_epoch: int | None
    best_metric: float | None
    select_on: str
    stop_reason: str
    train_seconds: float
    num_classes: int
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int | None = None

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / ckpt.BEST_NAME

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / ckpt.LAST_NAME

    @property
    def seconds_per_epoch(self) -> float:
        times = [float(row["epoch_seconds"]) for row in self.history]
        return sum(times) / len(times) if times else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "epochs_completed": self.epochs_completed,
            "steps": self.steps,
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
            "select_on": self.select_on,
            "stop_reason": self.stop_reason,
            "train_seconds": self.train_seconds,
            "seconds_per_epoch": self.seconds_per_epoch,
            "num_classes": self.num_classes,
        }


def fit(
    model: nn.Module,
    train: BatchSource,
    val: BatchSource | None,
    config: TrainConfig,
    run_dir: RunDir | Path,
    *,
    resume: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> FitResult:
    """Train ``model`` on ``train``, selecting on ``val`` (None: the last epoch is selected).

    Writes into ``run_dir``: ``last.pt``, ``best.pt``, ``history.csv``. ``resume=True``
    continues a run found there (its config must match, except :data:`RESUME_FREE_FIELDS`);
    ``resume=False`` refuses a directory that already holds a run. A finished run returns at
    once. ``on_epoch_end(row)`` is called after each epoch's checkpoint and history row.
    The model is left with the *last* epoch's weights; ``best.pt`` holds the selected ones.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    run.path.mkdir(parents=True, exist_ok=True)
    refuse_test(train, "training")
    refuse_test(val, "validation")
    fitting = _prepare_fit(model, train, val, config, run)
    with Determinism(config.deterministic):
        state, resumed_from = _resume_or_start(fitting, resume=resume)
        epochs_bar = tqdm(total=config.epochs, initial=state["epoch"], desc="epochs", disable=not config.progress)
        try:
            while not state["finished"] and state["epoch"] < config.epochs:
                row = _run_epoch(fitting, state)
                epochs_bar.update(1)
                epochs_bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=row["val_video_top1"])
                if on_epoch_end is not None:
                    on_epoch_end(row)
        finally:
            epochs_bar.close()
    return FitResult(
        run.path,
        state["epoch"],
        state["step"],
        state["best_epoch"],
        state["best_metric"],
        config.select_on,
        state["stop_reason"] or "epochs",
        state["train_seconds"],
        fitting.loop.num_classes,
        list(state["history"]),
        resumed_from,
    )


@dataclass(frozen=True)
class _Fitting:
    """One fit's loop and what its epochs' evaluation and checkpoints need."""

    loop: EpochLoop
    val: BatchSource | None  # already placed on the loop's device
    shapes: list[list[int]]  # per-clip input shapes, recorded in the checkpoints
    larger_is_better: bool

    @property
    def last_path(self) -> Path:
        return self.loop.run.path / ckpt.LAST_NAME

    def identity(self) -> dict[str, Any]:
        """What a checkpoint records so that a resume with another model or data is refused."""
        return {
            "config": self.loop.config.record(),
            "model_class": ckpt.model_identity(self.loop.model),
            "input_shapes": self.shapes,
        }


def _prepare_fit(
    model: nn.Module, train: BatchSource, val: BatchSource | None, config: TrainConfig, run: RunDir
) -> _Fitting:
    """Place model and data on the device, probe that they fit, build optimizer and schedule."""
    device = config.resolved_device()
    model.to(device)
    train_on, val_on = train.on(device), (val.on(device) if val is not None else None)
    num_classes = probe_model(model, train_on, device)
    if val_on is not None:
        probe_model(model, val_on, device)
    amp_dtype = config.amp_dtype(device)
    drop_last = len(train) > config.batch_size  # a trailing batch of 1 would break BatchNorm
    steps_per_epoch = num_batches(len(train), config.batch_size, drop_last=drop_last)
    loop = EpochLoop(
        model=model,
        train=train_on,
        config=config,
        run=run,
        schedule=schedule_for_config(config, steps_per_epoch),
        optimizer=torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        amp_dtype=amp_dtype,
        augment=resolve_augment(config.augment),
        num_classes=num_classes,
        device=device,
        drop_last=drop_last,
        steps_per_epoch=steps_per_epoch,
    )
    return _Fitting(loop, val_on, [list(s) for s in train.input_shapes()], SELECTION_METRICS[config.select_on])


def _resume_or_start(fitting: _Fitting, *, resume: bool) -> tuple[dict[str, Any], int | None]:
    """The loop state: restored from ``last.pt`` (weights, optimizer, scaler, RNG, history) when
    resuming a run of the same settings, else fresh (a directory holding a run is refused)."""
    loop, last_path = fitting.loop, fitting.last_path
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best_metric": None,
        "best_epoch": None,
        "evals_since_best": 0,
        "history": [],
        "train_seconds": 0.0,
        "finished": False,
        "stop_reason": "",
    }
    if not (resume and last_path.exists()):
        if not resume or ckpt.history_row_count(loop.run):  # history without last.pt: a foreign file
            ckpt.check_fresh_run_dir(loop.run)
        torch.manual_seed(loop.config.seed)  # dropout etc.; data order and mixup use their own generators
        return state, None
    saved = ckpt.load_checkpoint(last_path)
    differences = settings_differences(saved["config"], loop.config.record(), free=RESUME_FREE_FIELDS)
    mine = fitting.identity()
    if saved.get("model_class") != mine["model_class"] or saved.get("input_shapes") != fitting.shapes:
        differences["model/input"] = (
            (saved.get("model_class"), saved.get("input_shapes")),
            (mine["model_class"], fitting.shapes),
        )
    refuse_other_settings(
        differences,
        lambda diff: RunMismatchError(
            last_path,
            f"holds a run with different settings: {diff}",
            "rerun with the recorded settings to resume it, or use a fresh run directory",
        ),
    )
    ckpt.load_model_weights(loop.model, saved["model"], path=last_path)
    loop.optimizer.load_state_dict(saved["optimizer"])
    if saved.get("scaler"):
        loop.scaler.load_state_dict(saved["scaler"])
    restore_rng_state(saved["rng"])
    state = {k: saved[k] for k in state}
    ckpt.reconcile_history(loop.run, state["history"], checkpoint=last_path)
    config = loop.config
    budget_left = config.max_train_seconds is None or state["train_seconds"] < config.max_train_seconds
    if state["stop_reason"] == "time_budget" and budget_left and state["epoch"] < config.epochs:
        state["finished"] = False  # a larger budget continues a run stopped by the old one
    return state, state["epoch"]


def _validate(fitting: _Fitting, row: dict[str, Any], state: dict[str, Any], epoch: int) -> tuple[bool, float]:
    """Score the val split into ``row`` when this epoch is evaluated; (improved, selection value)."""
    loop, config = fitting.loop, fitting.loop.config
    if fitting.val is None:
        return True, float("nan")  # no validation: the latest epoch is selected
    if not ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
        return False, float("nan")
    preds = evaluate(
        loop.model,
        fitting.val,
        batch_size=config.eval_batch_size or config.batch_size,
        device=loop.device,
        amp_dtype=loop.amp_dtype,
    )
    val = classification_metrics(preds.logits, preds.labels, preds.video_index, loop.num_classes)
    row.update(
        val_loss=val["loss"],
        val_clip_top1=val["clip"]["top1"],
        val_video_top1=val["video"]["top1"],
        val_seconds=preds.seconds,
    )
    value = float(row[config.select_on])
    best = state["best_metric"]
    if best is None:
        improved = True
    elif fitting.larger_is_better:
        improved = value > best + config.min_delta
    else:
        improved = value < best - config.min_delta
    state["evals_since_best"] = 0 if improved else state["evals_since_best"] + 1
    return improved, value


def _run_epoch(fitting: _Fitting, state: dict[str, Any]) -> dict[str, Any]:
    """Train one epoch, validate, keep ``best.pt`` when improved, write ``last.pt`` then the
    history row (in that order: a kill between the two is repaired on resume)."""
    loop, config = fitting.loop, fitting.loop.config
    epoch = state["epoch"]
    row = train_one_epoch(loop=loop, epoch=epoch, state=state)
    improved, value = _validate(fitting, row, state, epoch)
    state["epoch"] = epoch + 1
    identity = fitting.identity()
    if improved:
        state["best_metric"] = None if fitting.val is None else value
        state["best_epoch"] = epoch + 1
        ckpt.save_checkpoint(
            loop.run.path / ckpt.BEST_NAME,
            {
                "model": loop.model.state_dict(),
                "epoch": epoch + 1,
                "metric": state["best_metric"],
                "select_on": config.select_on,
                **identity,
            },
        )
    state["train_seconds"] += row["epoch_seconds"] + row["val_seconds"]
    state["stop_reason"] = _stop_reason(config, state, fitting.val is not None)
    state["finished"] = bool(state["stop_reason"])
    row["elapsed_seconds"] = state["train_seconds"]
    state["history"] = state["history"] + [row]
    ckpt.save_checkpoint(
        fitting.last_path,
        {
            **state,
            "model": loop.model.state_dict(),
            "optimizer": loop.optimizer.state_dict(),
            "scaler": loop.scaler.state_dict() if loop.scaler.is_enabled() else None,
            "rng": ckpt.rng_state(),
            **identity,
            "history_rows": len(state["history"]),
        },
    )
    loop.run.append_history(row)
    return row


def _stop_reason(config: TrainConfig, state: dict[str, Any], has_val: bool) -> str:
    if state["epoch"] >= config.epochs:
        return "epochs"
    if has_val and config.patience is not None and state["evals_since_best"] >= config.patience:
        return "early_stopping"
    if config.max_train_seconds is not None and state["train_seconds"] >= config.max_train_seconds:
        return "time_budget"
    return ""


@dataclass
class EvaluationResult:
    """What :func:`train_and_evaluate` produced: the fit, and the metrics written to metrics.json
    (``metrics["splits"][split]`` as :func:`lib.classify.metrics.classification_metrics`)."""

    fit: FitResult
    metrics: dict[str, Any]
    reused: bool  # True: the run had already been scored; nothing was evaluated again

    @property
    def splits(self) -> dict[str, Any]:
        return self.metrics["splits"]


def train_and_evaluate(
    model: nn.Module,
    *,
    train: BatchSource,
    val: BatchSource | None,
    test: BatchSource,
    config: TrainConfig,
    run_dir: RunDir | Path,
    class_names: list[str] | None = None,
    resume: bool = True,
    on_epoch_end: EpochCallback | None = None,
    extra: dict[str, Any] | None = None,
) -> EvaluationResult:
    """The study's protocol for one model and seed.

    1. :func:`fit` on ``train`` with selection on ``val`` (it never receives ``test``);
    2. reload ``best.pt``; score train, val and test, the test split exactly once;
    3. write ``metrics.json`` (``complete: true``, per-split metrics, fit summary, the config,
       evaluation times and ``extra``).

    Calling it again on a finished run directory returns the stored metrics without touching
    any split (``reused=True``), so reruns of a study never re-score the test set.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    result = fit(model, train, val, config, run, resume=resume, on_epoch_end=on_epoch_end)
    metrics_path = run.path / "metrics.json"
    if metrics_path.exists():
        stored = run.load_metrics()
        if stored.get("complete") and stored.get("fit", {}).get("epochs_completed") == result.epochs_completed:
            return EvaluationResult(result, stored, reused=True)
    best_path = result.best_checkpoint
    best = ckpt.load_checkpoint(best_path)
    ckpt.load_model_weights(model, best["model"], path=best_path)
    device = config.resolved_device()
    amp_dtype = config.amp_dtype(device)
    batch_size = config.eval_batch_size or config.batch_size
    splits: dict[str, Any] = {}
    eval_seconds: dict[str, float] = {}
    clips_per_s: dict[str, float] = {}
    sources = {"train": train, "val": val, "test": test}
    for name, source in sources.items():
        if source is None:
            continue
        preds = evaluate(
            model,
            source,
            batch_size=batch_size,
            device=device,
            amp_dtype=amp_dtype,
            progress=config.progress,
            desc=f"scoring {name}",
        )
        splits[name] = preds.metrics(result.num_classes)
        if name == "test":  # kept so later views (07_compare) never need to score the test split again
            save_predictions(run.path / PREDICTIONS_NAME, preds)
        eval_seconds[name] = preds.seconds
        clips_per_s[name] = preds.clips_per_second
    metrics = {
        "complete": True,
        "fit": result.summary(),
        "selected_epoch": best["epoch"],
        "splits": splits,
        "class_names": class_names,
        "config": config.record(),
        "eval_seconds": eval_seconds,
        "eval_clips_per_s": clips_per_s,
        "device": str(device),
        "test_evaluations": 1,
        **(extra or {}),
    }
    run.save_metrics(metrics)
    return EvaluationResult(result, metrics, reused=False)
