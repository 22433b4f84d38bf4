"""Clip sampling by timestamps (lib.data.clips): exact indices, counts, modes, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lib.data.clips import (
    SAMPLING_MODES,
    Clip,
    ClipSpec,
    clip_frame_indices,
    count_clips,
    max_start_time,
    official_stride,
    sample_clips,
    source_index,
    union_indices,
)
from lib.data.errors import VideoTooShortError

NTSC = 30000 / 1001  # 29.97...

# Hand-computed with t_j = j/16 s, index = nearest frame, ties up (see each comment).
FIRST_CLIP = {
    # 25 fps: 25j/16 = 0, 1.5625, 3.125, ..., 12.5 (j=8, tie -> 13), ..., 23.4375
    25.0: (0, 2, 3, 5, 6, 8, 9, 11, 13, 14, 16, 17, 19, 20, 22, 23),
    # 16 fps: identity
    16.0: tuple(range(16)),
    # 30 fps: 1.875j; ties at j=4 (7.5 -> 8) and j=12 (22.5 -> 23)
    30.0: (0, 2, 4, 6, 8, 9, 11, 13, 15, 17, 19, 21, 23, 24, 26, 28),
    # 29.97 fps: 1.8731j; j=4 -> 7.4925 -> 7 and j=12 -> 22.478 -> 22 (no ties, round down)
    NTSC: (0, 2, 4, 6, 7, 9, 11, 13, 15, 17, 19, 21, 22, 24, 26, 28),
    # 24 fps: 1.5j: every odd j is an exact tie in the maths but not in binary -> EPS decides
    24.0: (0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23),
}


@pytest.mark.parametrize("fps", list(FIRST_CLIP))
def test_first_clip_exact_indices(fps: float) -> None:
    assert clip_frame_indices(0.0, fps) == FIRST_CLIP[fps]
    clips = sample_clips(1000, fps)
    assert clips[0] == Clip(0, 0.0, FIRST_CLIP[fps])


def test_25fps_clip_k_is_first_clip_shifted_by_25k() -> None:
    clips = sample_clips(250, 25.0)
    assert len(clips) == 10
    for k, clip in enumerate(clips):
        assert clip.index == k
        assert clip.start_time == pytest.approx(k * 1.0)
        assert clip.frame_indices == tuple(25 * k + i for i in FIRST_CLIP[25.0])


def test_16fps_is_identity_and_30fps_shifts_by_30() -> None:
    assert [c.frame_indices for c in sample_clips(64, 16.0)] == [tuple(range(16 * k, 16 * k + 16)) for k in range(4)]
    assert sample_clips(95, 30.0)[2].frame_indices == tuple(60 + i for i in FIRST_CLIP[30.0])


def test_round_half_up_rule_and_float_ties() -> None:
    assert source_index(0.5, 25.0) == 13  # 12.5 frames -> 13
    assert source_index(0.48, 25.0) == 12  # 12.0
    assert source_index(0.499, 25.0) == 12  # 12.475 -> 12
    # 0.1 * 3 * 25 = 7.500000000000001 and 0.3 * 25 = 7.5: both must round up to 8
    assert source_index(0.1 * 3, 25.0) == source_index(0.3, 25.0) == 8
    # a value just under a tie that float error could push over stays down... only beyond EPS
    assert source_index((7.5 - 1e-3) / 25.0, 25.0) == 7


@pytest.mark.parametrize(
    ("fps", "num_frames", "expected"),
    [
        # 25 fps: clip k needs frame 25k + 23, so count = floor((N - 24) / 25) + 1 for N >= 24
        (25.0, 0, 0), (25.0, 23, 0), (25.0, 24, 1), (25.0, 48, 1), (25.0, 49, 2), (25.0, 250, 10), (25.0, 174, 7),
        # 16 fps: count = N // 16
        (16.0, 15, 0), (16.0, 16, 1), (16.0, 47, 2), (16.0, 48, 3),
        # 30 fps: clip k needs frame 30k + 28
        (30.0, 28, 0), (30.0, 29, 1), (30.0, 58, 1), (30.0, 59, 2),
    ],
)
def test_all_mode_clip_counts(fps: float, num_frames: int, expected: int) -> None:
    assert count_clips(num_frames, fps) == expected
    assert len(sample_clips(num_frames, fps)) == expected


def test_remainder_is_dropped_and_clips_do_not_overlap() -> None:
    clips = sample_clips(24 + 25 * 3 + 20, 25.0)  # 3 full clips after the first + 20 spare frames
    assert len(clips) == 4
    for a, b in zip(clips, clips[1:]):
        assert a.frame_indices[-1] < b.frame_indices[0]
        assert b.start_time - a.start_time == pytest.approx(ClipSpec().duration)


@pytest.mark.parametrize(
    ("fps", "stride"),
    [(25.0, 2), (NTSC, 2), (30.0, 2), (16.0, 1), (8.0, 1), (50.0, 3), (24.0, 2), (40.0, 2), (60.0, 4)],
)
def test_official_stride_uses_pythons_round(fps: float, stride: int) -> None:
    # round(1.5) = 2 and round(2.5) = 2 (ties to even, as Python's round in the official script)
    assert official_stride(fps) == stride


def test_official_mode_indices_and_counts() -> None:
    clips = sample_clips(100, 25.0, mode="official")
    # stride 2: a clip spans 31 frames, clips start every 32 -> (100 - 31) // 32 + 1 = 3
    assert len(clips) == 3 == count_clips(100, 25.0, mode="official")
    assert clips[0].frame_indices == tuple(range(0, 32, 2))
    assert clips[2].frame_indices == tuple(range(64, 96, 2))
    assert clips[1].start_time == pytest.approx(32 / 25.0)
    assert sample_clips(30, 25.0, mode="official") == []  # needs 31 frames
    assert len(sample_clips(31, 25.0, mode="official")) == 1


def test_center_mode_is_centred() -> None:
    # 16 fps, 100 frames: middle frame time 49.5/16; the clip covers 42..57 (centre 49.5)
    (clip,) = sample_clips(100, 16.0, mode="center")
    assert clip.frame_indices == tuple(range(42, 58))
    assert clip.start_time == pytest.approx(42 / 16)
    for n in (24, 25, 60, 101, 250, 1234):
        (clip,) = sample_clips(n, 25.0, mode="center")
        # the clip's middle instant sits on the video's middle frame time (within rounding)
        mid = clip.start_time + 7.5 / 16
        assert mid == pytest.approx((n - 1) / 2 / 25.0, abs=0.5 / 25.0 + 1e-9) or clip.start_time == 0.0
        assert abs((clip.frame_indices[0] + clip.frame_indices[-1]) - (n - 1)) <= 2


def test_random_mode_is_seeded_and_uniformish() -> None:
    a = sample_clips(500, 25.0, mode="random", seed=123)
    assert a == sample_clips(500, 25.0, mode="random", seed=123)
    starts = {sample_clips(500, 25.0, mode="random", seed=s)[0].start_time for s in range(50)}
    assert len(starts) == 50
    s_max = max_start_time(500, 25.0)
    assert s_max is not None
    assert min(starts) >= 0.0 and max(starts) <= s_max
    assert max(starts) - min(starts) > 0.5 * s_max  # spread over the range, not stuck at one end
    gen = np.random.default_rng(0)
    assert sample_clips(500, 25.0, mode="random", seed=gen) != sample_clips(500, 25.0, mode="random", seed=gen)
    with pytest.raises(ValueError, match="seed"):
        sample_clips(500, 25.0, mode="random")


def test_random_start_at_the_very_end_is_valid() -> None:
    s_max = max_start_time(100, 25.0)
    assert s_max is not None
    assert clip_frame_indices(s_max, 25.0)[-1] == 99  # the latest start still ends inside


@pytest.mark.parametrize("mode", ["center", "random"])
def test_single_clip_modes_raise_when_too_short(mode: str) -> None:
    with pytest.raises(VideoTooShortError, match=r"v_short\.avi.*23 frames"):
        sample_clips(23, 25.0, mode=mode, seed=0, path="v_short.avi")
    with pytest.raises(VideoTooShortError):
        sample_clips(0, 25.0, mode=mode, seed=0)
    assert count_clips(23, 25.0, mode=mode) == 0
    assert len(sample_clips(24, 25.0, mode=mode, seed=0)) == 1  # the "all" threshold, exactly


@pytest.mark.parametrize("mode", ["all", "official"])
def test_multi_clip_modes_return_empty_when_too_short(mode: str) -> None:
    assert sample_clips(10, 25.0, mode=mode) == []
    assert sample_clips(0, 25.0, mode=mode) == []


@pytest.mark.parametrize("fps", [16.0, 23.976, 24.0, 25.0, NTSC, 30.0, 50.0, 59.94, 60.0, 120.0])
@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_properties_over_lengths(fps: float, mode: str) -> None:
    for n in range(0, 400, 7):
        clips = sample_clips(n, fps, mode=mode, seed=n) if count_clips(n, fps, mode=mode) else []
        assert len(clips) == count_clips(n, fps, mode=mode)
        for clip in clips:
            idx = np.asarray(clip.frame_indices)
            assert len(idx) == 16
            assert idx[0] >= 0 and idx[-1] < n
            assert np.all(np.diff(idx) > 0)  # fps >= 16: strictly increasing
            if mode == "official":
                assert set(np.diff(idx)) == {official_stride(fps)}
            else:
                # nearest-frame sampling: steps are floor or ceil of fps/16, total span ~ 15 fps/16
                assert set(np.diff(idx)) <= {math.floor(fps / 16), math.ceil(fps / 16)}
                assert abs((idx[-1] - idx[0]) - 15 * fps / 16) <= 1.0


def test_all_mode_count_matches_closed_form_over_fps() -> None:
    # first principles: clip k is valid iff (k + 15/16) * fps + 0.5 < N (no exact ties here)
    for fps in (23.976, 25.0, NTSC, 59.94):
        for n in range(0, 2000, 37):
            expected = max(0, math.floor((n - 0.5) / fps - 15 / 16) + 1)
            assert count_clips(n, fps) == expected, (fps, n)


def test_slower_source_repeats_frames_in_order() -> None:
    (clip,) = sample_clips(20, 10.0)[:1]
    assert clip.frame_indices == (0, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7, 8, 8, 9, 9)  # 10j/16 rounded
    assert union_indices(sample_clips(20, 10.0)) == list(range(20))


def test_custom_spec() -> None:
    spec = ClipSpec(num_frames=4, target_fps=8.0)
    assert spec.duration == 0.5
    clips = sample_clips(30, 25.0, spec)
    assert clips[0].frame_indices == (0, 3, 6, 9)  # 25j/8 = 0, 3.125, 6.25, 9.375
    assert clips[1].start_time == 0.5 and clips[1].frame_indices == (13, 16, 19, 22)  # 12.5 -> 13


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sample_clips(100, 25.0, mode="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fps"):
        sample_clips(100, 0.0)
    with pytest.raises(ValueError, match="fps"):
        sample_clips(100, float("nan"))
    with pytest.raises(ValueError, match="num_frames"):
        sample_clips(-1, 25.0)
    with pytest.raises(ValueError):
        ClipSpec(num_frames=0)
    with pytest.raises(ValueError):
        ClipSpec(target_fps=-16.0)


def test_union_indices_sorted_unique() -> None:
    clips = [Clip(0, 0.0, (5, 6, 8)), Clip(1, 0.0, (1, 6, 9))]
    assert union_indices(clips) == [1, 5, 6, 8, 9]
