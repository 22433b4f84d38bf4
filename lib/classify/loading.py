"""Load a study's three splits once, as batch sources, for the model kind at hand.

- latent models: :func:`load_latent_data` reads the latent cache (``lib.cache.load_split``,
  plus ``load_content_features`` for a latent+content model) into :class:`TensorClips`;
- pixel models: :func:`load_pixel_data` lists every clip of every video of the fold's splits as
  :class:`PixelClips` over decoded video: the latent cache's own clip list when a cache is
  given (so pixel and latent models see exactly the same clips), else sampled here.

Both return :class:`ExperimentData`, which also carries what the cost table needs (bytes per
clip, the cache's one-off encode time) and a provenance record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from lib.classify.data import BatchSource, TensorClips
from lib.classify.errors import InputMismatchError
from lib.classify.pixel_bank import PixelBankClips
from lib.classify.pixels import PixelClipDataset, PixelClipItem, PixelClips, clip_items
from lib.data.clips import ClipSpec, SamplingMode
from lib.data.spatial import CropPolicy, SpatialPolicy
from lib.paths import resolve_path

SPLITS = ("train", "val", "test")


@dataclass
class ExperimentData:
    """The splits of one fold as batch sources, and facts about them.

    ``input_kind``: "latent", "latent+content" or "pixels" (what the sources feed: see
    :mod:`lib.models.registry`). ``source``: the cache directory or dataset root (named in
    errors). ``encode_seconds_per_clip``: the cache build's one-off cost per clip (0 for pixels).
    """

    train: BatchSource
    val: BatchSource | None
    test: BatchSource
    class_names: list[str]
    input_kind: str
    source: str
    encode_seconds_per_clip: float = 0.0
    encode_seconds_total: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        return self.train.input_shapes()

    def input_bytes_per_clip(self) -> int:
        return self.train.input_bytes_per_clip()

    def describe(self) -> dict[str, Any]:
        counts = {
            name: len(src)
            for name, src in (("train", self.train), ("val", self.val), ("test", self.test))
            if src is not None
        }
        return {
            "source": self.source,
            "input_kind": self.input_kind,
            "num_classes": self.num_classes,
            "input_shapes": [list(s) for s in self.input_shapes()],
            "clips": counts,
            "input_bytes_per_clip": self.input_bytes_per_clip(),
            **self.provenance,
        }


def load_latent_data(
    cache_dir: str | os.PathLike[str], *, fold: int = 1, with_content: bool = False, kind: str = "latent"
) -> ExperimentData:
    """The fold's train/val/test latents (fp16, in RAM) from a latent cache; ``with_content``
    adds the content-frame features as a second input; ``kind`` selects the cache's array
    ("latent", or the pooled-pixel control). A split the cache lacks (e.g. no val) is None
    for val and an error for train/test."""
    from lib.cache import load_content_features, load_split, open_cache

    cache_path = resolve_path(cache_dir)
    cache = open_cache(cache_path)
    class_names = list(cache.class_names)
    sources: dict[str, TensorClips | None] = {}
    for split in SPLITS:
        if split == "val" and split not in cache.index["splits"].get(str(fold), {}):
            sources[split] = None  # built without a validation split: fit selects the last epoch
            continue
        clips = load_split(cache_path, split, fold, kind=kind)
        if len(clips.labels) == 0:
            if split != "val":
                raise InputMismatchError(
                    cache_path,
                    f"has no {split} clips for fold {fold}",
                    f"build the cache with the {split} split of fold {fold}",
                )
            sources[split] = None
            continue
        inputs = [clips.latents]
        if with_content:
            content = load_content_features(cache_path, split, fold)
            if content.shape[0] != clips.latents.shape[0]:
                raise InputMismatchError(
                    cache_path,
                    f"content features ({content.shape[0]} rows) do not align with the "
                    f"{split} latents ({clips.latents.shape[0]})",
                    "rebuild the cache",
                )
            inputs.append(content)
        sources[split] = TensorClips(
            tuple(inputs),
            clips.labels,
            clips.video_index,
            split=split,
            class_names=class_names,
            source=f"{cache_path} ({split}, fold {fold})",
        )
    provenance = {
        "cache_dir": str(cache_path),
        "fold": fold,
        "cache_kind": kind,
        "cache_source": cache.source_kind,
        "cache_latent_shape": list(cache.latent_shape),
        "cache_key_hash": cache.key_hash,
    }
    train, test = sources["train"], sources["test"]
    assert train is not None and test is not None
    return ExperimentData(
        train,
        sources["val"],
        test,
        class_names,
        "latent+content" if with_content else "latent",
        str(cache_path),
        cache.encode_seconds_per_clip,
        cache.encode_seconds,
        provenance,
    )


DEFAULT_PIXEL_POLICY = CropPolicy(short_side=128, crop=(112, 112), resize_precision="uint8")  # the R(2+1)D input


@dataclass(frozen=True)
class PixelInputSpec:
    """How pixel models see the videos: frame geometry, clip sampling, workers, augmentation.

    ``spatial``: frame geometry (None: :data:`DEFAULT_PIXEL_POLICY`, short side 128, centre crop
    112x112, uint8 resize, the usual R(2+1)D input). ``clip_spec``, ``clip_mode``,
    ``val_fraction``, ``val_seed``: the sampling of a fold read without a cache. ``augment``:
    random crop (+ horizontal flip when ``flip``; turn it off for datasets with direction classes,
    like the synthetic set's MoveLeft/MoveRight) on training clips. ``in_memory``: decode every
    clip once into a uint8 RAM bank (:mod:`lib.classify.pixel_bank`) instead of every epoch.
    """

    spatial: SpatialPolicy | None = None
    clip_spec: ClipSpec = field(default_factory=ClipSpec)
    clip_mode: SamplingMode = "all"
    val_fraction: float = 0.1
    val_seed: int = 0
    num_workers: int = 0
    augment: bool = True
    flip: bool = True
    in_memory: bool = False


def load_pixel_data(
    data_root: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    fold: int = 1,
    pixels: PixelInputSpec | None = None,
) -> ExperimentData:
    """Every clip of the fold's train/val/test videos as decoded pixel batches (``pixels``: how).

    With ``cache_dir`` the clips are exactly the cache's (same videos, same source frames, same
    ``video_index``; failed videos left out), decoded from ``data_root`` if given, else from
    the dataset the cache was built from: the pixel reference then sees the same clips as the
    latent models. Without it, the fold of ``data_root`` is sampled here (``pixels.clip_spec``,
    ``clip_mode``, ``val_fraction``, ``val_seed``; each video opened once to count its clips)."""
    pixels = pixels or PixelInputSpec()
    spatial, clip_spec, clip_mode = pixels.spatial, pixels.clip_spec, pixels.clip_mode
    val_fraction, val_seed, num_workers = pixels.val_fraction, pixels.val_seed, pixels.num_workers
    augment, flip, in_memory = pixels.augment, pixels.flip, pixels.in_memory
    policy = spatial or DEFAULT_PIXEL_POLICY
    items_by_split: dict[str, list[PixelClipItem]] = {}
    if cache_dir is not None:
        from lib.cache import open_cache

        cache_path = resolve_path(cache_dir)
        cache = open_cache(cache_path)
        video_root = resolve_path(data_root) / "UCF-101" if data_root is not None else None
        class_names = list(cache.class_names)
        for split in SPLITS:
            if split not in cache.index["splits"].get(str(fold), {}):
                continue
            items_by_split[split] = [
                PixelClipItem(
                    video_root / entry.id if video_root is not None else entry.path, frames, entry.label, position
                )
                for position, entry in enumerate(cache.videos(split, fold))
                for frames in entry.clip_frame_indices
            ]
        source = str(cache_path)
        provenance: dict[str, Any] = {
            "clips_from_cache": str(cache_path),
            "cache_key_hash": cache.key_hash,
            "data_root": str(video_root.parent if video_root else cache.dataset_root),
        }
    else:
        from lib.data.ucf101 import load_ucf101

        if data_root is None:
            raise ValueError("load_pixel_data needs data_root or cache_dir")
        root = resolve_path(data_root)
        dataset = load_ucf101(root, fold, val_fraction=val_fraction, seed=val_seed)
        class_names = list(dataset.classes)
        for split in SPLITS:
            items_by_split[split] = clip_items(
                [(r.path, r.label) for r in dataset.records(split)], spec=clip_spec, mode=clip_mode
            )
        source = str(root)
        provenance = {
            "data_root": str(root),
            "clip_mode": clip_mode,
            "val_fraction": val_fraction,
            "val_seed": val_seed,
            "clip_spec": {"num_frames": clip_spec.num_frames, "target_fps": clip_spec.target_fps},
        }
    sources: dict[str, PixelClips | PixelBankClips | None] = {}
    for split in SPLITS:
        items = items_by_split.get(split, [])
        dataset_split = PixelClipDataset(items, policy, augment=augment and split == "train", flip=flip)
        stream = (
            PixelClips(dataset_split, split=split, num_workers=num_workers, class_names=class_names) if items else None
        )
        sources[split] = (
            PixelBankClips(stream, num_workers=num_workers, progress=True) if stream and in_memory else stream
        )
    train, test = sources["train"], sources["test"]
    if train is None or test is None:
        raise InputMismatchError(
            source, f"fold {fold} has no train or no test clips", "check the split lists / the cache"
        )
    provenance.update(fold=fold, spatial=policy.params())
    return ExperimentData(train, sources["val"], test, class_names, "pixels", source, 0.0, 0.0, provenance)
