"""Spatial policies (lib.data.spatial): sizes, centre crop, antialiasing, padding, hot path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.data.spatial import (
    SPATIAL_POLICIES,
    CropPolicy,
    Padding,
    PadPolicy,
    make_spatial_policy,
    resize,
    short_side_size,
    uint8_to_unit_range,
)


def _frames(t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 (T, H, W, 3) frames."""
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8))


def _to_float(frames: torch.Tensor) -> torch.Tensor:
    """Reference conversion, written independently: (T,H,W,3) uint8 -> (C,T,H,W) x/127.5-1."""
    return frames.permute(3, 0, 1, 2).to(torch.float32) / 127.5 - 1.0


# --- sizes -------------------------------------------------------------------------------------
def test_crop_policy_ucf101_sizes() -> None:
    policy = CropPolicy()
    assert policy.resize_size(240, 320) == (224, 299)  # 320 * 224 / 240 = 298.67 -> 299
    assert policy.output_size(240, 320) == (224, 288)
    assert policy.crop_box(240, 320) == (0, 5, 224, 288)  # (299 - 288) // 2 = 5
    out = policy(_to_float(_frames(4, 240, 320)))
    assert out.shape == (3, 4, 224, 288) and out.dtype == torch.float32 and out.is_contiguous()


@pytest.mark.parametrize(
    ("hw", "resized"),
    [
        ((272, 640), (224, 527)),  # bikes.mp4: 640 * 224 / 272 = 527.06
        ((720, 1280), (224, 398)),  # bigbuckbunny: 398.2
        ((144, 176), (236, 288)),  # carphone: 224x274 would not cover 288 -> enlarged to 288 wide
        ((320, 240), (384, 288)),  # portrait: short side 224 gives 299x224 < 288 wide -> enlarged
        ((224, 288), (224, 288)),  # already the crop: untouched
    ],
)
def test_crop_policy_other_sizes(hw: tuple[int, int], resized: tuple[int, int]) -> None:
    policy = CropPolicy()
    assert policy.resize_size(*hw) == resized
    out = policy(_to_float(_frames(1, *hw)))
    assert out.shape == (3, 1, 224, 288)


def test_pad_policy_sizes_and_padding() -> None:
    policy = PadPolicy()
    assert policy.output_size(240, 320) == (256, 320)
    assert policy.padding(240, 320) == Padding(top=8, bottom=8, left=0, right=0)
    resized = PadPolicy(short_side=224)
    assert resized.resize_size(240, 320) == (224, 299)
    assert resized.output_size(240, 320) == (224, 320)
    assert resized.padding(240, 320) == Padding(top=0, bottom=0, left=10, right=11)
    for h, w in [(48, 64), (33, 65), (144, 176), (240, 320), (1, 1)]:
        oh, ow = policy.output_size(h, w)
        assert oh % 32 == 0 and ow % 32 == 0 and 0 <= oh - h < 32 and 0 <= ow - w < 32
        out = policy(_to_float(_frames(2, h, w)))
        assert out.shape == (3, 2, oh, ow)


@pytest.mark.parametrize(
    "policy",
    [CropPolicy(), CropPolicy(short_side=None, crop=(32, 40)), PadPolicy(), PadPolicy(short_side=100, multiple=16)],
)
def test_output_size_matches_result(policy: CropPolicy | PadPolicy) -> None:
    for h, w in [(48, 64), (240, 320), (77, 51)]:
        assert tuple(policy(_to_float(_frames(1, h, w))).shape[-2:]) == policy.output_size(h, w)


def test_short_side_size_rounds_half_up() -> None:
    assert short_side_size(240, 320, 224) == (224, 299)
    assert short_side_size(320, 240, 224) == (299, 224)
    assert short_side_size(100, 150, 50) == (50, 75)
    assert short_side_size(4, 10, 2) == (2, 5)  # exact
    assert short_side_size(4, 9, 2) == (2, 5)  # 4.5 -> 5 (torchvision would truncate to 4)


# --- centre crop ---------------------------------------------------------------------------------
def test_centre_crop_takes_the_centre() -> None:
    h, w = 8, 11
    coords = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w).expand(3, 2, h, w)
    out = CropPolicy(short_side=None, crop=(4, 6))(coords)
    # rows (8-4)//2 = 2..5, cols (11-6)//2 = 2..7
    expected = torch.arange(h * w, dtype=torch.float32).reshape(h, w)[2:6, 2:8]
    assert torch.equal(out[0, 0], expected) and torch.equal(out[2, 1], expected)


def test_centre_crop_after_resize_is_symmetric() -> None:
    # A horizontal ramp: the crop keeps columns 5..292 of 299 (5 dropped left, 6 right), so its
    # mean sits half a resized column below the middle; a left-aligned crop would be 5.5 columns
    # off, a right-aligned one 5.5 columns the other way.
    ramp = torch.linspace(-1, 1, 320).reshape(1, 1, 1, 320).expand(3, 1, 240, 320).contiguous()
    out = CropPolicy()(ramp)
    column_step = 2.0 / 319 * 320 / 299  # ramp increment per column after resizing 320 -> 299
    assert out.mean().item() == pytest.approx(-0.5 * column_step, abs=0.05 * column_step)
    assert out[0, 0, 0, 0] < -0.85 and out[0, 0, 0, -1] > 0.85


# --- antialiasing --------------------------------------------------------------------------------
def test_antialiased_resize_suppresses_checkerboard_aliasing() -> None:
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    board = (((yy + xx) % 2) * 2 - 1).to(torch.float32).reshape(1, 1, 64, 64).expand(3, 2, 64, 64).contiguous()
    smooth = resize(board, (15, 15))
    aliased = F.interpolate(board, size=(15, 15), mode="bilinear", antialias=False, align_corners=False)
    # the checkerboard's local mean is 0: a proper low-pass gives ~0 everywhere; point sampling
    # without the filter picks pixels of the pattern and keeps a large-amplitude alias.
    assert smooth.abs().max().item() < 0.1
    assert aliased.abs().max().item() > 0.5
    assert aliased.std().item() > 10 * smooth.std().item()
    assert CropPolicy(short_side=15, crop=(15, 15))(board).abs().max().item() < 0.1


def test_resize_is_identity_at_same_size() -> None:
    x = _to_float(_frames(2, 10, 12))
    assert resize(x, (10, 12)) is x


# --- padding -------------------------------------------------------------------------------------
def test_constant_pad_is_minus_one_and_content_intact() -> None:
    x = _to_float(_frames(3, 40, 50))
    policy = PadPolicy(mode="constant")
    out = policy(x)
    pad = policy.padding(40, 50)
    assert pad == Padding(top=12, bottom=12, left=7, right=7)
    assert torch.equal(pad.crop(out), x)
    mask = torch.ones(out.shape[-2:], dtype=torch.bool)
    mask[pad.top : pad.top + 40, pad.left : pad.left + 50] = False
    assert torch.all(out[..., mask] == -1.0)


def test_replicate_pad_repeats_edges_and_content_intact() -> None:
    x = _to_float(_frames(2, 40, 50))
    policy = PadPolicy()
    out = policy(x)
    pad = policy.padding(40, 50)
    assert torch.equal(pad.crop(out), x)
    assert torch.equal(out[..., 0, pad.left : pad.left + 50], x[..., 0, :])  # top rows = first row
    assert torch.equal(out[..., -1, pad.left : pad.left + 50], x[..., -1, :])
    assert torch.equal(out[..., pad.top : pad.top + 40, 0], x[..., :, 0])  # left cols = first col
    assert torch.equal(out[..., 0, 0], x[..., 0, 0])  # corners = corner pixel


def test_no_padding_needed_is_identity() -> None:
    x = _to_float(_frames(1, 64, 96))
    assert torch.equal(PadPolicy()(x), x)
    assert PadPolicy().padding(64, 96) == Padding(0, 0, 0, 0)


# --- hot path (uint8 frames in) ------------------------------------------------------------------
@pytest.mark.parametrize(
    "policy",
    [CropPolicy(), CropPolicy(short_side=None, crop=(32, 48)), PadPolicy(), PadPolicy(mode="constant"),
     PadPolicy(short_side=40)],
)
@pytest.mark.parametrize("hw", [(48, 64), (240, 320)])
def test_apply_to_frames_equals_reference_bit_for_bit(policy: CropPolicy | PadPolicy, hw: tuple[int, int]) -> None:
    frames = _frames(3, *hw)
    fast = policy.apply_to_frames(frames)
    ref = policy(_to_float(frames))
    assert fast.dtype == torch.float32 and fast.is_contiguous()
    assert torch.equal(fast, ref)


@pytest.mark.parametrize(
    "policy", [CropPolicy(resize_precision="uint8"), PadPolicy(short_side=200, resize_precision="uint8")]
)
def test_uint8_resize_within_one_grey_level(policy: CropPolicy | PadPolicy) -> None:
    frames = _frames(3, 240, 320, seed=1)
    fast = policy.apply_to_frames(frames)
    geometry = {k: v for k, v in policy.params().items() if k not in ("name", "resize_precision")}
    expected = make_spatial_policy(policy.name, **geometry)(_to_float(frames))  # float32 reference
    assert fast.shape == expected.shape
    # rounding to uint8 (0.5) plus the kernel's fixed-point weights: about one grey level
    assert (fast - expected).abs().max().item() <= 1.05 / 127.5
    assert (fast - expected).abs().mean().item() < 0.5 / 127.5


@pytest.mark.parametrize("policy", [CropPolicy(), CropPolicy(resize_precision="uint8"), PadPolicy(mode="constant")])
def test_hot_path_stays_on_the_frames_device(policy: CropPolicy | PadPolicy) -> None:
    # "meta" tensors stand in for a GPU: the output must be allocated where the frames are
    frames = torch.empty((4, 240, 320, 3), dtype=torch.uint8, device="meta")
    out = policy.apply_to_frames(frames)
    assert out.device == frames.device and out.dtype == torch.float32
    assert tuple(out.shape) == (3, 4, *policy.output_size(240, 320))


def test_uint8_to_unit_range_exact_values_and_layout() -> None:
    values = torch.arange(256, dtype=torch.uint8)
    frames = values.reshape(1, 16, 16, 1).expand(2, 16, 16, 3).clone()
    frames[..., 1] = 255 - frames[..., 1]
    out = uint8_to_unit_range(frames.permute(0, 3, 1, 2))
    assert out.shape == (3, 2, 16, 16)
    expected = torch.from_numpy(np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)).reshape(16, 16)
    assert torch.equal(out[0, 0], expected) and torch.equal(out[2, 1], expected)
    assert torch.equal(out[1, 0], expected.flip(0).flip(1))  # channel 1 was 255 - x
    assert out.min().item() == -1.0 and out.max().item() == 1.0


# --- registry and validation ---------------------------------------------------------------------
def test_registry_and_loud_errors() -> None:
    assert set(SPATIAL_POLICIES) == {"crop", "pad"}
    assert make_spatial_policy("crop") == CropPolicy()
    assert make_spatial_policy("pad", short_side=224) == PadPolicy(short_side=224)
    assert make_spatial_policy("crop", crop=[112, 144]).crop == (112, 144)  # YAML lists accepted
    with pytest.raises(ValueError, match=r"unknown spatial policy 'resize'.*crop, pad"):
        make_spatial_policy("resize")
    with pytest.raises(ValueError, match="no parameter"):
        make_spatial_policy("crop", shortside=224)
    with pytest.raises(ValueError, match="resize_precision"):
        CropPolicy(resize_precision="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pad mode"):
        PadPolicy(mode="reflect")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CropPolicy(crop=(0, 10))
    with pytest.raises(ValueError, match="float"):
        CropPolicy()(torch.zeros(3, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        CropPolicy().apply_to_frames(torch.zeros(1, 8, 8, 3))
    assert CropPolicy().params() == {
        "name": "crop", "short_side": 224, "crop": (224, 288), "resize_precision": "float32"}


def test_policies_are_frozen_and_hashable() -> None:
    policy = CropPolicy()
    with pytest.raises(AttributeError):
        policy.short_side = 100  # type: ignore[misc]
    assert len({CropPolicy(), CropPolicy(), PadPolicy()}) == 2
