"""One optimisation step of VAE training and the objects it updates: the seeded model, AdamW
with the decoder's ``conv_out`` in a group of its own, and the weight average (EMA).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from lib.vae.losses import VAELossWeights, vae_loss
from lib.vae.model import ReducioVAE
from lib.vae.presets import get_preset
from lib.vae.train_presets import TrainPreset


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"``, or ``"auto"`` (CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda[:N] or auto, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device (torch {torch.__version__}); "
                         "use --device cpu")
    return dev


def describe_device(device: torch.device) -> str:
    """What trained, for the provenance: ``"cuda: NVIDIA H200"`` or ``"cpu: <model>"``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    from lib.env_check import cpu_model

    return f"cpu: {cpu_model()}"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global generators (the loop itself uses per-step generators)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)



@dataclass(frozen=True)
class MotionInputs:
    """A batch's ground-truth displacements (B, 2, T, H, W) px, which clips have one (B,) bool,
    and the latent motion readout (None without the ``latent_motion`` term)."""

    field: torch.Tensor
    has_field: torch.Tensor
    readout: torch.nn.Module | None = None


def train_step(model: Any, optimizer: torch.optim.Optimizer, x: torch.Tensor, *, weights: VAELossWeights,
               generator: torch.Generator | None, grad_clip: float, bf16: bool = False,
               sample: bool = True, mse_head_only: bool = False,
               motion: MotionInputs | None = None) -> dict[str, float]:
    """One AdamW step on clips ``x`` (B, 3, T, H, W) with the official forward pass.

    forward = posterior sample (``generator``) -> latent layer norm -> decode with the content
    frame (T - 1) // 2. ``bf16``: run the forward under bfloat16 autocast on the batch's device
    (weights, gradients, optimizer and loss stay float32; the official model was trained under
    fp16 autocast, and on a CPU with AVX512-BF16 this makes the convolutions 1.6-2.8x faster). Returns the loss terms
    and the pre-clipping gradient norm. ``mse_head_only``: the MSE term's gradient reaches only the
    decoder's ``conv_out`` (the filter on the content frame); the rest of the model learns from
    the other terms (see :attr:`TrainPreset.mse_head_only` for why). ``motion``: the batch's
    ground-truth displacement fields (B, 2, T, H, W) px and which clips have one (B,), for the
    ``motion`` and ``latent_motion`` loss terms, with the latter's readout (trained by the same
    optimizer).
    """
    model.train()
    flow = None
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        if weights.shift > 0 or weights.motion > 0:  # the auxiliary terms need the displacement field
            x_rec, posterior, flow = model(x, sample=sample, generator=generator, return_flow=True)
        else:
            x_rec, posterior = model(x, sample=sample, generator=generator)  # (B, 3, T, H, W), posterior
    # The loss in float32: SSIM's variance terms are differences of nearly equal numbers.
    head_mse = mse_head_only and weights.mse > 0
    body_weights = replace(weights, mse=0.0) if head_mse else weights
    loss, terms = vae_loss(x, x_rec.float(), mean=posterior.mean.float(), logvar=posterior.logvar.float(),
                           weights=body_weights, flow=flow, content_index=(x.shape[2] - 1) // 2,
                           motion=None if motion is None else (motion.field, motion.has_field),
                           readout=None if motion is None else motion.readout)
    if head_mse:
        terms["loss"] += weights.mse * terms["mse"]  # logged as the full objective
    if not math.isfinite(terms["loss"]):
        raise FloatingPointError(f"non-finite training loss {terms}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    if head_mse:
        head = output_layer_parameters(model)
        mse_term = weights.mse * (x_rec.float() - x).square().mean()
        # Backpropagates through the last layer only: autograd stops at conv_out's inputs.
        head_grads = torch.autograd.grad(mse_term, head, retain_graph=True)
        loss.backward()
        for param, grad in zip(head, head_grads):
            param.grad = grad if param.grad is None else param.grad + grad
    else:
        loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if motion is not None and motion.readout is not None:
        params += [p for p in motion.readout.parameters() if p.grad is not None]
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    terms["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    optimizer.step()
    return terms


def build_model(preset: TrainPreset, seed: int) -> Any:
    """The seeded initial model of a run (same seed -> same weights)."""
    torch.manual_seed(seed)
    model = ReducioVAE.from_config(get_preset(preset.model_preset))
    if preset.logvar_init is not None:
        with torch.no_grad():  # moments = [mean (z channels), logvar (z channels)]
            half = model.quant_conv.bias.shape[0] // 2
            model.quant_conv.bias[half:] = preset.logvar_init
    return model


def output_layer_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The decoder's ``conv_out`` parameters (its own lr group, the head-only MSE term); [] without
    a decoder."""
    decoder = getattr(model, "decoder", None)
    return list(decoder.conv_out.parameters()) if decoder is not None else []


def build_optimizer(model: torch.nn.Module, preset: TrainPreset,
                    readout: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (the frozen sinusoid tables of the fusion blocks stay
    out); the decoder's ``conv_out`` in a group of its own at ``out_lr_scale`` x the lr.
    (The coarse flow head stays at the body's lr: it has a 1728-wide fan-in, and at 10x the lr
    its field jumped by pixels per step and wrecked the reconstructions within 25 steps.)
    The latent motion ``readout``, if any, is a third group at ``readout_lr_scale`` x the lr."""
    out_params = {id(p) for p in output_layer_parameters(model)}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in out_params]
    head = [p for p in model.parameters() if p.requires_grad and id(p) in out_params]
    groups = [{"params": body, "lr_scale": 1.0}]
    if head:
        groups.append({"params": head, "lr_scale": preset.out_lr_scale})
    if readout is not None:
        groups.append({"params": list(readout.parameters()), "lr_scale": preset.readout_lr_scale})
    return torch.optim.AdamW(groups, lr=preset.lr, betas=(0.9, 0.99), weight_decay=preset.weight_decay)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for floating tensors; other buffers copied."""
    model_state = model.state_dict()
    for name, tensor in ema.state_dict().items():
        source = model_state[name]
        if tensor.is_floating_point():
            tensor.lerp_(source, 1.0 - decay)
        else:
            tensor.copy_(source)
