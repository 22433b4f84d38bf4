"""Batch sources: what :func:`lib.classify.engine.fit` and :func:`~lib.classify.engine.evaluate`
iterate over, for latent models (in-memory tensors) and pixel models (decoded video clips).

A batch source yields :class:`Batch` objects whose ``inputs`` are float32 tensors on the
training device, one per model argument (``model(*batch.inputs)``): ``(latent,)`` with latent
(B, C, T, H, W), ``(latent, content)`` with content (B, D) for a fusion model, or ``(pixels,)``
with pixels (B, 3, T, H, W) in [-1, 1].

:class:`TensorClips` slices clips straight out of the cached tensors: one ``index_select`` per
input per batch and one dtype cast (fp16 storage -> float32), no per-clip Python. The pixel
source (:class:`lib.classify.pixels.PixelClips`) decodes videos in DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from lib.classify.config import STANDARDIZE_MODES
from lib.classify.errors import InputMismatchError

# Keep a latent split on the GPU (indexing there, no host->device copy per batch) when its
# stored bytes are below this; UCF101 (~100k clips x 4,032 fp16 values) is ~0.8 GB.
DEFAULT_MAX_DEVICE_BYTES = 8 * 2**30


@dataclass(frozen=True)
class Batch:
    """One batch: ``inputs`` (float32, on the device), ``labels`` (B,) int64 and
    ``video_index`` (B,) int64 (position of each clip's video in the split's video list)."""

    inputs: tuple[torch.Tensor, ...]
    labels: torch.Tensor
    video_index: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


@runtime_checkable
class BatchSource(Protocol):
    """Anything fit/evaluate can iterate. ``split`` names the split ("train", "val", "test"):
    :func:`~lib.classify.engine.fit` refuses a source whose split is "test"."""

    split: str | None

    def __len__(self) -> int:  # number of clips
        ...

    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-clip shape of each model input, e.g. ((16, 4, 7, 9),)."""
        ...

    def input_bytes_per_clip(self) -> int:
        """Bytes one clip occupies as stored/fed before the float32 cast (cost accounting)."""
        ...

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
        """Batches in order (``shuffle=False``) or in the order drawn from ``generator``.
        ``train`` turns on the source's own train-time augmentation (pixel crops/flips)."""
        ...

    def on(self, device: torch.device) -> BatchSource:
        """The source to iterate for ``device`` (a latent split may move there once)."""
        ...


def num_batches(num_clips: int, batch_size: int, *, drop_last: bool = False) -> int:
    return num_clips // batch_size if drop_last else -(-num_clips // batch_size)


def batch_order(num_clips: int, *, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Clip order of an epoch: a permutation drawn from ``generator`` (CPU) or 0..N-1."""
    if not shuffle:
        return torch.arange(num_clips)
    if generator is None:
        raise ValueError("shuffle=True needs a seeded torch.Generator (unseeded order is irreproducible)")
    return torch.randperm(num_clips, generator=generator)


class TensorClips:
    """A split held in memory: ``inputs`` aligned on dim 0 (``(latent,)`` or ``(latent, content)``),
    ``labels`` (N,) and ``video_index`` (N,).

    Inputs keep their storage dtype (fp16 latents from the cache) and are cast to float32 per
    batch, after the transfer to the device (half the bytes over PCIe). ``class_names`` is
    optional metadata; ``split`` names the split (see :class:`BatchSource`).
    """

    def __init__(
        self,
        inputs: Sequence[torch.Tensor] | torch.Tensor,
        labels: torch.Tensor,
        video_index: torch.Tensor | None = None,
        *,
        split: str | None = None,
        class_names: Sequence[str] | None = None,
        source: str | None = None,
    ) -> None:
        tensors = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        n = int(labels.shape[0])
        where = source or f"{split or 'unnamed'} split"
        if not tensors:
            raise InputMismatchError(where, "no input tensor given", "pass (latent,) or (latent, content)")
        for i, t in enumerate(tensors):
            if t.shape[0] != n:
                raise InputMismatchError(
                    where,
                    f"input {i} has {t.shape[0]} rows but there are {n} labels",
                    "rebuild the cache; inputs, labels and video_index must be aligned row for row",
                )
            if not t.is_floating_point():
                raise InputMismatchError(
                    where, f"input {i} has dtype {t.dtype}; expected a floating dtype", "pass fp16/fp32 tensors"
                )
        if video_index is None:
            video_index = torch.arange(n)  # every clip its own "video": video level == clip level
        if labels.ndim != 1 or video_index.shape != labels.shape:
            raise InputMismatchError(
                where,
                f"labels {tuple(labels.shape)} and video_index {tuple(video_index.shape)} must be (N,)",
                "pass 1-D tensors of equal length",
            )
        self.inputs = tensors
        self.labels = labels.long()
        self.video_index = video_index.long()
        self.split = split
        self.class_names = list(class_names) if class_names is not None else None
        self.source = source

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in self.inputs)
        return f"TensorClips(split={self.split!r}, inputs=[{shapes}], device={self.inputs[0].device})"

    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(t.shape[1:]) for t in self.inputs)

    def input_bytes_per_clip(self) -> int:
        return sum(t[0].numel() * t.element_size() for t in self.inputs) if len(self) else 0

    def on(self, device: torch.device, *, max_device_bytes: int = DEFAULT_MAX_DEVICE_BYTES) -> TensorClips:
        """A copy living on ``device`` when it is an accelerator and the split fits in
        ``max_device_bytes``; otherwise ``self`` (batches are then copied per step)."""
        if device.type == "cpu" or self.inputs[0].device == device:
            return self
        if sum(t.numel() * t.element_size() for t in self.inputs) > max_device_bytes:
            return self
        return TensorClips(
            tuple(t.to(device) for t in self.inputs),
            self.labels.to(device),
            self.video_index.to(device),
            split=self.split,
            class_names=self.class_names,
            source=self.source,
        )

    def subset(self, index: torch.Tensor) -> TensorClips:
        """The clips at ``index`` (a view for tests and quick looks; keeps ``split``)."""
        return TensorClips(
            tuple(t[index] for t in self.inputs),
            self.labels[index],
            self.video_index[index],
            split=self.split,
            class_names=self.class_names,
            source=self.source,
        )

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
        order = batch_order(len(self), shuffle=shuffle, generator=generator).to(self.labels.device)
        stop = num_batches(len(self), batch_size, drop_last=drop_last) * batch_size
        for start in range(0, min(stop, len(self)), batch_size):
            idx = order[start : start + batch_size]
            if not shuffle:  # contiguous range: a slice is a view, no gather needed
                sl = slice(start, start + idx.shape[0])
                xs = [t[sl] for t in self.inputs]
                labels, videos = self.labels[sl], self.video_index[sl]
            else:
                xs = [t.index_select(0, idx) for t in self.inputs]
                labels, videos = self.labels.index_select(0, idx), self.video_index.index_select(0, idx)
            inputs = tuple(x.to(device).float() for x in xs)
            yield Batch(inputs, labels.to(device), videos.to(device))


def standardization_stats(values: torch.Tensor, mode: str, *, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of ``values`` (N, ...) over clips, float32, shaped to broadcast against one
    clip: per value position ("element": shape values.shape[1:]) or per channel (dim 1;
    "channel": (C, 1, ...)). Accumulated in float64 chunks (UCF101 caches are too big to cast at
    once); a zero std (a constant position) becomes 1 so it maps to 0, not to NaN."""
    n = values.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 clips for standardisation statistics, got {n}")
    axes = (0,) if mode == "element" else tuple(d for d in range(values.ndim) if d != 1)
    total: torch.Tensor | float = 0.0
    squares: torch.Tensor | float = 0.0
    count = 0
    for start in range(0, n, chunk):
        x = values[start : start + chunk].double()
        part = x.sum(dim=axes, keepdim=True)
        total = total + part
        squares = squares + x.square().sum(dim=axes, keepdim=True)
        count += x.numel() // part.numel()  # values reduced into each statistic
    assert isinstance(total, torch.Tensor) and isinstance(squares, torch.Tensor)
    mean = total / count
    var = (squares / count - mean.square()).clamp_min(0) * count / (count - 1)
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean[0].float(), std[0].float()


def standardize_splits(
    train: TensorClips, others: Sequence[TensorClips | None], mode: str
) -> tuple[TensorClips, list[TensorClips | None]]:
    """Every input of ``train`` and ``others`` standardised with ``train``'s statistics
    (see ``TrainConfig.input_standardize``); ``mode`` "none" returns them unchanged. Storage
    dtype is kept (standardised fp16 values are O(1), well inside fp16's range)."""
    if mode == "none":
        return train, list(others)
    if mode not in STANDARDIZE_MODES:
        raise ValueError(f"unknown standardisation {mode!r}; use one of {STANDARDIZE_MODES}")
    stats = [standardization_stats(t, mode) for t in train.inputs]

    def apply(source: TensorClips) -> TensorClips:
        inputs = []
        for t, (mean, std) in zip(source.inputs, stats):
            out = torch.empty_like(t)
            for start in range(0, t.shape[0], 8192):  # chunked: no float32 copy of a whole split
                out[start : start + 8192] = (
                    (t[start : start + 8192].float() - mean.to(t.device)) / std.to(t.device)
                ).to(t.dtype)
            inputs.append(out)
        return TensorClips(
            inputs,
            source.labels,
            source.video_index,
            split=source.split,
            class_names=source.class_names,
            source=source.source,
        )

    return apply(train), [apply(o) if o is not None else None for o in others]
