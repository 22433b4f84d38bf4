"""Spatial policies: how decoded frames are brought to the size the video VAE encodes.

Clips are torch float32 tensors of layout (C, T, H, W), RGB, values in [-1, 1]
(``x / 127.5 - 1`` of the uint8 pixel, see :mod:`lib.data.video`). Reducio downsamples space
by 32 (latent = floor(H/32) x floor(W/32)) and reconstructs exactly only sizes that are
multiples of 32, hence two policies, selectable by name (:data:`SPATIAL_POLICIES`):

``"crop"`` (:class:`CropPolicy`)
    Resize so the short side is ``short_side`` (antialiased), then centre-crop to ``crop``.
    UCF101 240x320 -> 224x299 -> 224x288, i.e. the 16x4x7x9 latent of the published study.
``"pad"`` (:class:`PadPolicy`)
    Optionally resize the short side (antialiased), then pad H and W up to multiples of
    ``multiple`` (32). The padding is a pure function of the input size
    (:meth:`PadPolicy.padding`), so reconstructions can be cropped back (:meth:`Padding.crop`).

Resize: ``torch.nn.functional.interpolate(mode="bilinear", antialias=True,
align_corners=False)``; sizes round half up (240x320 with short side 224 -> 224x299, where
torchvision's ``Resize(224)`` truncates to 224x298).

Two entry points with the same geometry:

* ``policy(clip)`` - float (C, T, H, W) in, float out: the reference computation.
* ``policy.apply_to_frames(frames)`` - uint8 (T, H, W, 3) frames straight from the decoder in,
  float (C, T, H', W') out: the hot path. It crops/pads in uint8 *before* the float conversion
  (bit-identical: both are pure index operations and the conversion is per pixel). With
  ``resize_precision="float32"`` (default) a needed resize runs on float exactly as the
  reference, one frame at a time (only one source-size float frame is ever held, which bounds
  the memory of 4K input), so the two paths are bit-identical; with ``"uint8"`` the resize runs
  on the decoded uint8 frames (torch's SIMD uint8 antialias kernel, ~6x faster than the float
  one) and differs from the reference by about one grey level at most (measured <= 1.003/127.5 on
  noise frames; tested at 1.05/127.5). It runs on the frames' device: uint8 frames moved to a
  GPU are a quarter of the float bytes, and the GPU then does the float work.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

ResizePrecision = Literal["float32", "uint8"]
PadMode = Literal["replicate", "constant"]
# Value of the "constant" pad: -1 is black in the [-1, 1] range (uint8 0 maps to exactly -1).
PAD_CONSTANT_VALUE: Final[float] = -1.0


# --- value range ------------------------------------------------------------------------------
def uint8_to_unit_range(frames_tchw: torch.Tensor) -> torch.Tensor:
    """uint8 (T, C, H, W) (any strides) -> contiguous float32 (C, T, H, W) = ``x / 127.5 - 1``.

    Frame by frame: the strided uint8 -> float copy does the (H, W, C) -> (C, H, W) transpose
    and the conversion in one pass, and the two in-place scalings then run on a frame that is
    still in cache (about 25 % faster than three passes over the whole clip). Division by
    127.5 (exact in float32) followed by the subtraction: the documented formula, bit for bit.
    """
    if frames_tchw.dtype != torch.uint8 or frames_tchw.ndim != 4:
        raise ValueError(f"expected uint8 (T, C, H, W), got {frames_tchw.dtype} {tuple(frames_tchw.shape)}")
    t, c, h, w = frames_tchw.shape
    out = torch.empty((c, t, h, w), dtype=torch.float32, device=frames_tchw.device)
    for i in range(t):
        frame = out[:, i]
        frame.copy_(frames_tchw[i])
        frame.div_(127.5).sub_(1.0)
    return out


# --- geometry ---------------------------------------------------------------------------------
def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H, W) scaled so that min(H, W) == ``short_side``, aspect kept, long side rounded half up."""
    if height <= width:
        return short_side, max(1, round_half_up(width * short_side / height))
    return max(1, round_half_up(height * short_side / width)), short_side


def resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of the last two dims of a 4-D tensor, e.g. (C, T, H, W).

    Works on float (the reference) and on uint8 (SIMD fast path when the tensor is a
    channels-last (T, 3, H, W) view of (T, H, W, 3) frames). Identity when the size matches.
    """
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    # interpolate treats dim 0 as batch and dim 1 as channels: (C, T, H, W) resizes each frame.
    return F.interpolate(clip, size=size, mode="bilinear", antialias=True, align_corners=False)


@dataclass(frozen=True)
class Padding:
    """Pixels added on each side by :class:`PadPolicy` (to the resized frame)."""

    top: int
    bottom: int
    left: int
    right: int

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """Remove the padding from the last two dims of ``x`` (e.g. a reconstruction)."""
        h, w = x.shape[-2:]
        return x[..., self.top : h - self.bottom, self.left : w - self.right]


class SpatialPolicy(ABC):
    """A spatial policy: a resize to :meth:`resize_size`, then a crop or pad to :meth:`output_size`.

    Subclasses are frozen dataclasses registered in :data:`SPATIAL_POLICIES` by ``name``.
    """

    name: ClassVar[str]
    resize_precision: ResizePrecision

    @abstractmethod
    def resize_size(self, height: int, width: int) -> tuple[int, int]:
        """Size (H, W) of the antialiased resize applied first (input size if none)."""

    @abstractmethod
    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Size (H', W') of the result for an input of ``height`` x ``width``, without running it."""

    @abstractmethod
    def _place(self, x: torch.Tensor, *, uint8: bool) -> torch.Tensor:
        """Crop or pad the last two dims of an already resized ``x`` (float, or uint8 with
        pixel 0 = -1.0) to :meth:`output_size`."""

    def params(self) -> dict[str, Any]:
        """The dataclass fields, e.g. to log a run's configuration (with ``name``)."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}  # type: ignore[arg-type]

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        """float (C, T, H, W) in [-1, 1] -> float (C, T, H', W'): the reference path."""
        if not clip.is_floating_point() or clip.ndim != 4:
            raise ValueError(f"expected a float (C, T, H, W) clip, got {clip.dtype} {tuple(clip.shape)}")
        h, w = clip.shape[-2:]
        return self._place(resize(clip, self.resize_size(h, w)), uint8=False).contiguous()

    def apply_to_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, W, 3) RGB frames -> float32 (C, T, H', W') in [-1, 1] (the hot path).

        Equal to ``self(frames_to_tensor(frames))`` bit for bit when ``resize_precision`` is
        ``"float32"`` or no resize is needed; within about 1/127.5 with ``"uint8"``.
        """
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {frames.dtype} {tuple(frames.shape)}")
        h, w = frames.shape[1:3]
        size = self.resize_size(h, w)
        tchw = frames.permute(0, 3, 1, 2)  # a view: channels-last (T, 3, H, W)
        if size != (h, w) and self.resize_precision == "float32":
            return self._float_resize_per_frame(tchw, size)
        if size != (h, w):
            tchw = resize(tchw, size)  # uint8 in, uint8 out; stays channels-last
        return uint8_to_unit_range(self._place(tchw, uint8=True))

    def _float_resize_per_frame(self, tchw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The float32 resize of uint8 (T, 3, H, W) frames one frame at a time: convert, resize,
        crop/pad. Bit-identical to ``self(uint8_to_unit_range(tchw))`` (every (channel, frame)
        plane is resized on its own either way), while holding one source-size float frame
        instead of the whole clip (a 16-frame 4K clip is 1.6 GB as float32)."""
        t, _, h, w = tchw.shape
        out = torch.empty((3, t, *self.output_size(h, w)), dtype=torch.float32, device=tchw.device)
        for i in range(t):
            out[:, i : i + 1] = self._place(resize(uint8_to_unit_range(tchw[i : i + 1]), size), uint8=False)
        return out


@dataclass(frozen=True)
class CropPolicy(SpatialPolicy):
    """Resize the short side to ``short_side`` (antialiased), then centre-crop to ``crop`` (H, W).

    If the resized frame would not cover the crop (portrait or very small video), it is
    enlarged just enough to cover it, so the output is always exactly ``crop``.
    ``short_side=None``: no resize unless needed to cover the crop. Centre crop offsets are
    floor((size - crop) / 2): 299 -> 288 drops 5 columns left and 6 right.
    """

    name: ClassVar[str] = "crop"
    short_side: int | None = 224
    crop: tuple[int, int] = (224, 288)
    resize_precision: ResizePrecision = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop", tuple(self.crop))  # lists from YAML -> hashable tuple
        if len(self.crop) != 2 or min(self.crop) < 1:
            raise ValueError(f"crop must be (height, width) >= 1, got {self.crop!r}")
        if self.short_side is not None and self.short_side < 1:
            raise ValueError(f"short_side must be >= 1 or None, got {self.short_side!r}")
        _check_precision(self.resize_precision)

    def resize_size(self, height: int, width: int) -> tuple[int, int]:
        ch, cw = self.crop
        rh, rw = (height, width) if self.short_side is None else short_side_size(height, width, self.short_side)
        if rh >= ch and rw >= cw:
            return rh, rw
        scale = max(ch / height, cw / width)  # smallest enlargement of the input covering the crop
        return max(ch, round_half_up(height * scale)), max(cw, round_half_up(width * scale))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.crop

    def resize_only(self, height: int, width: int) -> CropPolicy:
        """This policy's resize of a ``height`` x ``width`` frame without its centre crop: the
        whole resized frame (train-time random crops are taken from it)."""
        return CropPolicy(short_side=self.short_side, crop=self.resize_size(height, width),
                          resize_precision=self.resize_precision)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop within the resized frame."""
        rh, rw = self.resize_size(height, width)
        ch, cw = self.crop
        return (rh - ch) // 2, (rw - cw) // 2, ch, cw

    def _place(self, x: torch.Tensor, *, uint8: bool) -> torch.Tensor:
        h, w = x.shape[-2:]
        top, left = (h - self.crop[0]) // 2, (w - self.crop[1]) // 2
        return x[..., top : top + self.crop[0], left : left + self.crop[1]]


@dataclass(frozen=True)
class PadPolicy(SpatialPolicy):
    """Optionally resize the short side (antialiased), then pad H, W up to multiples of ``multiple``.

    The padding is split around the frame (``top = total // 2``, the odd pixel at the
    bottom/right) so the content stays centred in the latent grid.

    ``mode="replicate"`` (default) repeats the edge pixels; ``"constant"`` fills with -1
    (black). Replicate is the default because the VAE is convolutional: a constant bar creates
    an artificial step edge at the content border that the encoder spends latent capacity on
    and that leaks into the border latents, whereas replicated edges continue the content
    smoothly. Constant is there for callers that want the padded area to be content-free.
    """

    name: ClassVar[str] = "pad"
    short_side: int | None = None
    multiple: int = 32
    mode: PadMode = "replicate"
    resize_precision: ResizePrecision = "float32"

    def __post_init__(self) -> None:
        if self.short_side is not None and self.short_side < 1:
            raise ValueError(f"short_side must be >= 1 or None, got {self.short_side!r}")
        if self.multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {self.multiple!r}")
        if self.mode not in get_args(PadMode):
            raise ValueError(f"unknown pad mode {self.mode!r}; known: {', '.join(get_args(PadMode))}")
        _check_precision(self.resize_precision)

    def resize_size(self, height: int, width: int) -> tuple[int, int]:
        return (height, width) if self.short_side is None else short_side_size(height, width, self.short_side)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        rh, rw = self.resize_size(height, width)
        m = self.multiple
        return -(-rh // m) * m, -(-rw // m) * m

    def padding(self, height: int, width: int) -> Padding:
        """The padding added to an input of ``height`` x ``width`` (after its resize)."""
        rh, rw = self.resize_size(height, width)
        oh, ow = self.output_size(height, width)
        return Padding(top=(oh - rh) // 2, bottom=oh - rh - (oh - rh) // 2,
                       left=(ow - rw) // 2, right=ow - rw - (ow - rw) // 2)

    def _place(self, x: torch.Tensor, *, uint8: bool) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        oh, ow = -(-h // m) * m, -(-w // m) * m
        if (oh, ow) == (h, w):
            return x
        top, left = (oh - h) // 2, (ow - w) // 2
        pad = (left, ow - w - left, top, oh - h - top)
        if self.mode == "constant":
            # uint8 0 is exactly -1.0 after the conversion, so padding before it is identical.
            return F.pad(x, pad, mode="constant", value=0 if uint8 else PAD_CONSTANT_VALUE)
        return F.pad(x, pad, mode="replicate")


def _check_precision(precision: str) -> None:
    if precision not in get_args(ResizePrecision):
        raise ValueError(f"unknown resize_precision {precision!r}; known: {', '.join(get_args(ResizePrecision))}")


SPATIAL_POLICIES: Final[dict[str, type[SpatialPolicy]]] = {"crop": CropPolicy, "pad": PadPolicy}


def make_spatial_policy(name: str, **params: Any) -> SpatialPolicy:
    """Build a policy by registry name, e.g. ``make_spatial_policy("crop", short_side=224)``.

    Raises ValueError naming the known policies for an unknown ``name``, and the accepted
    parameters for an unknown parameter (a typo in a params file must not pass silently).
    """
    if name not in SPATIAL_POLICIES:
        raise ValueError(f"unknown spatial policy {name!r}; known: {', '.join(sorted(SPATIAL_POLICIES))}")
    cls = SPATIAL_POLICIES[name]
    accepted = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"spatial policy {name!r} has no parameter(s) {unknown}; accepted: {sorted(accepted)}")
    return cls(**params)


# --- value range (lib.data.video's contract) -------------------------------------------------------------------------
def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) RGB frames -> float32 (C, T, H, W) in [-1, 1] (``x / 127.5 - 1``)."""
    t = torch.from_numpy(frames) if isinstance(frames, np.ndarray) else frames
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {t.dtype} {tuple(t.shape)}")
    return uint8_to_unit_range(t.permute(0, 3, 1, 2))


def tensor_to_frames(clip: torch.Tensor) -> np.ndarray:
    """float (C, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3) for display (rounded, clamped).

    Exact inverse of :func:`frames_to_tensor`; out-of-range values (reconstructions) clamp.
    """
    if not clip.is_floating_point() or clip.ndim != 4 or clip.shape[0] != 3:
        raise ValueError(f"expected a float (3, T, H, W) clip, got {clip.dtype} {tuple(clip.shape)}")
    pixels = ((clip.detach().to("cpu", torch.float32) + 1.0) * 127.5).round_().clamp_(0, 255)
    return pixels.to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()
