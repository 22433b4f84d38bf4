"""One video's encoding, fed part by part: preprocess where the encoder is, encode in fixed batches.

:class:`VideoEncoding` receives a video's decoded parts (:func:`lib.cache.decode.iter_video_parts`)
in order. Clips not preprocessed in the worker go through the spatial policy on the encoder's
device, one clip at a time; the preprocessed clips wait until ``batch_size`` of them are there
and are then encoded together. The batches are thus the video's clips split at fixed multiples
of ``batch_size`` - a function of the video alone, never of how it was cut into parts, of
interruptions, workers or shards - so results are bit-identical however the build ran, while at
most one part and fewer than ``batch_size`` preprocessed clips are held at a time.

:func:`encode_video` runs the whole chain for one video in this process (the repair of damaged
rows, :mod:`lib.cache.repair`).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from lib.cache.decode import DecodeSettings, iter_video_parts
from lib.cache.encoders import clip_seed
from lib.cache.plan import VideoJob
from lib.data.spatial import SpatialPolicy


class VideoEncoding:
    """The encoding state of one video between its first and its last part."""

    def __init__(self, job: VideoJob, spatial: SpatialPolicy, encoder: Any, *, batch_size: int,
                 sample_seed: int) -> None:
        self.job, self.spatial, self.encoder = job, spatial, encoder
        self.batch_size, self.sample_seed = batch_size, sample_seed
        self.meta: dict[str, Any] = {}
        self.clips: list[list[Any]] = []
        self.clip_shape: tuple[int, ...] | None = None
        self.decode_seconds = 0.0
        self.encode_seconds = 0.0
        self._pending: list[torch.Tensor] = []  # preprocessed clips not encoded yet (< batch_size after add)
        self._seeds: list[int] = []
        self._outputs: list[dict[str, torch.Tensor]] = []

    def add(self, part: dict[str, Any]) -> None:
        """Take one decoded part (``ok``): preprocess its clips and encode every full batch."""
        for key in ("fps", "num_frames", "height", "width"):
            self.meta.setdefault(key, part[key])
        self.decode_seconds += part["decode_seconds"]
        frames = part["frames"].to(self.encoder.device, non_blocking=True)
        for i, clip in enumerate(part["clips"]):
            x = frames[i] if part["preprocessed"] else self.spatial.apply_to_frames(frames[i])
            self.clip_shape = tuple(x.shape)
            self._pending.append(x)
            self._seeds.append(clip_seed(self.sample_seed, self.job.video_id, clip[0]))
        self.clips += part["clips"]
        del frames
        self._encode(final=False)

    def _encode(self, *, final: bool) -> None:
        while len(self._pending) >= self.batch_size or (final and self._pending):
            batch = torch.stack(self._pending[: self.batch_size])
            seeds = self._seeds[: self.batch_size]
            del self._pending[: self.batch_size], self._seeds[: self.batch_size]
            start = time.perf_counter()
            self._outputs.append(self.encoder.encode(batch, seeds))
            self.encode_seconds += time.perf_counter() - start  # outputs are on the CPU: the device work is done

    def finish(self) -> dict[str, torch.Tensor]:
        """Encode the last clips; the float32 CPU outputs of every clip (one row each)."""
        self._encode(final=True)
        outputs = self._outputs
        self._outputs = []
        return {name: torch.cat([o[name] for o in outputs]) for name in outputs[0]}

    def description(self) -> dict[str, Any]:
        """The entry's video description (without timings)."""
        job = self.job
        return {"id": job.video_id, "class_name": job.class_name, "label": job.label, "group": job.group,
                "clip_number": job.clip_number, **self.meta, "source_bytes": job.source_bytes,
                "source_mtime_ns": job.source_mtime_ns, "clips": self.clips, "clip_shape": list(self.clip_shape or ())}


def encode_video(job: VideoJob, settings: DecodeSettings, spatial: SpatialPolicy, encoder: Any, *, batch_size: int,
                 sample_seed: int) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    """Decode and encode one video in this process: ``(outputs, description)``, or ``(None,
    failure part)`` when the video cannot be decoded."""
    state = VideoEncoding(job, spatial, encoder, batch_size=batch_size, sample_seed=sample_seed)
    for part in iter_video_parts(job, settings):
        if not part["ok"]:
            return None, part
        state.add(part)
        if part["last"]:
            description = state.description()
            if part.get("source_sha256"):
                description["source_sha256"] = part["source_sha256"]
            return state.finish(), description
    raise AssertionError(f"{job.path}: the decoder ended without a last part")  # a bug, not bad data


def storage_cast(outputs: dict[str, torch.Tensor], storage: torch.dtype) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Outputs in the storage dtype, and the names of those with non-finite values after the cast."""
    stored = {name: value.to(storage) for name, value in outputs.items()}
    return stored, [name for name, value in stored.items() if not torch.isfinite(value).all()]

