"""Sharded cache builds on CPU: torchrun with 2 processes (gloo) and hand-run shards give the
same bytes as one process (all with one encoder thread, see lib/cache/build.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lib.cache import IncompleteCacheError, build_cache, open_cache
from lib.data.synth import ensure_synthetic
from lib.paths import REPO_ROOT
from lib.vae.local import ensure_local_vae


def finished_bytes(cache_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache_dir.glob("*.npy")) + [cache_dir / "index.json"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root, vae = ensure_synthetic(preset="smoke"), ensure_local_vae(preset="smoke")
    single = tmp_path_factory.mktemp("single") / "cache"
    build_cache(data_root=root, vae_source=str(vae), out_dir=single, num_workers=0, batch_size=4, threads=1, progress=False)
    return root, vae, single


def run_group(command: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run in a new session and, on timeout, kill the whole group (torchrun's workers too)."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _build_args(root: Path, vae: Path, out: Path) -> list[str]:
    return ["-m", "lib.cache", "build", "--data", str(root), "--vae", str(vae), "--out", str(out), "--batch-size", "4",
            "--threads", "1", "--num-workers", "0", "--no-progress"]


def test_torchrun_two_processes_equal_one(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, vae, single = setup
    out = tmp_path / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               *_build_args(root, vae, out)]
    result = run_group(command)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = sorted((out / "stats").glob("run-*.json"))
    assert len(runs) == 2  # one per rank, each its own shard
    assert finished_bytes(out) == finished_bytes(single)
    assert open_cache(out).num_clips == open_cache(single).num_clips


def test_hand_run_shards_then_the_last_one_merges(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, vae, single = setup
    out = tmp_path / "shards"
    for index in (0, 1):
        result = run_group([sys.executable, *_build_args(root, vae, out), "--num-shards", "2", "--shard-index", str(index)])
        assert result.returncode == 0, result.stderr[-3000:]
        if index == 0:
            assert "not merged yet" in result.stdout
            with pytest.raises(IncompleteCacheError):
                open_cache(out)
    assert finished_bytes(out) == finished_bytes(single)
