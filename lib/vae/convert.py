"""Convert a Reducio checkpoint into our self-describing ``.safetensors`` (``python -m lib.vae convert``).

Why: the released ``.ckpt`` is a 1.75 GB float32 pickle holding the whole model. Classification
only needs ``encoder_3d`` + ``quant_conv`` (142 M parameters), so ``--parts encoder --dtype fp16``
gives a ~285 MB file that loads without pickle (no code can run), memory-maps, and carries its
config, so ``load_reducio(DST)`` needs no other argument.

What is written: exactly the state dict of the model built for ``--parts`` (every key checked
against the config while loading; ``loss.*`` and, for ``--parts encoder``, decoder keys are
dropped), floating tensors cast to ``--dtype``, and under the metadata key
:data:`lib.vae.loading.METADATA_KEY` a JSON object with the official ``model.params``, ``parts``,
``dtype``, ``preset``, the source file name and the SHA-256 of the source file (layout in
:func:`lib.vae.saving.build_metadata`). The file is written to a temporary name in the
destination folder and renamed, so an interrupted run never leaves a partial file behind.

Usage::

    python -m lib.vae convert checkpoints/reducio-ft4-fs32-attn23.ckpt \\
        checkpoints/reducio-ft4-encoder-fp16.safetensors --parts encoder --dtype fp16

``SRC`` is anything :func:`lib.vae.loading.load_reducio` accepts: a local ``.ckpt``/``.pt``/
``.pth``/``.safetensors``, an ``hf://microsoft/Reducio-VAE/<file>`` reference or a preset name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lib.vae.loading import (
    PARTS,
    SAFETENSORS_SUFFIX,
    CheckpointError,
    dtype_name,
    file_sha256,
    load_reducio,
    parse_dtype,
    resolve_checkpoint,
    save_reducio,
)

DTYPE_CHOICES: tuple[str, ...] = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_checkpoint` wrote (also printed as JSON by the CLI)."""

    source: str
    destination: str
    parts: str
    dtype: str
    preset: str | None
    num_tensors: int
    num_parameters: int
    size_bytes: int
    source_size_bytes: int
    source_sha256: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def convert_checkpoint(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    parts: str = "all",
    dtype: torch.dtype | str = torch.float32,
    variant: str | None = None,
    config: Any = None,
    overwrite: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_globals: Sequence[str] = (),
) -> ConversionResult:
    """Load ``source`` strictly (as :func:`load_reducio` does) and write it as ``destination``.

    Args:
        source: file, ``hf://`` reference or preset name (see :func:`load_reducio`).
        destination: the ``.safetensors`` to write (its folder is created if needed).
        parts: ``"all"`` or ``"encoder"`` (``encoder_3d`` + ``quant_conv`` only).
        dtype: dtype of the floating tensors written (``fp32``/``fp16``/``bf16`` or a torch dtype).
        variant, config: as in :func:`load_reducio`, for sources that do not name their config.
        overwrite: replace an existing ``destination`` (otherwise that is an error).
        cache_dir: Hugging Face cache folder for ``hf://`` sources.
        allow_globals: as in :func:`load_reducio`: denylisted objects a trusted ``.ckpt`` may carry
            beside its state dict (inert placeholders, skipped).
    """
    start = time.perf_counter()
    target = parse_dtype(dtype)
    if parts not in PARTS:
        raise ValueError(f"parts must be one of {PARTS}, got {parts!r}")
    dst = Path(destination).expanduser()
    if dst.suffix.lower() != SAFETENSORS_SUFFIX:
        raise CheckpointError(
            dst,
            f"the destination must be a {SAFETENSORS_SUFFIX} file",
            f"name it e.g. {dst.with_suffix(SAFETENSORS_SUFFIX).name}",
        )
    src = resolve_checkpoint(source, parts=parts, dtype=target, cache_dir=cache_dir)
    if dst.exists() and dst.resolve() == src.resolve():
        raise CheckpointError(dst, "the destination is the source file", "write to another file name")
    if dst.exists() and not overwrite:
        raise CheckpointError(dst, "already exists", "pass --overwrite (overwrite=True) or choose another name")
    # Hash first: a source that changes while we convert would make the recorded digest a lie.
    digest = file_sha256(src)
    # Loading straight into the target dtype casts tensor by tensor (no full float32 copy).
    vae = load_reducio(src, variant=variant, parts=parts, dtype=target, config=config, allow_globals=allow_globals)
    info = vae.checkpoint_info
    # The training geometry (crop, stored frame size) travels with the weights: without it a locally
    # trained VAE would be fed the released model's 224x288 bucket (lib.vae.local.input_policy).
    kept = {k: info.metadata[k] for k in ("training",) if info.metadata and k in info.metadata}
    save_reducio(
        vae,
        dst,
        dtype=target,
        preset=info.preset,
        source_file=src.name,
        source_sha256=digest,
        extra=kept,
        overwrite=overwrite,
    )
    state = vae.state_dict()
    return ConversionResult(
        source=str(src),
        destination=str(dst),
        parts=parts,
        dtype=dtype_name(target),
        preset=info.preset,
        num_tensors=len(state),
        num_parameters=sum(t.numel() for t in state.values()),
        size_bytes=dst.stat().st_size,
        source_size_bytes=src.stat().st_size,
        source_sha256=digest,
        seconds=round(time.perf_counter() - start, 2),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.vae convert",
        description="Convert a Reducio-VAE checkpoint (.ckpt/.pt/.pth/.safetensors, hf://..., or a preset name) "
        "into a self-describing .safetensors that load_reducio() reads with no other argument.",
    )
    parser.add_argument(
        "source", help="SRC: checkpoint file, hf://microsoft/Reducio-VAE/<file>, or a preset name (ft4, ...)"
    )
    parser.add_argument("destination", help="DST: the .safetensors to write")
    parser.add_argument(
        "--parts",
        choices=PARTS,
        default="all",
        help="'encoder' keeps only encoder_3d + quant_conv (what latents need); default: all",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="fp32",
        help="dtype of the written weights (default fp32: exact; fp16 halves the size)",
    )
    parser.add_argument(
        "--variant", default=None, help="ft4 | ft2 | a preset name, for a source whose name/metadata does not tell"
    )
    parser.add_argument(
        "--config", default=None, help="a preset name or a .json/.yaml holding model.params (overrides everything else)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.add_argument("--cache-dir", default=None, help="Hugging Face cache folder (default: $HF_HOME/hub)")
    parser.add_argument(
        "--allow-global",
        action="append",
        default=[],
        metavar="NAME",
        help="for a trusted .ckpt: an object (dotted name, or 'module.' for a whole module) of the "
        "denylist of code-running globals (lib.vae.safe_pickle.DENIED_GLOBALS) that it may carry "
        "beside its state dict; it stays an inert placeholder and is skipped (repeatable)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry: prints one JSON object describing the written file; exit 1 on a checkpoint error."""
    args = build_parser().parse_args(argv)
    try:
        result = convert_checkpoint(
            args.source,
            args.destination,
            parts=args.parts,
            dtype=args.dtype,
            variant=args.variant,
            config=args.config,
            overwrite=args.overwrite,
            cache_dir=args.cache_dir,
            allow_globals=args.allow_global,
        )
    except (CheckpointError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_json(), indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m lib.vae convert` is the entry point
    raise SystemExit(main())
