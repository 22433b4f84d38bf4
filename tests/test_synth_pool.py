"""The VAE's unlabelled pretraining pool: disjoint from the labelled set, continuous motion, files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from lib.data import synth, synth_pool, synth_render
from lib.data.errors import DatasetError
from lib.data.natural import NATURAL_VIDEOS, natural_video_paths
from lib.data.synth_pool import (
    POOL_DOMAIN,
    POOL_PRESETS,
    PoolVideoSpec,
    draw_motion,
    generate_pool,
    pool_is_complete,
    pool_specs,
    pool_video_paths,
)
from lib.data.synth_style import GROUP_DOMAIN, group_style
from lib.data.video import probe_video
from lib.vae.pool_bank import decode_natural_bank, pool_records, tile_boxes


def test_pool_shares_no_video_seed_or_appearance_group_with_the_labelled_default() -> None:
    labelled = synth.video_specs("default", seed=0)
    pool = pool_specs("pretrain")
    # No video: different folders and name patterns.
    assert not {s.relpath for s in pool} & {s.relpath for s in labelled}
    assert all(s.relpath.startswith("videos/p_g") for s in pool)
    # No seed: the pool's seed differs from the labelled default's, and its streams use their own domains.
    assert {s.seed for s in pool} == {synth_pool.DEFAULT_POOL_SEED} and {s.seed for s in labelled} == {0}
    assert POOL_DOMAIN != GROUP_DOMAIN and synth_pool.POOL_VIDEO_DOMAIN != synth_render.VIDEO_DOMAIN
    # No appearance group: every pool background differs from every labelled background.
    labelled_bg = {hashlib.sha256(group_style(0, g).background.tobytes()).hexdigest() for g in range(1, 26)}
    pool_bg = {hashlib.sha256(s.style().background.tobytes()).hexdigest() for s in pool[::25][:40]}
    assert len(pool_bg) == 40 and not pool_bg & labelled_bg
    # Even with the labelled seed, the pool's domain gives other looks.
    same_seed = hashlib.sha256(group_style(0, 1, POOL_DOMAIN).background.tobytes()).hexdigest()
    assert same_seed not in labelled_bg


def test_pool_preset_sizes() -> None:
    p = POOL_PRESETS["pretrain"]
    assert len(pool_specs(p)) == p.groups * p.videos_per_group == 2000
    lengths = [s.num_frames for s in pool_specs(p)[:200]]
    assert min(lengths) >= 2 * synth.FPS and max(lengths) <= 5 * synth.FPS


def test_motion_is_continuous_not_the_ten_classes() -> None:
    t = np.arange(50) / synth.FPS
    rng = np.random.default_rng(0)
    velocities, spins = [], []
    for _ in range(400):
        m = draw_motion(rng, t, base_px=70.0)
        step = np.diff(m.centre_xy, axis=0)
        step = (step + [synth.FRAME_W / 2, synth.FRAME_H / 2]) % [synth.FRAME_W, synth.FRAME_H] - [
            synth.FRAME_W / 2, synth.FRAME_H / 2]  # undo the wrap
        velocities.append(step[0] * synth.FPS)
        spins.append((m.angle_deg[1] - m.angle_deg[0]) * synth.FPS)
        assert (m.scale >= synth_render.SCALE_RANGE[0] - 1e-9).all()
        assert (m.scale <= synth_render.SCALE_RANGE[1] + 1e-9).all()
    headings = np.degrees(np.arctan2(*np.array(velocities)[:, ::-1].T)) % 360
    # Not the four axis directions of the labelled translations: headings fill the circle.
    far_from_axes = np.abs(((headings + 45) % 90) - 45) > 15
    assert far_from_axes.mean() > 0.3
    assert np.histogram(headings, bins=8, range=(0, 360))[0].min() > 15
    spins = np.array(spins)
    assert (spins == 0).mean() > 0.2 and (spins > 0).mean() > 0.2 and (spins < 0).mean() > 0.2
    assert len(np.unique(np.round(np.abs(spins[spins != 0])))) > 50


def test_render_is_deterministic_and_has_several_objects() -> None:
    spec = PoolVideoSpec(3, 7, duration_s=(1.2, 1.2), objects=(3, 3))
    a, b = spec.render_frames(), spec.render_frames()
    assert a.shape == (30, synth.FRAME_H, synth.FRAME_W, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert len(spec.scene().objects) == 3
    assert np.abs(a[-1].astype(int) - a[0].astype(int)).mean() > 1.0  # something moves


@pytest.fixture(scope="module")
def smoke_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_pool(tmp_path_factory.mktemp("pool"), preset="pretrain_smoke", workers=1, progress=False)


def test_pool_files_manifest_and_records(smoke_pool: Path) -> None:
    manifest = json.loads((smoke_pool / synth.MANIFEST_NAME).read_text())
    assert manifest["generator"] == "lib.data.synth_pool" and manifest["complete"]
    assert pool_is_complete(smoke_pool, preset="pretrain_smoke")
    paths = pool_video_paths(smoke_pool)
    assert len(paths) == 6 and all(p.is_file() for p in paths)
    info = probe_video(paths[0])
    assert (info.height, info.width) == (synth.FRAME_H, synth.FRAME_W) and abs(info.fps - synth.FPS) < 1e-6
    records = pool_records(smoke_pool)
    assert [r.path for r in records] == paths and {r.label for r in records} == {-1}
    assert {r.group for r in records} == {1, 2, 3}


def test_pool_rerun_resumes_and_refuses_other_settings(smoke_pool: Path, tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in pool_video_paths(smoke_pool)}
    victim = pool_video_paths(smoke_pool)[2]
    victim.unlink()
    generate_pool(smoke_pool, preset="pretrain_smoke", workers=1, progress=False)
    assert {p.name: p.read_bytes() for p in pool_video_paths(smoke_pool)} == before
    with pytest.raises(DatasetError, match="different settings"):
        generate_pool(smoke_pool, preset="pretrain_smoke", seed=5, workers=1, progress=False)
    with pytest.raises(DatasetError, match="not a finished pretraining pool|no readable"):
        pool_video_paths(tmp_path)


def test_natural_footage_is_found_and_tiled() -> None:
    paths = natural_video_paths()
    assert [p.name for p in paths] == list(NATURAL_VIDEOS)
    bank = decode_natural_bank(paths[2:], size=(72, 96), scales=(72, 144))  # carphone: 176x144, 29.97 fps, 4 s
    # 72 -> 72x88 is too narrow for a 96 tile, so it is enlarged to 79x96 (one tile); 144 -> 144x176 (2x1 tiles).
    assert len(bank) == 4 * (1 + 2) and bank.frames.shape[1:] == (16, 72, 96, 3)
    assert set(bank.labels) == {-1} and all(r.startswith("natural/carphone_pristine.mp4@") for r in bank.relpaths)
    assert tile_boxes(144, 176, (72, 96)) == [(0, 40), (72, 40)]


# --- ground-truth displacement -------------------------------------------------------------------------
def _single_object_scene(**motion: np.ndarray) -> synth_pool.PoolScene:
    """A pool scene reduced to its first object with the given per-frame motion, no noise."""
    from dataclasses import replace

    scene = PoolVideoSpec(2, 3, duration_s=(1.2, 1.2), objects=(1, 1)).scene()
    master, m = scene.objects[0]
    n = len(m.scale)
    defaults = {"centre_xy": np.tile([160.0, 120.0], (n, 1)), "angle_deg": np.zeros(n), "scale": np.ones(n)}
    m = synth_pool.ObjectMotion(base_px=m.base_px, **{**defaults, **motion})
    return replace(scene, objects=((master, m),), camera_xy=np.zeros((n, 2), dtype=np.int64), noise=None)


def _warp_error(scene: synth_pool.PoolScene, frame: int, reference: int) -> tuple[float, float]:
    import torch

    from lib.data.synth_motion import displacement, label_map
    from lib.vae.decoder import warp_frame

    frames = np.stack(list(synth_pool.iter_pool_frames(scene))).astype(np.float32)
    field = torch.from_numpy(displacement(scene, frame, reference))
    content = torch.from_numpy(frames[reference]).permute(2, 0, 1)[None]
    warped = warp_frame(content, field[None, :, None])[0, :, 0]
    target = torch.from_numpy(frames[frame]).permute(2, 0, 1)
    # Object pixels whose source lies inside the reference frame (a wrapping object's far side
    # keeps its continuous displacement, which points past the edge).
    ys, xs = torch.meshgrid(torch.arange(synth.FRAME_H) + 0.5, torch.arange(synth.FRAME_W) + 0.5, indexing="ij")
    sx, sy = xs + field[0], ys + field[1]
    lands = (sx >= 1) & (sx < synth.FRAME_W - 1) & (sy >= 1) & (sy < synth.FRAME_H - 1)
    inside = torch.from_numpy(label_map(scene, frame) >= 0) & lands
    return ((content[0] - target).abs().mean(0)[inside].mean().item(),
            (warped - target).abs().mean(0)[inside].mean().item())


@pytest.mark.parametrize("kind", ["translation", "rotation", "scaling", "wrap"])
def test_ground_truth_displacement_warps_the_content_frame_onto_the_frame(kind: str) -> None:
    n = 30
    t = np.arange(n, dtype=np.float64)
    motion = {
        "translation": {"centre_xy": np.stack([100 + 2.0 * t, 120 - 1.5 * t], axis=1)},
        "rotation": {"angle_deg": 6.0 * t},  # clockwise on screen
        "scaling": {"scale": 0.8 * 1.03 ** t},
        "wrap": {"centre_xy": np.stack([(300 + 3.0 * t) % synth.FRAME_W, np.full(n, 100.0)], axis=1)},
    }[kind]
    unwarped, warped = _warp_error(_single_object_scene(**motion), frame=4, reference=20)
    assert unwarped > 20 and warped < 0.35 * unwarped, (unwarped, warped)


def test_background_displacement_is_the_camera_offset() -> None:
    from dataclasses import replace

    from lib.data.synth_motion import BACKGROUND, displacement, label_map

    scene = _single_object_scene()
    cam = np.zeros((len(scene.camera_xy), 2), dtype=np.int64)
    cam[5] = (3, -2)
    scene = replace(scene, camera_xy=cam)
    field, labels = displacement(scene, 5, 0), label_map(scene, 5)
    assert (field[0][labels == BACKGROUND] == 3).all() and (field[1][labels == BACKGROUND] == -2).all()


def test_motion_fields_follow_crops_and_flips() -> None:
    import torch

    from lib.vae.clip_data import ClipBank, ClipBatchSampler

    frames = torch.zeros(3, 16, 36, 48, 3, dtype=torch.uint8)
    motion = torch.zeros(3, 16, 2, 36, 48, dtype=torch.float16)
    motion[:, :, 0, :, :24] = 1.0  # x displacement +1 on the left half
    bank = ClipBank(frames=frames, relpaths=("a", "b", "c"), groups=(1, 1, 1), labels=(-1, -1, -1),
                    clip_indices=(0, 0, 0), motion=motion, has_motion=torch.tensor([True, True, False]))
    sampler = ClipBatchSampler(bank, batch_size=3, crop=(32, 32), hflip=True, seed=0)
    for step in range(6):
        idx, tops, lefts, flips, *_ = sampler._draws(step, None)
        fields, has = sampler.motion(step)
        assert fields.shape == (3, 2, 16, 32, 32) and has.tolist() == [bool(bank.has_motion[i]) for i in idx]
        for k in range(3):
            expected = motion[idx[k], :, 0, tops[k]:tops[k] + 32, lefts[k]:lefts[k] + 32].float()
            if flips[k]:
                expected = -expected.flip(-1)
            assert torch.equal(fields[k, 0], expected)


def test_motion_l1_counts_only_clips_with_ground_truth() -> None:
    import torch

    from lib.vae.losses import motion_l1

    flow = torch.zeros(2, 2, 4, 8, 8, requires_grad=True)
    target = torch.ones(2, 2, 4, 8, 8)
    target[1] = 100.0  # ignored: no ground truth for clip 1
    loss = motion_l1(flow, target, torch.tensor([True, False]))
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert flow.grad[1].abs().sum() == 0 and flow.grad[0].abs().sum() > 0
    assert motion_l1(flow, target, torch.tensor([False, False])).item() == 0.0
