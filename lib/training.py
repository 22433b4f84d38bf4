"""Training infrastructure shared by the VAE trainer (:mod:`lib.vae.train`) and the classifier
engine (:mod:`lib.classify.engine`).

- :class:`WarmupCosine`: the learning rate as a pure function of the optimizer step (linear
  warm-up, then a half cosine to a floor), so a resumed run needs only its step count;
- :func:`capture_rng_state` / :func:`restore_rng_state`: global RNG states as tensors and plain
  containers, so a checkpoint holding them loads with ``torch.load(weights_only=True)``;
- :func:`settings_differences` / :func:`refuse_other_settings`: the guard that stops a run
  directory from being resumed with settings other than the ones that started it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

RNG_STREAMS = ("torch", "cuda", "numpy", "python")


@dataclass(frozen=True)
class WarmupCosine:
    """Learning rate per optimizer step (0-based).

    Steps ``0 .. warmup_steps - 1`` rise linearly, ``lr * (step + 1) / warmup_steps`` (the last
    one at ``lr``). From ``decay_start`` (default: the last warm-up step, or 0 without warm-up)
    a half cosine falls from ``lr`` to ``min_lr``, reached at step ``total_steps - 1`` and held
    after. ``hold_peak=True`` starts the cosine one step later, at ``warmup_steps`` (the peak is
    then held for two steps: the VAE trainer's schedule).

    ``floor_fraction``: the floor stated as a fraction of ``lr`` (``min_lr`` must then equal
    ``lr * floor_fraction``). The cosine is then evaluated as ``lr * (f + (1 - f) * c)`` instead
    of ``min_lr + (lr - min_lr) * c``: the two agree mathematically but not in the last bit, and a
    run resumed with this code must replay the same floats as the run that started it.
    """

    lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int
    hold_peak: bool = False
    floor_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.warmup_steps < 0 or self.total_steps < 1:
            raise ValueError(
                f"need warmup_steps >= 0 and total_steps >= 1, got {self.warmup_steps}, {self.total_steps}"
            )
        if self.floor_fraction is not None and self.min_lr != self.lr * self.floor_fraction:
            raise ValueError(f"min_lr {self.min_lr} is not lr * floor_fraction ({self.lr} * {self.floor_fraction})")

    @classmethod
    def with_floor_fraction(
        cls, lr: float, floor_fraction: float, *, warmup_steps: int, total_steps: int, hold_peak: bool = False
    ) -> WarmupCosine:
        """The schedule whose floor is ``lr * floor_fraction`` (see the class docstring on why)."""
        return cls(
            lr, lr * floor_fraction, warmup_steps, total_steps, hold_peak=hold_peak, floor_fraction=floor_fraction
        )

    @property
    def decay_start(self) -> int:
        """The step at which the cosine's progress is 0 (the lr is at its peak)."""
        return self.warmup_steps if self.hold_peak else max(self.warmup_steps - 1, 0)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        start = self.decay_start
        progress = min(1.0, (step - start) / max(1, self.total_steps - 1 - start))
        if self.floor_fraction is not None:
            floor = self.floor_fraction
            return self.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every parameter group's lr for ``step`` (times the group's ``lr_scale``, default 1)
        and return the schedule's lr."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr
        return lr


def capture_rng_state(streams: Collection[str] = ("torch", "cuda")) -> dict[str, Any]:
    """The global RNG states of ``streams`` (of :data:`RNG_STREAMS`) as tensors, ints, floats and
    lists: ``torch`` (CPU), ``cuda`` (every device; [] without CUDA), ``numpy``, ``python``."""
    unknown = set(streams) - set(RNG_STREAMS)
    if unknown:
        raise ValueError(f"unknown RNG streams {sorted(unknown)}; known: {list(RNG_STREAMS)}")
    state: dict[str, Any] = {}
    if "torch" in streams:
        state["torch"] = torch.get_rng_state()
    if "cuda" in streams:
        state["cuda"] = list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else []
    if "numpy" in streams:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    if "python" in streams:
        version, py_state, py_gauss = random.getstate()
        state["python"] = {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": None if py_gauss is None else float(py_gauss),
        }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` for the streams ``state`` holds. CUDA states are
    restored only on a machine with the same device count (a run resumed elsewhere keeps going
    with fresh CUDA generators rather than failing)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(
            (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )
    if "python" in state:
        p = state["python"]
        random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def settings_differences(
    saved: Mapping[str, Any], asked: Mapping[str, Any], *, free: Collection[str] = ()
) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, asked value)}`` for every key of ``asked`` (except ``free``: settings
    that may change between invocations) whose saved value differs; a key the saved record
    lacks counts as saved ``None``."""
    return {key: (saved.get(key), value) for key, value in asked.items() if key not in free and saved.get(key) != value}


def refuse_other_settings(
    differences: Mapping[str, tuple[Any, Any]], error: Callable[[Mapping[str, tuple[Any, Any]]], Exception]
) -> None:
    """Raise ``error(differences)`` when a run would resume with settings other than its own.

    Why a guard: the loops checkpoint optimizer moments, RNG states and the step, and a resume
    under other settings would continue silently into a run that neither setting describes."""
    if differences:
        raise error(differences)
