"""Configuration of the Reducio-VAE, read from the official ``model.params`` structure.

The official code builds ``ReducioVAE(**model.params)`` from an OmegaConf YAML whose ``params``
hold two architecture dicts, ``ddconfig`` (3D encoder + fusion decoder) and ``ddconfig_2d``
(content-frame encoder), plus a few top-level scalars and training-only sections (loss,
schedulers, monitor...). :class:`ReducioConfig` keeps exactly the fields that shape the network
or its forward pass, as frozen dataclasses, so a config can be hashed, compared and printed.

Only the behaviour present in the released checkpoints is implemented; a config asking for an
option whose official semantics is not reproduced here (causal convs, windowed attention
levels, other fusion types...) is rejected loudly instead of being built wrongly.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Top-level keys of the official ``model.params`` that only matter for training / logging.
TRAINING_ONLY_KEYS: frozenset[str] = frozenset(
    {
        "lossconfig",
        "scheduler_config",
        "scheduler_disc_config",
        "monitor",
        "image_key",
        "automatic_optimization",
        "freeze_2d",
        "freeze_3d",
        "ckpt_path",
        "ignore_keys",
        "base_learning_rate",
        "colorize_nlabels",
    }
)
NUM_GROUPS = 32  # GroupNorm groups of the official Normalize(); channels must be multiples.
FUSE_HEAD_DIM = 64  # head width of the cross-attention fusion blocks (heads = dim / 64).


def _tuple(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class VideoAutoencoderConfig:
    """``ddconfig``: shared by the 3D encoder (``encoder_3d``) and the fusion ``decoder``."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    f_t: int  # log2 of the temporal compression factor
    temp_res: int  # number of frames the decoder produces (fixes the positional tables)
    ch_fuse: tuple[int, ...]  # per level: index of the content feature it attends to, or -1
    ch_in: int | None = None  # stored by the official config; equals ch in every known config
    f_s: int | None = None  # log2 of the spatial factor; None = len(ch_mult) - 1
    in_channels: int = 3
    out_ch: int = 3
    resolution: int = 256  # informational only (no effect on weights or outputs)
    fuse_type: str = "attn"
    fuse_mid: bool = True
    upsample_first: bool = True
    pos_embed_mode: str = "t"
    use_3d_conv: bool = True
    attn_resolutions: tuple[int, ...] = ()
    window_size: int = 128
    dropout: float = 0.0
    use_checkpoint: bool = False  # gradient checkpointing; only acts in training with grads
    fp32_attention: bool = True  # stored by the official code but never used there either
    # Local extension, absent from the official code and configs (None = off, and not written
    # back by to_params, so official configs round-trip unchanged). True: the decoder predicts
    # the clip MINUS its content frame, i.e. output = decoder(...) + content frame on every
    # frame, with conv_out zero-initialised so a fresh model starts at the repeat-the-content-
    # frame baseline. Why: the released model learns to copy appearance through cross-attention
    # over 10^5+ GPU steps; a 10-minute CPU run cannot, and without this its latents only learn
    # a blurry mean colour. No parameter is added: state-dict keys and shapes are unchanged.
    content_residual: bool | None = None
    # Local extension on top of content_residual (None = off, never written back to official
    # configs). True: conv_out gets 2 more channels, a per-pixel, per-frame displacement field
    # (in pixels, scaled by CONTENT_WARP_SCALE); the output is the content frame WARPED by it
    # (bilinear, border padding) plus the RGB residual; conv_out also takes the content frame's
    # pixels as 3 more input channels (it can filter what it moves: the frame carries its own
    # sensor noise and codec artefacts, which the other 15 frames do not share). Why: in the
    # synthetic set (camera shake, moving objects) and in real clips most change between frames
    # is displacement; a conv decoder
    # has to learn to move texture from scratch, which a 10-minute CPU run does not manage (the
    # residual-only decoder stayed at the baseline), whereas a displacement field gets a useful
    # gradient (image gradient x error) from step 0 and is zero-initialised like the residual.
    content_warp: bool | None = None
    # Local extension on top of content_warp (None = off, never written back to official configs).
    # True: a second, coarse displacement field is predicted from the decoder's features right
    # after the last temporal upsample (all frames present, 1/8 of the output size for the
    # released geometry) by ``decoder.flow_norm`` + ``decoder.flow_out`` (zero-initialised), and
    # added, bilinearly upsampled, to conv_out's fine field. Why: camera shake and object motion
    # are smooth fields; predicted four levels closer to the latent, they reach the encoder with a
    # short gradient path, which a run of a few hundred steps needs (the fine field alone, at the
    # end of the full decoder, barely moved in 450 steps).
    coarse_flow: bool | None = None

    @property
    def num_levels(self) -> int:
        return len(self.ch_mult)


@dataclass(frozen=True)
class ContentEncoderConfig:
    """``ddconfig_2d``: the Stable-Diffusion-style 2D encoder of the content frame."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int = 4  # unused because out_z is False (no conv_out)
    in_channels: int = 3
    out_ch: int = 3
    resolution: int = 256
    attn_resolutions: tuple[int, ...] = ()
    dropout: float = 0.0
    out_z: bool = False
    use_checkpoint: bool = False
    fp32_attention: bool = True

    @property
    def num_levels(self) -> int:
        return len(self.ch_mult)

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channels of the encoder's feature list: one map per level, then the mid attention."""
        return tuple(self.ch * m for m in self.ch_mult) + (self.ch * self.ch_mult[-1],)


_TUPLE_FIELDS = {"ch_mult", "ch_fuse", "attn_resolutions"}


def _section(cls: type, params: Mapping[str, Any], name: str) -> Any:
    """Build one nested dataclass, refusing keys it does not know (they would change the net)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(f"{name}: unsupported key(s) {unknown}; known keys: {sorted(names)}")
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    missing = sorted(required - set(params))
    if missing:
        raise ValueError(f"{name}: missing required key(s) {missing}")
    kwargs = {k: (_tuple(v) if k in _TUPLE_FIELDS else v) for k, v in params.items()}
    return cls(**kwargs)


def _section_params(section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None:  # optional keys absent from the official YAMLs stay absent
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


@dataclass(frozen=True)
class ReducioConfig:
    """Everything that determines the Reducio-VAE network and its forward pass."""

    ddconfig: VideoAutoencoderConfig
    ddconfig_2d: ContentEncoderConfig
    embed_dim: int = 16
    enable_2d: bool = True
    mode: str = "full"
    use_tiling: bool = False  # stored for round-tripping; this implementation never tiles
    tile_sample_min_size: int = 256
    tile_overlap_factor: float = 0.25

    def __post_init__(self) -> None:
        _validate(self)

    # ---- construction / serialisation -------------------------------------------------------
    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ReducioConfig:
        """Read the official ``model.params`` dict (training-only keys are ignored)."""
        if "params" in params and "ddconfig" not in params:
            raise ValueError("pass the 'params' section (model.params), not the whole model section")
        top = {f.name for f in dataclasses.fields(cls)} - {"ddconfig", "ddconfig_2d"}
        unknown = sorted(set(params) - top - {"ddconfig", "ddconfig_2d"} - TRAINING_ONLY_KEYS)
        if unknown:
            warnings.warn(f"ReducioConfig: ignoring unknown model.params key(s) {unknown}", stacklevel=2)
        for section in ("ddconfig", "ddconfig_2d"):
            if section not in params:
                raise ValueError(f"model.params has no '{section}' section")
        return cls(
            ddconfig=_section(VideoAutoencoderConfig, params["ddconfig"], "ddconfig"),
            ddconfig_2d=_section(ContentEncoderConfig, params["ddconfig_2d"], "ddconfig_2d"),
            **{k: params[k] for k in top if k in params},
        )

    def to_params(self) -> dict[str, Any]:
        """The ``model.params`` dict (architecture part) that :meth:`from_params` reads back."""
        out: dict[str, Any] = {
            "embed_dim": self.embed_dim,
            "enable_2d": self.enable_2d,
            "mode": self.mode,
            "use_tiling": self.use_tiling,
            "tile_sample_min_size": self.tile_sample_min_size,
            "tile_overlap_factor": self.tile_overlap_factor,
        }
        out["ddconfig"] = _section_params(self.ddconfig)
        out["ddconfig_2d"] = _section_params(self.ddconfig_2d)
        return out

    # ---- derived geometry --------------------------------------------------------------------
    @property
    def num_levels(self) -> int:
        return self.ddconfig.num_levels

    @property
    def temporal_factor(self) -> int:
        return 2**self.ddconfig.f_t

    @property
    def spatial_factor(self) -> int:
        return 2 ** (self.num_levels - 1)

    @property
    def latent_frames(self) -> int:
        """Latent T the decoder accepts (its positional tables are sized for temp_res frames)."""
        return self.ddconfig.temp_res // self.temporal_factor

    @property
    def encoder_temporal_levels(self) -> frozenset[int]:
        """Encoder levels whose downsample also halves T: the last f_t downsampling levels."""
        last = self.num_levels - 1  # level L-1 has no downsample
        return frozenset(range(last - self.ddconfig.f_t, last))

    @property
    def decoder_temporal_levels(self) -> frozenset[int]:
        """Decoder levels whose upsample also doubles T: the first f_t run (upsample_first)."""
        n = self.num_levels
        return frozenset(range(n - self.ddconfig.f_t, n))

    @property
    def content_feature_indices(self) -> tuple[int, ...]:
        """Which entries of the 2D encoder's feature list the decoder consumes, in order."""
        used = {k for k in self.ddconfig.ch_fuse if k >= 0}
        if self.ddconfig.fuse_mid:
            used.add(self.ddconfig_2d.num_levels)  # the mid-attention output is the last entry
        return tuple(sorted(used))

    @staticmethod
    def content_frame_index(num_frames: int) -> int:
        """The official content frame: (T - 1) // 2, i.e. frame 7 of 16 (not T // 2)."""
        return (num_frames - 1) // 2

    def latent_shape(self, t: int, h: int, w: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the posterior for a (3, t, h, w) clip; each halving is floor(n/2)."""
        sizes = [t, h, w]
        for level in range(self.num_levels - 1):
            axes = (0, 1, 2) if level in self.encoder_temporal_levels else (1, 2)
            for a in axes:
                if sizes[a] < 2:
                    raise ValueError(
                        f"input (T,H,W)=({t},{h},{w}) too small: a size reaches 1 before downsample {level}"
                    )
                sizes[a] //= 2
        return (self.embed_dim, sizes[0], sizes[1], sizes[2])


def _validate(cfg: ReducioConfig) -> None:
    """Reject configurations this clean-room port does not reproduce faithfully."""
    dd, d2 = cfg.ddconfig, cfg.ddconfig_2d
    checks: list[tuple[bool, str]] = [
        (cfg.mode == "full", f"mode={cfg.mode!r}: only 'full' (ordinary non-causal Conv3d) is implemented"),
        (cfg.enable_2d, "enable_2d=False is not supported (the released decoder needs the content frame)"),
        (dd.fuse_type == "attn", f"fuse_type={dd.fuse_type!r}: only 'attn' is implemented"),
        (dd.pos_embed_mode == "t", f"pos_embed_mode={dd.pos_embed_mode!r}: only 't' is implemented"),
        (dd.use_3d_conv, "use_3d_conv=False is not supported"),
        (dd.upsample_first, "upsample_first=False is not supported"),
        (
            not dd.content_warp or bool(dd.content_residual),
            "content_warp=True needs content_residual=True (the warp moves the content frame the residual is added to)",
        ),
        (
            not dd.coarse_flow or bool(dd.content_warp),
            "coarse_flow=True needs content_warp=True (it adds to the displacement field content_warp applies)",
        ),
        (
            not dd.attn_resolutions and not d2.attn_resolutions,
            "attention inside resolution levels (attn_resolutions) is not supported",
        ),
        (dd.ch_in is None or dd.ch_in == dd.ch, f"ch_in={dd.ch_in} != ch={dd.ch} is not supported"),
        (dd.f_s is None or dd.f_s == dd.num_levels - 1, f"f_s={dd.f_s} must be len(ch_mult)-1={dd.num_levels - 1}"),
        (0 <= dd.f_t <= dd.num_levels - 1, f"f_t={dd.f_t} must lie in [0, {dd.num_levels - 1}]"),
        (dd.temp_res % 2**dd.f_t == 0, f"temp_res={dd.temp_res} is not divisible by 2**f_t"),
        (len(dd.ch_fuse) == dd.num_levels, "ch_fuse needs one entry per ddconfig level"),
        (
            all(-1 <= k < d2.num_levels for k in dd.ch_fuse),
            f"ch_fuse entries must be -1 or a 2D level index < {d2.num_levels}",
        ),
        (not d2.out_z, "ddconfig_2d.out_z=True is not supported (the content encoder returns features)"),
    ]
    widths = [dd.ch * m for m in dd.ch_mult] + [d2.ch * m for m in d2.ch_mult]
    checks.append(
        (
            all(c % NUM_GROUPS == 0 for c in widths),
            f"all channel widths must be multiples of {NUM_GROUPS} (GroupNorm): {widths}",
        )
    )
    fused = [dd.ch * dd.ch_mult[i] for i, k in enumerate(dd.ch_fuse) if k >= 0]
    if dd.fuse_mid:
        fused.append(dd.ch * dd.ch_mult[-1])
    checks.append(
        (
            all(c % FUSE_HEAD_DIM == 0 for c in fused),
            f"fused decoder widths must be multiples of {FUSE_HEAD_DIM}: {fused}",
        )
    )
    errors = [msg for ok, msg in checks if not ok]
    if errors:
        raise ValueError("unsupported Reducio config:\n  " + "\n  ".join(errors))
    if cfg.use_tiling:
        warnings.warn("use_tiling=True is stored but ignored: this implementation never tiles", stacklevel=3)
