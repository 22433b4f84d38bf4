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
from lib.classify.config import SELECTION_METRICS, TrainConfig
from lib.classify.data import BatchSource, num_batches
from lib.classify.epoch import Determinism, probe_model, refuse_test, train_one_epoch
from lib.classify.errors import RunMismatchError
from lib.classify.metrics import classification_metrics
from lib.classify.optim import WarmupCosine, parameter_groups, resolve_augment
from lib.classify.predict import PREDICTIONS_NAME, Predictions, evaluate, save_predictions
from lib.runs import RunDir

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
        return {"epochs_completed": self.epochs_completed, "steps": self.steps, "best_epoch": self.best_epoch,
                "best_metric": self.best_metric, "select_on": self.select_on, "stop_reason": self.stop_reason,
                "train_seconds": self.train_seconds, "seconds_per_epoch": self.seconds_per_epoch,
                "num_classes": self.num_classes}


def fit(model: nn.Module, train: BatchSource, val: BatchSource | None, config: TrainConfig, run_dir: RunDir | Path, *,
        resume: bool = True, on_epoch_end: EpochCallback | None = None) -> FitResult:
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
    device = config.resolved_device()
    model.to(device)
    train_on, val_on = train.on(device), (val.on(device) if val is not None else None)
    num_classes = probe_model(model, train_on, device)
    if val_on is not None:
        probe_model(model, val_on, device)
    amp_dtype = config.amp_dtype(device)
    augment = resolve_augment(config.augment)
    drop_last = len(train) > config.batch_size  # a trailing batch of 1 would break BatchNorm
    steps_per_epoch = num_batches(len(train), config.batch_size, drop_last=drop_last)
    schedule = WarmupCosine.for_config(config, steps_per_epoch)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    larger_is_better = SELECTION_METRICS[config.select_on]
    shapes = [list(s) for s in train.input_shapes()]

    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_metric": None, "best_epoch": None, "evals_since_best": 0,
                             "history": [], "train_seconds": 0.0, "finished": False, "stop_reason": ""}
    resumed_from: int | None = None
    last_path = run.path / ckpt.LAST_NAME
    with Determinism(config.deterministic):
        if resume and last_path.exists():
            saved = ckpt.load_checkpoint(last_path)
            differences = config.resume_differences(saved["config"])
            if saved.get("model_class") != ckpt.model_identity(model) or saved.get("input_shapes") != shapes:
                differences["model/input"] = ((saved.get("model_class"), saved.get("input_shapes")), (ckpt.model_identity(model), shapes))
            if differences:
                raise RunMismatchError(last_path, f"holds a run with different settings: {differences}",
                                       "rerun with the recorded settings to resume it, or use a fresh run directory")
            ckpt.load_model_weights(model, saved["model"], path=last_path)
            optimizer.load_state_dict(saved["optimizer"])
            if saved.get("scaler"):
                scaler.load_state_dict(saved["scaler"])
            ckpt.restore_rng_state(saved["rng"])
            state = {k: saved[k] for k in state}
            ckpt.reconcile_history(run, state["history"], checkpoint=last_path)
            resumed_from = state["epoch"]
            budget_left = config.max_train_seconds is None or state["train_seconds"] < config.max_train_seconds
            if state["stop_reason"] == "time_budget" and budget_left and state["epoch"] < config.epochs:
                state["finished"] = False  # a larger budget continues a run stopped by the old one
        else:
            if not resume:
                ckpt.check_fresh_run_dir(run)
            elif ckpt.history_row_count(run):
                ckpt.check_fresh_run_dir(run)  # history without last.pt: a foreign file
            torch.manual_seed(config.seed)  # dropout etc.; data order and mixup use their own generators

        epochs_bar = tqdm(total=config.epochs, initial=state["epoch"], desc="epochs", disable=not config.progress)
        try:
            while not state["finished"] and state["epoch"] < config.epochs:
                epoch = state["epoch"]
                row = train_one_epoch(model, train_on, config, run, epoch, state, schedule, optimizer, scaler, amp_dtype,
                                   augment, num_classes, device, drop_last, steps_per_epoch)
                evaluate_now = val_on is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs)
                improved = False
                if evaluate_now:
                    assert val_on is not None
                    preds = evaluate(model, val_on, batch_size=config.eval_batch_size or config.batch_size, device=device,
                                     amp_dtype=amp_dtype)
                    val = classification_metrics(preds.logits, preds.labels, preds.video_index, num_classes)
                    row.update(val_loss=val["loss"], val_clip_top1=val["clip"]["top1"], val_video_top1=val["video"]["top1"],
                               val_seconds=preds.seconds)
                    value = float(row[config.select_on])
                    best = state["best_metric"]
                    improved = best is None or (value > best + config.min_delta if larger_is_better else value < best - config.min_delta)
                    state["evals_since_best"] = 0 if improved else state["evals_since_best"] + 1
                elif val_on is None:
                    improved, value = True, float("nan")  # no validation: the latest epoch is selected
                state["epoch"] = epoch + 1
                if improved:
                    state["best_metric"] = None if val_on is None else value
                    state["best_epoch"] = epoch + 1
                    ckpt.save_checkpoint(run.path / ckpt.BEST_NAME, {
                        "model": model.state_dict(), "epoch": epoch + 1, "metric": state["best_metric"],
                        "select_on": config.select_on, "config": config.record(),
                        "model_class": ckpt.model_identity(model), "input_shapes": shapes})
                state["train_seconds"] += row["epoch_seconds"] + row["val_seconds"]
                state["stop_reason"] = _stop_reason(config, state, val_on is not None)
                state["finished"] = bool(state["stop_reason"])
                row["elapsed_seconds"] = state["train_seconds"]
                state["history"] = state["history"] + [row]
                ckpt.save_checkpoint(last_path, {
                    **state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None, "rng": ckpt.rng_state(),
                    "config": config.record(), "model_class": ckpt.model_identity(model), "input_shapes": shapes,
                    "history_rows": len(state["history"])})
                run.append_history(row)
                epochs_bar.update(1)
                epochs_bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=row["val_video_top1"])
                if on_epoch_end is not None:
                    on_epoch_end(row)
        finally:
            epochs_bar.close()
    return FitResult(run.path, state["epoch"], state["step"], state["best_epoch"], state["best_metric"], config.select_on,
                     state["stop_reason"] or "epochs", state["train_seconds"], num_classes, list(state["history"]), resumed_from)


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


def train_and_evaluate(model: nn.Module, *, train: BatchSource, val: BatchSource | None, test: BatchSource,
                       config: TrainConfig, run_dir: RunDir | Path, class_names: list[str] | None = None,
                       resume: bool = True, on_epoch_end: EpochCallback | None = None,
                       extra: dict[str, Any] | None = None) -> EvaluationResult:
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
        preds = evaluate(model, source, batch_size=batch_size, device=device, amp_dtype=amp_dtype,
                         progress=config.progress, desc=f"scoring {name}")
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
