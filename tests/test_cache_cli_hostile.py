"""The cache's command line and its resource bounds against hostile use: paths relative to the
working directory, a read-only ``--out``, ``--batch-size 0``, ``--vae DIR``, two builds on one
folder, ``--retry-failed`` on a finished cache, and videos handed over in bounded parts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hostile_corpus import read_only_dir

from lib.cache import BuildOptions, CacheError, CacheSpec, build_cache, open_cache
from lib.cache.__main__ import main
from lib.cache.claims import ClaimOwner, claim_path, try_claim
from lib.cache.decode import DecodeSettings, iter_video_parts
from lib.cache.plan import make_plan
from lib.data.clips import ClipSpec
from lib.data.spatial import CropPolicy
from lib.data.synth import ensure_synthetic
from lib.data.ucf101 import load_ucf101
from lib.paths import REPO_ROOT
from lib.vae.local import ensure_local_vae

VAL: dict[str, Any] = dict(splits=("val",))  # the CacheSpec settings the builds here share
OPTIONS = BuildOptions(batch_size=4, threads=1, num_workers=0, progress=False)
CLI = ["--splits", "val", "--batch-size", "4", "--threads", "1", "--num-workers", "0", "--no-progress"]


def content(cache_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache_dir.glob("*.npy")) + [cache_dir / "index.json"]}


@pytest.fixture(scope="module")
def smoke_root() -> Path:
    return ensure_synthetic(preset="smoke")


@pytest.fixture(scope="module")
def smoke_vae() -> Path:
    return ensure_local_vae(preset="smoke")


@pytest.fixture(scope="module")
def val_cache(tmp_path_factory: pytest.TempPathFactory, smoke_root: Path, smoke_vae: Path) -> Path:
    out = tmp_path_factory.mktemp("cli") / "val"
    assert build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL), out, OPTIONS).complete
    return out


# --- relative paths, --vae DIR ------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_paths_come_from_the_working_directory(smoke_root: Path, smoke_vae: Path, val_cache: Path,
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(smoke_root / "ucfTrainTestlist", tmp_path / "mydata" / "ucfTrainTestlist")
    shutil.copytree(smoke_root / "UCF-101", tmp_path / "mydata" / "UCF-101")
    (tmp_path / "run").mkdir()
    shutil.copy(smoke_vae, tmp_path / "run" / "vae.safetensors")  # a training output folder
    (tmp_path / "run" / "history.csv").write_text("step\n")
    monkeypatch.chdir(tmp_path)
    code = main(["build", "--data", "mydata", "--vae", "run", "--out", "mycache", *CLI])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert (tmp_path / "mycache" / "index.json").is_file() and not (REPO_ROOT / "mycache").exists()
    assert content(tmp_path / "mycache")["latent.npy"] == content(val_cache)["latent.npy"]
    assert main(["info", "mycache"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(tmp_path / "mycache")
    assert main(["verify", "mycache"]) == 0


def test_vae_folder_with_several_weights_is_refused(smoke_root: Path, smoke_vae: Path, tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / "runs" / sub).mkdir(parents=True)
        shutil.copy(smoke_vae, tmp_path / "runs" / sub / "vae.safetensors")
    with pytest.raises(CacheError, match=r"holds 2 vae\.safetensors files"):
        build_cache(CacheSpec(data_root=smoke_root, vae_source=str(tmp_path / "runs"), **VAL), tmp_path / "c", OPTIONS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CacheError, match=r"is a folder without a vae\.safetensors"):
        build_cache(CacheSpec(data_root=smoke_root, vae_source=str(tmp_path / "empty"), **VAL), tmp_path / "c", OPTIONS)


# --- typed errors instead of tracebacks ---------------------------------------------------------------
def test_read_only_out_and_bad_batch_size_are_typed_errors(smoke_root: Path, smoke_vae: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with read_only_dir(tmp_path / "ro") as ro:
        code = main(["build", "--data", str(smoke_root), "--vae", str(smoke_vae), "--out", str(ro / "cache"), *CLI])
        err = capsys.readouterr().err
        assert code == 2 and "the cache folder cannot be written" in err and str(ro / "cache") in err
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--data", str(smoke_root), "--vae", str(smoke_vae), "--out", str(tmp_path / "c"),
              "--batch-size", "0"])
    assert exit_info.value.code == 2 and "must be 1 or more, got 0" in capsys.readouterr().err
    with pytest.raises(CacheError, match=r"batch_size must be >= 1"):
        build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL),
                    tmp_path / "c", replace(OPTIONS, batch_size=0))


# --- two builds on one folder: per-video claims --------------------------------------------------------
@pytest.mark.slow
def test_videos_claimed_by_another_live_build_are_left_to_it(val_cache: Path, smoke_root: Path, smoke_vae: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "shared"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        owner = ClaimOwner(socket.gethostname(), other.pid, "other-build")
        videos = [j.video_id for j in make_plan(smoke_root, splits=("val",)).videos]
        for video_id in videos[:2]:
            assert try_claim(out, video_id, owner)
        first = build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL), out, OPTIONS)
        assert (first.videos_this_run, first.videos_skipped, first.complete) == (2, 2, False)
        assert "left to another build" in first.describe()
    finally:
        other.kill()
        other.wait()
    # the owner is gone: its claims are taken over
    second = build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL), out, OPTIONS)
    assert second.videos_this_run == 2 and second.complete
    assert content(out) == content(val_cache) and not (out / "claims").exists()
    assert not claim_path(out, videos[0]).exists()


@pytest.mark.slow
def test_a_waiting_build_finishes_the_videos_of_a_build_that_died(val_cache: Path, smoke_root: Path,
                                                                   smoke_vae: Path, tmp_path: Path) -> None:
    out = tmp_path / "waiting"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    owner = ClaimOwner(socket.gethostname(), other.pid, "other-build")
    videos = [j.video_id for j in make_plan(smoke_root, splits=("val",)).videos]
    for video_id in videos[:2]:
        assert try_claim(out, video_id, owner)
    def die() -> None:  # the other build dies (and is reaped: a zombie's pid still looks alive)
        other.kill()
        other.wait()

    killer = threading.Timer(3.0, die)  # while this build waits for it
    killer.start()
    start = time.perf_counter()
    try:
        summary = build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL), out,
                              replace(OPTIONS, wait_for_others=True))
    finally:
        killer.cancel()
        other.kill()
        other.wait()
    assert time.perf_counter() - start >= 3.0  # it waited instead of returning unfinished
    assert summary.complete and summary.videos_this_run == len(videos)
    assert content(out) == content(val_cache) and not (out / "claims").exists()


@pytest.mark.slow
def test_two_builds_started_together_encode_each_video_once(val_cache: Path, smoke_root: Path, smoke_vae: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "together"
    command = [sys.executable, "-m", "lib.cache", "build", "--data", str(smoke_root), "--vae", str(smoke_vae),
               "--out", str(out), *CLI]
    processes = [subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    done = [int(stdout.split(" videos / ")[0].rsplit(", ", 1)[1]) if " videos / " in stdout else 0
            for stdout, _ in outputs]
    assert sum(done) == len(open_cache(out).videos("val"))  # not 2x: each video encoded by one build
    assert content(out) == content(val_cache)


# --- --retry-failed on a finished cache -----------------------------------------------------------------
@pytest.mark.slow
def test_retry_failed_on_a_finished_cache_decodes_the_failures_again(smoke_root: Path, smoke_vae: Path,
                                                                     tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(smoke_root / "ucfTrainTestlist", root / "ucfTrainTestlist")
    shutil.copytree(smoke_root / "UCF-101", root / "UCF-101")
    bad = load_ucf101(root, 1).val[0].path
    bad.write_bytes(bytes(bad.stat().st_size))  # same size, all zeros: undecodable
    out = tmp_path / "cache"
    assert build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), **VAL), out, OPTIONS).failures_this_run == 1
    retried = build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), **VAL),
                          out, replace(OPTIONS, retry_failed=True))
    assert retried.videos_this_run == 1 and retried.retried_failures == 1 and retried.complete
    assert "retried 1 recorded failure" in retried.describe() and len(retried.failures) == 1
    shutil.rmtree(out)
    assert build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL), out, OPTIONS).complete
    clean = build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL),
                        out, replace(OPTIONS, retry_failed=True))
    assert clean.videos_this_run == 0 and "records no failure; nothing to retry" in clean.describe()


# --- memory: videos in bounded parts, results unchanged -----------------------------------------------
def test_video_parts_stay_within_the_budget(smoke_root: Path) -> None:
    job = max(make_plan(smoke_root).videos, key=lambda j: j.source_bytes)
    clip_bytes = 16 * 240 * 320 * 3
    for budget, spatial in ((1, None), (2 * clip_bytes + 1, None), (1, CropPolicy(short_side=36, crop=(32, 32)))):
        parts = list(iter_video_parts(job, DecodeSettings(ClipSpec(), "all", 0, spatial, max_part_bytes=budget)))
        assert parts[-1]["last"] and all(p["ok"] for p in parts) and not any(p["last"] for p in parts[:-1])
        per_clip = parts[0]["frames"][0].numel() * parts[0]["frames"].element_size()
        assert all(p["frames"].numel() * p["frames"].element_size() <= max(budget, per_clip) for p in parts)
        assert [c[0] for p in parts for c in p["clips"]] == list(range(sum(len(p["clips"]) for p in parts)))
    assert len(parts) > 1


@pytest.mark.parametrize("preprocess", ["workers", "device"])
@pytest.mark.slow
def test_a_tiny_batch_budget_gives_the_same_bytes(val_cache: Path, smoke_root: Path, smoke_vae: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, preprocess: str) -> None:
    import lib.cache.build as build_module

    monkeypatch.setattr(build_module, "MAX_PART_BYTES", 1)  # one clip per part, one clip per decord call
    out = tmp_path / preprocess
    build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL),
                out, replace(OPTIONS, preprocess=preprocess))
    assert content(out) == content(val_cache)


def test_claims_of_a_dead_owner_are_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert try_claim(tmp_path, "A/v.avi", ClaimOwner(socket.gethostname(), dead.pid, "dead"))
    assert try_claim(tmp_path, "A/v.avi", ClaimOwner.this_process())
    live = ClaimOwner(socket.gethostname(), os.getpid(), "live")
    assert try_claim(tmp_path, "B/v.avi", live) and not try_claim(tmp_path, "B/v.avi", ClaimOwner.this_process())
    expired = claim_path(tmp_path, "B/v.avi")
    os.utime(expired, (time.time() - 7 * 3600, time.time() - 7 * 3600))
    assert try_claim(tmp_path, "B/v.avi", ClaimOwner.this_process())
