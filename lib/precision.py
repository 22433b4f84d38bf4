"""How much the cache's compute dtype moves the study's numbers.

A latent cache is a function of its VAE, its clips and the arithmetic that encodes them. With the
VAE a fixed file and the clips fixed by the key, the arithmetic is what still differs between
machines: CPU bfloat16 autocast (the default study's cache dtype) rounds differently on other
CPUs and kernels, float32 far less. This module measures that spread on one split:

1. :func:`reencode_split` re-encodes the split's clips (all, or an evenly spread subset of
   videos) with the cache's own VAE, clip plan, spatial policy and batch size, once per compute
   dtype, through the build's own encoding path (:mod:`lib.cache.video_encoding`; each video is
   decoded once and fed to one encoder per dtype);
2. :func:`latent_differences` compares the encodings with each other and with the stored rows
   (which dtype the cache reproduces, bit for bit or not);
3. :func:`trained_seeds` finds the study's trained latent classifiers (``best.pt`` of every seed
   of notebooks 03-05 trained on this cache) and :func:`score_seeds` scores each fixed classifier
   on the stored rows and on every re-encoding, standardised exactly as in training (statistics
   of the cache's stored train split, :func:`lib.classify.data.standardize_splits`), so the
   differences are the dtype's alone; :func:`model_rows` aggregates them over seeds next to the
   seed spread of the study's own table.

Encodings are compared after the cast to the cache's storage dtype, as training reads them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from lib.cache.decode import DecodeSettings, iter_video_parts
from lib.cache.encoders import CHANNELS_LAST, POOLED_PIXELS, VaeClipEncoder
from lib.cache.errors import CacheError
from lib.cache.key import describe_differences, key_differences
from lib.cache.merge import STATS_DIR, read_manifest
from lib.cache.plan import VideoJob
from lib.cache.reader import Cache, VideoEntry, load_content_features, load_split, open_cache
from lib.cache.video_encoding import VideoEncoding
from lib.classify.checkpoint import BEST_NAME, load_checkpoint, load_model_weights
from lib.classify.config import TrainConfig
from lib.classify.data import TensorClips, standardize_splits
from lib.classify.metrics import video_level
from lib.classify.predict import evaluate
from lib.data.clips import ClipSpec

COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
STORED = "stored"  # the name of the cache's own rows among the inputs a classifier is scored on
CLASSIFIER_NOTEBOOKS = "0[345]_*"  # the study steps that train latent classifiers
PROGRESS_EVERY_S = 10.0
FALLBACK_BATCH_SIZE = 8  # what a build uses when it records no stats (BuildOptions' default)


@dataclass(frozen=True)
class ReencodeSpec:
    """What :func:`reencode_split` re-encodes: ``split`` of ``fold`` of the cache in ``cache_dir``.

    ``max_videos``: an evenly spread subset of the split's videos (None: all). ``batch_size``:
    clips per encoder call (None: the build's recorded one; float results depend on it).
    ``vae_source``: where the cache's VAE is now (None: the source its manifest records).
    ``progress``: where a progress line goes every few seconds (None: nowhere).
    """

    cache_dir: Path
    fold: int = 1
    split: str = "test"
    max_videos: int | None = None
    dtypes: tuple[str, ...] = COMPUTE_DTYPES
    batch_size: int | None = None
    vae_source: str | None = None
    progress: TextIO | None = None


@dataclass
class ReencodedSplit:
    """The re-encoded clips of one split, row for row with the stored ones.

    ``stored``: the cache's rows (storage dtype) per array name (``latent``, ``content`` when the
    cache has content features); ``encoded[dtype][name]``: the float32 encoder outputs;
    ``video_index``: each clip's position among ``video_ids`` (the selected videos).
    """

    cache: Cache
    video_ids: list[str]
    labels: torch.Tensor
    video_index: torch.Tensor
    stored: dict[str, torch.Tensor]
    encoded: dict[str, dict[str, torch.Tensor]]
    encode_seconds: dict[str, float]
    batch_size: int
    build_threads: int | None
    build_dtype: str
    fold: int = 1
    split: str = "test"

    @property
    def num_clips(self) -> int:
        return int(self.labels.shape[0])

    @property
    def storage_dtype(self) -> torch.dtype:
        return self.stored["latent"].dtype

    def as_stored(self, dtype: str, name: str) -> torch.Tensor:
        """The ``dtype`` encoding of array ``name`` cast to the storage dtype (what training reads)."""
        return self.encoded[dtype][name].to(self.storage_dtype)


def recorded_build_settings(cache_dir: Path) -> tuple[int | None, int | None]:
    """``(batch size, torch threads)`` of the cache's first recorded build process (None when it
    recorded no stats): float results of the encoder depend on both."""
    for path in sorted((cache_dir / STATS_DIR).glob("run-*.json")):
        try:
            stats = json.loads(path.read_text())
            return int(stats["batch_size"]), (int(stats["threads"]) if stats.get("threads") else None)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None, None


def cache_encoders(cache: Cache, dtypes: Sequence[str], vae_source: str | None = None) -> dict[str, VaeClipEncoder]:
    """One CPU encoder per compute dtype, each the VAE the cache was built with (same weights and
    config by the key; CacheError otherwise) in the build's memory layout, storing what the cache
    stores (latents, content)."""
    if cache.source_kind == POOLED_PIXELS:
        raise CacheError(cache.path, "is the pooled-pixels control: it has no encoder arithmetic to compare",
                         "pass the study's latent cache (data/caches/<name>/latent)")
    outputs = cache.key["outputs"]
    recorded_encoder = read_manifest(cache.path)["provenance"]["encoder"]
    source = vae_source or recorded_encoder["source"]
    channels_last = recorded_encoder.get("memory_format") == CHANNELS_LAST  # absent: built contiguous
    recorded = {k: v for k, v in cache.key["encoder"].items() if k != "compute_dtype"}
    encoders = {}
    for dtype in dtypes:
        encoder = VaeClipEncoder(source, device="cpu", dtype=dtype, layer_norm=outputs["layer_norm"],
                                 content_features=outputs["content_features"], channels_last=channels_last)
        differences = key_differences(recorded, {k: v for k, v in encoder.key().items() if k != "compute_dtype"})
        if differences:
            raise CacheError(cache.path, f"was built with another VAE than {source!r} "
                             f"({describe_differences(differences)})",
                             "pass the weights the cache was built with (--vae)")
        encoders[dtype] = encoder
    return encoders


def spread_subset(videos: Sequence[VideoEntry], max_videos: int | None) -> list[VideoEntry]:
    """``max_videos`` of ``videos`` evenly spread over the list (every class and group of a split
    list sorted by class), in list order; all of them when None or not fewer."""
    if max_videos is None or max_videos >= len(videos):
        return list(videos)
    if max_videos < 1:
        raise ValueError(f"max_videos must be at least 1, got {max_videos}")
    picks = np.unique(np.linspace(0, len(videos) - 1, max_videos).round().astype(int))
    return [videos[i] for i in picks]


def _job(entry: VideoEntry, position: int) -> VideoJob:
    return VideoJob(position, entry.id, entry.path, entry.class_name, entry.label, entry.group, entry.clip_number,
                    entry.source_bytes, -1)


def _encode_video(entry: VideoEntry, position: int, settings: DecodeSettings, encoders: dict[str, VaeClipEncoder],
                  batch_size: int) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, float]]:
    """One video decoded once and encoded by every encoder: ``(outputs per dtype, seconds per dtype)``."""
    job = _job(entry, position)
    states = {dtype: VideoEncoding(job, settings.spatial, encoder, batch_size=batch_size, sample_seed=0)
              for dtype, encoder in encoders.items()}
    for part in iter_video_parts(job, settings):
        if not part["ok"]:
            raise CacheError(entry.path, f"cannot be decoded again ({part['error_type']}: {part['error']})",
                             "restore the dataset the cache was built from (python -m lib.cache verify --sources)")
        for state in states.values():
            state.add(part)
        if part["last"]:
            break
    outputs = {dtype: state.finish() for dtype, state in states.items()}
    clips = tuple(tuple(c[2]) for c in next(iter(states.values())).clips)
    if clips != entry.clip_frame_indices:
        raise CacheError(entry.path, "decodes to other clips than the cache recorded",
                         "restore the dataset the cache was built from, or rebuild the cache")
    return outputs, {dtype: state.encode_seconds for dtype, state in states.items()}


def reencode_split(spec: ReencodeSpec) -> ReencodedSplit:
    """Re-encode ``spec``'s videos once per compute dtype (module doc), with a progress line."""
    cache = open_cache(spec.cache_dir)
    videos = spread_subset(cache.videos(spec.split, spec.fold), spec.max_videos)
    if not videos:
        raise CacheError(cache.path, f"has no cached {spec.split} videos in fold {spec.fold}",
                         f"build the cache with the {spec.split} split of fold {spec.fold}")
    recorded_batch, build_threads = recorded_build_settings(cache.path)
    batch_size = spec.batch_size or recorded_batch or FALLBACK_BATCH_SIZE
    encoders = cache_encoders(cache, spec.dtypes, spec.vae_source)
    clips = cache.key["clips"]
    settings = DecodeSettings(ClipSpec(num_frames=clips["num_frames"], target_fps=clips["target_fps"]),
                              clips["mode"], clips.get("clip_seed") or 0, cache.spatial_policy())
    pieces: dict[str, dict[str, list[torch.Tensor]]] = {dtype: {} for dtype in spec.dtypes}
    seconds = dict.fromkeys(spec.dtypes, 0.0)
    start = last_line = time.perf_counter()
    done_clips = 0
    for position, entry in enumerate(videos):
        outputs, taken = _encode_video(entry, position, settings, encoders, batch_size)
        for dtype, arrays in outputs.items():
            seconds[dtype] += taken[dtype]
            for name, value in arrays.items():
                pieces[dtype].setdefault(name, []).append(value)
        done_clips += entry.num_clips
        now = time.perf_counter()
        if spec.progress is not None and (now - last_line >= PROGRESS_EVERY_S or position + 1 == len(videos)):
            last_line = now
            rate = done_clips / (now - start)
            left = sum(v.num_clips for v in videos[position + 1 :]) / rate if rate else math.nan
            print(f"re-encode {spec.split}: {position + 1}/{len(videos)} videos, {done_clips} clips, "
                  f"{rate:.2f} clips/s, ~{left:.0f} s left", file=spec.progress, flush=True)
    rows = np.concatenate([np.arange(v.row_start, v.row_start + v.num_clips, dtype=np.int64) for v in videos])
    stored = {name: cache.read_rows(name, rows, mmap=False) for name in pieces[spec.dtypes[0]]}
    return ReencodedSplit(
        cache=cache, video_ids=[v.id for v in videos],
        labels=torch.tensor(np.repeat([v.label for v in videos], [v.num_clips for v in videos]), dtype=torch.long),
        video_index=torch.from_numpy(np.repeat(np.arange(len(videos)), [v.num_clips for v in videos])),
        stored=stored, encoded={d: {n: torch.cat(p) for n, p in arrays.items()} for d, arrays in pieces.items()},
        encode_seconds=seconds, batch_size=batch_size, build_threads=build_threads,
        build_dtype=str(cache.key["encoder"].get("compute_dtype", "float32")), fold=spec.fold, split=spec.split)


def relative_rms(value: torch.Tensor, reference: torch.Tensor) -> float:
    """``rms(value - reference) / rms(reference)``, in float64."""
    a, b = value.double(), reference.double()
    scale = b.square().mean().sqrt().item()
    return (a - b).square().mean().sqrt().item() / scale if scale > 0 else math.nan


def latent_differences(split: ReencodedSplit) -> list[dict[str, Any]]:
    """Per stored array: the relative RMS difference of the bfloat16 (or second) encoding from the
    float32 (first) one, and for every dtype whether its encoding, cast to the storage dtype, is
    bit-identical to the stored rows (and its relative RMS from them); ``matches`` names the
    bit-identical dtypes, or the nearest one."""
    dtypes = list(split.encoded)
    rows = []
    for name, stored in split.stored.items():
        row: dict[str, Any] = {"array": name, "values_per_clip": int(stored[0].numel()), "clips": split.num_clips}
        if len(dtypes) > 1:
            reference, other = split.encoded[dtypes[0]][name], split.encoded[dtypes[1]][name]
            row[f"rel_rms_{dtypes[1]}_vs_{dtypes[0]}"] = relative_rms(other, reference)
            row[f"max_abs_{dtypes[1]}_vs_{dtypes[0]}"] = (other - reference).abs().max().item()
        distance = {}
        for dtype in dtypes:
            cast = split.as_stored(dtype, name)
            row[f"{dtype}_bit_identical"] = bool(torch.equal(cast, stored))
            distance[dtype] = row[f"rel_rms_{dtype}_vs_stored"] = relative_rms(cast, stored)
        identical = [d for d in dtypes if row[f"{d}_bit_identical"]]
        nearest = min(dtypes, key=lambda d: distance[d])
        row["matches"] = " and ".join(identical) + " (bit-identical)" if identical else f"{nearest} (nearest)"
        rows.append(row)
    return rows


@dataclass(frozen=True)
class TrainedSeed:
    """One trained seed of a study's classifier: its folder and what rebuilding it needs
    (``params``: the seed's config.json params; ``table_top1``: its recorded test video top-1)."""

    notebook: str
    model: str
    seed: int
    path: Path
    params: dict[str, Any] = field(repr=False)
    table_top1: float

    @property
    def input_kind(self) -> str:
        return str(self.params.get("data", {}).get("input_kind", "latent"))


def trained_seeds(study_dir: Path, key_hash: str) -> tuple[list[TrainedSeed], list[str]]:
    """Every finished seed of notebooks 03-05 under ``study_dir`` with a ``best.pt``, trained on
    the cache of ``key_hash`` (its latents); and, for the others, ``"<folder>: <why skipped>"``."""
    found, skipped = [], []
    for best in sorted(study_dir.glob(f"{CLASSIFIER_NOTEBOOKS}/*/seed*/{BEST_NAME}")):
        folder = best.parent
        where = str(folder.relative_to(study_dir))
        try:
            params = json.loads((folder / "config.json").read_text())["params"]
            metrics = json.loads((folder / "metrics.json").read_text())
            table_top1 = float(metrics["splits"]["test"]["video"]["top1"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            skipped.append(f"{where}: no finished config.json/metrics.json ({type(err).__name__}: {err})")
            continue
        data = params.get("data", {})
        if data.get("cache_key_hash") != key_hash or data.get("cache_kind", "latent") != "latent":
            skipped.append(f"{where}: trained on another cache or array ({data.get('cache_dir')}, "
                           f"{data.get('cache_kind')})")
            continue
        found.append(TrainedSeed(folder.parent.parent.name, str(params["model"]), int(params["seed"]), folder,
                                 params, table_top1))
    return found, skipped


def _classifier(seed: TrainedSeed, num_classes: int) -> torch.nn.Module:
    """The seed's model rebuilt from its config and loaded with its selected (best.pt) weights."""
    from lib.models import build_model

    shape = tuple(seed.params["input_shapes"][0])
    model = build_model(seed.model, num_classes=num_classes, input_shape=shape,  # type: ignore[arg-type]
                        **dict(seed.params.get("model_overrides") or {}))
    best = load_checkpoint(seed.path / BEST_NAME)
    load_model_weights(model, best["model"], path=seed.path / BEST_NAME)
    return model


class ScoringInputs:
    """The standardised test inputs of every variant (stored rows, each dtype), built once per
    (standardisation, content) combination from the cache's stored train split."""

    def __init__(self, split: ReencodedSplit) -> None:
        self.split = split
        self._built: dict[tuple[str, bool], dict[str, TensorClips]] = {}

    def variants(self, mode: str, with_content: bool) -> dict[str, TensorClips]:
        if (mode, with_content) not in self._built:
            self._built[mode, with_content] = self._build(mode, with_content)
        return self._built[mode, with_content]

    def _build(self, mode: str, with_content: bool) -> dict[str, TensorClips]:
        split, names = self.split, ["latent", "content"] if with_content else ["latent"]
        if with_content and "content" not in split.stored:
            raise CacheError(split.cache.path, "has no content features, which a latent+content model needs",
                             "pass the cache the model was trained on")
        cache_dir = split.cache.path
        stored_train = load_split(cache_dir, "train", split.fold)
        train_inputs = [stored_train.latents]
        if with_content:
            train_inputs.append(load_content_features(cache_dir, "train", split.fold))
        train = TensorClips(train_inputs, stored_train.labels, split="train")
        variants = {STORED: [split.stored[n] for n in names]}
        variants.update({dtype: [split.as_stored(dtype, n) for n in names] for dtype in split.encoded})
        sources = [TensorClips(inputs, split.labels, split.video_index, split=split.split)
                   for inputs in variants.values()]
        _, standardized = standardize_splits(train, sources, mode)
        return {name: source for name, source in zip(variants, standardized) if source is not None}


def score_seeds(seeds: Sequence[TrainedSeed], split: ReencodedSplit, *, progress: TextIO | None = None,
                ) -> list[dict[str, Any]]:
    """Per seed: test video top-1 on the stored rows and on every re-encoding, and the number of
    videos whose predicted class differs between the first two dtypes."""
    inputs, num_classes = ScoringInputs(split), split.cache.num_classes
    dtypes = list(split.encoded)
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        model = _classifier(seed, num_classes)
        config = TrainConfig.from_mapping(seed.params["train_config"])
        variants = inputs.variants(config.input_standardize, seed.input_kind == "latent+content")
        row: dict[str, Any] = {"notebook": seed.notebook, "model": seed.model, "seed": seed.seed,
                               "table_top1": seed.table_top1, "videos": len(split.video_ids)}
        predicted = {}
        for name, source in variants.items():
            preds = evaluate(model, source, batch_size=config.eval_batch_size or config.batch_size,
                             device=torch.device("cpu"), amp_dtype=config.amp_dtype(torch.device("cpu")))
            row[f"{name}_top1"] = preds.metrics(num_classes)["video"]["top1"]
            predicted[name] = video_level(preds.probs, preds.labels, preds.video_index)[0].argmax(dim=1)
        if len(dtypes) > 1:
            row["videos_flipped"] = int((predicted[dtypes[0]] != predicted[dtypes[1]]).sum())
        rows.append(row)
        if progress is not None:
            print(f"scored {seed.notebook}/{seed.model}/seed{seed.seed} in {time.perf_counter() - start:.1f} s",
                  file=progress, flush=True)
    return rows


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof 1, as the study's table; None for one value)."""
    t = torch.tensor(list(values), dtype=torch.float64)
    return t.mean().item(), (t.std(correction=1).item() if len(values) > 1 else None)


def model_rows(per_seed: Sequence[dict[str, Any]], dtypes: Sequence[str] = COMPUTE_DTYPES) -> list[dict[str, Any]]:
    """Per (notebook, model): means over seeds of every top-1, the second dtype's difference from
    the first (mean, and the largest per seed in magnitude), the table's test mean and seed std."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in per_seed:
        groups.setdefault((row["notebook"], row["model"]), []).append(row)
    out = []
    for (notebook, model), rows in sorted(groups.items()):
        table_mean, table_std = _mean_std([r["table_top1"] for r in rows])
        entry: dict[str, Any] = {"model": model, "notebook": notebook, "seeds": [r["seed"] for r in rows],
                                 "videos": rows[0]["videos"], "table_top1_mean": table_mean,
                                 "table_top1_std": table_std}
        for name in (STORED, *dtypes):
            entry[f"{name}_top1_mean"] = _mean_std([r[f"{name}_top1"] for r in rows])[0]
        if len(dtypes) > 1:
            diffs = [r[f"{dtypes[1]}_top1"] - r[f"{dtypes[0]}_top1"] for r in rows]
            entry["diff_mean"] = _mean_std(diffs)[0]
            entry["diff_max_abs_seed"] = max(abs(d) for d in diffs)
            entry["videos_flipped"] = sum(r["videos_flipped"] for r in rows)
        out.append(entry)
    return out

