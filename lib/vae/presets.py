"""Named Reducio-VAE configurations, as official-style ``model.params`` dicts.

- ``reducio-ft4`` / ``reducio-ft2``: the released checkpoints (``reducio_kl_ft4_fs32_z16_attn23``
  and ``..._ft2_...`` YAMLs, ``model.params`` with the YAML anchors resolved: Resolution 256,
  Frames 16); the training-only sections (lossconfig, schedulers, monitor...) are left out.
- ``reference-small``: the small config the parity reference data were produced with.
- ``reducio-rehearsal``: the released ft4 config (every flag, the geometry, the fusion levels, no
  local extensions) at the smallest widths it allows; with random weights it stands in for the
  released checkpoint when the UCF101 path is rehearsed on a CPU (``params/ucf101_rehearsal.yaml``).
- ``local-smoke`` / ``local-default``: reduced widths for a VAE trained locally on CPU. They keep
  the released geometry (6 levels, temporal factor 4, spatial factor 32, 16 latent channels,
  fusion at levels 2, 3 and mid) so latents have the released shapes, and use the
  motion-compensated decoder extensions (``ddconfig.content_residual`` + ``content_warp`` +
  ``coarse_flow``, see lib.vae.config; the warp adds 2,135 weights to conv_out, the coarse head
  3,586) so that a CPU run of minutes starts at, and can improve on, the repeat-the-content-frame
  baseline. Parameters (total / encoder path): local-smoke 5.17 M / 1.74 M, local-default
  5.26 M / 1.74 M, reference-small 6.87 M / 1.93 M (released ft4: 437.1 M / 141.9 M). On the
  2-core CI CPU a training step (batch 2, 16x64x96, bf16 autocast) takes ~0.95 s for
  local-default; local-smoke at 16x32x32 ~0.3 s.

Values are literals here on purpose: nothing is read from disk at run time.
"""

from __future__ import annotations

import copy
from typing import Any


def _released(f_t: int) -> dict[str, Any]:
    return {
        "embed_dim": 16,
        "enable_2d": True,
        "use_tiling": False,
        "tile_overlap_factor": 0.25,
        "tile_sample_min_size": 256,
        "ddconfig_2d": {
            "ch": 128,
            "z_channels": 4,
            "out_ch": 3,
            "resolution": 256,
            "in_channels": 3,
            "ch_mult": [1, 2, 4, 4],
            "num_res_blocks": 2,
            "attn_resolutions": [],
            "dropout": 0.0,
            "out_z": False,
            "use_checkpoint": True,
            "fp32_attention": True,
        },
        "ddconfig": {
            "ch": 128,
            "ch_in": 128,
            "f_t": f_t,
            "out_ch": 3,
            "z_channels": 16,
            "resolution": 256,
            "in_channels": 3,
            "temp_res": 16,
            "ch_mult": [1, 2, 2, 4, 4, 4],
            "ch_fuse": [-1, -1, 2, 3, -1, -1],
            "fuse_type": "attn",
            "num_res_blocks": 2,
            "attn_resolutions": [],
            "use_3d_conv": True,
            "upsample_first": True,
            "fuse_mid": True,
            "use_checkpoint": True,
            "pos_embed_mode": "t",
            "fp32_attention": True,
            "window_size": 128,
        },
    }


def _reduced(*, ch: int, ch_mult: list[int], ch_2d: int, ch_mult_2d: list[int], resolution: int) -> dict[str, Any]:
    """Released geometry with smaller widths, one res block per level and no checkpointing."""
    params = _released(2)
    params["ddconfig"].update(
        ch=ch, ch_in=ch, ch_mult=ch_mult, num_res_blocks=1, resolution=resolution, use_checkpoint=False
    )
    params["ddconfig_2d"].update(
        ch=ch_2d, ch_mult=ch_mult_2d, num_res_blocks=1, resolution=resolution, use_checkpoint=False
    )
    return params


def _local(**widths: Any) -> dict[str, Any]:
    """A locally trained preset: reduced widths + the motion-compensated residual decoder
    (config.content_residual + config.content_warp)."""
    params = _reduced(**widths)
    params["ddconfig"]["content_residual"] = True
    params["ddconfig"]["content_warp"] = True
    params["ddconfig"]["coarse_flow"] = True
    return params


def _rehearsal() -> dict[str, Any]:
    """The released ft4 config (flags, geometry, fusion levels) at the smallest widths it allows:
    32 channels (GroupNorm), fused levels at 64 (the fusion blocks), one res block per level."""
    params = _released(2)
    params["ddconfig"].update(ch=32, ch_in=32, ch_mult=[1, 1, 2, 2, 2, 2], num_res_blocks=1)
    params["ddconfig_2d"].update(ch=32, ch_mult=[1, 2, 2, 2], num_res_blocks=1)
    return params


def _reference_small() -> dict[str, Any]:
    params = _reduced(ch=32, ch_mult=[1, 2, 2, 2, 2, 2], ch_2d=32, ch_mult_2d=[1, 2, 4, 4], resolution=64)
    # The reference data were produced with the released flag values (checkpointing on).
    params["ddconfig"]["use_checkpoint"] = True
    params["ddconfig_2d"]["use_checkpoint"] = True
    return params


PRESETS: dict[str, dict[str, Any]] = {
    "reducio-ft4": _released(2),
    "reducio-ft2": _released(1),
    "reference-small": _reference_small(),
    # Widths 32/64 (GroupNorm needs multiples of 32, the fusion blocks multiples of 64).
    "local-smoke": _local(ch=32, ch_mult=[1, 1, 2, 2, 2, 2], ch_2d=32, ch_mult_2d=[1, 1, 2, 2], resolution=64),
    # local-default: level 1 at width 32 like level 0 (ch_mult [1, 1, ...]): 17.7 instead of 24.2
    # GFLOP per 16x64x96 clip in the encoder, so the study's cache encodes ~27 % faster.
    "local-default": _local(ch=32, ch_mult=[1, 1, 2, 2, 2, 2], ch_2d=32, ch_mult_2d=[1, 2, 2, 2], resolution=64),
    # The rehearsal of the UCF101 path (params/ucf101_rehearsal.yaml) with random weights: ft4's
    # key names, flags and 16x4x7x9 latents at 224x288, 5.25 M parameters, ~186 GFLOP per clip encode.
    "reducio-rehearsal": _rehearsal(),
}


def get_preset(name: str) -> dict[str, Any]:
    """A fresh copy of the ``model.params`` dict of a named preset."""
    if name not in PRESETS:
        raise KeyError(f"unknown Reducio preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])
