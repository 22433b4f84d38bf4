"""The classifier model zoo: published models, our stronger ones, fusion, pixel references and a probe.

    from lib.models import build_model, list_models, model_info
    model = build_model("conv3d_paper", num_classes=101, input_shape=(16, 4, 7, 9))
    logits = model(latents)                       # (B, 16, 4, 7, 9) -> (B, 101)
    model = build_model("transformer_ours", num_classes=10, input_shape=(16, 4, 2, 3), depth=2)
    model_info("fusion_ours").input_kind          # "latent+content": model(latent, content)

Registered names (:data:`MODEL_NAMES`), by family:

=============  ======================  =================================================
family         published               ours / reference
=============  ======================  =================================================
lstm           ``lstm_paper``          ``lstm_ours``
transformer    ``transformer_paper``   ``transformer_ours``
conv3d         ``conv3d_paper``        ``conv3d_ours``
fusion                                 ``fusion_ours`` (latent + content features)
pixel                                  ``pixel_r2plus1d18``, ``pixel_c3d_small`` (frames)
probe                                  ``attentive_probe`` (frozen-feature head, any latent)
=============  ======================  =================================================

See :mod:`lib.models.registry` for the input kinds, :mod:`lib.models.augment` for latent
augmentation and :mod:`lib.models.cost` for parameter / FLOP counts.
"""

from __future__ import annotations

# Importing the model modules registers them; this order (published, ours, fusion, pixel, probe)
# is the order of list_models().
from lib.models import (  # noqa: F401, I001
    attentive_probe,
    conv3d_ours,
    conv3d_paper,
    fusion_ours,
    lstm_ours,
    lstm_paper,
    pixel,
    transformer_ours,
    transformer_paper,
)
from lib.models.cost import cost_summary, count_parameters, forward_flops
from lib.models.registry import (
    FAMILIES,
    INPUT_KINDS,
    ModelConfigError,
    ModelInfo,
    build_model,
    list_models,
    make_config,
    model_info,
    register,
)

MODEL_NAMES: tuple[str, ...] = tuple(list_models())

__all__ = [
    "FAMILIES", "INPUT_KINDS", "MODEL_NAMES", "ModelConfigError", "ModelInfo", "build_model", "cost_summary",
    "count_parameters", "forward_flops", "list_models", "make_config", "model_info", "register",
]
