"""Errors of the training engine: each names what is at fault (run directory, cache, checkpoint),
what went wrong and the fix (see :class:`lib.errors.ActionableError`)."""

from __future__ import annotations

from lib.errors import ActionableError


class ClassifyError(ActionableError):
    """Base class of the engine's errors (a ``ValueError``)."""


class TrainingDivergedError(ClassifyError):
    """The training loss became NaN/inf. Raised only after the last good checkpoint is on disk:
    ``last_good_checkpoint`` is its path (None if no epoch had finished yet)."""

    def __init__(self, path: object, reason: str, fix: str = "", *, epoch: int = -1, step: int = -1,
                 last_good_checkpoint: object = None) -> None:
        super().__init__(path, reason, fix)  # type: ignore[arg-type]
        self.epoch = epoch
        self.step = step
        self.last_good_checkpoint = last_good_checkpoint


class InputMismatchError(ClassifyError):
    """The data given to a model does not match what the model expects (shape, kind, classes)."""


class RunMismatchError(ClassifyError):
    """A run directory holds a checkpoint of a different run (other config, model or data)."""


class UnknownNameError(ClassifyError):
    """A name (model, augmentation, metric, config field) that is not known; lists the known ones."""
