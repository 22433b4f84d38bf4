"""In-memory pixel batch source: every clip of a split decoded ONCE into a uint8 tensor.

Why: :class:`lib.classify.pixels.PixelClips` decodes every clip again in every epoch, which on
the 2-core CPU made decoding, not the small 3D CNN, the cost of the pixel reference (~60 clips/s
while the model trains at several hundred). :class:`PixelBankClips` decodes a split once (in
``num_workers`` DataLoader processes) and then slices batches out of RAM like
:class:`~lib.classify.data.TensorClips`. It is meant for datasets that fit in memory (the
embedded default: ~6k clips x 3 x 16 x 72 x 96 bytes = ~2 GB); UCF101 at 112x112 (~100 GB)
keeps the streaming source.

Storage: uint8 (N, 3, T, H, W), RGB, the policy's frames rounded to 0..255 (within 0.5/255 of
the float path when the policy resizes in float32; exact for uint8 resizing or no resize).
A training split of a :class:`~lib.data.spatial.CropPolicy` with augmentation stores the whole
resized frame and takes a random crop per clip and step (and a horizontal flip when ``flip``),
the same augmentation as the streaming source; evaluation splits store the centre crop.
Batches come out float32 in [-1, 1], (B, 3, T, H, W). Augmentation randomness is drawn from the
epoch's generator, so it is reproducible and independent of the worker count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lib.classify.data import Batch, batch_order, num_batches
from lib.classify.pixels import PixelClipDataset, PixelClips, stop_workers
from lib.data.spatial import CropPolicy


def _to_uint8(clip: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 0..255 (round to nearest)."""
    return ((clip + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


class _BankItems(Dataset[tuple[int, torch.Tensor]]):
    """Item i -> (i, its stored uint8 clip): the whole resized frame when ``full_frame``."""

    def __init__(self, dataset: PixelClipDataset, *, full_frame: bool) -> None:
        self.dataset = dataset
        self.full_frame = full_frame

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        frames = self.dataset.frames(index)
        policy = self.dataset.policy
        if self.full_frame:
            assert isinstance(policy, CropPolicy)
            policy = policy.resize_only(*frames.shape[1:3])
        return index, _to_uint8(policy.apply_to_frames(frames))


class PixelBankClips:
    """A pixel split decoded once into RAM; a batch source like ``TensorClips`` (see module doc)."""

    def __init__(self, stream: PixelClips, *, num_workers: int = 0, progress: bool = False) -> None:
        dataset = stream.dataset
        policy = dataset.policy
        self.split = stream.split
        self.class_names = stream.class_names
        self.labels = stream.labels
        self.video_index = stream.video_index
        self.augment = bool(dataset.augment)
        self.flip = bool(dataset.flip)
        self.crop: tuple[int, int] | None = tuple(policy.crop) if isinstance(policy, CropPolicy) else None
        full_frame = self.augment and self.crop is not None
        self.clips = self._decode(
            _BankItems(dataset, full_frame=full_frame), num_workers=num_workers, progress=progress
        )
        dataset.close()

    def _decode(self, items: _BankItems, *, num_workers: int, progress: bool) -> torch.Tensor:
        n = len(items)
        if n == 0:
            return torch.empty(0, dtype=torch.uint8)
        loader = DataLoader(
            items, batch_size=None, shuffle=False, num_workers=num_workers, prefetch_factor=4 if num_workers else None
        )
        bank: torch.Tensor | None = None
        clips = iter(loader)
        iterator: Any = clips
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(clips, total=n, desc=f"decode {self.split or 'split'} clips", unit="clip")
        try:
            for index, clip in iterator:
                if bank is None:
                    bank = torch.empty((n, *clip.shape), dtype=torch.uint8)
                if tuple(clip.shape) != tuple(bank.shape[1:]):
                    path = items.dataset.items[index].path
                    raise ValueError(
                        f"{path}: decoded clip {tuple(clip.shape)} differs from the split's first clip "
                        f"{tuple(bank.shape[1:])}; an in-memory bank needs one frame size. Fix: use the "
                        "streaming pixel source (pixel_in_memory: false) or a policy with a fixed crop"
                    )
                bank[index] = clip
        finally:
            stop_workers(clips)
        assert bank is not None
        return bank

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"PixelBankClips(split={self.split!r}, clips={tuple(self.clips.shape)} uint8, augment={self.augment})"

    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        shape = tuple(self.clips.shape[1:])
        if self.augment and self.crop is not None:
            shape = (*shape[:2], *self.crop)
        return (shape,)

    def input_bytes_per_clip(self) -> int:
        return int(np.prod(self.input_shapes()[0]))

    def on(self, device: torch.device) -> PixelBankClips:
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
        order = batch_order(len(self), shuffle=shuffle, generator=generator)
        stop = num_batches(len(self), batch_size, drop_last=drop_last) * batch_size
        augment = train and self.augment and generator is not None
        for start in range(0, min(stop, len(self)), batch_size):
            idx = order[start : start + batch_size]
            clips = self.clips.index_select(0, idx)  # uint8 (B, 3, T, H, W)
            clips = self._augmented(clips, generator) if augment else self._centre(clips)
            x = clips.to(device).float().div_(127.5).sub_(1.0)
            yield Batch(
                (x,), self.labels.index_select(0, idx).to(device), self.video_index.index_select(0, idx).to(device)
            )

    def _centre(self, clips: torch.Tensor) -> torch.Tensor:
        if self.crop is None or tuple(clips.shape[-2:]) == self.crop:
            return clips
        h, w = clips.shape[-2:]
        top, left = (h - self.crop[0]) // 2, (w - self.crop[1]) // 2  # CropPolicy's centre offsets
        return clips[..., top : top + self.crop[0], left : left + self.crop[1]]

    def _augmented(self, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per clip: a random crop of the stored frame (CropPolicy) and a flip with probability 1/2."""
        b = clips.shape[0]
        h, w = clips.shape[-2:]
        ch, cw = self.crop if self.crop is not None else (h, w)
        tops = torch.randint(0, h - ch + 1, (b,), generator=generator).tolist()
        lefts = torch.randint(0, w - cw + 1, (b,), generator=generator).tolist()
        flips = (torch.rand(b, generator=generator) < 0.5).tolist()
        out = torch.empty((*clips.shape[:3], ch, cw), dtype=clips.dtype)
        for i in range(b):
            clip = clips[i, :, :, tops[i] : tops[i] + ch, lefts[i] : lefts[i] + cw]
            out[i] = clip.flip(-1) if self.flip and flips[i] else clip
        return out
