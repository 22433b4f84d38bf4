"""Reading Reducio checkpoint files: one strict reader per format, tensors handed out on demand.

- ``.safetensors`` (recognised by content, whatever the suffix): read lazily through
  ``safetensors.safe_open``; our files carry their config as JSON under :data:`METADATA_KEY`.
- ``torch.save`` files (``.ckpt``/``.pt``/``.pth``, zip or legacy format): unpickled by
  :mod:`lib.vae.safe_pickle`, which rebuilds tensors and plain containers and turns every other
  global into an inert placeholder. The state dict is taken from ``state_dict`` (or ``model``) or
  is the whole object. Entries beside it (``hyper_parameters``, ``callbacks``,
  ``optimizer_states``...) are skipped and listed in ``skipped_objects``, whatever classes they
  name (OmegaConf, argparse, Lightning, or a project's own such as ``ldm.util.Whatever``). A file
  whose pickle names a global that can only be there to run code
  (:data:`~lib.vae.safe_pickle.DENIED_GLOBALS`: ``os.system``, ``eval``, ``functools.partial``...,
  less ``allow_globals``), or feeds torch's tensor rebuild helpers anything but tensor data, is
  refused with :class:`UnsafeCheckpointError`; nothing from it has run by then (nor would it
  have otherwise: the denylist only tells a hostile file from a harmless one).

Every reader normalises key names the same way: a DDP ``module.`` prefix is stripped and the
training-only ``loss.*`` keys are dropped (counted in ``skipped_loss_keys``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from lib.env_check import REDUCIO_HF_REPO
from lib.vae.checkpoint_errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
)
from lib.vae.safe_pickle import (
    UnpickleReport,
    is_denied_global,
    is_torchscript_archive,
    placeholder_names,
    torch_load_restricted,
)

log = logging.getLogger(__name__)

#: safetensors metadata key under which our files store their config as JSON (see save_reducio).
METADATA_KEY = "reducio_config"
#: Version of the JSON layout under METADATA_KEY; bump when its meaning changes.
METADATA_VERSION = 1
#: Keys needed for latents (what parts="encoder" builds and loads).
ENCODER_PREFIXES: tuple[str, ...] = ("encoder_3d.", "quant_conv.")
#: Keys only the reconstruction path needs (ignored when parts="encoder").
DECODER_PREFIXES: tuple[str, ...] = ("encoder_2d.", "decoder.", "post_quant_conv.")
#: Training-only keys (LPIPS + discriminator); skipped wherever they appear.
TRAINING_ONLY_PREFIXES: tuple[str, ...] = ("loss.",)
#: Prefix DDP / DataParallel put in front of every key.
DDP_PREFIX = "module."
PARTS: tuple[str, ...] = ("all", "encoder")
PICKLE_SUFFIXES: tuple[str, ...] = (".ckpt", ".pt", ".pth")
SAFETENSORS_SUFFIX = ".safetensors"
LOADABLE_SUFFIXES: tuple[str, ...] = PICKLE_SUFFIXES + (SAFETENSORS_SUFFIX,)
HF_REPO_URL = f"https://huggingface.co/{REDUCIO_HF_REPO}"
#: Dtype names accepted wherever a dtype may be given as text (CLI, metadata).
DTYPE_NAMES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
_SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
_STATE_KEYS = ("state_dict", "model")  # where a wrapped checkpoint keeps its state dict
_LIST_HEAD = 8  # how many names an error message lists before "(+N more)"


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float16`` or one of ``fp32|fp16|bf16`` (and long names) -> a floating torch dtype."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        return dtype
    try:
        return DTYPE_NAMES[str(dtype).lower().removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of fp32, fp16, bf16") from None


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"float16"`` (the form stored in metadata)."""
    return str(dtype).removeprefix("torch.")


def file_sha256(path: str | os.PathLike[str], *, chunk_bytes: int = 16 * 2**20) -> str:
    """Hex SHA-256 of a file, streamed (the 1.75 GB checkpoint is never held in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def head(names: Sequence[str], n: int = _LIST_HEAD) -> str:
    """The first ``n`` names, then ``... (+N more)``."""
    shown = ", ".join(names[:n])
    return shown + (f", ... (+{len(names) - n} more)" if len(names) > n else "")


def prefix_counts(names: Sequence[str]) -> str:
    """``encoder_3d. 2, decoder. 262``: where the listed keys live, at the first dotted level."""
    counts = Counter(name.split(".", 1)[0] + "." if "." in name else name for name in names)
    return ", ".join(f"{prefix} {n}" for prefix, n in counts.most_common())


def check_parts(parts: str | None, *, allow_none: bool = False) -> str | None:
    if parts is None and allow_none:
        return None
    if parts not in PARTS:
        raise ValueError(f"parts must be one of {PARTS}" + (" or None" if allow_none else "") + f", got {parts!r}")
    return parts


def file_parts(keys: Sequence[str]) -> str:
    """``"all"`` when any decoder-side key is present, else ``"encoder"``."""
    return "all" if any(k.startswith(DECODER_PREFIXES) for k in keys) else "encoder"


def normalise_keys(raw_keys: Sequence[str], path: Path | None = None) -> tuple[dict[str, str], int, bool]:
    """Clean name -> stored name, without ``loss.*`` keys and without a DDP ``module.`` prefix."""
    mapping: dict[str, str] = {}
    skipped = 0
    stripped = False
    for raw in raw_keys:
        name = raw
        if name.startswith(DDP_PREFIX):
            name = name[len(DDP_PREFIX) :]
            stripped = True
        if name.startswith(TRAINING_ONLY_PREFIXES):
            skipped += 1
            continue
        if name in mapping:  # "module.x" and "x" both present: which one is meant is unknowable
            raise CorruptCheckpointError(
                path,
                f"keys {mapping[name]!r} and {raw!r} name the same weight",
                "keep one of them (strip the DDP 'module.' prefix consistently)",
            )
        mapping[name] = raw
    return mapping, skipped, stripped


def parse_metadata(path: Path, raw: Mapping[str, str]) -> dict[str, Any] | None:
    """Our JSON config under METADATA_KEY, validated; None for files without it."""
    text = raw.get(METADATA_KEY)
    if text is None:
        return None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptCheckpointError(
            path,
            f"metadata key {METADATA_KEY!r} is not valid JSON ({err})",
            "re-create the file with python -m lib.vae convert",
        ) from err
    if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict) or meta.get("parts") not in PARTS:
        raise CorruptCheckpointError(
            path,
            f"metadata key {METADATA_KEY!r} lacks 'params' (dict) or 'parts' ({'|'.join(PARTS)})",
            "re-create the file with python -m lib.vae convert (or lib.vae.saving.save_reducio)",
        )
    return meta


class SafetensorsReader:
    """Reads a .safetensors lazily: header first, each tensor only when taken."""

    skipped_objects: tuple[str, ...] = ()

    def __init__(self, path: Path) -> None:
        from safetensors import SafetensorError, safe_open

        self.path = path
        try:
            self._handle = safe_open(str(path), framework="pt", device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CorruptCheckpointError(
                path,
                f"not a readable safetensors file ({type(err).__name__}: {err})",
                "the file is probably truncated or not a safetensors file; re-create it (python -m lib.vae convert) "
                "or re-download it",
            ) from err
        self._map, self.skipped_loss_keys, self.stripped_prefix = normalise_keys(list(self._handle.keys()), path)
        self.metadata = parse_metadata(path, self._handle.metadata() or {})

    def keys(self) -> list[str]:
        return list(self._map)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle.get_slice(self._map[key]).get_shape())

    def dtype(self, key: str) -> str:
        code = self._handle.get_slice(self._map[key]).get_dtype()
        return _SAFETENSORS_DTYPES.get(code, code.lower())

    def take(self, key: str) -> torch.Tensor:
        return self._handle.get_tensor(self._map[key])

    def close(self) -> None:
        self._handle = None  # type: ignore[assignment]  # safe_open releases its mmap when collected


class TorchReader:
    """Reads a ``torch.save`` file through the restricted unpickler (module docstring)."""

    metadata: dict[str, Any] | None = None

    def __init__(self, path: Path, allow_globals: Sequence[str] = ()) -> None:
        self.path = path
        obj = _load_restricted(path, allow_globals)
        state, where = _find_state_dict(obj, path)
        self.skipped_objects = skipped_entries(obj, where)
        if self.skipped_objects:
            log.info("%s: state dict under %r; skipped: %s", path, where, ", ".join(self.skipped_objects))
        bad_keys = [repr(k) for k in state if not isinstance(k, str)]
        if bad_keys:
            raise CorruptCheckpointError(
                path,
                f"state-dict keys that are not strings: {head(bad_keys)}",
                "save a plain state dict (name -> tensor)",
            )
        self._map, self.skipped_loss_keys, self.stripped_prefix = normalise_keys(list(state), path)
        not_tensors = [
            f"{k} ({type(state[raw]).__name__})"
            for k, raw in self._map.items()
            if not isinstance(state[raw], torch.Tensor)
        ]
        if not_tensors:
            raise CorruptCheckpointError(
                path,
                f"{len(not_tensors)} state-dict entries are not tensors: {head(not_tensors)}",
                "save a plain state dict (name -> tensor), e.g. torch.save({'state_dict': model.state_dict()}, path)",
            )
        self._state: dict[str, Any] = dict(state)  # only the state dict stays referenced

    def keys(self) -> list[str]:
        return list(self._map)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._state[self._map[key]].shape)

    def dtype(self, key: str) -> str:
        return dtype_name(self._state[self._map[key]].dtype)

    def take(self, key: str) -> torch.Tensor:
        return self._state.pop(self._map[key])  # handed over: this reader no longer keeps it alive

    def close(self) -> None:
        self._state.clear()


Reader = SafetensorsReader | TorchReader


def _find_state_dict(obj: Any, path: Path) -> tuple[Mapping[Any, Any], str | None]:
    """The state dict inside a loaded checkpoint: under ``state_dict`` / ``model``, or the object."""
    fix = "save the weights as {'state_dict': model.state_dict()} or as a plain state dict"
    if not isinstance(obj, Mapping):
        raise CorruptCheckpointError(path, f"holds a {type(obj).__name__}, not a state dict", fix)
    for key in _STATE_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner:
            return inner, key
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    keys = [str(k) for k in obj][:10]
    raise CorruptCheckpointError(
        path, f"holds no state dict: a dict with keys {keys} and no 'state_dict' entry of tensors", fix
    )


def skipped_entries(obj: Any, state_key: str | None) -> tuple[str, ...]:
    """``("epoch", "hyper_parameters (omegaconf.dictconfig.DictConfig, ...)", ...)``: what is not loaded."""
    if state_key is None:
        return ()
    out = []
    for key, value in obj.items():
        if key != state_key:
            names = placeholder_names(value)
            out.append(f"{key} ({head(names)})" if names else str(key))
    return tuple(out)


def _refused_where(obj: Any, refused: Sequence[str]) -> str:
    """`` (in hyper_parameters, callbacks)``: the top-level entries holding refused globals."""
    if not isinstance(obj, Mapping):
        return ""
    places = [str(k) for k, v in obj.items() if set(placeholder_names(v)) & set(refused)]
    return f" (in {', '.join(places)})" if places else ""


def _unsafe(path: Path, refused: Sequence[str], misused: Sequence[str], where: str) -> UnsafeCheckpointError:
    misused = list(dict.fromkeys(misused))
    what = []
    if refused:
        what.append(
            f"its pickle names {head(refused, 12)}{where}, which a checkpoint can only carry to run code when "
            "it is unpickled (process, file or interpreter access, evaluators, call gadgets: see "
            "lib.vae.safe_pickle.DENIED_GLOBALS)"
        )
    if misused:
        what.append(f"its tensors would be rebuilt from objects of unknown type (handed to {head(misused)})")
    elsewhere = (
        f"get the official weights from {HF_REPO_URL}, or ask whoever made the file, if you trust them, "
        "for a .safetensors export of its weights"
    )
    if misused:
        fix = f"its weights cannot be read without running its pickle: {elsewhere}"
    else:
        fix = (
            "a file naming such objects is most likely hostile: " + elsewhere + ". Only if you trust its origin "
            "and these objects are metadata beside the state dict (a functools.partial in the hyper-parameters, "
            f"say), pass allow_globals={tuple(refused)!r} to load_reducio (python -m lib.vae convert "
            "--allow-global NAME): they stay inert placeholders and are skipped"
        )
    return UnsafeCheckpointError(
        path,
        f"refused to load: {'; '.join(what)}. Nothing from the file was imported or run: every object beyond "
        "tensors and plain containers became an inert placeholder, so the pickle was not executed.",
        fix,
        globals=list(dict.fromkeys([*refused, *misused])),
    )


def _load_restricted(path: Path, allow_globals: Sequence[str]) -> Any:
    """The unpickled object; UnsafeCheckpointError / CorruptCheckpointError with the reason otherwise."""
    if is_torchscript_archive(path):
        raise UnsafeCheckpointError(
            path,
            "refused to load: a TorchScript archive (it holds code), not a checkpoint",
            "load a state-dict checkpoint or a .safetensors file instead",
        )
    report = UnpickleReport()
    try:
        obj = torch_load_restricted(path, report)
    except Exception as err:  # noqa: BLE001 - any failure is reported, the refusal first
        refused = [g for g in report.placeholders() if is_denied_global(g, allow_globals)]
        if refused or report.misused:
            raise _unsafe(path, refused, report.misused, "") from None
        first = str(err).splitlines()[0] if str(err) else ""
        if "pickle_module" in first and "TORCH_FORCE_WEIGHTS_ONLY_LOAD" in os.environ:
            raise UnsafeCheckpointError(
                path,
                "TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, so torch refuses the restricted unpickler this loader uses",
                "unset TORCH_FORCE_WEIGHTS_ONLY_LOAD",
            ) from None
        raise CorruptCheckpointError(
            path,
            f"cannot be read as a torch checkpoint ({type(err).__name__}: {first}; "
            f"{path.stat().st_size:,} bytes on disk)",
            "the file is probably truncated (an interrupted download?) or not a checkpoint: re-download it "
            f"(official files: {HF_REPO_URL}, about 1.75 GB each) or re-create it",
        ) from None
    refused = [g for g in report.placeholders() if is_denied_global(g, allow_globals)]
    if refused or report.misused:
        raise _unsafe(path, refused, report.misused, _refused_where(obj, refused))
    return obj


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its header length (u64 little-endian) and then '{'."""
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return True
    try:
        with open(path, "rb") as fh:
            first = fh.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(first) == 9 and first[8:9] == b"{" and 0 < int.from_bytes(first[:8], "little") <= size - 8


@contextmanager
def open_checkpoint(path: str | os.PathLike[str], *, allow_globals: Sequence[str] = ()) -> Iterator[Reader]:
    """A reader over a local checkpoint: normalised key names, shapes, dtypes, lazy tensors.

    ``allow_globals``: dotted names (``prefix.`` for a module tree) of
    :data:`~lib.vae.safe_pickle.DENIED_GLOBALS` that a trusted ``torch.save`` file may name outside
    its state dict; they then load as inert placeholders and are skipped like any other object.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointNotFoundError(p, "no such file", "check the path")
    # by content, so a misnamed file is still read the way its format needs
    reader: Reader = SafetensorsReader(p) if is_safetensors(p) else TorchReader(p, allow_globals)
    try:
        yield reader
    finally:
        reader.close()
