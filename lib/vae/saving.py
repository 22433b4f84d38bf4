"""Writing our own ``.safetensors`` files: weights plus the config and provenance that
:func:`lib.vae.loading.load_reducio` reads back alone (no other file needed)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lib.vae.checkpoint_config import preset_of_params
from lib.vae.checkpoint_io import (
    METADATA_KEY,
    METADATA_VERSION,
    SAFETENSORS_SUFFIX,
    check_parts,
    dtype_name,
    parse_dtype,
)
from lib.vae.loading import CheckpointInfo, model_parts
from lib.vae.model import ReducioVAE


def build_metadata(
    vae: ReducioVAE,
    *,
    parts: str,
    dtype: torch.dtype,
    preset: str | None = None,
    source_file: str | None = None,
    source_sha256: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The safetensors metadata of our files: ``{"format": "pt", METADATA_KEY: <JSON>}``.

    The JSON object holds ``version`` (METADATA_VERSION), ``params`` (the official
    ``model.params`` dict, ``vae.config.to_params()``), ``parts`` (``all``/``encoder``), ``dtype``
    (``float32``/``float16``/``bfloat16``), ``preset`` (or null), ``source_file`` and
    ``source_sha256`` (of the file it was converted from, or null), ``torch`` (version),
    ``created_unix``, plus any ``extra`` entries (e.g. training provenance).
    """
    payload: dict[str, Any] = {
        "version": METADATA_VERSION,
        "params": vae.config.to_params(),
        "parts": check_parts(parts),
        "dtype": dtype_name(dtype),
        "preset": preset,
        "source_file": source_file,
        "source_sha256": source_sha256,
        "torch": torch.__version__,
        "created_unix": int(time.time()),
    }
    if extra:
        clash = set(extra) & set(payload)
        if clash:
            raise ValueError(f"extra metadata may not overwrite {sorted(clash)}")
        payload.update(extra)
    return {"format": "pt", METADATA_KEY: json.dumps(payload, sort_keys=True)}


def save_reducio(
    vae: ReducioVAE,
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | str | None = None,
    preset: str | None = None,
    source_file: str | None = None,
    source_sha256: str | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``vae``'s weights and config as one ``.safetensors`` that :func:`load_reducio` reads alone.

    Only the model's own state dict is written (an encoder-only model gives an encoder-only file);
    floating tensors are cast to ``dtype`` (default: keep). Written to a temporary file in the same
    folder and renamed, so a crash never leaves a half-written file under the final name.
    """
    from safetensors.torch import save_file

    dst = Path(path)
    if dst.suffix.lower() != SAFETENSORS_SUFFIX:
        raise ValueError(f"{dst}: the output must end in {SAFETENSORS_SUFFIX}")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst}: already exists; pass overwrite=True (CLI: --overwrite) or choose another name")
    target = parse_dtype(dtype) if dtype is not None else None
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, t in vae.state_dict().items():
        t = t.detach().to("cpu")
        if target is not None and t.is_floating_point():
            t = t.to(target)
        ident = (t.untyped_storage().data_ptr(), t.storage_offset())
        if ident in seen:  # safetensors refuses aliased tensors; tied weights get their own copy
            t = t.clone()
        seen.add(ident)
        tensors[key] = t.contiguous()
    floating = {t.dtype for t in tensors.values() if t.is_floating_point()}
    stored_dtype = target or (floating.pop() if len(floating) == 1 else torch.float32)
    if preset is None:
        info = getattr(vae, "checkpoint_info", None)
        preset = info.preset if isinstance(info, CheckpointInfo) else preset_of_params(vae.config.to_params())
    metadata = build_metadata(
        vae,
        parts=model_parts(vae),
        dtype=stored_dtype,
        preset=preset,
        source_file=source_file,
        source_sha256=source_sha256,
        extra=extra,
    )
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        umask = os.umask(0)  # safetensors creates 0600 files; give the usual umask-based mode instead
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst
