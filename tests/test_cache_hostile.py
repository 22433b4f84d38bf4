"""The latent cache against the hostile corpus: never silently wrong, never losing work.

A stale cache is refused (and replaced only on request, beside it, keeping foreign files); a
source video overwritten with same-size content is found on open and redone on resume; a
flipped, cut or deleted array is found and repaired row by row; a broken index is a typed
error; cost figures lost to a kill are summed again. Builds use the smoke dataset's val split
(4 videos, 9 clips) with one encoder thread, so bytes compare exactly.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import papermill
import pytest
import yaml
from hostile_corpus import flip_byte, replace_same_size, write_raw_video

from lib.cache import BuildOptions, CacheSpec, StaleCacheError, build_cache, load_split, open_cache
from lib.cache.errors import CacheError, DamagedCacheError
from lib.cache.repair import repair_cache, verify_cache
from lib.data.synth import ensure_synthetic
from lib.data.ucf101 import load_ucf101
from lib.paths import NOTEBOOKS_DIR, PARAMS_DIR
from lib.vae.local import ensure_local_vae

VAL: dict[str, Any] = dict(splits=("val",))  # the CacheSpec settings the builds here share
OPTIONS = BuildOptions(batch_size=4, threads=1, num_workers=0, progress=False)


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
    out = tmp_path_factory.mktemp("hostile") / "val"
    assert build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL), out, OPTIONS).complete
    return out


def copy_dataset(root: Path, dest: Path) -> Path:
    shutil.copytree(root / "ucfTrainTestlist", dest / "ucfTrainTestlist")
    shutil.copytree(root / "UCF-101", dest / "UCF-101")
    return dest


# --- 1. a stale cache is refused; replacing builds beside it and keeps foreign files -------------------
def test_notebook_02_refuses_a_stale_cache_by_default() -> None:
    parameters = papermill.inspect_notebook(str(NOTEBOOKS_DIR / "02_latent_cache.ipynb"))
    assert parameters["replace_stale"]["default"] == "False"
    params = yaml.safe_load((PARAMS_DIR / "default.yaml").read_text())
    assert params["02_latent_cache"]["replace_stale"] is False


def test_a_stale_study_cache_is_an_error_that_deletes_nothing(val_cache: Path, smoke_root: Path, smoke_vae: Path,
                                                               tmp_path: Path) -> None:
    from lib.cache.report import _study_build

    out = tmp_path / "mine"
    shutil.copytree(val_cache, out)
    (out / "notes.txt").write_text("three days of encoding")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(StaleCacheError, match=r"outputs\.layer_norm: cache has false, asked for true") as info:
        _study_build(build_cache, CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), layer_norm=True, **VAL),
                     out, OPTIONS)
    assert "cache_name" in info.value.fix and "replace_stale: true" in info.value.fix
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_replace_stale_builds_beside_swaps_and_keeps_foreign_files(val_cache: Path, smoke_root: Path, smoke_vae: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import lib.cache.build as build_module

    out = tmp_path / "cache"
    shutil.copytree(val_cache, out)
    (out / "notes.txt").write_text("mine")
    (out / "figures").mkdir()
    (out / "figures" / "plot.png").write_bytes(b"png")
    seen: dict[str, Any] = {}
    run_shard = build_module.run_shard

    def spy(target: Path, *args: Any, **kwargs: Any) -> None:
        seen["target"] = target
        seen["old_key_usable"] = open_cache(out).key["outputs"]["layer_norm"] is False  # old cache intact meanwhile
        run_shard(target, *args, **kwargs)

    monkeypatch.setattr(build_module, "run_shard", spy)
    summary = build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), layer_norm=True, **VAL),
                          out, replace(OPTIONS, replace_stale=True))
    assert seen["target"] != out and seen["target"].parent == out.parent and seen["old_key_usable"]
    assert summary.complete and "outputs.layer_norm" in summary.replaced and "replaced" in summary.describe()
    assert open_cache(out).key["outputs"]["layer_norm"] is True
    assert (out / "notes.txt").read_text() == "mine" and (out / "figures" / "plot.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no replacement or retired folder left


def test_an_interrupted_swap_is_finished_by_the_next_build(val_cache: Path, tmp_path: Path) -> None:
    from lib.cache.replace import recover, replacement_dir, retired_dir

    out = tmp_path / "cache"
    khash = json.loads((val_cache / "cache.json").read_text())["key_hash"]
    shutil.copytree(val_cache, replacement_dir(out, khash))  # killed between the two renames
    old = retired_dir(out, "0" * 64)
    shutil.copytree(val_cache, old)
    (old / "notes.txt").write_text("mine")
    recover(out, khash)
    assert open_cache(out).key_hash == khash and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


# --- 2. a same-size change of a source video after the merge ------------------------------------------
@pytest.fixture
def raw_dataset(smoke_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the smoke set whose first val video is an uncompressed one (size independent of content)."""
    root = copy_dataset(smoke_root, tmp_path / "data")
    video = load_ucf101(root, 1).val[0].path
    write_raw_video(video, seed=0)
    return root, video


@pytest.mark.slow
def test_same_size_change_is_found_on_open_and_redone_on_resume(raw_dataset: tuple[Path, Path], smoke_vae: Path,
                                                                 tmp_path: Path) -> None:
    root, video = raw_dataset
    out = tmp_path / "cache"
    build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), **VAL), out, OPTIONS)
    old = load_split(out, "val")
    replace_same_size(video, seed=1)
    with pytest.raises(StaleCacheError, match=rf"1 source video\(s\) changed .*{video.name} \(modified .*same size\)"):
        open_cache(out)
    summary = build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), **VAL), out, OPTIONS)
    assert summary.complete and summary.videos_this_run == 1 and video.name in summary.describe()
    assert summary.sources_changed and str(video) in summary.sources_changed[0]
    new = load_split(out, "val")
    first = new.video_index == 0
    assert not np.array_equal(new.latents[first].numpy(), old.latents[first].numpy())  # the new content's latents
    assert np.array_equal(new.latents[~first].numpy(), old.latents[~first].numpy())  # the others untouched


@pytest.mark.slow
def test_content_hash_keeps_a_touched_file_and_verify_finds_a_hidden_change(raw_dataset: tuple[Path, Path],
                                                                            smoke_vae: Path, tmp_path: Path) -> None:
    root, video = raw_dataset
    out = tmp_path / "cache"
    build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), **VAL), out, replace(OPTIONS, content_hash=True))
    before = content(out)["latent.npy"]
    st = video.stat()
    import os

    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # copied without times, or touched
    open_cache(out)  # same bytes by the recorded sha256: not a change
    summary = build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), **VAL),
                          out, replace(OPTIONS, content_hash=True))
    assert summary.videos_this_run == 0 and "times were updated" in summary.describe()
    assert content(out)["latent.npy"] == before
    replace_same_size(video, seed=2, keep_mtime=True)  # same size, same time: only the content tells
    open_cache(out)
    report = verify_cache(out, sources=True)
    assert not report.ok and report.sources.changed[0].path == video and "sha256" in report.sources.changed[0].detail


def test_stale_error_names_the_videos_whose_size_changed(val_cache: Path, smoke_root: Path, smoke_vae: Path,
                                                         tmp_path: Path) -> None:
    root = copy_dataset(smoke_root, tmp_path / "data")
    out = tmp_path / "cache"
    shutil.copytree(val_cache, out)
    video = load_ucf101(root, 1).val[2]
    size = video.path.stat().st_size
    video.path.write_bytes(video.path.read_bytes() + b"\0" * 100)
    with pytest.raises(StaleCacheError, match="dataset.videos_sha256") as info:
        build_cache(CacheSpec(data_root=root, vae_source=str(smoke_vae), **VAL), out, OPTIONS)
    assert f"{video.relpath} ({size} -> {size + 100} bytes)" in str(info.value)


# --- 5. damaged arrays: found by the fast and the full check, repaired row by row -----------------------
def _rows_of(cache_dir: Path, index: int) -> tuple[str, int]:
    video = open_cache(cache_dir).videos("val")[index]
    return video.id, video.row_start


def test_a_flipped_byte_is_found_and_only_its_video_repaired(val_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    shutil.copytree(val_cache, out)
    good = content(out)
    video_id, row = _rows_of(out, 2)
    row_bytes = int(np.prod(open_cache(out).latent_shape)) * 2
    flip_byte(out / "latent.npy", -(open_cache(out).num_clips - row) * row_bytes + 3)  # inside video 2's rows
    report = verify_cache(out)
    assert not report.ok and report.damaged == {video_id: ["latent"]} and "repair" in report.describe()
    repaired = repair_cache(out)
    assert repaired.from_entries == [video_id] and not repaired.re_encoded
    assert content(out) == good and verify_cache(out).ok
    shutil.rmtree(out / "entries")  # no entry to copy from: the video is encoded again, bit for bit
    flip_byte(out / "latent.npy", -(open_cache(out).num_clips - row) * row_bytes + 3)
    repaired = repair_cache(out)
    assert repaired.re_encoded == [video_id] and not repaired.digests_updated
    assert content(out) == good


def test_cut_deleted_and_broken_files_are_typed_errors(val_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    shutil.copytree(val_cache, out)
    good = content(out)
    latent = out / "latent.npy"
    latent.write_bytes(latent.read_bytes()[:-300])
    with pytest.raises(DamagedCacheError, match=r"latent\.npy is cut short \(\d+ bytes, \d+ expected\)") as info:
        load_split(out, "val")
    assert "python -m lib.cache repair" in info.value.fix
    assert repair_cache(out).arrays_restored == ["latent"] and content(out) == good
    latent.unlink()
    with pytest.raises(DamagedCacheError, match=r"latent\.npy is missing"):
        open_cache(out)
    repair_cache(out)
    assert content(out) == good
    (out / "index.json").write_text('{"format": "lvs-latent-cache", "videos": [')
    with pytest.raises(DamagedCacheError, match=r"index\.json: is unreadable \(JSONDecodeError") as info:
        open_cache(out)
    assert "python -m lib.cache merge" in info.value.fix
    from lib.cache import merge_cache

    merge_cache(out)
    assert content(out) == good


def test_damaged_entry_is_refused_by_the_merge(val_cache: Path, tmp_path: Path) -> None:
    from lib.cache import merge_cache
    from lib.cache.plan import entry_path

    out = tmp_path / "cache"
    shutil.copytree(val_cache, out)
    entry = entry_path(out, open_cache(out).videos("val")[0].id)
    flip_byte(entry, -5)  # inside the tensor data (the header is at the start)
    with pytest.raises(CacheError, match="does not match the digest recorded when it was written"):
        merge_cache(out)


# --- 7. cost figures lost to a kill between index.json and build_stats.json ---------------------------
def test_lost_cost_figures_are_summed_again(val_cache: Path, smoke_root: Path, smoke_vae: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cache"
    shutil.copytree(val_cache, out)
    expected = json.loads((out / "build_stats.json").read_text())["encode_seconds"]
    (out / "build_stats.json").unlink()  # the state a kill right after index.json left before
    assert open_cache(out).encode_seconds == 0
    summary = build_cache(CacheSpec(data_root=smoke_root, vae_source=str(smoke_vae), **VAL), out, OPTIONS)
    assert "cost figures summed again" in summary.describe() and summary.videos_this_run == 0
    assert open_cache(out).encode_seconds == pytest.approx(expected) and expected > 0

    import lib.cache.merge as merge_module

    order: list[str] = []
    write = merge_module.atomic_write_text
    monkeypatch.setattr(merge_module, "atomic_write_text",
                        lambda path, text: (order.append(path.name), write(path, text)))
    merge_module.merge_cache(out)
    assert order == ["build_stats.json", "index.json"]  # index.json, the "finished" mark, last
