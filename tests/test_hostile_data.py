"""The data layer against the hostile corpus (tests/hostile_corpus.py): variable frame rate,
frame sizes decord cannot copy, dangling symbolic links, read-only folders, file permissions,
relative paths on the command line, and the memory bound of 4K preprocessing."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_corpus import read_only_dir, write_narrow_video, write_vfr_video

from lib.data.errors import DatasetError, VideoFrameSizeError, VideoUnreadableError, VideoVariableFrameRateError
from lib.data.spatial import CropPolicy, PadPolicy, uint8_to_unit_range
from lib.data.ucf101_report import format_report, integrity_report, summarize
from lib.data.video import VideoReader, frames_to_tensor, iter_clips
from lib.data.video_writer import write_video
from lib.errors import UnwritableLocationError
from lib.paths import REPO_ROOT


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "lib.data", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


# --- variable frame rate ---------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_is_a_typed_error(tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture) -> None:
    path = write_vfr_video(tmp_path / f"vfr{suffix}")  # 30 frames 50 ms apart, then 30 frames 30 ms apart
    with pytest.raises(VideoVariableFrameRateError,
                       match=r"frame 30 is shown at 1\.500 s .* assumes 1\.2\d\d s") as info:
        VideoReader(path)
    assert isinstance(info.value, VideoUnreadableError) and info.value.path == path
    assert "constant frame rate" in info.value.fix
    with caplog.at_level(logging.WARNING, logger="lib.data.video"):
        with VideoReader(path, strict=False) as reader:  # sampled by index anyway, with a warning
            assert reader.num_frames == 60
    assert any("variable frame rate" in r.getMessage() for r in caplog.records)


def test_constant_frame_rate_with_the_same_steps_passes(tmp_path: Path) -> None:
    path = write_vfr_video(tmp_path / "cfr.mp4", slow=60, fast=0, slow_ms=40)  # the writer, with every step 40 ms
    with VideoReader(path) as reader:
        assert reader.num_frames == 60 and reader.fps == pytest.approx(25.0, rel=0.02)
    assert len(list(iter_clips(path))) == 2


# --- frame sizes decord cannot copy ----------------------------------------------------------------
@pytest.mark.parametrize("width", [8, 16, 24, 48])
def test_narrow_valid_video_decodes_exactly_through_pyav(tmp_path: Path, width: int) -> None:
    # decord 0.6.0 cannot copy these widths out; the reader switches the file to the PyAV stream.
    path = write_narrow_video(tmp_path / f"w{width}.avi", width)
    expected = np.random.default_rng(width).integers(0, 256, (20, 32, width, 3), dtype=np.uint8)
    with VideoReader(path) as reader:
        assert reader.backend == "decord"
        np.testing.assert_array_equal(reader.read_frames(np.arange(4)), expected[:4])
        assert reader.backend == "stream"
        np.testing.assert_array_equal(reader.read_frames(np.arange(20)), expected)
    longer = write_narrow_video(tmp_path / f"w{width}_40.avi", width, frames=40)  # one 16-fps clip
    [(clip, tensor)] = list(iter_clips(longer))
    pixels = np.random.default_rng(width).integers(0, 256, (40, 32, width, 3), dtype=np.uint8)
    assert torch.equal(tensor, frames_to_tensor(pixels[list(clip.frame_indices)]))


def test_narrow_video_names_the_frame_size_when_pyav_fails_too(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from lib.data.video_stream import FrameStream, FrameStreamError

    def fail(self: FrameStream, indices: np.ndarray) -> None:
        raise FrameStreamError("PyAV cannot open its video stream (test)")

    monkeypatch.setattr(FrameStream, "read", fail)
    path = write_narrow_video(tmp_path / "w16.avi", 16)
    with pytest.raises(VideoFrameSizeError,
                       match=r"file is valid but decord 0\.6\.0 cannot copy out 16x32 frames") as info:
        with VideoReader(path) as reader:
            reader.read_frames(np.arange(4))
    assert "re-download" not in str(info.value) and "scale=" in info.value.fix and info.value.path == path


def test_widths_decord_handles_still_decode_exactly(tmp_path: Path) -> None:
    for width in (32, 40, 56):
        path = write_narrow_video(tmp_path / f"w{width}.avi", width)
        expected = np.random.default_rng(width).integers(0, 256, (20, 32, width, 3), dtype=np.uint8)
        with VideoReader(path) as reader:
            assert np.array_equal(reader.read_frames(np.arange(20)), expected)


# --- dangling symbolic links ---------------------------------------------------------------------
def _copy_smoke(dest: Path) -> Path:
    from lib.data.synth import ensure_synthetic

    root = ensure_synthetic(preset="smoke")
    shutil.copytree(root / "ucfTrainTestlist", dest / "ucfTrainTestlist")
    shutil.copytree(root / "UCF-101", dest / "UCF-101")
    return dest


def test_dangling_symlinks_fail_the_integrity_check(tmp_path: Path) -> None:
    root = _copy_smoke(tmp_path / "data")
    assert summarize(root)["ok"] is True
    video = next((root / "UCF-101" / "MoveLeft").glob("*.avi"))
    target = tmp_path / "elsewhere" / video.name
    target.parent.mkdir()
    video.rename(target)
    video.symlink_to(target)
    assert summarize(root)["missing"] == 0  # a link to an existing file is a file
    target.unlink()  # the link now points at nothing
    summary = summarize(root)
    assert summary["missing"] == 1 and summary["dangling_links"] == 1 and summary["ok"] is False
    report = integrity_report(root)
    assert report.dangling_links == [f"MoveLeft/{video.name}"]
    text = format_report(report)
    assert "whose target does not exist: 1" in text and "status: PROBLEMS FOUND" in text
    with pytest.raises(VideoUnreadableError, match=r"is a symbolic link to .*, which does not exist"):
        VideoReader(video)


# --- permissions, read-only folders ------------------------------------------------------------------
def test_written_videos_get_the_permissions_of_a_plain_file(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = write_video(tmp_path / "v.avi", np.zeros((4, 16, 32, 3), np.uint8), fps=25, codec="ffv1")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp alone gives 0600


def test_read_only_output_folders_are_typed_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lib import paths
    from lib.data import sources
    from lib.runs import open_run

    with read_only_dir(tmp_path / "ro") as ro:
        with pytest.raises(UnwritableLocationError, match=r"ro/run: the run directory cannot be written") as info:
            open_run("02_latent_cache", ro / "run")
        assert "make it writable" in str(info.value)
        monkeypatch.setattr(paths, "DATA_DIR", ro)
        monkeypatch.setenv("LVS_DATA_DIR", str(ro))
        monkeypatch.setattr(paths, "synthetic_dataset_dir", lambda preset: ro / f"synth_{preset}")
        with pytest.raises(DatasetError, match="synthetic dataset cannot be written") as info:
            sources.resolve_dataset_root("", synthetic_preset="smoke")
        assert "set LVS_DATA_DIR to a writable folder" in str(info.value)
        proc = run_cli("synth", "--out", str(ro / "new"), "--preset", "smoke", cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "cannot be written" in proc.stderr and "ro/new" in proc.stderr


# --- relative paths on the command line ----------------------------------------------------------
def test_lib_data_cli_reads_paths_from_the_working_directory(tmp_path: Path) -> None:
    _copy_smoke(tmp_path / "mydata")
    proc = run_cli("summary", "--root", "mydata", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["root"] == str(tmp_path / "mydata")
    missing = run_cli("summary", "--root", "nothing-here", cwd=tmp_path)
    assert missing.returncode == 2 and str(tmp_path / "nothing-here") in missing.stderr


# --- 4K memory: the float resize holds one source frame, and is bit-identical ----------------------
@pytest.mark.parametrize("policy", [CropPolicy(), PadPolicy(short_side=100), CropPolicy(short_side=72, crop=(64, 96))])
def test_float_resize_frame_by_frame_is_bit_identical(policy: CropPolicy | PadPolicy) -> None:
    frames = torch.randint(0, 256, (5, 270, 480, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    reference = policy(uint8_to_unit_range(frames.permute(0, 3, 1, 2)))  # the whole clip as float, then resized
    assert torch.equal(policy.apply_to_frames(frames), reference)


def test_float_resize_never_holds_the_clip_as_float(monkeypatch: pytest.MonkeyPatch) -> None:
    from lib.data import spatial

    seen: list[int] = []
    original = spatial.uint8_to_unit_range

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return original(x)

    monkeypatch.setattr(spatial, "uint8_to_unit_range", spy)
    CropPolicy().apply_to_frames(torch.zeros((16, 270, 480, 3), dtype=torch.uint8))
    assert seen and max(seen) == 1  # one source-size frame converted at a time
