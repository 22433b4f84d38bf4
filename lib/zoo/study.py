"""The zoo study (notebook 08): the same heads on the latents of every VAE, against their cost.

Members are VAE sources (:func:`zoo_members`): the shipped stand-in or any Reducio source, any
``diffusers:`` source, tiny random-init instances of the adapters (:mod:`lib.zoo.tiny`, labelled
``random-init`` everywhere: they check the plumbing, they answer nothing), and the pooled-pixels
control. Every member's cache is built with the same dataset selection, clips and spatial policy
(:func:`build_zoo_caches`), so rows differ only in the encoder. Heads:

* ``linear_probe`` - the fixed protocol of :mod:`lib.vae.probe` (multinomial logistic regression
  on standardised latents, L2 fixed, no tuning) on each video's centre clip, fitted on train,
  scored on val and test;
* any registry model (``conv3d_ours``, ``attentive_probe``, ...) trained by
  :func:`lib.classify.views.train_models` into ``<run>/<member>/<model>/seed<k>/`` (selection on
  val, test scored once).

Costs per member (:func:`member_costs`): stored bytes per clip (float16), encode GFLOPs per clip
counted on the instance at the study's clip size, encoder parameters, and encode clips/s as the
cache build measured it on this machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from lib.cache import BuildOptions, CacheSpec, load_split, open_cache
from lib.cache.encoders import POOLED_PIXELS
from lib.cache.report import build_study_caches, cache_paths
from lib.zoo.sources import DIFFUSERS_PREFIX

LINEAR_PROBE = "linear_probe"
PRETRAINED, RANDOM_INIT, PIXEL_CONTROL = "pretrained", "random-init (plumbing check)", "pixel control"


@dataclass(frozen=True)
class ZooMember:
    """One row of the zoo: ``name`` labels it and names its cache; ``kind`` says what it can show."""

    name: str
    vae_source: str
    kind: str


def _label(source: str) -> str:
    from lib.zoo.adapters import ADAPTERS

    if source in ("", "standin"):
        return "reducio-standin"
    if source.startswith(DIFFUSERS_PREFIX):
        spec = source[len(DIFFUSERS_PREFIX):].split("@")[0]
        by_repo = {a.repo: n for n, a in ADAPTERS.items()}
        return by_repo.get(spec, Path(spec).name.replace("/", "-"))
    return Path(source).stem.replace(":", "-") or "vae"


def zoo_members(vaes: Sequence[str], tiny: Sequence[str], *, tiny_root: str | os.PathLike[str],
                pooled_pixels: bool = True, tiny_seed: int = 0) -> list[ZooMember]:
    """The members of a zoo study: the sources ``vaes`` (pretrained), the tiny random-init
    adapters ``tiny`` (written under ``tiny_root``), then the pooled-pixels control."""
    from lib.zoo.tiny import write_tiny_vae

    members = [ZooMember(_label(s), s, PRETRAINED) for s in vaes]
    for name in tiny:
        folder = write_tiny_vae(name, Path(tiny_root) / name, seed=tiny_seed)
        members.append(ZooMember(f"{name}-random", f"{DIFFUSERS_PREFIX}{folder}", RANDOM_INIT))
    if pooled_pixels:
        members.append(ZooMember("pooled-pixels", POOLED_PIXELS, PIXEL_CONTROL))
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"zoo members need distinct names, got {names}")
    return members


def build_zoo_caches(members: Sequence[ZooMember], *, data_root: str | os.PathLike[str], cache_prefix: str,
                     fold: int, short_side: int, crop: Sequence[int], options: BuildOptions,
                     **spec_fields: Any) -> dict[str, Path]:
    """Build (or resume) every member's cache ``data/caches/<cache_prefix>-<member>/latent``: the
    same dataset selection (``fold``), clips and spatial policy (resize the short side to
    ``short_side``, centre crop ``crop``) for all, and the further :class:`~lib.cache.CacheSpec`
    fields ``spec_fields`` (``val_fraction``, ``val_seed``, ``clip_mode``, ``dtype``, ...); the
    pixel control is the first VAE cache's pooled pixels. Returns ``{member: cache folder}``."""
    from lib.data.spatial import CropPolicy
    from lib.vae.local import resolve_vae_source

    spec = CacheSpec(data_root=data_root, vae_source="", folds=(fold,),
                     spatial=CropPolicy(short_side=short_side, crop=tuple(crop)), **spec_fields)
    caches: dict[str, Path] = {}
    control = next((x for x in members if x.kind == PIXEL_CONTROL), None)
    for i, m in enumerate(x for x in members if x.kind != PIXEL_CONTROL):
        name = f"{cache_prefix}-{m.name}"
        member_spec = replace(spec, vae_source=resolve_vae_source(m.vae_source, data_root=data_root))
        build_study_caches(member_spec, cache_name=name, options=options, pooled_pixels=control is not None and i == 0)
        caches[m.name] = cache_paths(name)[0]
        if control is not None and i == 0:
            caches[control.name] = cache_paths(name)[1]
    return caches


def _centre_clips(cache_dir: Path, split: str, fold: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents (V, ...), labels (V,)) of each video's centre clip (the ``(n - 1) // 2``-th)."""
    clips = load_split(cache_dir, split, fold=fold)
    rows = []
    for video in torch.unique(clips.video_index):
        idx = torch.nonzero(clips.video_index == video).flatten()
        rows.append(int(idx[(len(idx) - 1) // 2]))
    rows_t = torch.tensor(rows)
    return clips.latents[rows_t].float(), clips.labels[rows_t]


def linear_probe_scores(cache_dir: Path, *, fold: int = 1) -> dict[str, float]:
    """Val and test accuracy of the fixed-protocol linear probe (module docstring)."""
    from lib.vae.probe import linear_probe

    train = _centre_clips(cache_dir, "train", fold)
    out = {}
    for split in ("val", "test"):
        held = _centre_clips(cache_dir, split, fold)
        out[split] = linear_probe(train[0], train[1], held[0], held[1]).val_accuracy
    return out


def train_heads(members: Sequence[ZooMember], caches: Mapping[str, Path], heads: Sequence[str], *, fold: int,
                run: Any, **train_options: Any) -> dict[str, dict[str, Any]]:
    """``{member: {head: result}}``: the linear probe's scores, and each registry head's
    :class:`~lib.classify.experiment.ExperimentResult`, trained by
    :func:`lib.classify.views.train_models` with ``train_options`` (``seeds``, ``train_config``,
    ``model_overrides``, ``origin``, ``jobs``, ``threads``) into ``<run>/<member>/``."""
    from lib.classify import views
    from lib.runs import RunDir

    models = [h for h in heads if h != LINEAR_PROBE]
    out: dict[str, dict[str, Any]] = {}
    for m in members:
        row: dict[str, Any] = {}
        if LINEAR_PROBE in heads:
            row[LINEAR_PROBE] = linear_probe_scores(caches[m.name], fold=fold)
        if models:
            row.update(views.train_models(models, cache_dir=caches[m.name], fold=fold, run=RunDir(run.path / m.name),
                                          **train_options))
        out[m.name] = row
    return out


def member_costs(members: Sequence[ZooMember], caches: Mapping[str, Path], *, clip_shape: tuple[int, int, int, int],
                 data_root: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Per member: latent shape, bytes/clip (float16), encoder parameters, encode GFLOPs of one
    ``clip_shape`` (3, T, H, W) clip, and encode clips/s of its build."""
    from torch.utils.flop_counter import FlopCounterMode

    from lib.cache.encoders import make_encoder
    from lib.vae.local import resolve_vae_source
    from lib.zoo.cost import DECODER_PREFIXES

    out: dict[str, dict[str, Any]] = {}
    for m in members:
        cache = open_cache(caches[m.name])
        shape = tuple(cache.latent_shape)
        encoder = make_encoder(resolve_vae_source(m.vae_source, data_root=data_root))
        with FlopCounterMode(display=False) as counter:
            encoder.encode(torch.zeros(1, *clip_shape), seeds=[0])
        module = getattr(encoder, "model", None) or getattr(encoder, "vae", None)
        params = 0 if module is None else sum(
            p.numel() for n, p in module.named_parameters() if not n.startswith(DECODER_PREFIXES))
        per_clip = cache.encode_seconds_per_clip
        out[m.name] = {"latent_shape": list(shape), "bytes_per_clip": int(torch.tensor(shape).prod()) * 2,
                       "encode_gflops": counter.get_total_flops() / 1e9, "params": params,
                       "encode_clips_per_s": 1.0 / per_clip if per_clip else None}
    return out
