"""Cost of encoding one clip with a zoo VAE: parameters, FLOPs and stored bytes.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add of
convolutions, matmuls and attention, as :mod:`lib.models.cost` counts classifiers) over one
clip's encode with the adapter's clip policy. :func:`released_encode_cost` counts the released
architecture on the ``meta`` device (no weights, no download, no compute: shapes only), so the
full-size figures of every adapter come out in seconds on any machine.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from lib.zoo.adapters import get_adapter
from lib.zoo.geometry import causal_input
from lib.zoo.sources import require_diffusers

DECODER_PREFIXES = ("decoder.", "post_quant_conv.")  # a diffusers VAE's decode-only weights
BYTES_PER_VALUE = 2  # caches store float16


def encode_input(geometry: Any, clip_shape: tuple[int, int, int, int], *, device: str = "cpu") -> torch.Tensor:
    """The tensor a model's ``encode`` sees for one ``(3, T, H, W)`` clip under the clip policy."""
    c, t, h, w = clip_shape
    x = torch.zeros(1, c, t, h, w, device=device)
    if geometry.frame_rule == "causal":
        return causal_input(x, geometry.temporal_factor)
    if geometry.frame_rule == "per_frame":
        return x.transpose(1, 2).reshape(t, c, h, w)
    return x


def model_encode_cost(model: Any, geometry: Any, clip_shape: tuple[int, int, int, int]) -> dict[str, Any]:
    """{"params", "encoder_params", "encode_flops", "latent_shape", "latent_bytes"} of one clip."""
    device = str(next(model.parameters()).device)
    x = encode_input(geometry, clip_shape, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encode(x)
    latent = geometry.latent_shape(*clip_shape[1:])
    n_latent = latent[0] * latent[1] * latent[2] * latent[3]
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "encoder_params": sum(p.numel() for n, p in model.named_parameters() if not n.startswith(DECODER_PREFIXES)),
        "encode_flops": int(counter.get_total_flops()),
        "latent_shape": list(latent),
        "latent_bytes": n_latent * BYTES_PER_VALUE,
    }


def released_encode_cost(name: str, clip_shape: tuple[int, int, int, int] = (3, 16, 224, 288)) -> dict[str, Any]:
    """:func:`model_encode_cost` of adapter ``name``'s released architecture, counted on ``meta``."""
    diffusers = require_diffusers()
    adapter = get_adapter(name)
    # resolved outside the meta context: diffusers imports the class's module lazily, and module-level
    # constants (Cosmos' wavelet filters) created under the context would be meta tensors for good
    cls = getattr(diffusers, adapter.class_name)
    with torch.device("meta"):
        model = cls(**adapter.full)
    model = model.eval().to("meta")  # constant buffers some classes build on the CPU move too
    return {"adapter": name, "class_name": adapter.class_name, "repo": adapter.repo,
            **model_encode_cost(model, adapter.geometry(model), clip_shape)}


def reducio_encode_cost(preset: str = "reducio-ft4",
                        clip_shape: tuple[int, int, int, int] = (3, 16, 224, 288)) -> dict[str, Any]:
    """The same figures for a Reducio preset (encode = the 3D encoder path), counted on ``meta``."""
    from lib.vae import ReducioVAE
    from lib.vae.loading import ENCODER_PREFIXES

    model = ReducioVAE.from_preset(preset, parts="all", device="meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encode(torch.empty(1, *clip_shape, device="meta"))
    latent = list(model.latent_shape(*clip_shape[1:]))
    return {"adapter": preset, "class_name": "ReducioVAE", "repo": "microsoft/Reducio-VAE",
            "params": sum(p.numel() for p in model.parameters()),
            "encoder_params": sum(p.numel() for n, p in model.named_parameters() if n.startswith(ENCODER_PREFIXES)),
            "encode_flops": int(counter.get_total_flops()), "latent_shape": latent,
            "latent_bytes": latent[0] * latent[1] * latent[2] * latent[3] * BYTES_PER_VALUE}
