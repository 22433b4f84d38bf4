"""The latent cache on the smoke dataset with the smoke VAE: contents, determinism, kill -9 and
resume, stale keys, bad videos, pooled pixels and the optional outputs.

Every build here uses one encoder thread, so results are comparable bit for bit (CPU float
results depend on the thread count, see lib/cache/build.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.cache import (
    BuildOptions,
    CacheError,
    CacheSpec,
    IncompleteCacheError,
    StaleCacheError,
    build_cache,
    load_content_features,
    load_split,
    open_cache,
    pooled_shape,
)
from lib.cache.encoders import to_channels_last_3d
from lib.cache.plan import entry_path
from lib.data.clips import sample_clips
from lib.data.spatial import CropPolicy
from lib.data.synth import ensure_synthetic
from lib.data.ucf101 import load_ucf101
from lib.data.video import iter_clips
from lib.paths import REPO_ROOT
from lib.vae import load_reducio
from lib.vae.local import ensure_local_vae, input_policy

COMMON = dict(batch_size=4, threads=1, progress=False)


def finished_bytes(cache_dir: Path) -> dict[str, bytes]:
    """The files that make up a finished cache's content (timings live elsewhere)."""
    return {p.name: p.read_bytes() for p in sorted(cache_dir.glob("*.npy")) + [cache_dir / "index.json"]}


@pytest.fixture(scope="module")
def smoke_root() -> Path:
    return ensure_synthetic(preset="smoke")


@pytest.fixture(scope="module")
def smoke_vae() -> Path:
    return ensure_local_vae(preset="smoke")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, smoke_root: Path, smoke_vae: Path) -> Path:
    """All splits of folds 1 and 2, decoded in this process (num_workers=0)."""
    out = tmp_path_factory.mktemp("cache") / "reference"
    summary = build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), folds=(1, 2)),
                          out, BuildOptions(num_workers=0, **COMMON))
    assert summary.complete and not summary.failures
    return out


@pytest.mark.slow
def test_contents_match_a_direct_encode(reference: Path, smoke_root: Path, smoke_vae: Path) -> None:
    cache = open_cache(reference)
    split = load_ucf101(smoke_root, 1)
    assert cache.class_names == split.classes and cache.num_classes == 4
    assert cache.latent_shape == (16, 4, 1, 1)
    for name in ("train", "val", "test"):
        clips = load_split(reference, name, fold=1)
        videos = cache.videos(name, fold=1)
        assert [v.id for v in videos] == [r.relpath for r in split.records(name)]  # list order, none failed
        assert clips.latents.dtype == torch.float16 and clips.latents.shape[1:] == (16, 4, 1, 1)
        assert len(clips.labels) == len(clips.video_index) == len(clips.latents) == sum(v.num_clips for v in videos)
        assert torch.equal(clips.labels, torch.tensor([videos[i].label for i in clips.video_index]))
        assert torch.all(clips.video_index[1:] >= clips.video_index[:-1])
    assert {v.group for v in cache.videos("val")}.isdisjoint(v.group for v in cache.videos("train"))

    # one validation video, encoded directly: identical fp16 bits in the CPU build's channels-last
    # layout, equal to float32 rounding in the default layout; same clips
    torch.set_num_threads(1)
    vae = load_reducio(smoke_vae, parts="encoder")
    video = cache.videos("val")[1]
    pixels = torch.stack([clip for _, clip in iter_clips(video.path, spatial=input_policy(vae))])
    default_layout = torch.cat([vae.encode_latents(pixels[i : i + 4]) for i in range(0, len(pixels), 4)])
    to_channels_last_3d(vae)
    pixels = pixels.contiguous(memory_format=torch.channels_last_3d)
    direct = torch.cat([vae.encode_latents(pixels[i : i + 4]) for i in range(0, len(pixels), 4)]).half()
    clips = load_split(reference, "val")
    assert torch.equal(clips.latents[clips.video_index == 1], direct)
    torch.testing.assert_close(direct.float(), default_layout, rtol=2e-3, atol=2e-3)  # fp16 storage rounding
    expected = sample_clips(video.num_frames, video.fps)
    assert video.clip_frame_indices == tuple(c.frame_indices for c in expected)
    assert video.clip_start_times == tuple(c.start_time for c in expected)
    assert cache.encode_seconds > 0 and cache.bytes_on_disk["latent"] > 0


@pytest.mark.slow
def test_other_fold_and_memory_map(reference: Path) -> None:
    in_ram = load_split(reference, "test", fold=1)
    mapped = load_split(reference, "test", fold=1, mmap=True)
    assert torch.equal(in_ram.latents, mapped.latents)
    fold2 = load_split(reference, "train", fold=2)
    cache = open_cache(reference)
    assert {v.group for v in cache.videos("test", fold=2)} == {8, 9, 10}  # fold 2 tests groups 8-14; smoke has 1-10
    assert len(fold2.latents) == sum(v.num_clips for v in cache.videos("train", fold=2))
    with pytest.raises(CacheError, match="not contiguous"):
        load_split(reference, "train", fold=2, mmap=True)
    with pytest.raises(CacheError, match="fold 3"):
        load_split(reference, "train", fold=3)


@pytest.mark.slow
def test_workers_and_preprocessing_place_do_not_change_a_bit(reference: Path, smoke_root: Path, smoke_vae: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "workers"
    build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), folds=(1, 2)),
                out, BuildOptions(num_workers=2, preprocess="device", **COMMON))
    assert finished_bytes(out) == finished_bytes(reference)


@pytest.mark.slow
def test_kill_9_then_resume_is_bit_identical(reference: Path, smoke_root: Path, smoke_vae: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "lib.cache", "build", "--data", str(smoke_root), "--vae", str(smoke_vae),
               "--out", str(out), "--folds", "1", "2", "--batch-size", "4", "--threads", "1", "--num-workers", "1",
               "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list((out / "entries").rglob("*.safetensors"))) < 3:
        assert process.poll() is None and time.monotonic() < deadline, "the build ended before it could be killed"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "index.json").exists()
    with pytest.raises(IncompleteCacheError, match="not finished"):
        load_split(out, "train")
    # a torn temp file, as a kill during a write leaves it, is never taken for an entry
    (out / "entries" / "MoveLeft" / ".v_MoveLeft_g99_c01.safetensors.abc.tmp").write_bytes(b"partial")
    resumed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    done_before = int(resumed.stdout.split(" videos / ")[0].rsplit(", ", 1)[1])
    assert 0 < done_before < 40  # the rerun did only what was left
    assert finished_bytes(out) == finished_bytes(reference)
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.slow
def test_stale_key_is_an_error_naming_the_difference(reference: Path, smoke_root: Path, smoke_vae: Path) -> None:
    with pytest.raises(StaleCacheError, match=r"outputs\.layer_norm: cache has false, asked for true") as info:
        build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), folds=(1, 2), layer_norm=True),
                    reference, BuildOptions(num_workers=0, **COMMON))
    assert [d[0] for d in info.value.differences] == ["outputs.layer_norm"]
    with pytest.raises(StaleCacheError, match="encoder.weights_sha256"):
        build_cache(CacheSpec(data_root=smoke_root, vae_source="random:local-smoke", folds=(1, 2)),
                    reference, BuildOptions(num_workers=0, **COMMON))
    with pytest.raises(StaleCacheError, match="dataset.folds"):
        build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), folds=1),
                    reference, BuildOptions(num_workers=0, **COMMON))
    cache = open_cache(reference)
    changed = json.loads(json.dumps(cache.key))
    changed["spatial"]["crop"] = [64, 64]
    with pytest.raises(StaleCacheError, match=r"spatial\.crop"):
        open_cache(reference, expect_key=changed)
    # the same request again is a no-op that reports the finished cache
    again = build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), folds=(1, 2)),
                        reference, BuildOptions(num_workers=0, **COMMON))
    assert again.complete and again.videos_this_run == 0 and again.num_clips == cache.num_clips


def _copy_dataset(root: Path, dest: Path) -> Path:
    shutil.copytree(root / "ucfTrainTestlist", dest / "ucfTrainTestlist")
    shutil.copytree(root / "UCF-101", dest / "UCF-101")
    return dest


@pytest.mark.slow
def test_bad_videos_are_recorded_and_the_build_goes_on(smoke_root: Path, smoke_vae: Path, tmp_path: Path) -> None:
    root = _copy_dataset(smoke_root, tmp_path / "data")
    val = load_ucf101(root, 1).val
    corrupt, truncated, short = val[0].path, val[1].path, val[2].path
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    from lib.data.video_writer import write_video

    write_video(short, (np.full((240, 320, 3), 90, np.uint8) for _ in range(12)), fps=25)  # 0.48 s < one clip
    out = tmp_path / "cache"
    summary = build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), splits=("val",)),
                          out, BuildOptions(num_workers=1, **COMMON))
    assert summary.complete and summary.failures_this_run == 3
    failed = dict(summary.failures)
    assert set(failed) == {val[0].relpath, val[1].relpath, val[2].relpath}
    assert "VideoUnreadableError" in failed[val[0].relpath] and str(corrupt) in failed[val[0].relpath]
    assert "Truncated" in failed[val[1].relpath]
    assert failed[val[2].relpath].startswith("VideoTooShortError") and "hold no 16-frame clip" in failed[val[2].relpath]
    assert "failed" in summary.describe()
    clips = load_split(out, "val")
    assert [v.id for v in open_cache(out).videos("val")] == [val[3].relpath]
    assert len(clips.latents) == open_cache(out).videos("val")[0].num_clips
    # a rerun keeps the records (nothing to redo) ...
    again = build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), splits=("val",)),
                        out, BuildOptions(num_workers=0, **COMMON))
    assert again.videos_this_run == 0 and len(again.failures) == 3
    # ... but a replaced source file is a different dataset: the key says so
    shutil.copy(smoke_root / "UCF-101" / val[0].relpath, corrupt)
    with pytest.raises(StaleCacheError, match="dataset.videos_sha256"):
        build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), splits=("val",)),
                    out, BuildOptions(num_workers=0, **COMMON))


@pytest.mark.slow
def test_pooled_pixels_control(smoke_root: Path, tmp_path: Path) -> None:
    assert pooled_shape((3, 16, 224, 288)) == (3, 4, 16, 21)  # 4,032 values, like the ft4 latent
    assert pooled_shape((3, 16, 64, 96)) == (3, 4, 5, 7)
    policy = CropPolicy(short_side=36, crop=(32, 32))
    out = tmp_path / "pooled"
    build_cache(CacheSpec(data_root=smoke_root, vae_source="pooled-pixels", splits=("val",), spatial=policy),
                out, BuildOptions(num_workers=0, **COMMON))
    cache = open_cache(out)
    assert cache.source_kind == "pooled-pixels" and cache.latent_shape == (3, 4, 2, 2)
    assert cache.clip_shape == (3, 16, 32, 32)
    clips = load_split(out, "val")
    video = cache.videos("val")[0]
    pixels = torch.stack([clip for _, clip in iter_clips(video.path, spatial=policy)])
    expected = F.adaptive_avg_pool3d(pixels, (4, 2, 2)).half()
    assert torch.equal(clips.latents[clips.video_index == 0], expected)


@pytest.mark.slow
def test_optional_outputs(smoke_root: Path, smoke_vae: Path, tmp_path: Path) -> None:
    out = tmp_path / "full"
    outputs = dict(content_features=True, sample=True, sample_seed=3, logvar=True, layer_norm=True)
    build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), splits=("val",), **outputs),
                out, BuildOptions(num_workers=0, **COMMON))
    cache = open_cache(out)
    assert set(cache.arrays) == {"latent", "sample", "logvar", "content"}
    mean, sample = load_split(out, "val"), load_split(out, "val", kind="sample")
    logvar = load_split(out, "val", kind="logvar").latents
    content = load_content_features(out, "val")
    assert content.shape[0] == mean.latents.shape[0] and content.ndim == 2 and content.dtype == torch.float16
    assert torch.equal(mean.labels, sample.labels) and not torch.equal(mean.latents, sample.latents)
    # per-sample layer norm: zero mean, unit variance over (C, T, H, W)
    flat = mean.latents.float().flatten(1)
    assert flat.mean(1).abs().max() < 1e-2 and (flat.var(1, unbiased=False) - 1).abs().max() < 1e-2
    assert logvar.float().max() <= 20 and logvar.float().min() >= -30
    # the sample is a function of (seed, video, clip) alone: the same in a build of other videos
    other = tmp_path / "other"
    build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), splits=("val", "test"), **outputs),
                other, BuildOptions(num_workers=0, **COMMON))
    assert torch.equal(load_split(other, "val", kind="sample").latents, sample.latents)


@pytest.mark.slow
def test_entry_of_another_build_is_redone(reference: Path, smoke_root: Path, smoke_vae: Path, tmp_path: Path) -> None:
    out = tmp_path / "partial"
    shutil.copytree(reference, out)
    (out / "index.json").unlink()
    victim = entry_path(out, open_cache(reference).videos("val")[0].id)
    victim.write_bytes(b"\x00" * 100)  # an unreadable entry (e.g. disk damage) is redone, not read
    summary = build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), folds=(1, 2)),
                          out, BuildOptions(num_workers=0, **COMMON))
    assert summary.videos_this_run == 1
    assert finished_bytes(out) == finished_bytes(reference)


def test_not_a_cache_folder(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="is not a latent cache"):
        open_cache(tmp_path)


@pytest.mark.slow
def test_single_clip_modes(smoke_root: Path, smoke_vae: Path, tmp_path: Path) -> None:
    for mode in ("center", "random"):
        out = tmp_path / mode
        build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), splits=("val",), clip_mode=mode,
                              clip_seed=5),
                    out, BuildOptions(num_workers=0, **COMMON))
        cache = open_cache(out)
        assert cache.key["clips"]["mode"] == mode
        assert cache.key["clips"]["clip_seed"] == (5 if mode == "random" else None)
        videos = cache.videos("val")
        assert all(v.num_clips == 1 for v in videos) and len(load_split(out, "val").labels) == len(videos)
        if mode == "center":
            assert [v.clip_frame_indices[0] for v in videos] == [
                sample_clips(v.num_frames, v.fps, mode="center")[0].frame_indices for v in videos]
    starts = [v.clip_start_times[0] for v in open_cache(tmp_path / "random").videos("val")]
    assert len(set(starts)) > 1  # a seeded draw per video, not one shared offset
