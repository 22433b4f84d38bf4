"""What a cache is (:class:`CacheSpec`) and how one build runs (:class:`BuildOptions`).

A :class:`CacheSpec` names everything that decides a cache's contents: the dataset and its
selection (root, folds, splits, the validation carve-out), the encoder (VAE source, compute dtype,
random-init seed, pooled-pixels shape), the clip geometry and sampling, the spatial policy, the
stored outputs and their dtype. It is the source of the cache key
(:func:`lib.cache.manifest.make_key`): two builds of equal specs on the same dataset files and
weights write the same key, so one resumes the other.

:class:`BuildOptions` holds what only changes how a build runs (batch size, workers, device,
threads, sharding, resume and replace policy, progress): none of it enters the key. The batch
size does change float results in their last bits (a convolution's result depends on the batch it
is computed in), which is why a resumed build keeps each video's batches fixed; it is still a
run-time option, as it always was, so caches built before keep their keys.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from lib.data.clips import ClipSpec, SamplingMode
from lib.data.spatial import SpatialPolicy
from lib.data.ucf101 import SPLIT_NAMES

STORAGE_DTYPE_NAMES = ("float16", "float32")
PREPROCESS_PLACES = ("auto", "workers", "device")


def _int_tuple(value: int | Sequence[int]) -> tuple[int, ...]:
    return (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)


@dataclass(frozen=True)
class CacheSpec:
    """The settings that decide a cache (see the module docstring); sequences are stored as tuples.

    ``data_root``: a UCF101-layout root ("" = the synthetic smoke set). ``vae_source``: anything
    ``load_reducio`` accepts, a training output folder holding exactly one ``vae.safetensors``,
    ``random:<preset>`` (random init seeded by ``init_seed``, for timing) or ``pooled-pixels``
    (the pixel control, ``pool_shape`` or the rule of :func:`lib.cache.encoders.pooled_shape`).
    ``folds``: one fold or several (the first gives the row order). ``spatial``: None is the
    encoder's default (``input_policy(vae)``; the study's 224x288 bucket for pooled pixels).
    ``dtype``: the compute dtype (float32, or bfloat16/float16 under autocast); ``storage_dtype``:
    float16 or float32.
    """

    data_root: str | os.PathLike[str]
    vae_source: str
    folds: int | Sequence[int] = (1,)
    splits: Sequence[str] = SPLIT_NAMES
    val_fraction: float = 0.1
    val_seed: int = 0
    clip_mode: SamplingMode = "all"
    clip_seed: int = 0
    num_frames: int = 16
    target_fps: float = 16.0
    spatial: SpatialPolicy | None = None
    dtype: str = "float32"
    storage_dtype: str = "float16"
    content_features: bool = False
    sample: bool = False
    sample_seed: int = 0
    logvar: bool = False
    layer_norm: bool = False
    pool_shape: Sequence[int] | None = None
    init_seed: int = 0

    def __post_init__(self) -> None:
        # tuples: a spec is a value (hashable, equal when its settings are), whatever sequence was passed
        object.__setattr__(self, "folds", _int_tuple(self.folds))
        object.__setattr__(self, "splits", tuple(self.splits))
        if self.pool_shape is not None:
            object.__setattr__(self, "pool_shape", _int_tuple(self.pool_shape))

    @property
    def clip_spec(self) -> ClipSpec:
        """The clip geometry (frames per clip, frame rate) as the decoder takes it."""
        return ClipSpec(num_frames=self.num_frames, target_fps=self.target_fps)


@dataclass(frozen=True)
class BuildOptions:
    """How one build runs; nothing here enters the cache key.

    ``batch_size``: clips per encoder call, within one video. ``num_workers``: decode worker
    processes. ``device``: ``"auto"`` (CUDA when there) or a torch device. ``threads``: torch
    intra-op threads while encoding (CPU float results depend on it; torchrun sets 1); None on CPU
    is the cores left after ``num_workers``, at most torch's default. ``preprocess``: ``"workers"``
    (CPU, in the decode workers), ``"device"`` (on the encoder's device) or ``"auto"`` (workers
    for a CPU encoder, else device). ``num_shards``/``shard_index``: this process's share without
    torchrun. ``retry_failed``: decode recorded failures again, even after the merge.
    ``replace_stale``: build a new cache beside one of another key and swap it in when finished
    (:mod:`lib.cache.replace`); otherwise that is a StaleCacheError naming the differences.
    ``content_hash``: also record each source video's SHA-256, so a copied or touched file is
    recognised as unchanged and ``verify --sources`` checks content. ``merge``: pack the cache
    once every shard is done. ``progress``: show a progress bar. ``wait_for_others``: wait for the
    videos another live build on the same folder holds (taking over those whose build dies), so
    the build returns with the cache finished; otherwise they are left to it and the build
    returns unfinished (the notebooks wait; the CLI leaves them, saying so).
    """

    batch_size: int = 8
    num_workers: int = 2
    device: str = "auto"
    threads: int | None = None
    preprocess: str = "auto"
    num_shards: int = 1
    shard_index: int = 0
    retry_failed: bool = False
    replace_stale: bool = False
    content_hash: bool = False
    merge: bool = True
    progress: bool = True
    wait_for_others: bool = False


DEFAULT_BUILD_OPTIONS = BuildOptions()
