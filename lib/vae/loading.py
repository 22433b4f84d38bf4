"""Load Reducio-VAE weights from any of the places they live, safely and strictly.

``load_reducio(source, ...)`` returns a :class:`~lib.vae.model.ReducioVAE` in eval mode with
``requires_grad`` off. ``source`` is one of:

1. **A local file** (absolute, relative to the working directory, or relative to the repository
   root as params files write them):

   - ``.ckpt`` / ``.pt`` / ``.pth``: a ``torch.save`` pickle holding a state dict, either
     directly or under ``"state_dict"`` (or ``"model"``) next to other Lightning-style entries
     (``epoch``, ``global_step``...). A leading ``module.`` (DDP) is stripped. Always read with
     ``torch.load(weights_only=True, map_location="cpu")`` (and ``mmap=True`` for zip-format
     files): a file whose pickle needs anything beyond tensors and plain containers is refused
     with :class:`UnsafeCheckpointError`; it is never executed.
   - ``.safetensors``: our converted or trained files carry their config as JSON under the
     metadata key :data:`METADATA_KEY` (``"reducio_config"``, layout in :func:`save_reducio`), so
     they load with no other argument. A file without that key is resolved like a pickle.

2. **A Hugging Face reference**, written as an ``hf://`` URI: ``hf://<owner>/<repo>[@<revision>]/<file>``,
   e.g. ``hf://microsoft/Reducio-VAE/reducio-ft4-fs32-attn23.ckpt`` (the ``https://huggingface.co/...``
   address of the file is accepted too). A file of that name already in ``checkpoints/`` is used
   as is; otherwise it is fetched with ``huggingface_hub.hf_hub_download`` into the HF cache
   (``HF_HOME`` / ``HF_HUB_CACHE``, or ``cache_dir=``). Offline or unreachable ->
   :class:`CheckpointDownloadError` saying where to put the file by hand.

3. **A preset or variant name alone** (``"ft4"``, ``"ft2"``, ``"reducio-ft4"``, ``"local-smoke"``...,
   see :data:`lib.vae.presets.PRESETS`): the file is looked up in ``checkpoints/``
   (:data:`lib.paths.CHECKPOINTS_DIR`, ``LVS_CHECKPOINTS_DIR`` moves it): files named
   ``<preset>.<ext>`` or ``<preset>-*`` / ``<preset>_*`` (so ``ft4`` finds the official
   ``reducio-ft4-fs32-attn23.ckpt``). Among several, a ``.safetensors`` with our metadata holding
   exactly the requested ``parts`` wins (``parts=None``/``"all"``: a full one, then a pickle;
   ``"encoder"``: an encoder-only one, then a full one, then a pickle), then the one in the
   requested dtype; a remaining tie is an error listing them, and an encoder-only file never
   serves ``parts="all"``. For the two released variants, when nothing is found the official
   file is fetched from Hugging Face as in 2.

Which config builds the model (first that applies):

a. ``config=`` (a ``model.params`` dict, a ``ReducioConfig``, a preset name, or a .json/.yaml file);
b. the config stored in the safetensors metadata;
c. ``variant=`` (``"ft4"``/``"ft2"`` or any preset name);
d. the file name: a preset name in it (``reducio-ft4-fs32-attn23.ckpt`` -> ``reducio-ft4``), else an
   ``ft4`` / ``ft2`` token;
e. the state-dict shapes: every preset is built on the meta device and the file's key->shape
   listing is compared with each; exactly one must match. For the released files this is the
   ft4/ft2 rule: ``encoder_3d.down.3.downsample.conv.weight`` has kernel ``(3, 3, 3)`` in ft4 and
   ``(1, 3, 3)`` in ft2, and ``decoder.mid.fuse.0.pos_embed`` has length 4 (ft4) or 8 (ft2).

Strictness: ``loss.*`` keys (training-only) are skipped. Any other missing or unexpected key, or
a shape mismatch, raises :class:`CheckpointMismatchError` listing them (first few, with counts
per prefix) and naming the file and the config. With ``parts="encoder"`` only ``encoder_3d.*`` and
``quant_conv.*`` are built and loaded; decoder-side keys in the file are ignored (never read from a
safetensors file), and missing encoder keys are still errors. ``parts=None`` (the default) loads
what the file holds: an encoder-only file (metadata ``parts``, or no decoder-side keys) gives an
encoder-only model, anything else the full model; so ``load_reducio(converted_file)`` needs no
other argument. ``parts="all"`` on an encoder-only file is an error.

Memory: the model is built on the meta device and the checkpoint tensors are assigned into it
(``load_state_dict(assign=True)``), each tensor cast to ``dtype`` / moved to ``device`` one at a
time, so the 1.75 GB official file never exists twice in memory (it is memory-mapped, not read).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import pickletools
import re
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import torch

import lib.paths as _paths
from lib.env_check import REDUCIO_CHECKPOINT_FILES, REDUCIO_HF_REPO
from lib.errors import ActionableError
from lib.vae.config import ReducioConfig
from lib.vae.model import ReducioVAE
from lib.vae.presets import PRESETS, get_preset

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Constants (the on-disk contract)
# ------------------------------------------------------------------------------------------------
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
#: Short names of the released checkpoints -> preset names.
VARIANT_ALIASES: dict[str, str] = {"ft4": "reducio-ft4", "ft2": "reducio-ft2"}
#: Released preset -> file name in the Hugging Face repo.
OFFICIAL_FILES: dict[str, str] = {VARIANT_ALIASES[v]: f for v, f in REDUCIO_CHECKPOINT_FILES.items()}
HF_REPO_URL = f"https://huggingface.co/{REDUCIO_HF_REPO}"
#: Dtype names accepted wherever a dtype may be given as text (CLI, metadata).
DTYPE_NAMES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}
_SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}
_LIST_HEAD = 8  # how many names an error message lists before "(+N more)"


# ------------------------------------------------------------------------------------------------
# Errors: each names the file, what was wrong and the fix
# ------------------------------------------------------------------------------------------------
class CheckpointError(ActionableError):
    """Base class: ``path`` at fault (or the source text), ``reason`` and ``fix``."""

    fix_separator = "\nFix: "

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, fix: str = "") -> None:
        super().__init__(path, reason, fix)
        self.path = str(path) if path is not None else None


class CheckpointNotFoundError(CheckpointError):
    """No file at the given path, or none for the given preset name in checkpoints/."""


class CheckpointDownloadError(CheckpointError):
    """The Hugging Face file is not cached and cannot be fetched (offline, unreachable, wrong name)."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle needs arbitrary Python objects; it was not executed."""


class CorruptCheckpointError(CheckpointError):
    """The file cannot be read (truncated, not a checkpoint, bad metadata, no state dict)."""


class CheckpointConfigError(CheckpointError):
    """No config can be determined for the file, or the given hints contradict each other."""


class CheckpointMismatchError(CheckpointError):
    """Keys or shapes of the file do not fit the model built from the config."""

    def __init__(self, path: str | os.PathLike[str], reason: str, fix: str, *, missing: Sequence[str],
                 unexpected: Sequence[str], mismatched: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> None:
        super().__init__(path, reason, fix)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------
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


def canonical_preset(name: str) -> str:
    """``"ft4"`` -> ``"reducio-ft4"``; a preset name stays; anything else is a ``KeyError``."""
    key = name.strip().lower()
    key = VARIANT_ALIASES.get(key, key)
    if key not in PRESETS:
        raise KeyError(f"unknown Reducio variant/preset {name!r}; known: "
                       f"{', '.join(list(VARIANT_ALIASES) + list(PRESETS))}")
    return key


def file_sha256(path: str | os.PathLike[str], *, chunk_bytes: int = 16 * 2**20) -> str:
    """Hex SHA-256 of a file, streamed (the 1.75 GB checkpoint is never held in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _head(names: Sequence[str], n: int = _LIST_HEAD) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... (+{len(names) - n} more)" if len(names) > n else "")


def _prefix_counts(names: Sequence[str]) -> str:
    """``encoder_3d. 2, decoder. 262``: where the listed keys live, at the first dotted level."""
    counts = Counter(name.split(".", 1)[0] + "." if "." in name else name for name in names)
    return ", ".join(f"{prefix} {n}" for prefix, n in counts.most_common())


def _check_parts(parts: str | None, *, allow_none: bool = False) -> str | None:
    if parts is None and allow_none:
        return None
    if parts not in PARTS:
        raise ValueError(f"parts must be one of {PARTS}" + (" or None" if allow_none else "") + f", got {parts!r}")
    return parts


def _describe_params(params: Mapping[str, Any]) -> str:
    """One line naming the architecture knobs that change shapes."""
    dd, d2 = params.get("ddconfig", {}), params.get("ddconfig_2d", {})
    return (f"ch={dd.get('ch')} ch_mult={dd.get('ch_mult')} num_res_blocks={dd.get('num_res_blocks')} "
            f"f_t={dd.get('f_t')} z_channels={dd.get('z_channels')}; 2D ch={d2.get('ch')} ch_mult={d2.get('ch_mult')}")


def _preset_of_params(params: Mapping[str, Any]) -> str | None:
    """The preset whose architecture equals ``params`` (after normalisation), if any."""
    try:
        cfg = ReducioConfig.from_params(params)
    except (ValueError, TypeError, KeyError):
        return None
    for name in PRESETS:
        if ReducioConfig.from_params(get_preset(name)) == cfg:
            return name
    return None


# ------------------------------------------------------------------------------------------------
# Config coercion
# ------------------------------------------------------------------------------------------------
ConfigLike = Mapping[str, Any] | ReducioConfig | str | os.PathLike[str]


@dataclass(frozen=True)
class ResolvedConfig:
    """The ``model.params`` that builds the model, and where they came from (for messages)."""

    params: dict[str, Any]
    preset: str | None
    origin: str

    def describe(self) -> str:
        name = f"preset {self.preset!r}" if self.preset else "a custom config"
        return f"{name} ({self.origin}; {_describe_params(self.params)})"


def _unwrap_params(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Accept ``model.params``, the ``model`` section or the whole YAML/JSON (``model.params``)."""
    if "ddconfig" in obj:
        return dict(obj)
    if isinstance(obj.get("params"), Mapping):
        return _unwrap_params(obj["params"])
    if isinstance(obj.get("model"), Mapping):
        return _unwrap_params(obj["model"])
    raise ValueError(f"not a Reducio config: no 'ddconfig' (top-level keys: {sorted(obj)[:10]})")


def coerce_config(config: ConfigLike) -> tuple[dict[str, Any], str | None]:
    """``config=`` of :func:`load_reducio` -> (``model.params`` dict, preset name if it is one).

    Accepted: a ``model.params`` dict (or a dict holding it under ``params`` / ``model.params``,
    like the official YAML or ``small_config.json``), a ``ReducioConfig``, a preset/variant name,
    or the path of a ``.json`` / ``.yaml`` file holding one of those dicts.
    """
    if isinstance(config, ReducioConfig):
        params = config.to_params()
        return params, _preset_of_params(params)
    if isinstance(config, Mapping):
        params = _unwrap_params(config)
        return params, _preset_of_params(params)
    text = os.fspath(config)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise CheckpointConfigError(path, "config file not found", "pass an existing .json/.yaml or a preset name")
        raw = path.read_text()
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            import yaml  # pyyaml is a pinned dependency; the official YAMLs use anchors (safe_load resolves them)

            data = yaml.safe_load(raw)
        params = _unwrap_params(data)
        return params, _preset_of_params(params)
    try:
        name = canonical_preset(text)
    except KeyError as err:
        raise CheckpointConfigError(None, f"config={text!r} is neither a preset name nor a .json/.yaml file",
                                    str(err.args[0])) from None
    return get_preset(name), name


# ------------------------------------------------------------------------------------------------
# Readers: key listing and shapes first (cheap), tensors on demand
# ------------------------------------------------------------------------------------------------
class _Reader(Protocol):
    path: Path
    metadata: dict[str, Any] | None  # our JSON under METADATA_KEY, parsed; None when absent
    skipped_loss_keys: int
    stripped_prefix: bool

    def keys(self) -> list[str]: ...
    def shape(self, key: str) -> tuple[int, ...]: ...
    def dtype(self, key: str) -> str: ...
    def take(self, key: str) -> torch.Tensor: ...


def _normalise_keys(raw_keys: Sequence[str], path: Path | None = None) -> tuple[dict[str, str], int, bool]:
    """Clean name -> stored name, without ``loss.*`` keys and without a DDP ``module.`` prefix."""
    mapping: dict[str, str] = {}
    skipped = 0
    stripped = False
    for raw in raw_keys:
        name = raw
        if name.startswith(DDP_PREFIX):
            name = name[len(DDP_PREFIX):]
            stripped = True
        if name.startswith(TRAINING_ONLY_PREFIXES):
            skipped += 1
            continue
        if name in mapping:  # "module.x" and "x" both present: which one is meant is unknowable
            raise CorruptCheckpointError(path, f"keys {mapping[name]!r} and {raw!r} name the same weight",
                                         "keep one of them (strip the DDP 'module.' prefix consistently)")
        mapping[name] = raw
    return mapping, skipped, stripped


class _SafetensorsReader:
    """Reads a .safetensors lazily: header first, each tensor only when taken."""

    def __init__(self, path: Path) -> None:
        from safetensors import SafetensorError, safe_open

        self.path = path
        try:
            self._handle = safe_open(str(path), framework="pt", device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CorruptCheckpointError(
                path, f"not a readable safetensors file ({type(err).__name__}: {err})",
                "the file is probably truncated or not a safetensors file; re-create it (python -m lib.vae convert) "
                "or re-download it",
            ) from err
        self._map, self.skipped_loss_keys, self.stripped_prefix = _normalise_keys(list(self._handle.keys()), path)
        raw_meta = self._handle.metadata() or {}
        self.metadata = _parse_metadata(path, raw_meta)

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
        # safe_open handles release their mmap when garbage collected; drop the reference now.
        self._handle = None  # type: ignore[assignment]


class _TorchReader:
    """Reads a torch.save pickle with weights_only=True (mmap'ed when the file is a zip archive)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata = None
        obj = _safe_torch_load(path)
        state, where = _find_state_dict(obj, path)
        if where:
            log.debug("%s: state dict found under %r", path, where)
        self._map, self.skipped_loss_keys, self.stripped_prefix = _normalise_keys(list(state), path)
        not_tensors = [k for k, raw in self._map.items() if not isinstance(state[raw], torch.Tensor)]
        if not_tensors:
            raise CorruptCheckpointError(
                path, f"{len(not_tensors)} state-dict entries are not tensors: "
                f"{_head([f'{k} ({type(state[self._map[k]]).__name__})' for k in not_tensors])}",
                "save a plain state dict (name -> tensor), e.g. torch.save({'state_dict': model.state_dict()}, path)",
            )
        self._state: dict[str, Any] = dict(state)
        del obj  # only the state dict stays referenced (optimizer states etc. can go)

    def keys(self) -> list[str]:
        return list(self._map)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._state[self._map[key]].shape)

    def dtype(self, key: str) -> str:
        return dtype_name(self._state[self._map[key]].dtype)

    def take(self, key: str) -> torch.Tensor:
        # pop: once handed over, this reader no longer keeps the (possibly in-memory) tensor alive
        return self._state.pop(self._map[key])

    def close(self) -> None:
        self._state.clear()


def _find_state_dict(obj: Any, path: Path) -> tuple[Mapping[str, Any], str | None]:
    """The state dict inside a loaded checkpoint: under ``state_dict`` / ``model``, or the object."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                return inner, key
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, None
        keys = [str(k) for k in obj][:10]
        raise CorruptCheckpointError(
            path, f"holds no state dict: a dict with keys {keys} and no 'state_dict' entry of tensors",
            "save the weights as {'state_dict': model.state_dict()} or as a plain state dict",
        )
    raise CorruptCheckpointError(
        path, f"holds a {type(obj).__name__}, not a state dict",
        "save the weights as {'state_dict': model.state_dict()} or as a plain state dict",
    )


def _parse_metadata(path: Path, raw: Mapping[str, str]) -> dict[str, Any] | None:
    """Our JSON config under METADATA_KEY, validated; None for files without it."""
    text = raw.get(METADATA_KEY)
    if text is None:
        return None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptCheckpointError(path, f"metadata key {METADATA_KEY!r} is not valid JSON ({err})",
                                     "re-create the file with python -m lib.vae convert") from err
    if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict) or meta.get("parts") not in PARTS:
        raise CorruptCheckpointError(
            path, f"metadata key {METADATA_KEY!r} lacks 'params' (dict) or 'parts' ({'|'.join(PARTS)})",
            "re-create the file with python -m lib.vae convert (or lib.vae.loading.save_reducio)",
        )
    return meta


# ---- pickle safety ------------------------------------------------------------------------------
_TORCH_REJECTED = re.compile(r"GLOBAL ([\w.]+)")


def _pickle_globals(path: Path, *, limit_bytes: int = 64 * 2**20) -> list[str]:
    """Every ``module.name`` a checkpoint's pickle imports, found by reading its opcodes only.

    ``pickletools.genops`` decodes opcodes without executing anything, so this is safe on a
    hostile file. For zip checkpoints the pickle is ``<archive>/data.pkl``; legacy files are a
    few pickles in a row followed by raw storage bytes, which end the scan.
    """
    found: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                streams = [zf.read(names[0])] if names else []
        else:
            with open(path, "rb") as fh:
                streams = [fh.read(limit_bytes)]
        for data in streams:
            buf = memoryview(data)
            pos = 0
            while pos < len(buf):
                recent: list[str] = []
                memo: dict[int, str] = {}
                end = pos
                for op, arg, offset in pickletools.genops(bytes(buf[pos:])):
                    end = pos + (offset or 0) + 1
                    if op.name == "GLOBAL" and isinstance(arg, str):
                        found.append(arg.replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(recent) >= 2:
                        found.append(f"{recent[-2]}.{recent[-1]}")
                    elif isinstance(arg, str) and "UNICODE" in op.name:
                        recent.append(arg)
                    elif op.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE") and recent:
                        memo[arg if isinstance(arg, int) else len(memo)] = recent[-1]
                    elif op.name in ("BINGET", "LONG_BINGET", "GET") and arg in memo:
                        recent.append(memo[arg])
                    if op.name == "STOP":
                        break
                if end <= pos:
                    break
                pos = end
    except Exception:  # best effort: a report helper must never mask the real refusal
        pass
    return list(dict.fromkeys(found))


def _safe_torch_load(path: Path) -> Any:
    """torch.load with weights_only=True; a pickle needing other objects -> UnsafeCheckpointError."""
    use_mmap = zipfile.is_zipfile(path)  # mmap needs the zip format (torch >= 1.6 default)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols > 2 before refusing or accepting; our error says more
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as err:
        message = str(err)
        if "Weights only load failed" not in message:
            raise CorruptCheckpointError(
                path, f"cannot be unpickled ({message.splitlines()[0] if message else type(err).__name__})",
                "the file is probably truncated; re-download or re-create it",
            ) from None
        rejected = ", ".join(dict.fromkeys(_TORCH_REJECTED.findall(message)))
        if not rejected:  # no GLOBAL named: quote torch's own one-line reason (e.g. an unsupported opcode)
            reasons = [ln.strip() for ln in message.splitlines() if ln.strip().startswith(("Unsupported", "Trying"))]
            rejected = f"the pickle ({reasons[0].rstrip('.')})" if reasons else "the pickle"
        found = _pickle_globals(path)
        what = f"torch's weights-only loader rejected {rejected}"
        if found:
            what += f"; imports found in the pickle: {_head(found, 12)}"
        raise UnsafeCheckpointError(
            path,
            "refused to load: the pickle needs Python objects beyond tensors and plain containers "
            f"({what}). Unpickling such a file runs code chosen by whoever made it, so it was not executed. "
            "The official Reducio files hold only an OrderedDict of tensors and load fine.",
            "if (and only if) you trust the file's origin, convert it once in a trusted, throw-away environment: "
            "python -c \"import torch; from safetensors.torch import save_file; "
            f"ck = torch.load({str(path)!r}, map_location='cpu', weights_only=False); sd = ck.get('state_dict', ck); "
            "save_file({k: v.contiguous() for k, v in sd.items() if torch.is_tensor(v)}, 'weights.safetensors')\" "
            "and load weights.safetensors instead (python -m lib.vae convert weights.safetensors out.safetensors "
            f"--variant ft4 adds the config). Otherwise get the official file from {HF_REPO_URL}.",
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptCheckpointError(
            path, f"cannot be read as a torch checkpoint ({type(err).__name__}: {first}; "
            f"{path.stat().st_size:,} bytes on disk)",
            "the file is probably truncated (an interrupted download?) or not a checkpoint: re-download it "
            f"(official files: {HF_REPO_URL}, about 1.75 GB each) or re-create it",
        ) from None


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its header length (u64 little-endian) and then '{'."""
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8


@contextmanager
def open_checkpoint(path: str | os.PathLike[str]) -> Iterator[_Reader]:
    """A reader over a local checkpoint: normalised key names, shapes, dtypes, lazy tensors."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointNotFoundError(p, "no such file", "check the path")
    reader: _SafetensorsReader | _TorchReader
    if _is_safetensors(p):  # by content, so a misnamed file is still read the safe way it needs
        reader = _SafetensorsReader(p)
    else:
        reader = _TorchReader(p)
    try:
        yield reader
    finally:
        reader.close()


# ------------------------------------------------------------------------------------------------
# Source resolution: path, hf:// URI, preset name
# ------------------------------------------------------------------------------------------------
def _hf_cache_dir(cache_dir: str | os.PathLike[str] | None) -> str:
    if cache_dir is not None:
        return str(Path(cache_dir).expanduser())
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _parse_hf_source(text: str) -> tuple[str, str, str | None]:
    """``hf://owner/repo[@rev]/file`` or a huggingface.co file URL -> (repo_id, filename, revision)."""
    try:
        from huggingface_hub.utils import parse_hf_uri
    except ImportError:  # older huggingface_hub: the same grammar, model repos only
        parse_hf_uri = None
    if parse_hf_uri is not None:
        try:
            uri = parse_hf_uri(text)
        except ValueError as err:
            raise CheckpointNotFoundError(text, f"not a valid Hugging Face reference ({err})",
                                          f"write it as hf://{REDUCIO_HF_REPO}/{OFFICIAL_FILES['reducio-ft4']}") from None
        repo_type, repo_id, revision, filename = uri.type, uri.id, uri.revision, uri.path_in_repo
    else:
        m = re.fullmatch(r"hf://([^/@]+/[^/@]+)(?:@([^/]+))?/(.+)", text)
        if not m:
            raise CheckpointNotFoundError(text, "not a valid Hugging Face reference",
                                          f"write it as hf://{REDUCIO_HF_REPO}/{OFFICIAL_FILES['reducio-ft4']}")
        repo_type, repo_id, revision, filename = "model", m.group(1), m.group(2), m.group(3)
    if repo_type != "model" or not filename:
        raise CheckpointNotFoundError(text, "the Hugging Face reference must name a file in a model repository",
                                      f"write it as hf://{REDUCIO_HF_REPO}/{OFFICIAL_FILES['reducio-ft4']}")
    return repo_id, filename, revision


def _hf_fetch(repo_id: str, filename: str, *, revision: str | None, cache_dir: str | os.PathLike[str] | None) -> Path:
    """A local copy of a Hub file: checkpoints/<file> if present, else the HF cache / a download."""
    local = _paths.CHECKPOINTS_DIR / Path(filename).name
    if local.is_file():
        log.info("using %s (found in checkpoints/, not fetching %s from the Hub)", local, filename)
        return local
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    url = f"https://huggingface.co/{repo_id}"
    file_url = f"{url}/resolve/{revision or 'main'}/{filename}"
    cache = _hf_cache_dir(cache_dir)
    cause: Exception
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir))
    except LocalEntryNotFoundError as err:  # offline / unreachable and not cached (checked first: it is
        cause = err  # also an EntryNotFoundError in some huggingface_hub versions)
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, GatedRepoError) as err:
        official = ", ".join(REDUCIO_CHECKPOINT_FILES.values())
        raise CheckpointDownloadError(
            f"hf://{repo_id}/{filename}", f"the Hub has no such file ({type(err).__name__}: {str(err).splitlines()[0]})",
            f"check the repository and file name at {url} (official Reducio files in {REDUCIO_HF_REPO}: {official})",
        ) from None
    except Exception as err:  # offline mode, DNS/connection/timeout/HTTP errors: all mean "cannot fetch now"
        cause = err
    offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
    raise CheckpointDownloadError(
        f"hf://{repo_id}/{filename}",
        f"not in the Hugging Face cache ({cache}) and cannot be downloaded{offline}: "
        f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}",
        f"on a machine with internet access download {file_url} (repository page: {url}) and either "
        f"(1) put it at {local} (checkpoints/; LVS_CHECKPOINTS_DIR moves that folder) - it is then used directly - or "
        f"(2) on that machine run `hf download {repo_id} {filename}` and copy its Hugging Face cache folder "
        f"($HF_HOME/hub) to {cache} (or point HF_HOME / cache_dir= at the copy)",
    ) from None


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(LOADABLE_SUFFIXES) or text.startswith((".", "~"))


@dataclass(frozen=True)
class _Candidate:
    path: Path
    rank: tuple[int, int]
    meta: dict[str, Any] | None


# Preference (lower wins) of each kind of file per requested parts; the dtype breaks ties.
# "pickle" counts as a full model (the released layout); an encoder-only file never serves "all".
_RANKS: dict[str | None, dict[str, int]] = {
    None: {"all": 0, "pickle": 1, "plain": 2, "encoder": 3},
    "all": {"all": 0, "pickle": 1, "plain": 2},
    "encoder": {"encoder": 0, "all": 1, "pickle": 2, "plain": 3},
}


def _rank_candidate(path: Path, *, preset: str, parts: str | None, dtype: torch.dtype) -> _Candidate | None:
    """Preference of one checkpoints/ file for a preset request (lower is better; None = unusable)."""
    ranks = _RANKS[parts]
    if not _is_safetensors(path):
        return _Candidate(path, (ranks["pickle"], 0), None)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = _parse_metadata(path, fh.metadata() or {})
    except Exception as err:  # an unreadable neighbour must not hide a good file; say so in the log
        log.warning("skipping %s while looking for %s: %s", path, preset, err)
        return None
    if meta is None:
        return _Candidate(path, (ranks["plain"], 0), None)
    if meta.get("preset") not in (None, preset):
        log.info("skipping %s: its metadata says preset %r, not %r", path, meta.get("preset"), preset)
        return None
    if meta["parts"] not in ranks:
        return None  # an encoder-only file cannot give a full model
    return _Candidate(path, (ranks[meta["parts"]], 0 if meta.get("dtype") == dtype_name(dtype) else 1), meta)


def find_named_checkpoint(name: str, *, parts: str | None = None, dtype: torch.dtype = torch.float32) -> Path | None:
    """The file in checkpoints/ for a preset/variant name (rule in the module docstring), or None."""
    preset = canonical_preset(name)
    root = _paths.CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    candidates: list[_Candidate] = []
    for p in sorted(root.iterdir()):
        stem = p.name.lower()
        if not p.is_file() or not stem.endswith(LOADABLE_SUFFIXES):
            continue
        stem = stem.rsplit(".", 1)[0]
        if stem != preset and not (stem.startswith(preset) and stem[len(preset)] in "-_."):
            continue
        cand = _rank_candidate(p, preset=preset, parts=parts, dtype=dtype)
        if cand is not None:
            candidates.append(cand)
    if not candidates:
        return None
    best = min(c.rank for c in candidates)
    top = [c.path for c in candidates if c.rank == best]
    if len(top) > 1:
        raise CheckpointConfigError(
            root, f"several checkpoints fit {preset!r} (parts={parts!r}) equally well: {_head([p.name for p in top])}",
            "pass the path of the one you mean instead of the preset name",
        )
    return top[0]


def resolve_checkpoint(source: str | os.PathLike[str], *, parts: str | None = None, dtype: torch.dtype = torch.float32,
                       cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local file behind ``source`` (a path, an ``hf://`` reference or a preset name).

    May download (Hugging Face references and the released variants' names); never loads.
    """
    _check_parts(parts, allow_none=True)
    text = os.fspath(source)
    if text == "standin":  # the shipped pretrained stand-in (lib.vae.standin), sha256-checked
        from lib.vae.standin import standin_path

        return standin_path()
    if text.startswith("hf://") or text.startswith(("https://huggingface.co/", "http://huggingface.co/")):
        repo_id, filename, revision = _parse_hf_source(text)
        return _hf_fetch(repo_id, filename, revision=revision, cache_dir=cache_dir)
    path = Path(text).expanduser()
    tried = [path] if path.is_absolute() else [Path.cwd() / path, _paths.REPO_ROOT / path]
    for p in tried:
        if p.is_file():
            return p.resolve()
        if p.is_dir():
            raise CheckpointNotFoundError(p, "is a directory, not a checkpoint file",
                                          f"pass a file ({', '.join(LOADABLE_SUFFIXES)}) inside it")
    if not _looks_like_path(text):
        try:
            preset = canonical_preset(text)
        except KeyError as err:
            raise CheckpointNotFoundError(
                text, "is neither an existing file nor a preset/variant name", str(err.args[0]) +
                f"; or a Hugging Face reference like hf://{REDUCIO_HF_REPO}/{OFFICIAL_FILES['reducio-ft4']}",
            ) from None
        found = find_named_checkpoint(preset, parts=parts, dtype=dtype)
        if found is not None:
            log.info("preset %r -> %s", preset, found)
            return found
        if preset in OFFICIAL_FILES:
            return _hf_fetch(REDUCIO_HF_REPO, OFFICIAL_FILES[preset], revision=None, cache_dir=cache_dir)
        raise CheckpointNotFoundError(
            _paths.CHECKPOINTS_DIR, f"no checkpoint for preset {preset!r} (looked for {preset}*{{{','.join(LOADABLE_SUFFIXES)}}}"
            + (f" usable with parts={parts!r})" if parts == "all" else ")"),
            f"train one (python -m lib.vae train ...) or copy it there, or pass its path",
        )
    hint = ""
    if text.startswith(REDUCIO_HF_REPO):
        hint = f"; for the Hub write hf://{text}"
    elif path.name in OFFICIAL_FILES.values():  # a params file pointing at a not-yet-downloaded release
        hint = f"; to fetch it from the Hub (or find it in checkpoints/) pass hf://{REDUCIO_HF_REPO}/{path.name}"
    raise CheckpointNotFoundError(
        text, "no such file" + (f" (looked in {', '.join(str(p.parent) for p in tried)})" if len(tried) > 1 else ""),
        "check the path" + hint + f"; official checkpoints: {HF_REPO_URL} (put them in {_paths.CHECKPOINTS_DIR})",
    )


# ------------------------------------------------------------------------------------------------
# Config resolution for a file
# ------------------------------------------------------------------------------------------------
_FT_TOKEN = re.compile(r"(?:^|[^a-z0-9])ft([24])(?![0-9])")


def preset_from_filename(name: str) -> str | None:
    """A preset named in a file name (longest name first), else an ``ft4``/``ft2`` token."""
    stem = Path(name).name.lower()
    for preset in sorted(PRESETS, key=len, reverse=True):
        if preset in stem:
            return preset
    m = _FT_TOKEN.search(stem)
    return VARIANT_ALIASES[f"ft{m.group(1)}"] if m else None


@lru_cache(maxsize=None)
def _preset_shapes(preset: str, parts: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a preset's state dict, from a model built on the meta device (no memory)."""
    model = ReducioVAE.from_config(get_preset(preset), parts=parts, device="meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _file_parts(keys: Sequence[str]) -> str:
    return "all" if any(k.startswith(DECODER_PREFIXES) for k in keys) else "encoder"


def _differences(shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> int:
    keys = set(shapes) | set(expected)
    return sum(1 for k in keys if shapes.get(k) != expected.get(k))


def match_presets(shapes: Mapping[str, Sequence[int]]) -> list[tuple[str, int]]:
    """Every preset with the number of keys whose presence or shape differs from ``shapes``.

    ``shapes`` is a state-dict listing (key -> shape; ``loss.*`` and a ``module.`` prefix are
    ignored). An encoder-only listing is compared with the presets' encoder part. Sorted best first.
    """
    mapping, _, _ = _normalise_keys(list(shapes))
    clean = {k: tuple(int(d) for d in shapes[raw]) for k, raw in mapping.items()}
    parts = _file_parts(list(clean))
    scored = [(name, _differences(clean, _preset_shapes(name, parts))) for name in PRESETS]
    return sorted(scored, key=lambda item: item[1])


def infer_preset(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The one preset whose keys and shapes equal ``shapes`` exactly; None if none or several do."""
    exact = [name for name, diff in match_presets(shapes) if diff == 0]
    return exact[0] if len(exact) == 1 else None


def _resolve_config(reader: _Reader, *, config: ConfigLike | None, variant: str | None) -> ResolvedConfig:
    """Pick the config for a file (order a-e of the module docstring)."""
    path = reader.path
    variant_preset: str | None = None
    if variant is not None:
        try:
            variant_preset = canonical_preset(variant)
        except KeyError as err:
            raise CheckpointConfigError(path, f"variant={variant!r} is unknown", str(err.args[0])) from None
    if config is not None:
        params, preset = coerce_config(config)
        return ResolvedConfig(params, preset, "from the config= argument")
    meta = reader.metadata
    if meta is not None:
        stored = meta.get("preset") or _preset_of_params(meta["params"])
        if variant_preset is not None and stored is not None and stored != variant_preset:
            raise CheckpointConfigError(
                path, f"variant={variant!r} contradicts the config stored in the file (preset {stored!r})",
                "drop variant= (the stored config is used), or pass config= to override it deliberately",
            )
        return ResolvedConfig(dict(meta["params"]), stored, f"stored in the file's metadata key {METADATA_KEY!r}")
    if variant_preset is not None:
        return ResolvedConfig(get_preset(variant_preset), variant_preset, f"from variant={variant!r}")
    named = preset_from_filename(path.name)
    if named is not None:
        return ResolvedConfig(get_preset(named), named, "from the file name")
    shapes = {k: reader.shape(k) for k in reader.keys()}
    scores = match_presets(shapes)
    exact = [name for name, diff in scores if diff == 0]
    if len(exact) == 1:
        return ResolvedConfig(get_preset(exact[0]), exact[0], "inferred from the state-dict shapes")
    if len(exact) > 1:
        raise CheckpointConfigError(
            path, f"the state-dict shapes fit several presets equally ({', '.join(exact)}) and nothing else names one",
            f"pass variant= (one of {', '.join(exact)}) or config=",
        )
    closest = ", ".join(f"{name}: {diff} keys differ" for name, diff in scores[:3])
    raise CheckpointConfigError(
        path, f"cannot tell which config this file needs: no metadata, no variant in the file name, and its "
        f"{len(shapes)} keys match no preset ({closest})",
        "pass config= (a model.params dict, a .yaml/.json file or a preset name) or variant= (ft4, ft2, a preset)",
    )


# ------------------------------------------------------------------------------------------------
# Building and filling the model
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointInfo:
    """Provenance of a loaded model (attached to it as ``vae.checkpoint_info``)."""

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


def _mismatch_error(reader: _Reader, cfg: ResolvedConfig, parts: str, missing: list[str], unexpected: list[str],
                    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> CheckpointMismatchError:
    """A message listing what does not fit, with hints for the usual causes."""
    counts = []
    if missing:
        counts.append(f"{len(missing)} missing key(s)")
    if unexpected:
        counts.append(f"{len(unexpected)} unexpected key(s)")
    if mismatched:
        counts.append(f"{len(mismatched)} key(s) with another shape")
    lines = [f"does not fit {cfg.describe()} with parts={parts!r}: {', '.join(counts)}"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}; by prefix: {_prefix_counts(missing)}): {_head(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}; by prefix: {_prefix_counts(unexpected)}): {_head(unexpected)}")
    if mismatched:
        shown = [f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in mismatched]
        lines.append(f"  shape mismatches ({len(mismatched)}): {_head(shown, 4)}")
    hints = []
    file_keys = reader.keys()
    if parts == "all" and _file_parts(file_keys) == "encoder" and missing and all(
            k.startswith(DECODER_PREFIXES) for k in missing):
        hints.append("the file holds only the encoder (encoder_3d.*, quant_conv.*): load it with parts='encoder'")
    try:
        scores = match_presets({k: reader.shape(k) for k in file_keys})
        fits = [name for name, diff in scores if diff == 0 and name != cfg.preset]
    except Exception:  # hints are a courtesy; never let them hide the real error
        fits = []
    if fits:
        hints.append(f"the file's keys and shapes match preset {fits[0]!r}: pass variant={fits[0]!r}")
    for hint in hints:
        lines.append(f"  hint: {hint}")
    fix = ("use the checkpoint made for this config, or pass the config it was made with (config= or variant=); "
           "loss.* keys are skipped automatically and parts='encoder' ignores decoder keys")
    return CheckpointMismatchError(reader.path, "\n".join(lines), fix,
                                   missing=missing, unexpected=unexpected, mismatched=mismatched)


def _build(params: Mapping[str, Any], parts: str, path: Path) -> ReducioVAE:
    try:
        # meta: no memory and no random init; every tensor comes from the file (assign=True)
        return ReducioVAE.from_config(dict(params), parts=parts, device="meta")
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointConfigError(path, f"the config cannot build a model ({err})",
                                    "fix the config (config=/variant=) or the file's metadata") from err


def _fill(vae: ReducioVAE, reader: _Reader, keys: Sequence[str], *, device: torch.device, dtype: torch.dtype) -> None:
    """Assign the file's tensors into the meta-built model, one tensor at a time."""
    state: dict[str, torch.Tensor] = {}
    for key in keys:
        t = reader.take(key)
        if t.is_floating_point():
            t = t.to(dtype=dtype)
        state[key] = t.to(device=device)
    vae.load_state_dict(state, strict=True, assign=True)
    del state
    left = [n for n, t in [*vae.named_parameters(), *vae.named_buffers()] if t.is_meta]
    if left:
        # Tensors the state dict does not carry (non-persistent buffers) cannot stay on meta:
        # materialise them by building those values for real. Rare, so the simple route is fine.
        log.debug("materialising %d tensors not stored in the checkpoint: %s", len(left), _head(left))
        fresh = ReducioVAE.from_config(vae.config.to_params(), parts=_model_parts(vae), device=device)
        fresh_tensors = dict([*fresh.named_parameters(), *fresh.named_buffers()])
        for name in left:
            module_name, _, attr = name.rpartition(".")
            module = vae.get_submodule(module_name)
            value = fresh_tensors[name].detach().to(dtype=dtype) if fresh_tensors[name].is_floating_point() \
                else fresh_tensors[name].detach()
            if isinstance(getattr(module, attr), torch.nn.Parameter):
                setattr(module, attr, torch.nn.Parameter(value, requires_grad=False))
            else:
                module._buffers[attr] = value


def _model_parts(vae: ReducioVAE) -> str:
    parts = getattr(vae, "parts", None)
    if parts in PARTS:
        return parts
    return _file_parts(list(vae.state_dict()))


def load_reducio(
    source: str | os.PathLike[str],
    *,
    variant: str | None = None,
    parts: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    config: ConfigLike | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ReducioVAE:
    """Load a Reducio-VAE from a file, an ``hf://`` reference or a preset name (see module doc).

    Args:
        source: local ``.ckpt``/``.pt``/``.pth``/``.safetensors``; ``hf://owner/repo[@rev]/file``;
            or a preset/variant name (``ft4``, ``ft2``, ``reducio-ft4``, ``local-smoke``...).
        variant: ``ft4``/``ft2`` or a preset name; used when the file carries no config.
        parts: ``"all"`` (encoders + decoder), ``"encoder"`` (``encoder_3d`` + ``quant_conv``), or
            None (default): what the file holds - ``"encoder"`` for an encoder-only file (metadata
            ``parts``, or no decoder-side keys), else ``"all"``.
        device: where the weights go (each tensor is moved as it is loaded).
        dtype: floating dtype of the weights (fp16 files are cast to it; ``"fp16"`` etc. accepted).
        config: overrides everything else: a ``model.params`` dict, ``ReducioConfig``, preset name
            or ``.json``/``.yaml`` file.
        cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE``, i.e. ``$HF_HOME/hub``).

    Returns:
        The model in eval mode with ``requires_grad=False`` everywhere; ``vae.checkpoint_info``
        (:class:`CheckpointInfo`) records the file, preset and config origin.

    Raises:
        CheckpointNotFoundError, CheckpointDownloadError, UnsafeCheckpointError,
        CorruptCheckpointError, CheckpointConfigError, CheckpointMismatchError (all ``ValueError``).
    """
    start = time.perf_counter()
    _check_parts(parts, allow_none=True)
    dtype = parse_dtype(dtype)
    device = torch.device(device)
    path = resolve_checkpoint(source, parts=parts, dtype=dtype, cache_dir=cache_dir)
    with open_checkpoint(path) as reader:
        meta = reader.metadata
        if meta is not None and parts == "all" and meta["parts"] != "all" and config is None:
            raise CheckpointMismatchError(
                path, f"holds only the encoder (metadata parts={meta['parts']!r}), but parts='all' was asked for",
                "load it with parts='encoder', or convert the original checkpoint with --parts all",
                missing=[], unexpected=[], mismatched=[],
            )
        cfg = _resolve_config(reader, config=config, variant=variant)
        file_keys = reader.keys()
        if parts is None:  # "what the file holds"; so load_reducio(converted_file) needs no argument
            parts = meta["parts"] if meta is not None else _file_parts(file_keys)
        ignored = [k for k in file_keys if parts == "encoder" and k.startswith(DECODER_PREFIXES)]
        wanted = [k for k in file_keys if parts != "encoder" or not k.startswith(DECODER_PREFIXES)]
        vae = _build(cfg.params, parts, path)
        expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
        wanted_set = set(wanted)
        missing = [k for k in expected if k not in wanted_set]
        unexpected = [k for k in wanted if k not in expected]
        mismatched = [(k, reader.shape(k), expected[k]) for k in wanted if k in expected and reader.shape(k) != expected[k]]
        if missing or unexpected or mismatched:
            raise _mismatch_error(reader, cfg, parts, missing, unexpected, mismatched)
        file_dtypes = tuple(sorted({reader.dtype(k) for k in wanted}))
        _fill(vae, reader, list(expected), device=device, dtype=dtype)
        info = CheckpointInfo(
            path=path, preset=cfg.preset, config_origin=cfg.origin, parts=parts, file_dtypes=file_dtypes,
            loaded_keys=len(expected), skipped_loss_keys=reader.skipped_loss_keys, ignored_decoder_keys=len(ignored),
            stripped_ddp_prefix=reader.stripped_prefix, metadata=meta,
        )
    vae.to(device=device)
    vae.to(dtype=dtype)  # floating tensors only; a no-op for what _fill already cast
    vae.eval()
    vae.requires_grad_(False)
    info = CheckpointInfo(**{**info.__dict__, "seconds": round(time.perf_counter() - start, 3)})
    vae.checkpoint_info = info
    log.info("loaded %s (%s, parts=%s, %d keys, %s -> %s) in %.1f s", path, cfg.describe(), parts, info.loaded_keys,
             "/".join(file_dtypes), dtype_name(dtype), info.seconds)
    return vae


# ------------------------------------------------------------------------------------------------
# Writing our safetensors format
# ------------------------------------------------------------------------------------------------
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
        "parts": _check_parts(parts),
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
        preset = info.preset if isinstance(info, CheckpointInfo) else _preset_of_params(vae.config.to_params())
    metadata = build_metadata(vae, parts=_model_parts(vae), dtype=stored_dtype, preset=preset,
                              source_file=source_file, source_sha256=source_sha256, extra=extra)
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
