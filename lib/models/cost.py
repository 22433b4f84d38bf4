"""Cost accounting of classifiers: parameter counts and forward FLOPs per clip.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add of
convolutions, matmuls and attention; norms, activations and pooling are not counted, as is
usual). Two operators it has no formula for on CPU get one here, so every family is counted on
the same footing: the LSTM layers (``aten.mkldnn_rnn_layer`` on CPU, ``aten._cudnn_rnn`` on
CUDA: 2 x tokens x (input-to-hidden + hidden-to-hidden weights)) and CPU flash attention
(``aten._scaled_dot_product_flash_attention_for_cpu``: the formula torch uses for the CUDA
kernels).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

aten = torch.ops.aten


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def _mkldnn_rnn_layer_flops(
    input_shape: Sequence[int],
    w_ih: Sequence[int],
    w_hh: Sequence[int],
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    tokens = prod(input_shape[:-1])  # (T, B, in) or (B, T, in): every token meets both matrices
    return 2 * tokens * (prod(w_ih) + prod(w_hh))


def _cudnn_rnn_flops(
    input_shape: Sequence[int], weights: Sequence[Sequence[int]], *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    tokens = prod(input_shape[:-1])
    return 2 * tokens * sum(prod(w) for w in weights if len(w) == 2)  # every layer/direction's matrices


def _sdpa_cpu_flops(
    query: Sequence[int], key: Sequence[int], value: Sequence[int], *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return sdpa_flop_count(query, key, value)


EXTRA_FLOP_FORMULAS: dict[Any, Any] = {
    aten.mkldnn_rnn_layer: _mkldnn_rnn_layer_flops,
    aten._cudnn_rnn: _cudnn_rnn_flops,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
}


def _as_shapes(input_shapes: Sequence[int] | Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    if len(input_shapes) > 0 and all(isinstance(s, int) for s in input_shapes):
        return [tuple(input_shapes)]  # type: ignore[arg-type]
    return [tuple(s) for s in input_shapes]  # type: ignore[union-attr]


def forward_flops(model: nn.Module, input_shapes: Sequence[int] | Sequence[Sequence[int]] | None = None) -> int:
    """FLOPs of one forward pass of ONE clip, in eval mode (dropout off, BatchNorm running stats).

    ``input_shapes``: the per-clip shape without the batch axis, e.g. (16, 4, 7, 9), or one shape
    per forward argument, e.g. [(16, 4, 7, 9), (512,)] for a fusion model; default: the model's
    ``input_shapes``. Runs the model once on zeros on the model's device; the training mode is
    restored afterwards.
    """
    if input_shapes is None:
        input_shapes = getattr(model, "input_shapes", None)
        if input_shapes is None:
            raise ValueError("forward_flops: pass input_shapes (the model has no .input_shapes)")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    inputs = [torch.zeros(1, *shape, device=device) for shape in _as_shapes(input_shapes)]
    was_training = model.training
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    try:
        model.eval()
        with counter, torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def cost_summary(
    model: nn.Module, input_shapes: Sequence[int] | Sequence[Sequence[int]] | None = None
) -> dict[str, int]:
    """{"params", "trainable_params", "flops_per_clip"} for the study's cost table."""
    return {
        "params": count_parameters(model),
        "trainable_params": count_parameters(model, trainable_only=True),
        "flops_per_clip": forward_flops(model, input_shapes),
    }
