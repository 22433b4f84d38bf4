"""Cost accounting, the same for latent and pixel models, measured on the run's machine.

Per model: parameters, forward FLOPs per clip, training wall time and time per epoch (from the
fit), inference clips/s (model only, random inputs, after warm-up) and end-to-end evaluation
clips/s (data loading included, from scoring the test split), bytes of input per clip as
stored/fed (fp16 latent: 16x4x7x9x2 = 8,064 B; decoded uint8 frames for pixel models), and the
one-off encode cost per clip of the latent cache (0 for pixel models, which pay decoding in
every epoch instead; it is inside their training time).

Parameters and FLOPs come from the one implementation in :mod:`lib.models.cost`
(``FlopCounterMode``, a multiply-add counts 2, with formulas added for LSTM layers and CPU
flash attention), re-exported here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from lib.classify.predict import autocast
from lib.models.cost import count_parameters, forward_flops

__all__ = [
    "CostRow",
    "cost_table",
    "count_parameters",
    "forward_flops",
    "machine_description",
    "mean_cost",
    "measure_inference",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_inference(
    model: nn.Module,
    input_shapes: Sequence[Sequence[int]],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    warmup: int = 3,
    min_seconds: float = 1.0,
    max_batches: int = 200,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """Model-only inference throughput in clips/s: eval mode, random float32 inputs already on
    ``device``, ``warmup`` untimed batches, then batches until ``min_seconds`` (or
    ``max_batches``). Data loading is excluded (see ``eval_clips_per_s`` for end to end)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    inputs = [torch.randn(batch_size, *shape, device=device) for shape in input_shapes]
    try:
        for _ in range(warmup):
            with autocast(device, amp_dtype):
                model(*inputs)
        _sync(device)
        start, done = time.perf_counter(), 0
        while done < max_batches and (time.perf_counter() - start < min_seconds or done == 0):
            with autocast(device, amp_dtype):
                model(*inputs)
            done += 1
            if device.type == "cuda" and done % 10 == 0:
                _sync(device)
        _sync(device)
        elapsed = time.perf_counter() - start
    finally:
        model.train(was_training)
    return done * batch_size / elapsed


def machine_description() -> str:
    """CPU model and cores, GPU (if any) and torch version: stated next to every timing."""
    from lib.env_check import cpu_model

    parts = [f"{cpu_model()} ({os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads)"]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    return "; ".join(parts)


@dataclass
class CostRow:
    """One model's costs (one seed, or the mean over seeds: see :func:`mean_cost`)."""

    model: str
    input_kind: str
    params: int
    flops_per_clip: int
    train_seconds: float
    seconds_per_epoch: float
    epochs: float
    inference_clips_per_s: float | None  # None: not measured
    eval_clips_per_s: float | None
    input_bytes_per_clip: int
    encode_seconds_per_clip: float
    encode_seconds_total: float
    device: str
    machine: str

    def record(self) -> dict[str, Any]:
        return asdict(self)


def mean_cost(rows: Sequence[CostRow | dict[str, Any]]) -> dict[str, Any]:
    """Average the timing fields over seeds (structural fields are taken from the first row)."""
    dicts = [r.record() if isinstance(r, CostRow) else dict(r) for r in rows]
    out = dict(dicts[0])
    for key in ("train_seconds", "seconds_per_epoch", "epochs", "inference_clips_per_s", "eval_clips_per_s"):
        values = [float(d[key]) for d in dicts if d.get(key) is not None]
        out[key] = sum(values) / len(values) if values else None
    out["seeds"] = len(dicts)
    return out


def _si(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def cost_table(rows: Sequence[CostRow | dict[str, Any]]) -> str:
    """Markdown table, one row per model, with the machine stated under it."""
    dicts = [r.record() if isinstance(r, CostRow) else dict(r) for r in rows]
    lines = [
        "| model | input | params | FLOPs/clip | train time | s/epoch | inference clips/s | eval clips/s (with data) "
        "| input bytes/clip | encode s/clip (one-off) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in dicts:
        lines.append(
            f"| {d['model']} | {d['input_kind']} | {_si(d['params'])} | {_si(d['flops_per_clip'], 'FLOP')} | "
            f"{d['train_seconds']:.1f} s | {d['seconds_per_epoch']:.2f} | {_si(d['inference_clips_per_s'])} | "
            f"{_si(d['eval_clips_per_s'])} | {_si(d['input_bytes_per_clip'], 'B')} | "
            f"{d['encode_seconds_per_clip']:.4g} |"
        )
    machines = sorted({d.get("machine", "") for d in dicts if d.get("machine")})
    devices = sorted({d.get("device", "") for d in dicts if d.get("device")})
    if machines:
        lines.append("")
        lines.append(f"Measured on: {' / '.join(machines)} (device: {', '.join(devices)}).")
    return "\n".join(lines)
