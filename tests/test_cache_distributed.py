"""Sharded cache builds on CPU: torchrun with 2 processes (gloo) and hand-run shards give the
same bytes as one process (all with one encoder thread, see lib/cache/build.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lib.cache import BuildOptions, CacheSpec, IncompleteCacheError, build_cache, open_cache
from lib.data.synth import ensure_synthetic
from lib.paths import REPO_ROOT
from lib.vae.local import ensure_local_vae


def finished_bytes(cache_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(cache_dir.glob("*.npy")) + [cache_dir / "index.json"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root, vae = ensure_synthetic(preset="smoke"), ensure_local_vae(preset="smoke")
    single = tmp_path_factory.mktemp("single") / "cache"
    build_cache(CacheSpec(data_root=root, vae_source=str(vae)),
                single, BuildOptions(num_workers=0, batch_size=4, threads=1, progress=False))
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_hand_run_shards_then_the_last_one_merges(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, vae, single = setup
    out = tmp_path / "shards"
    for index in (0, 1):
        shard = ["--num-shards", "2", "--shard-index", str(index)]
        result = run_group([sys.executable, *_build_args(root, vae, out), *shard])
        assert result.returncode == 0, result.stderr[-3000:]
        if index == 0:
            assert "not merged yet" in result.stdout
            with pytest.raises(IncompleteCacheError):
                open_cache(out)
    assert finished_bytes(out) == finished_bytes(single)


def _claim_at_once(cache_dir: str, root: str, barrier: Any, errors: Any) -> None:
    from lib.cache.manifest import claim
    from lib.cache.plan import make_plan

    plan = make_plan(root)
    barrier.wait()
    try:
        claim(Path(cache_dir), {"same": "key"}, plan, {"pid": os.getpid()})
    except Exception as err:  # reported to the parent, which asserts there were none
        errors.put(f"{type(err).__name__}: {err}")


@pytest.mark.slow
def test_shards_claiming_a_folder_at_once_all_succeed(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The race CI once hit: two ranks create the folder together; one must not take the other's
    half-written manifest for foreign content. Exactly one manifest wins; the others check its key."""
    root = setup[0]
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        cache_dir = tmp_path / f"cache{attempt}"
        barrier, errors = context.Barrier(6), context.Queue()
        workers = [context.Process(target=_claim_at_once, args=(str(cache_dir), str(root), barrier, errors))
                   for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert [w.exitcode for w in workers] == [0] * 6
        assert errors.empty(), errors.get()
        assert sorted(p.name for p in cache_dir.iterdir()) == ["cache.json"]  # no drafts left behind
        assert json.loads((cache_dir / "cache.json").read_text())["key"] == {"same": "key"}


@pytest.mark.slow
def test_claim_rejects_foreign_content_and_other_keys(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from lib.cache.errors import CacheError, StaleCacheError
    from lib.cache.manifest import claim
    from lib.cache.plan import make_plan

    plan = make_plan(setup[0])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not a cache folder"):
        claim(foreign, {"k": 1}, plan, {})
    leftover = tmp_path / "leftover"  # a shard killed between writing its draft and publishing it
    leftover.mkdir()
    (leftover / ".cache.json.12345.draft").write_text("{")
    claim(leftover, {"k": 1}, plan, {})
    with pytest.raises(StaleCacheError):
        claim(leftover, {"k": 2}, plan, {})


@pytest.mark.slow
def test_hand_run_shards_side_by_side(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Both shards started at the same moment (the usual way to use two machines on one folder)."""
    root, vae, single = setup
    out = tmp_path / "side_by_side"
    commands = [[sys.executable, *_build_args(root, vae, out), "--num-shards", "2", "--shard-index", str(i)]
                for i in (0, 1)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run_group, commands))
    assert [r.returncode for r in results] == [0, 0], results[0].stderr[-2000:] + results[1].stderr[-2000:]
    if not (out / "index.json").is_file():  # both finished before either saw the other's entries
        merged = run_group([sys.executable, "-m", "lib.cache", "merge", str(out)])
        assert merged.returncode == 0, merged.stderr[-2000:]
    assert finished_bytes(out) == finished_bytes(single)
