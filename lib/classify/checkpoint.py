"""Training checkpoints: ``last.pt`` (everything a killed run needs to resume exactly) and
``best.pt`` (the selected weights), both written atomically with :func:`lib.runs.atomic_write`.

``last.pt`` holds: model, optimizer and (fp16 AMP) grad-scaler states, the global step (the
schedule is a pure function of it), completed epochs, the best metric so far and the count of
evaluations since, every history row (so a history.csv that missed its last row when the
process died is completed on resume), the torch CPU/CUDA RNG states
(:func:`lib.training.capture_rng_state`), the training wall time so far, whether the run
finished and why, the config record and the model's class and input shapes (a resume with
another model or data is refused). Loaded with ``weights_only=True``: only tensors and plain
containers, never arbitrary pickled objects.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from lib.classify.errors import RunMismatchError
from lib.errors import unsafe_load_cause
from lib.runs import RunDir, atomic_write
from lib.training import capture_rng_state

LAST_NAME: Final[str] = "last.pt"
BEST_NAME: Final[str] = "best.pt"
HISTORY_NAME: Final[str] = "history.csv"
FORMAT_VERSION: Final[int] = 1


def model_identity(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda fh: torch.save({"format": FORMAT_VERSION, **state}, fh))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign, damaged or unsafe file: say which and what to do
        # torch's own text is not quoted: for an unsafe file its advice is to unpickle it unsafely
        raise RunMismatchError(
            path,
            f"cannot read this checkpoint ({unsafe_load_cause(exc)})",
            "delete it to retrain this run, or point run_dir elsewhere",
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise RunMismatchError(
            path, "not a checkpoint of lib.classify (format version missing or different)", "use a fresh run directory"
        )
    return state


def rng_state() -> dict[str, Any]:
    """The torch CPU and CUDA RNG states (dropout draws from them; data order and mixup use
    per-epoch generators of their own)."""
    return capture_rng_state(("torch", "cuda"))


def load_model_weights(model: nn.Module, weights: dict[str, torch.Tensor], *, path: Path) -> None:
    """``load_state_dict`` with a message naming the checkpoint when the model differs."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise RunMismatchError(
            path,
            f"the checkpoint's weights do not fit {model_identity(model)}: {str(exc)[:600]}",
            "resume with the same model, overrides and input shape, or use a fresh run directory",
        ) from exc


def history_row_count(run: RunDir) -> int:
    path = run.path / HISTORY_NAME
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    with open(path, newline="") as fh:
        return max(0, sum(1 for _ in csv.reader(fh)) - 1)


def reconcile_history(run: RunDir, rows: list[dict[str, Any]], *, checkpoint: Path) -> None:
    """Make history.csv hold exactly the checkpoint's rows by appending the missing tail (the
    process can die between writing last.pt and appending its row). More rows in the file than
    the checkpoint knows means the file belongs to another run: refuse."""
    have = history_row_count(run)
    if have > len(rows):
        raise RunMismatchError(
            run.path / HISTORY_NAME,
            f"holds {have} rows but {checkpoint.name} knows only {len(rows)} epochs",
            "this run directory mixes two runs; move history.csv away or use a fresh run directory",
        )
    for row in rows[have:]:
        run.append_history(row)


def check_fresh_run_dir(run: RunDir) -> None:
    """A new run must not write into another run's files (append-only history would mix)."""
    leftovers = [p.name for p in (run.path / LAST_NAME, run.path / BEST_NAME) if p.exists()]
    if history_row_count(run):
        leftovers.append(HISTORY_NAME)
    if leftovers:
        raise RunMismatchError(
            run.path,
            f"already holds a run ({', '.join(leftovers)})",
            "pass resume=True to continue it, or choose a fresh run directory (nothing is overwritten)",
        )
