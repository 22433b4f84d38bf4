"""Errors of Reducio checkpoint loading: each names the file (or source), what was wrong and the fix."""

from __future__ import annotations

import os
from collections.abc import Sequence

from lib.errors import ActionableError


class CheckpointError(ActionableError):
    """Base class: ``path`` at fault (or the source text), ``reason`` and ``fix``."""

    fix_separator = "\nFix: "

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, fix: str = "") -> None:
        super().__init__(path, reason, fix)
        self.path = str(path) if path is not None else None


class CheckpointNotFoundError(CheckpointError):
    """No file at the given path, or none for the given preset name in checkpoints/."""


class CheckpointDownloadError(CheckpointError):
    """The Hugging Face file is not cached and cannot be fetched (offline, unreachable, wrong name)."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle names objects that only serve to run code (or feeds tensor rebuilds non-tensor data),
    or the file is a TorchScript archive; nothing of it ran.

    ``globals`` lists those dotted names.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, fix: str, *, globals: Sequence[str] = ()) -> None:
        super().__init__(path, reason, fix)
        self.globals = list(globals)


class CorruptCheckpointError(CheckpointError):
    """The file cannot be read (truncated, not a checkpoint, bad metadata, no state dict)."""


class CheckpointConfigError(CheckpointError):
    """No config can be determined for the file, or the given hints contradict each other."""


class CheckpointMismatchError(CheckpointError):
    """Keys or shapes of the file do not fit the model built from the config."""

    def __init__(self, path: str | os.PathLike[str], reason: str, fix: str, *, missing: Sequence[str],
                 unexpected: Sequence[str], mismatched: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> None:
        super().__init__(path, reason, fix)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


class CheckpointDtypeError(CheckpointError):
    """A weight has a non-floating dtype (integer, bool, complex) where the model has a floating one.

    ``keys`` maps each such key to its dtype in the file.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, fix: str, *, keys: dict[str, str]) -> None:
        super().__init__(path, reason, fix)
        self.keys = dict(keys)


class NonFiniteCheckpointError(CheckpointError):
    """Weights hold NaN or inf (in the file, or after the cast to the requested dtype).

    ``keys`` lists every such key in file order.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, fix: str, *, keys: Sequence[str]) -> None:
        super().__init__(path, reason, fix)
        self.keys = list(keys)
