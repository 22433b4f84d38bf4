"""Clip tensors for VAE training: decode a split ONCE into a uint8 bank, then sample batches.

Why a bank: on 2 CPU cores the VAE step is the bottleneck, and decoding + resizing every clip
again at every step would double it. The whole training split of the embedded default dataset
(860 videos, ~4,300 one-second clips) at 72x96 is ~1.4 GB of uint8 (T, H, W, 3) frames, decoded
in well under a minute (in worker processes when there are many videos).

Frames are resized with antialiasing so the SHORT side equals the bank height and then
centre-cropped to the bank size (:class:`~lib.data.spatial.CropPolicy` geometry), e.g.
240x320 -> 72x96 is an exact 0.3x resize of the 4:3 frame (no distortion, nothing cut).

Batches (:class:`ClipBatchSampler`) are pure functions of ``(seed, step)``: the clip order is a
fresh seeded permutation per epoch (every clip once per epoch; a batch may straddle two
epochs), the random crop offsets and horizontal flips come from a generator seeded by
``(seed, step)``. Resuming at step k therefore needs no sampler state at all and yields the same
batches as an uninterrupted run.

Augmentation (documented choice; training clips only, held-out clips are centre-cropped and
left alone):

- random crops (e.g. 64x96 out of 72x96, uniform offsets);
- random HORIZONTAL flips. A horizontal flip turns MoveLeft into MoveRight and clockwise into
  counter-clockwise rotation, which would corrupt a classifier's labels, but the VAE is trained
  without labels to reconstruct whatever it sees, and a mirrored clip is still a valid clip;
- random colour remapping (``color=True``): a random permutation of the RGB channels and an
  independent random negative (``255 - x``) of each channel, i.e. 48 colourings of every clip,
  applied identically to all its frames (motion untouched). Why: the synthetic training split has
  only 16 appearance groups (backgrounds and colours are drawn per group), and a small decoder
  trained for minutes first memorises those 16 looks instead of learning to copy the content
  frame, which is useless on the unseen val groups. Remapped colours make memorising hopeless,
  so the decoder has to take colour and texture from the content frame.
- Temporal reversal is never used (harmless to the VAE's objective, but it turns Grow into
  Shrink, and nothing in the pipeline should ever produce time-reversed motion).

Split discipline: the training bank is built only from the fold's TRAIN records (the official
train list minus the group-disjoint validation groups, :func:`lib.data.ucf101.load_ucf101`);
held-out metrics come from the VAL records; TEST records are never touched.
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lib.data.clips import ClipSpec, SamplingMode
from lib.data.spatial import CropPolicy, resize
from lib.data.ucf101 import UCF101Split, VideoRecord, load_ucf101
from lib.data.video import iter_clip_frames

DEFAULT_CLIP_SPEC = ClipSpec()  # the data layer's clips: 16 frames at 16 fps

# Domains of the seed sequences: independent random streams from one user seed.
_ORDER_DOMAIN = 0x0DE7
_AUGMENT_DOMAIN = 0xA6E7
# Below this many videos a process pool costs more (spawn + imports: ~3 s) than it saves
# (measured: 64 videos take 1.9 s in-process, 4.8 s with a 2-process pool).
_MIN_VIDEOS_FOR_POOL = 128


def derive_seed(*key: int) -> int:
    """A 63-bit seed from integers (user seed, domain, step, ...), stable across platforms."""
    return int(
        np.random.SeedSequence([int(k) for k in key])
        .generate_state(2, dtype=np.uint32)
        .astype(np.uint64)
        .dot(np.array([1 << 32, 1], dtype=np.uint64))
        & ((1 << 63) - 1)
    )


def make_generator(*key: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`derive_seed` of ``key``."""
    return torch.Generator().manual_seed(derive_seed(*key))


@dataclass(frozen=True)
class ClipBank:
    """Decoded clips kept in memory.

    ``frames``: uint8 (N, T, H, W, 3) RGB; the other fields describe clip i (its video's
    relpath, group, 0-based label and the clip's index within the video's sampling).
    """

    frames: torch.Tensor  # uint8 (N, T, H, W, 3)
    relpaths: tuple[str, ...]
    groups: tuple[int, ...]
    labels: tuple[int, ...]
    clip_indices: tuple[int, ...]
    # Optional ground-truth displacement to each clip's content frame, float16 (N, T, 2, H, W) in
    # bank pixels (lib.data.synth_motion), and which clips have one (natural footage has none).
    motion: torch.Tensor | None = None
    has_motion: torch.Tensor | None = None  # bool (N,)

    def __post_init__(self) -> None:
        if (self.motion is None) != (self.has_motion is None):
            raise ValueError("motion and has_motion go together")
        if self.motion is not None and (
            self.motion.shape[0] != self.frames.shape[0] or self.motion.shape[3:] != self.frames.shape[2:4]
        ):
            raise ValueError(f"motion {tuple(self.motion.shape)} does not match the frames {tuple(self.frames.shape)}")
        if self.frames.dtype != torch.uint8 or self.frames.ndim != 5 or self.frames.shape[-1] != 3:
            raise ValueError(
                f"frames must be uint8 (N, T, H, W, 3), got {self.frames.dtype} {tuple(self.frames.shape)}"
            )
        n = self.frames.shape[0]
        if not (len(self.relpaths) == len(self.groups) == len(self.labels) == len(self.clip_indices) == n):
            raise ValueError("clip metadata lengths differ from the number of clips")

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def num_frames(self) -> int:
        return self.frames.shape[1]

    @property
    def size(self) -> tuple[int, int]:
        """Stored frame size (H, W)."""
        return self.frames.shape[2], self.frames.shape[3]

    @property
    def nbytes(self) -> int:
        return self.frames.numel()

    @property
    def group_set(self) -> frozenset[int]:
        return frozenset(self.groups)

    @property
    def num_videos(self) -> int:
        return len(set(self.relpaths))


# --- records ---------------------------------------------------------------------------------------
def train_val_records(
    root: str | os.PathLike[str],
    *,
    fold: int = 1,
    val_fraction: float = 0.1,
    val_seed: int = 0,
) -> tuple[list[VideoRecord], list[VideoRecord], UCF101Split]:
    """The fold's training records, its held-out validation records, and the split itself.

    Raises ValueError if the split were ever to share a (class, group) pair between train and
    val/test (it cannot by construction; checked anyway because a leak would silently inflate
    every held-out number).
    """
    split = load_ucf101(root, fold, val_fraction=val_fraction, seed=val_seed)
    train_groups = {(r.class_name, r.group) for r in split.train}
    held_out = {(r.class_name, r.group) for r in (*split.val, *split.test)}
    if train_groups & held_out:
        raise ValueError(f"split leaks (class, group) pairs into training: {sorted(train_groups & held_out)[:5]}")
    if not split.train:
        raise ValueError(f"{root}: fold {fold} has no training videos")
    return list(split.train), list(split.val), split


# --- decoding --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _DecodeTask:
    path: str
    relpath: str
    group: int
    label: int
    size: tuple[int, int]
    num_frames: int
    target_fps: float
    mode: str
    max_clips: int | None
    seed: int


def _decode_video(task: _DecodeTask) -> tuple[_DecodeTask, list[int], torch.Tensor | None]:
    """The clips of one video as uint8 (K, T, h, w, 3) at the bank size (None if none fit)."""
    spec = ClipSpec(num_frames=task.num_frames, target_fps=task.target_fps)
    policy = CropPolicy(short_side=task.size[0], crop=task.size)
    indices: list[int] = []
    clips: list[torch.Tensor] = []
    seed = derive_seed(task.seed, task.group, task.label, hash_text(task.relpath)) if task.mode == "random" else None
    for clip, frames in iter_clip_frames(task.path, spec=spec, mode=task.mode, seed=seed):  # (T, H, W, 3)
        if task.max_clips is not None and len(clips) >= task.max_clips:
            break
        h, w = frames.shape[1:3]
        rh, rw = policy.resize_size(h, w)
        top, left, ch, cw = policy.crop_box(h, w)
        # uint8 channels-last view (T, 3, H, W): the SIMD antialiased path, uint8 out.
        small = resize(frames.permute(0, 3, 1, 2), (rh, rw))[:, :, top : top + ch, left : left + cw]
        clips.append(small.permute(0, 2, 3, 1).contiguous())  # (T, h, w, 3)
        indices.append(clip.index)
    return task, indices, (torch.stack(clips) if clips else None)


def init_decode_worker() -> None:
    """Pool initializer: one video per process, so each worker's torch (resize) uses one thread."""
    torch.set_num_threads(1)


def hash_text(text: str) -> int:
    """A stable 32-bit hash of a string (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode())


def decode_clip_bank(
    records: Sequence[VideoRecord],
    *,
    size: tuple[int, int],
    spec: ClipSpec = DEFAULT_CLIP_SPEC,
    mode: SamplingMode = "all",
    max_clips_per_video: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "decode",
) -> ClipBank:
    """Decode the clips of ``records`` into a :class:`ClipBank` of frames resized to ``size``.

    ``mode``: ``"all"`` (every non-overlapping clip, the training default), ``"center"`` (one
    clip per video, the held-out default) or ``"random"`` (seeded by ``seed`` and the video).
    ``max_clips_per_video`` keeps the first K clips of each video. ``workers``: processes
    (default: all cores; 1 or few videos decode in this process). The result does not depend on
    ``workers``: clips are ordered by record, then clip index. Videos shorter than one clip
    contribute nothing.
    """
    from tqdm.auto import tqdm

    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (height, width) >= 1, got {size!r}")
    tasks = [
        _DecodeTask(
            str(r.path),
            r.relpath,
            r.group,
            r.label,
            (int(size[0]), int(size[1])),
            spec.num_frames,
            spec.target_fps,
            mode,
            max_clips_per_video,
            seed,
        )
        for r in records
    ]
    n_proc = workers if workers is not None else (os.cpu_count() or 1)
    n_proc = max(1, min(n_proc, len(tasks)))
    if len(tasks) < _MIN_VIDEOS_FOR_POOL:
        n_proc = 1
    results: list[tuple[_DecodeTask, list[int], torch.Tensor | None]] = []
    with tqdm(total=len(tasks), unit="video", desc=desc, disable=not progress) as bar:
        if n_proc == 1:
            for task in tasks:
                results.append(_decode_video(task))
                bar.update()
        else:
            # spawn: safe when the parent already runs torch threads (fork could deadlock in OpenMP).
            with multiprocessing.get_context("spawn").Pool(n_proc, initializer=init_decode_worker) as pool:
                for result in pool.imap(_decode_video, tasks, chunksize=4):  # imap keeps record order
                    results.append(result)
                    bar.update()
    chunks = [clips for _, _, clips in results if clips is not None]
    if not chunks:
        raise ValueError(f"none of the {len(records)} videos holds a whole {spec.num_frames}-frame clip")
    meta = [(task, idx) for task, indices, clips in results if clips is not None for idx in indices]
    return ClipBank(
        frames=torch.cat(chunks),
        relpaths=tuple(t.relpath for t, _ in meta),
        groups=tuple(t.group for t, _ in meta),
        labels=tuple(t.label for t, _ in meta),
        clip_indices=tuple(meta_idx for _, meta_idx in meta),
    )


# --- batches ---------------------------------------------------------------------------------------
def frames_to_clips(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 (B, 3, T, H, W) in [-1, 1] (``x / 127.5 - 1``, the data
    layer's formula, so bank clips equal :func:`lib.data.video.iter_clips` clips bit for bit)."""
    if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (B, T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return frames.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0).contiguous()


def center_crop_offsets(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of a centred ``crop`` in a frame of ``size`` (floor, like CropPolicy)."""
    return (size[0] - crop[0]) // 2, (size[1] - crop[1]) // 2


def _check_crop(size: tuple[int, int], crop: tuple[int, int]) -> None:
    if not (1 <= crop[0] <= size[0] and 1 <= crop[1] <= size[1]):
        raise ValueError(f"crop {crop} does not fit the bank frames {size}")


def center_clips(bank: ClipBank, indices: Sequence[int] | torch.Tensor, *, crop: tuple[int, int]) -> torch.Tensor:
    """Centre-cropped float clips (B, 3, T, h, w) of the bank entries ``indices`` (held-out path)."""
    _check_crop(bank.size, crop)
    top, left = center_crop_offsets(bank.size, crop)
    idx = torch.as_tensor(indices, dtype=torch.long)
    return frames_to_clips(bank.frames[idx, :, top : top + crop[0], left : left + crop[1]])


class ClipBatchSampler:
    """Training batches of a :class:`ClipBank`, a pure function of ``(seed, step)``.

    Sample position ``p = step * batch_size + i`` is clip ``perm_e[p mod N]`` of epoch
    ``e = p // N``, where ``perm_e`` is a permutation seeded by ``(seed, e)``. Each clip gets a
    random crop of ``crop`` (uniform offsets), with ``hflip`` a horizontal flip with probability
    1/2, and with ``color`` a random RGB permutation and per-channel negatives (probability 1/2
    each), all drawn from a generator seeded by ``(seed, step)``.
    """

    def __init__(
        self, bank: ClipBank, *, batch_size: int, crop: tuple[int, int], hflip: bool, seed: int, color: bool = False
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _check_crop(bank.size, crop)
        self.bank = bank
        self.batch_size = batch_size
        self.crop = (int(crop[0]), int(crop[1]))
        self.hflip = hflip
        self.color = color
        self.seed = int(seed)
        self._perm_cache: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm_cache:
            self._perm_cache = {
                epoch: torch.randperm(len(self.bank), generator=make_generator(self.seed, _ORDER_DOMAIN, epoch))
            }
        return self._perm_cache[epoch]

    def indices(self, step: int) -> torch.Tensor:
        """Bank indices (B,) of the clips of ``step``."""
        n = len(self.bank)
        out = []
        for p in range(step * self.batch_size, (step + 1) * self.batch_size):
            out.append(int(self._permutation(p // n)[p % n]))
        return torch.tensor(out, dtype=torch.long)

    def _draws(
        self, step: int, crop: tuple[int, int] | None
    ) -> tuple[torch.Tensor, list[int], list[int], torch.Tensor, list[torch.Tensor], torch.Tensor, tuple[int, int]]:
        idx = self.indices(step)
        g = make_generator(self.seed, _AUGMENT_DOMAIN, step)
        (h, w), (ch, cw) = self.bank.size, (crop or self.crop)
        _check_crop(self.bank.size, (ch, cw))
        tops = torch.randint(0, h - ch + 1, (len(idx),), generator=g).tolist()
        lefts = torch.randint(0, w - cw + 1, (len(idx),), generator=g).tolist()
        flips = torch.rand(len(idx), generator=g) < 0.5
        perms = [torch.randperm(3, generator=g) for _ in range(len(idx))]
        inverts = torch.rand(len(idx), 3, generator=g) < 0.5
        return idx, tops, lefts, flips, perms, inverts, (ch, cw)

    def batch(self, step: int, crop: tuple[int, int] | None = None) -> torch.Tensor:
        """float32 (B, 3, T, h, w) clips in [-1, 1] of ``step`` (``crop`` overrides the sampler's)."""
        idx, tops, lefts, flips, perms, inverts, (ch, cw) = self._draws(step, crop)
        frames = []
        for k, (i, top, left) in enumerate(zip(idx.tolist(), tops, lefts)):
            f = self.bank.frames[i, :, top : top + ch, left : left + cw]  # (T, h, w, 3)
            if self.hflip and flips[k]:
                f = f.flip(2)
            if self.color:
                f = f[..., perms[k]]  # RGB channel permutation
                f = torch.where(inverts[k], 255 - f, f)  # per-channel negative
            frames.append(f)
        return frames_to_clips(torch.stack(frames))

    def motion(self, step: int, crop: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ground-truth displacement fields of :meth:`batch`'s clips, float32 (B, 2, T, h, w)
        in pixels (cropped and mirrored like the clips: a flip negates x), and which clips have
        one, bool (B,). Needs a bank with ``motion``."""
        if self.bank.motion is None or self.bank.has_motion is None:
            raise ValueError("this bank carries no ground-truth motion")
        idx, tops, lefts, flips, _, _, (ch, cw) = self._draws(step, crop)
        fields = []
        for k, (i, top, left) in enumerate(zip(idx.tolist(), tops, lefts)):
            m = self.bank.motion[i, :, :, top : top + ch, left : left + cw].float()  # (T, 2, h, w)
            if self.hflip and flips[k]:
                m = m.flip(3)
                m[:, 0] = -m[:, 0]
            fields.append(m.permute(1, 0, 2, 3))
        return torch.stack(fields), self.bank.has_motion[idx]


def bank_summary(bank: ClipBank) -> dict[str, object]:
    """Plain-type description of a bank (for logs and metrics.json)."""
    return {
        "clips": len(bank),
        "videos": bank.num_videos,
        "groups": sorted(bank.group_set),
        "frame_size": list(bank.size),
        "num_frames": bank.num_frames,
        "megabytes": round(bank.nbytes / 2**20, 1),
    }
