"""The cache key: everything that decides what a cached latent means, and how two keys differ.

A key is a JSON-able dict of sections (``encoder``, ``outputs``, ``clips``, ``spatial``,
``dataset``, ``format``); :func:`key_hash` is the SHA-256 of its canonical JSON (sorted keys, no
whitespace), stored in every entry and in the finished index. Opening or extending a cache with a
different key raises :class:`~lib.cache.errors.StaleCacheError` listing the dotted fields that
differ (:func:`key_differences`), never a silent reuse.

VAE weights enter the key as :func:`weights_sha256`: a hash over the state-dict tensors the
cache actually uses (name, dtype, shape and raw bytes, in sorted key order), so the same weights
in a ``.ckpt``, a converted ``.safetensors`` or in memory give the same hash, and any changed
weight gives another.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

FORMAT_VERSION = 1  # bump when the meaning of stored arrays or entries changes


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, tuples as lists."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def key_hash(key: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the key's canonical JSON."""
    return hashlib.sha256(canonical_json(key).encode("ascii")).hexdigest()


def weights_sha256(module: torch.nn.Module, prefixes: Sequence[str] | None = None) -> str:
    """SHA-256 over the state-dict tensors of ``module`` whose names start with one of ``prefixes``
    (all when None): for each, in sorted name order, the name, dtype, shape and raw bytes."""
    digest = hashlib.sha256()
    state = module.state_dict()
    names = sorted(n for n in state if prefixes is None or n.startswith(tuple(prefixes)))
    if not names:
        raise ValueError(f"no state-dict tensors with prefixes {prefixes!r} to hash")
    for name in names:
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks (a source video's content hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_fingerprint(videos: Iterable[tuple[str, int]]) -> str:
    """SHA-256 over ``(relative path, size in bytes)`` of the selected source videos (sorted).

    Sizes, not modification times: a dataset copied to another disk keeps its key, while a video
    re-downloaded or re-encoded to different bytes almost always changes size. (Entries also
    record the modification time, so a resumed build redoes a video whose file changed.)
    """
    digest = hashlib.sha256()
    for relpath, size in sorted(videos):
        digest.update(f"{relpath}\t{size}\n".encode())
    return digest.hexdigest()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: list(value) if isinstance(value, tuple) else value}


def key_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted.field, stored value, wanted value)`` for every field that differs (missing: None)."""
    a = _flatten(json.loads(canonical_json(stored)))
    b = _flatten(json.loads(canonical_json(wanted)))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def describe_differences(differences: Sequence[tuple[str, Any, Any]], *, limit: int = 8) -> str:
    """``field: cache has X, asked for Y; ...`` (long values shortened)."""

    def short(v: Any) -> str:
        text = json.dumps(v) if not isinstance(v, str) else repr(v)
        return text if len(text) <= 80 else text[:77] + "..."

    parts = [f"{field}: cache has {short(old)}, asked for {short(new)}" for field, old, new in differences[:limit]]
    more = len(differences) - limit
    return "; ".join(parts) + (f"; (+{more} more)" if more > 0 else "")
