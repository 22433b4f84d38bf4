"""Training and evaluation engine of the study: one loop for every classifier.

Modules:
- :mod:`lib.classify.config` - :class:`TrainConfig` (AdamW, warm-up + cosine, mixup, AMP, ...).
- :mod:`lib.classify.data` - batch sources: :class:`TensorClips` (in-memory latents).
- :mod:`lib.classify.pixels` - :class:`PixelClipDataset` / :class:`PixelClips` (decoded videos, DataLoader workers).
- :mod:`lib.classify.engine` - :func:`fit` (resumable, checkpointed), :func:`evaluate`,
  :func:`train_and_evaluate` (fit, reload best, score train/val/test once, metrics.json).
- :mod:`lib.classify.epoch` - one training epoch, the NaN check, the input probe, determinism.
- :mod:`lib.classify.optim` - AdamW groups, warm-up + cosine schedule, mixup, augmentation hook.
- :mod:`lib.classify.checkpoint` - last.pt / best.pt, RNG state, history reconciliation.
- :mod:`lib.classify.predict` - :class:`Predictions` and :func:`evaluate`.
- :mod:`lib.classify.metrics` - clip/video top-1, top-5, mean class accuracy, confusion,
  split tables, seed aggregation.
- :mod:`lib.classify.cost` - parameters, FLOPs per clip, timings, bytes per clip, cost table.
- :mod:`lib.classify.plots` - learning curves, confusion matrix, per-class accuracy, accuracy vs cost.
- :mod:`lib.classify.loading` - the three splits of a fold from a latent cache or from videos.
- :mod:`lib.classify.experiment` - :func:`run_experiment` (several seeds, resumable) and
  :func:`collect_results` for the comparison notebook.
"""

from lib.classify.config import TrainConfig
from lib.classify.data import Batch, BatchSource, TensorClips
from lib.classify.engine import EvaluationResult, FitResult, Predictions, evaluate, fit, train_and_evaluate
from lib.classify.errors import (
    ClassifyError,
    InputMismatchError,
    RunMismatchError,
    TrainingDivergedError,
    UnknownNameError,
)
from lib.classify.metrics import aggregate_seeds, classification_metrics, split_table
from lib.classify.pixels import PixelClipDataset, PixelClipItem, PixelClips

__all__ = [
    "Batch", "BatchSource", "ClassifyError", "EvaluationResult", "FitResult", "InputMismatchError", "PixelClipDataset",
    "PixelClipItem", "PixelClips", "Predictions", "RunMismatchError", "TensorClips", "TrainConfig",
    "TrainingDivergedError", "UnknownNameError", "aggregate_seeds", "classification_metrics", "evaluate", "fit",
    "split_table", "train_and_evaluate",
]
