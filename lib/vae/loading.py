"""Load and save Reducio-VAE weights, strictly: every key, shape, dtype and value is checked.

``load_reducio(source, ...)`` returns a :class:`~lib.vae.model.ReducioVAE` in eval mode with
``requires_grad`` off. Where the parts live:

- :mod:`lib.vae.checkpoint_source`: ``source`` -> local file (a path, ``hf://owner/repo[@rev]/file``,
  a preset name such as ``ft4``/``ft2`` looked up in ``checkpoints/`` and else fetched, ``standin``);
- :mod:`lib.vae.checkpoint_io`: one reader per format (``.safetensors`` with our metadata under
  :data:`METADATA_KEY`; ``torch.save`` files through the restricted unpickler of
  :mod:`lib.vae.safe_pickle`, which rebuilds tensors and turns any other object into an inert
  placeholder, so Lightning-style ``.ckpt`` files load as they are and no code of a file runs);
- :mod:`lib.vae.checkpoint_config`: which config builds the model (``config=``, the file's
  metadata, ``variant=``, the file name, the state-dict shapes);
- this module: building the model and filling it, and writing our ``.safetensors``.

Strictness: ``loss.*`` keys (training-only) are skipped. Any other missing or unexpected key, or
a shape mismatch, raises :class:`CheckpointMismatchError` listing them; a weight with a
non-floating dtype where the model has a floating one raises :class:`CheckpointDtypeError`; NaN
or inf in a weight (in the file or after the cast to ``dtype``) raises
:class:`NonFiniteCheckpointError`. With ``parts="encoder"`` only ``encoder_3d.*`` and
``quant_conv.*`` are built and loaded (decoder-side keys are never read); ``parts=None`` loads
what the file holds (metadata ``parts``, or whether decoder-side keys are present), and
``parts="all"`` on an encoder-only file is an error.

Memory: the model is built on the meta device and the file's tensors are assigned into it
(``load_state_dict(assign=True)``), each cast to ``dtype`` / moved to ``device`` one at a time, so
the 1.75 GB official file never exists twice in memory (it is memory-mapped, not read).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lib.env_check import REDUCIO_CHECKPOINT_FILES, REDUCIO_HF_REPO
from lib.vae.checkpoint_config import (
    VARIANT_ALIASES,
    ConfigLike,
    ResolvedConfig,
    canonical_preset,
    coerce_config,
    infer_preset,
    match_presets,
    preset_from_filename,
    resolve_config,
)
from lib.vae.checkpoint_errors import (
    CheckpointConfigError,
    CheckpointDownloadError,
    CheckpointDtypeError,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NonFiniteCheckpointError,
    UnsafeCheckpointError,
)
from lib.vae.checkpoint_io import (
    DDP_PREFIX,
    DECODER_PREFIXES,
    DTYPE_NAMES,
    ENCODER_PREFIXES,
    HF_REPO_URL,
    LOADABLE_SUFFIXES,
    METADATA_KEY,
    METADATA_VERSION,
    PARTS,
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIX,
    TRAINING_ONLY_PREFIXES,
    Reader,
    check_parts,
    dtype_name,
    file_parts,
    file_sha256,
    head,
    open_checkpoint,
    parse_dtype,
    prefix_counts,
)
from lib.vae.checkpoint_source import (
    OFFICIAL_FILES,
    find_named_checkpoint,
    resolve_checkpoint,
)
from lib.vae.model import ReducioVAE

__all__ = [
    "DDP_PREFIX",
    "DECODER_PREFIXES",
    "DTYPE_NAMES",
    "ENCODER_PREFIXES",
    "HF_REPO_URL",
    "LOADABLE_SUFFIXES",
    "METADATA_KEY",
    "METADATA_VERSION",
    "OFFICIAL_FILES",
    "PARTS",
    "PICKLE_SUFFIXES",
    "REDUCIO_CHECKPOINT_FILES",
    "REDUCIO_HF_REPO",
    "SAFETENSORS_SUFFIX",
    "TRAINING_ONLY_PREFIXES",
    "VARIANT_ALIASES",
    "CheckpointConfigError",
    "CheckpointDownloadError",
    "CheckpointDtypeError",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "ConfigLike",
    "CorruptCheckpointError",
    "NonFiniteCheckpointError",
    "ResolvedConfig",
    "UnsafeCheckpointError",
    "canonical_preset",
    "coerce_config",
    "dtype_name",
    "file_sha256",
    "find_named_checkpoint",
    "infer_preset",
    "load_reducio",
    "match_presets",
    "open_checkpoint",
    "parse_dtype",
    "preset_from_filename",
    "resolve_checkpoint",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointInfo:
    """Provenance of a loaded model (attached to it as ``vae.checkpoint_info``).

    ``skipped_objects`` lists the entries of a wrapped ``torch.save`` file beside its state dict
    (``"hyper_parameters (omegaconf.dictconfig.DictConfig, ...)"``, ``"callbacks"``, ``"epoch"``...),
    each with the objects in it that were kept as inert placeholders.
    """

    path: Path
    preset: str | None
    config_origin: str
    parts: str
    file_dtypes: tuple[str, ...]
    loaded_keys: int
    skipped_loss_keys: int
    ignored_decoder_keys: int
    stripped_ddp_prefix: bool
    metadata: dict[str, Any] | None = field(default=None, compare=False)
    seconds: float = 0.0
    skipped_objects: tuple[str, ...] = ()


def _mismatch_error(
    reader: Reader,
    cfg: ResolvedConfig,
    parts: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
) -> CheckpointMismatchError:
    """A message listing what does not fit, with hints for the usual causes."""
    counts = [f"{len(missing)} missing key(s)"] if missing else []
    counts += [f"{len(unexpected)} unexpected key(s)"] if unexpected else []
    counts += [f"{len(mismatched)} key(s) with another shape"] if mismatched else []
    lines = [f"does not fit {cfg.describe()} with parts={parts!r}: {', '.join(counts)}"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}; by prefix: {prefix_counts(missing)}): {head(missing)}")
    if unexpected:
        lines.append(
            f"  unexpected keys ({len(unexpected)}; by prefix: {prefix_counts(unexpected)}): {head(unexpected)}"
        )
    if mismatched:
        shown = [f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in mismatched]
        lines.append(f"  shape mismatches ({len(mismatched)}): {head(shown, 4)}")
    file_keys = reader.keys()
    if (
        parts == "all"
        and file_parts(file_keys) == "encoder"
        and missing
        and all(k.startswith(DECODER_PREFIXES) for k in missing)
    ):
        lines.append(
            "  hint: the file holds only the encoder (encoder_3d.*, quant_conv.*): load it with parts='encoder'"
        )
    try:
        scores = match_presets({k: reader.shape(k) for k in file_keys})
        fits = [name for name, diff in scores if diff == 0 and name != cfg.preset]
    except Exception:  # noqa: BLE001 - hints are a courtesy; never let them hide the real error
        fits = []
    if fits:
        lines.append(f"  hint: the file's keys and shapes match preset {fits[0]!r}: pass variant={fits[0]!r}")
    fix = (
        "use the checkpoint made for this config, or pass the config it was made with (config= or variant=); "
        "loss.* keys are skipped automatically and parts='encoder' ignores decoder keys"
    )
    return CheckpointMismatchError(
        reader.path, "\n".join(lines), fix, missing=missing, unexpected=unexpected, mismatched=mismatched
    )


def _config_and_parts(
    reader: Reader, *, config: ConfigLike | None, variant: str | None, parts: str | None
) -> tuple[ResolvedConfig, str]:
    """The config for the file and the parts to load (``None`` -> what the file holds)."""
    meta = reader.metadata
    if meta is not None and parts == "all" and meta["parts"] != "all" and config is None:
        raise CheckpointMismatchError(
            reader.path,
            f"holds only the encoder (metadata parts={meta['parts']!r}), but parts='all' was asked for",
            "load it with parts='encoder', or convert the original checkpoint with --parts all",
            missing=[],
            unexpected=[],
            mismatched=[],
        )
    cfg = resolve_config(reader, config=config, variant=variant)
    if parts is None:  # so that load_reducio(converted_file) needs no argument
        parts = meta["parts"] if meta is not None else file_parts(reader.keys())
    return cfg, parts


def _build(params: Mapping[str, Any], parts: str, path: Path) -> ReducioVAE:
    try:  # meta: no memory and no random init; every tensor comes from the file (assign=True)
        return ReducioVAE.from_config(dict(params), parts=parts, device="meta")
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointConfigError(
            path, f"the config cannot build a model ({err})", "fix the config (config=/variant=) or the file's metadata"
        ) from err


def _is_floating_name(name: str) -> bool:
    return name.startswith(("float", "bfloat", "f8"))


def _check_keys(reader: Reader, vae: ReducioVAE, cfg: ResolvedConfig, parts: str) -> list[str]:
    """The keys to load (the model's): fails on missing/unexpected keys, shapes and dtypes."""
    expected = vae.state_dict()
    file_keys = reader.keys()
    wanted = [k for k in file_keys if parts != "encoder" or not k.startswith(DECODER_PREFIXES)]
    wanted_set = set(wanted)
    missing = [k for k in expected if k not in wanted_set]
    unexpected = [k for k in wanted if k not in expected]
    mismatched = [
        (k, reader.shape(k), tuple(expected[k].shape))
        for k in wanted
        if k in expected and reader.shape(k) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise _mismatch_error(reader, cfg, parts, missing, unexpected, mismatched)
    wrong = {
        k: reader.dtype(k) for k, t in expected.items() if t.is_floating_point() != _is_floating_name(reader.dtype(k))
    }
    if wrong:
        shown = [f"{k} ({d}; the model has {dtype_name(expected[k].dtype)})" for k, d in wrong.items()]
        raise CheckpointDtypeError(
            reader.path,
            f"{len(wrong)} weight(s) have a dtype the model cannot take: {head(shown)}",
            "these are not the model's floating-point weights (a quantized or mis-saved export?): save "
            "model.state_dict() of the float model again, or re-download the original checkpoint",
            keys=wrong,
        )
    return list(expected)


def _fill(vae: ReducioVAE, reader: Reader, keys: Sequence[str], *, device: torch.device, dtype: torch.dtype) -> None:
    """Assign the file's tensors into the meta-built model, one at a time; refuse NaN/inf."""
    state: dict[str, torch.Tensor] = {}
    bad: list[str] = []
    for key in keys:
        src = reader.take(key)
        t = src.to(dtype=dtype) if src.is_floating_point() else src
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            overflow = t is not src and bool(torch.isfinite(src).all())
            bad.append(f"{key} (overflows {dtype_name(dtype)})" if overflow else key)
        if not bad:
            state[key] = t.to(device=device)
    if bad:
        cast = any("overflows" in b for b in bad)
        raise NonFiniteCheckpointError(
            reader.path,
            f"{len(bad)} weight tensor(s) hold NaN or inf: {head(bad)}",
            (f"load with dtype=float32 or bfloat16 ({dtype_name(dtype)} cannot hold these values); " if cast else "")
            + "NaN/inf in the file mean broken weights (a diverged training run or a damaged file): use an "
            f"earlier checkpoint of the run, re-create the file or re-download it (official files: {HF_REPO_URL})",
            keys=[b.split(" ")[0] for b in bad],
        )
    vae.load_state_dict(state, strict=True, assign=True)
    _materialise_missing(vae, device=device, dtype=dtype)


def _materialise_missing(vae: ReducioVAE, *, device: torch.device, dtype: torch.dtype) -> None:
    """Give tensors no checkpoint carries (non-persistent buffers) real values instead of meta."""
    left = [n for n, t in [*vae.named_parameters(), *vae.named_buffers()] if t.is_meta]
    if not left:
        return
    log.debug("materialising %d tensors not stored in the checkpoint: %s", len(left), head(left))
    fresh = ReducioVAE.from_config(vae.config.to_params(), parts=model_parts(vae), device=device)
    fresh_tensors = dict([*fresh.named_parameters(), *fresh.named_buffers()])
    for name in left:
        module_name, _, attr = name.rpartition(".")
        module = vae.get_submodule(module_name)
        value = fresh_tensors[name].detach()
        value = value.to(dtype=dtype) if value.is_floating_point() else value
        if isinstance(getattr(module, attr), torch.nn.Parameter):
            setattr(module, attr, torch.nn.Parameter(value, requires_grad=False))
        else:
            module._buffers[attr] = value


def model_parts(vae: ReducioVAE) -> str:
    parts = getattr(vae, "parts", None)
    return parts if parts in PARTS else file_parts(list(vae.state_dict()))


def load_reducio(
    source: str | os.PathLike[str],
    *,
    variant: str | None = None,
    parts: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    config: ConfigLike | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_globals: Sequence[str] = (),
) -> ReducioVAE:
    """Load a Reducio-VAE from a file, an ``hf://`` reference or a preset name (see module doc).

    Args:
        source: local ``.ckpt``/``.pt``/``.pth``/``.safetensors``; ``hf://owner/repo[@rev]/file``;
            a preset/variant name (``ft4``, ``ft2``, ``reducio-ft4``, ``local-smoke``...); ``standin``.
        variant: ``ft4``/``ft2`` or a preset name; used when the file carries no config.
        parts: ``"all"`` (encoders + decoder), ``"encoder"`` (``encoder_3d`` + ``quant_conv``), or
            None (default): what the file holds.
        device: where the weights go (each tensor is moved as it is loaded).
        dtype: floating dtype of the weights (``"fp16"`` etc. accepted).
        config: overrides everything else: a ``model.params`` dict, ``ReducioConfig``, preset name
            or ``.json``/``.yaml`` file.
        cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE``, i.e. ``$HF_HOME/hub``).
        allow_globals: override for a trusted ``torch.save`` file: dotted names (``prefix.`` for a
            module tree) from ``lib.vae.safe_pickle.DENIED_GLOBALS`` (``functools.partial``...) that
            may appear beside its state dict; they load as inert placeholders and are skipped like
            every other non-tensor object (nothing is imported or run either way).

    Returns:
        The model in eval mode with ``requires_grad=False`` everywhere; ``vae.checkpoint_info``
        (:class:`CheckpointInfo`) records the file, preset, config origin and skipped objects.

    Raises:
        CheckpointNotFoundError, CheckpointDownloadError, UnsafeCheckpointError, CorruptCheckpointError,
        CheckpointConfigError, CheckpointMismatchError, CheckpointDtypeError, NonFiniteCheckpointError.
    """
    start = time.perf_counter()
    check_parts(parts, allow_none=True)
    dtype = parse_dtype(dtype)
    device = torch.device(device)
    path = resolve_checkpoint(source, parts=parts, dtype=dtype, cache_dir=cache_dir)
    with open_checkpoint(path, allow_globals=allow_globals) as reader:
        cfg, parts = _config_and_parts(reader, config=config, variant=variant, parts=parts)
        vae = _build(cfg.params, parts, path)
        keys = _check_keys(reader, vae, cfg, parts)
        file_dtypes = tuple(sorted({reader.dtype(k) for k in keys}))
        file_keys = reader.keys()
        ignored = sum(1 for k in file_keys if parts == "encoder" and k.startswith(DECODER_PREFIXES))
        _fill(vae, reader, keys, device=device, dtype=dtype)
        info = CheckpointInfo(
            path=path,
            preset=cfg.preset,
            config_origin=cfg.origin,
            parts=parts,
            file_dtypes=file_dtypes,
            loaded_keys=len(keys),
            skipped_loss_keys=reader.skipped_loss_keys,
            ignored_decoder_keys=ignored,
            stripped_ddp_prefix=reader.stripped_prefix,
            metadata=reader.metadata,
            skipped_objects=reader.skipped_objects,
        )
    vae.to(device=device)
    vae.to(dtype=dtype)  # floating tensors only; a no-op for what _fill already cast
    vae.eval()
    vae.requires_grad_(False)
    vae.checkpoint_info = dataclasses.replace(info, seconds=round(time.perf_counter() - start, 3))
    log.info(
        "loaded %s (%s, parts=%s, %d keys, %s -> %s) in %.1f s",
        path,
        cfg.describe(),
        parts,
        info.loaded_keys,
        "/".join(file_dtypes),
        dtype_name(dtype),
        vae.checkpoint_info.seconds,
    )
    return vae


def __getattr__(name: str) -> Any:
    """Writing lives in :mod:`lib.vae.saving`; its two names stay importable from here."""
    if name in ("build_metadata", "save_reducio"):
        from lib.vae import saving  # lazy: saving imports this module

        return getattr(saving, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
