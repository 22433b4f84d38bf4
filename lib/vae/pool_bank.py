"""Banks of the VAE's pretraining data: the unlabelled pool (:mod:`lib.data.synth_pool`), the
natural footage tiled at several scales, and the pool's ground-truth displacement fields.

Pool and natural clips carry no class (:data:`POOL_LABEL`); natural footage is group
:data:`NATURAL_GROUP`, pool videos keep their own groups (1..99).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lib.data.clips import ClipSpec, sample_clips
from lib.data.spatial import resize, short_side_size
from lib.data.synth import MANIFEST_NAME
from lib.data.synth_motion import clip_displacements
from lib.data.synth_pool import FPS, PoolVideoSpec, pool_video_paths
from lib.data.ucf101 import VideoRecord
from lib.data.video import iter_clip_frames
from lib.vae.clip_data import ClipBank, init_decode_worker

DEFAULT_CLIP_SPEC = ClipSpec()  # the data layer's clips: 16 frames at 16 fps

POOL_LABEL = -1  # pool and natural clips carry no class
NATURAL_GROUP = 0  # natural footage: group 0 (pool groups are 1..99)
# Short sides a natural video is resized to before it is cut into bank-size tiles: the same
# footage at three scales gives ~200 distinct clips of real motion and texture.
NATURAL_SCALES = (72, 144, 288)


def pool_records(root: str | os.PathLike[str]) -> list[VideoRecord]:
    """Every video of a finished pretraining pool as records (label -1, the pool group)."""
    records = []
    for path in pool_video_paths(root):
        group, clip = (int(part[1:]) for part in path.stem.split("_")[1:3])  # p_gXX_cYYY
        records.append(
            VideoRecord(
                relpath=f"{path.parent.name}/{path.name}",
                class_name="pool",
                label=POOL_LABEL,
                group=group,
                clip_number=clip,
                path=path,
            )
        )
    return records


def tile_boxes(height: int, width: int, tile: tuple[int, int]) -> list[tuple[int, int]]:
    """(top, left) of the non-overlapping ``tile``-size boxes of a centred grid in a frame."""
    rows, cols = height // tile[0], width // tile[1]
    top0, left0 = (height - rows * tile[0]) // 2, (width - cols * tile[1]) // 2
    return [(top0 + r * tile[0], left0 + c * tile[1]) for r in range(rows) for c in range(cols)]


def decode_natural_bank(
    paths: Sequence[str | os.PathLike[str]],
    *,
    size: tuple[int, int],
    scales: Sequence[int] = NATURAL_SCALES,
    spec: ClipSpec = DEFAULT_CLIP_SPEC,
) -> ClipBank:
    """Every 1-second clip of each natural video at each scale, cut into ``size`` tiles.

    A video is resized (antialiased) so that its short side is the scale, enlarged further when
    a tile would not fit; a scale that gives the same frame size as a smaller one is skipped.
    Clip i of tile k of video v is one bank entry (relpath ``<name>@<scale>#<k>``, group 0).
    """
    clips: list[torch.Tensor] = []
    names: list[str] = []
    indices: list[int] = []
    for path in paths:
        sizes: list[tuple[int, tuple[int, int]]] | None = None  # (scale, resized size), from the first clip
        for clip, frames in iter_clip_frames(path, spec=spec, mode="all"):  # (T, H, W, 3) uint8
            if sizes is None:
                sizes = []
                h, w = frames.shape[1:3]
                for scale in scales:
                    rh, rw = short_side_size(h, w, scale)
                    grow = max(size[0] / rh, size[1] / rw, 1.0)
                    resized = (max(size[0], round(rh * grow)), max(size[1], round(rw * grow)))
                    if resized not in [r for _, r in sizes]:
                        sizes.append((scale, resized))
            for scale, (rh, rw) in sizes:
                small = resize(frames.permute(0, 3, 1, 2), (rh, rw)).permute(0, 2, 3, 1)  # (T, rh, rw, 3)
                for k, (top, left) in enumerate(tile_boxes(rh, rw, size)):
                    clips.append(small[:, top : top + size[0], left : left + size[1]].contiguous())
                    names.append(f"natural/{Path(path).name}@{scale}#{k}")
                    indices.append(clip.index)
    if not clips:
        raise ValueError(
            f"none of the natural videos {[str(p) for p in paths]} holds a whole {spec.num_frames}-frame clip"
        )
    return ClipBank(
        frames=torch.stack(clips),
        relpaths=tuple(names),
        groups=(NATURAL_GROUP,) * len(clips),
        labels=(POOL_LABEL,) * len(clips),
        clip_indices=tuple(indices),
    )


def concat_banks(banks: Sequence[ClipBank], repeats: Sequence[int] | None = None) -> ClipBank:
    """One bank holding the clips of ``banks`` in order; ``repeats[i]`` copies of bank i
    (oversampling a small source, e.g. the natural footage next to the much larger pool). When
    any bank carries ground-truth motion, the others get zero fields marked as absent."""
    repeats = [1] * len(banks) if repeats is None else list(repeats)
    parts = [b for b, r in zip(banks, repeats) for _ in range(r)]
    motion = has_motion = None
    if any(b.motion is not None for b in parts):

        def fields(b: ClipBank) -> torch.Tensor:
            n, t, h, w, _ = b.frames.shape
            return b.motion if b.motion is not None else torch.zeros(n, t, 2, h, w, dtype=torch.float16)

        motion = torch.cat([fields(b) for b in parts])
        has_motion = torch.cat(
            [b.has_motion if b.has_motion is not None else torch.zeros(len(b), dtype=torch.bool) for b in parts]
        )
    return ClipBank(
        frames=torch.cat([b.frames for b in parts]),
        relpaths=tuple(x for b in parts for x in b.relpaths),
        groups=tuple(x for b in parts for x in b.groups),
        labels=tuple(x for b in parts for x in b.labels),
        clip_indices=tuple(x for b in parts for x in b.clip_indices),
        motion=motion,
        has_motion=has_motion,
    )


def _pool_video_motion(task: tuple[dict[str, Any], str, list[int], tuple[int, int]]) -> torch.Tensor:
    """Worker: the ground-truth displacement fields (K, T, 2, h, w) of one pool video's clips."""
    spec_fields, relpath, clip_indices, size = task
    group, clip = (int(part[1:]) for part in Path(relpath).stem.split("_")[1:3])
    spec = PoolVideoSpec(group, clip, **spec_fields)
    scene = spec.scene()
    clips = {c.index: c for c in sample_clips(spec.num_frames, FPS, ClipSpec(), mode="all")}
    return torch.stack([clip_displacements(scene, list(clips[i].frame_indices), size=size) for i in clip_indices])


def attach_pool_motion(
    bank: ClipBank, root: str | os.PathLike[str], *, workers: int | None = None, progress: bool = True
) -> ClipBank:
    """``bank`` (decoded from the pool at ``root``) with its ground-truth displacement fields.

    Each pool video is re-rendered from its spec (deterministic) to get its objects' exact
    trajectories; the fields match the bank's clips frame for frame (same clip sampling)."""
    manifest = json.loads((Path(root) / MANIFEST_NAME).read_text())
    spec_fields = {
        "seed": int(manifest["seed"]),
        "duration_s": tuple(manifest["preset"]["duration_s"]),
        "objects": tuple(manifest["preset"]["objects"]),
    }
    order: dict[str, list[int]] = {}
    for i, relpath in enumerate(bank.relpaths):
        order.setdefault(relpath, []).append(i)
    tasks = [(spec_fields, relpath, [bank.clip_indices[i] for i in rows], bank.size) for relpath, rows in order.items()]
    motion = torch.zeros(len(bank), bank.num_frames, 2, *bank.size, dtype=torch.float16)
    n_proc = max(1, min(workers if workers is not None else (os.cpu_count() or 1), len(tasks)))
    with tqdm(total=len(tasks), unit="video", desc="motion fields", disable=not progress) as bar:
        if n_proc == 1:
            results = map(_pool_video_motion, tasks)
            for rows, fields in zip(order.values(), results):
                motion[rows] = fields
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(n_proc, initializer=init_decode_worker) as pool:
                for rows, fields in zip(order.values(), pool.imap(_pool_video_motion, tasks, chunksize=4)):
                    motion[rows] = fields
                    bar.update()
    return ClipBank(
        frames=bank.frames,
        relpaths=bank.relpaths,
        groups=bank.groups,
        labels=bank.labels,
        clip_indices=bank.clip_indices,
        motion=motion,
        has_motion=torch.ones(len(bank), dtype=torch.bool),
    )
