"""Pixel-space batch source: decoded video clips for end-to-end pixel models.

:class:`PixelClipDataset` is a torch ``Dataset`` over :class:`PixelClipItem` (video path, source
frame indices, label, video index). ``__getitem__`` decodes the clip's frames with
:class:`lib.data.video.VideoReader` (one open reader per worker process, reopened lazily when
the next item comes from another video, so an in-order evaluation opens each video once) and
applies a :class:`~lib.data.spatial.SpatialPolicy`: a float32 (3, T, H, W) clip in [-1, 1].

Train-time augmentation (``augment=True`` and a train epoch): for a :class:`CropPolicy`, the
frames are resized as the policy does and a *random* crop of the policy's size is taken instead
of the centre one; then a horizontal flip with probability 1/2. Its randomness comes from a seed
drawn per item by the sampler from the epoch's generator (not from the worker), so a clip gets
the same crop for any number of workers and after a resume.

:class:`PixelClips` wraps the dataset in a ``DataLoader(num_workers=...)`` and yields
:class:`~lib.classify.data.Batch` like :class:`~lib.classify.data.TensorClips`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lib.classify.data import Batch, batch_order, num_batches
from lib.data.clips import ClipSpec, SamplingMode, sample_clips
from lib.data.spatial import CropPolicy, SpatialPolicy
from lib.data.video import VideoReader

DEFAULT_CLIP_SPEC = ClipSpec()  # the data layer's clips: 16 frames at 16 fps


@dataclass(frozen=True)
class PixelClipItem:
    """One clip of a video: its file, the source frame indices (sorted), label and video index."""

    path: Path
    frame_indices: tuple[int, ...]
    label: int
    video_index: int


def clip_items(
    videos: Sequence[tuple[str | Path, int]],
    *,
    spec: ClipSpec = DEFAULT_CLIP_SPEC,
    mode: SamplingMode = "all",
    seed: int = 0,
) -> list[PixelClipItem]:
    """Items for every clip of ``videos`` ((path, label) pairs, in split order): each video is
    opened once to read its frame count and rate, then sampled with
    :func:`lib.data.clips.sample_clips`. A video too short for one clip contributes no item in
    multi-clip modes. (Latent caches record the same clips; prefer them when one exists.)"""
    items: list[PixelClipItem] = []
    for video_index, (path, label) in enumerate(videos):
        with VideoReader(path) as reader:
            num_frames, fps = reader.num_frames, reader.fps
        clips = sample_clips(num_frames, fps, spec, mode=mode, seed=seed + video_index, path=path)
        items.extend(PixelClipItem(Path(path), clip.frame_indices, int(label), video_index) for clip in clips)
    return items


class PixelClipDataset(Dataset[tuple[torch.Tensor, int, int]]):
    """Decoded clips: item -> (float32 (3, T, H, W) in [-1, 1], label, video_index).

    An index may be an int (no augmentation) or an ``(int, seed)`` pair from
    :class:`SeededOrderSampler` (augmented with that seed when ``augment`` is on).
    """

    def __init__(
        self, items: Sequence[PixelClipItem], policy: SpatialPolicy, *, augment: bool = False, flip: bool = True
    ) -> None:
        self.items = list(items)
        self.policy = policy
        self.augment = augment
        self.flip = flip
        self._reader: VideoReader | None = None  # per process: never pickled to workers

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None
        return state

    def _reader_for(self, path: Path) -> VideoReader:
        if self._reader is None or self._reader.path != path:
            if self._reader is not None:
                self._reader.close()  # one open reader per process (FFmpeg's log is per process)
            self._reader = VideoReader(path)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def frames(self, index: int) -> torch.Tensor:
        """Item ``index``'s decoded frames, uint8 (T, H, W, 3) RGB, before the policy."""
        item = self.items[index]
        return torch.from_numpy(self._reader_for(item.path).read_frames(item.frame_indices))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        item = self.items[index]
        frames = self.frames(index)  # uint8 (T, H, W, 3)
        if self.augment and seed is not None:
            clip = self._augmented(frames, np.random.default_rng(seed))
        else:
            clip = self.policy.apply_to_frames(frames)
        return clip, item.label, item.video_index

    def _augmented(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Random crop (CropPolicy: from the resized frame, at a random offset) + random flip."""
        policy = self.policy
        if isinstance(policy, CropPolicy):
            resized = policy.resize_only(*frames.shape[1:3]).apply_to_frames(frames)  # (C, T, rh, rw)
            rh, rw = resized.shape[-2:]
            ch, cw = policy.crop
            top = int(rng.integers(0, rh - ch + 1))
            left = int(rng.integers(0, rw - cw + 1))
            clip = resized[:, :, top : top + ch, left : left + cw]
        else:
            clip = policy.apply_to_frames(frames)
        if self.flip and rng.random() < 0.5:
            clip = clip.flip(-1)
        return clip.contiguous()


class SeededOrderSampler(Sampler[tuple[int, int]]):
    """Yields (index, augmentation seed) in the epoch's order; both come from one generator."""

    def __init__(self, num_items: int, *, shuffle: bool, generator: torch.Generator | None) -> None:
        self.num_items = num_items
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = batch_order(self.num_items, shuffle=self.shuffle, generator=self.generator)
        if self.generator is not None:
            seeds = torch.randint(0, 2**31 - 1, (self.num_items,), generator=self.generator)
        else:
            seeds = torch.zeros(self.num_items, dtype=torch.long)
        return iter(zip(order.tolist(), seeds.tolist()))


def stop_workers(iterator: Any) -> None:
    """Shut a DataLoader iterator's worker processes down now, in this process.

    An iterator left alive (a consumer that stopped early) is otherwise shut down by its
    ``__del__``, which may run in a process forked later (the next loader's workers) and fail
    there with "can only test a child process", printed to stderr."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


class PixelClips:
    """A pixel split as a batch source: ``PixelClipDataset`` + ``DataLoader(num_workers)``."""

    def __init__(
        self,
        dataset: PixelClipDataset,
        *,
        split: str | None = None,
        num_workers: int = 0,
        class_names: Sequence[str] | None = None,
        prefetch_factor: int = 2,
    ) -> None:
        self.dataset = dataset
        self.split = split
        self.num_workers = num_workers
        self.class_names = list(class_names) if class_names is not None else None
        self.prefetch_factor = prefetch_factor
        self.labels = torch.tensor([it.label for it in dataset.items], dtype=torch.long)
        self.video_index = torch.tensor([it.video_index for it in dataset.items], dtype=torch.long)
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        policy = self.dataset.policy.params()
        return f"PixelClips(split={self.split!r}, clips={len(self)}, policy={policy}, workers={self.num_workers})"

    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        if self._shape is None:
            clip, _, _ = self.dataset[0]  # decodes one clip: the output size of the policy
            self.dataset.close()
            self._shape = tuple(clip.shape)
        return (self._shape,)

    def input_bytes_per_clip(self) -> int:
        """Decoded uint8 frames at the model's resolution (what a worker decodes per clip)."""
        return int(np.prod(self.input_shapes()[0]))

    def on(self, device: torch.device) -> PixelClips:
        return self

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None,
        device: torch.device,
        train: bool = False,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        sampler = SeededOrderSampler(len(self), shuffle=shuffle, generator=generator if (shuffle or train) else None)
        dataset = self.dataset
        if dataset.augment and not train:  # evaluation: centre crop, no flip
            dataset = PixelClipDataset(dataset.items, dataset.policy, augment=False)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=drop_last,
            pin_memory=device.type == "cuda",
            prefetch_factor=self.prefetch_factor if self.num_workers else None,
        )
        batches = iter(loader)
        try:
            for clips, labels, videos in batches:
                yield Batch((clips.to(device, non_blocking=True),), labels.to(device), videos.to(device))
        finally:
            stop_workers(batches)
            if self.num_workers == 0:
                dataset.close()

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return num_batches(len(self), batch_size, drop_last=drop_last)
