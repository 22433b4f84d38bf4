"""The local file behind a checkpoint source: a path, an ``hf://`` reference or a preset name.

1. **A local file**: absolute, relative to the working directory, or relative to the repository
   root (as params files write them).
2. **A Hugging Face reference** ``hf://<owner>/<repo>[@<revision>]/<file>`` (or the file's
   ``https://huggingface.co/...`` address): a file of that name in ``checkpoints/`` is used as is;
   otherwise ``huggingface_hub.hf_hub_download`` fetches it into the HF cache (``HF_HOME`` /
   ``HF_HUB_CACHE``, or ``cache_dir=``). Offline or unreachable -> :class:`CheckpointDownloadError`
   saying where to put the file by hand.
3. **A preset or variant name** (``"ft4"``, ``"reducio-ft4"``, ``"local-smoke"``...): files in
   ``checkpoints/`` (:data:`lib.paths.CHECKPOINTS_DIR`) named ``<preset>.<ext>``, ``<preset>-*`` or
   ``<preset>_*``. Preferred: a ``.safetensors`` with our metadata holding exactly the requested
   ``parts``, then a full one, then a pickle, then a safetensors without metadata; an
   encoder-only file only for ``parts="encoder"`` (or last, for ``parts=None``); the requested
   dtype breaks ties, a remaining tie is an error. For the released variants (ft4, ft2) the
   official file is fetched as in 2 when nothing is found.
4. ``"standin"``: the shipped stand-in weights (:func:`lib.vae.standin.standin_path`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

import lib.paths as _paths
from lib.env_check import REDUCIO_CHECKPOINT_FILES, REDUCIO_HF_REPO
from lib.vae.checkpoint_config import VARIANT_ALIASES, canonical_preset
from lib.vae.checkpoint_errors import (
    CheckpointConfigError,
    CheckpointDownloadError,
    CheckpointNotFoundError,
)
from lib.vae.checkpoint_io import (
    HF_REPO_URL,
    LOADABLE_SUFFIXES,
    check_parts,
    dtype_name,
    head,
    is_safetensors,
    parse_metadata,
)

log = logging.getLogger(__name__)

#: Released preset -> file name in the Hugging Face repo.
OFFICIAL_FILES: dict[str, str] = {VARIANT_ALIASES[v]: f for v, f in REDUCIO_CHECKPOINT_FILES.items()}
_EXAMPLE_REF = f"hf://{REDUCIO_HF_REPO}/{OFFICIAL_FILES['reducio-ft4']}"


def _parse_hf_source(text: str) -> tuple[str, str, str | None]:
    """``hf://owner/repo[@rev]/file`` or a huggingface.co file URL -> (repo_id, filename, revision)."""
    from huggingface_hub.utils import parse_hf_uri

    try:
        uri = parse_hf_uri(text)
    except ValueError as err:
        raise CheckpointNotFoundError(
            text, f"not a valid Hugging Face reference ({err})", f"write it as {_EXAMPLE_REF}"
        ) from None
    if uri.type != "model" or not uri.path_in_repo:
        raise CheckpointNotFoundError(
            text, "the Hugging Face reference must name a file in a model repository", f"write it as {_EXAMPLE_REF}"
        )
    return uri.id, uri.path_in_repo, uri.revision


def _hf_fetch(repo_id: str, filename: str, *, revision: str | None, cache_dir: str | os.PathLike[str] | None) -> Path:
    """A local copy of a Hub file: checkpoints/<file> if present, else the HF cache / a download."""
    local = _paths.CHECKPOINTS_DIR / Path(filename).name
    if local.is_file():
        log.info("using %s (found in checkpoints/, not fetching %s from the Hub)", local, filename)
        return local
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    url = f"https://huggingface.co/{repo_id}"
    cache = str(Path(cache_dir).expanduser()) if cache_dir is not None else str(constants.HF_HUB_CACHE)
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir))
    except LocalEntryNotFoundError as err:  # checked first: in some versions it is also an EntryNotFoundError
        cause: Exception = err
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, GatedRepoError) as err:
        raise CheckpointDownloadError(
            f"hf://{repo_id}/{filename}",
            f"the Hub has no such file ({type(err).__name__}: {str(err).splitlines()[0]})",
            f"check the repository and file name at {url} (official Reducio files in {REDUCIO_HF_REPO}: "
            f"{', '.join(REDUCIO_CHECKPOINT_FILES.values())})",
        ) from None
    except Exception as err:  # noqa: BLE001 - offline mode, DNS/connection/HTTP errors: "cannot fetch now"
        cause = err
    offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
    raise CheckpointDownloadError(
        f"hf://{repo_id}/{filename}",
        f"not in the Hugging Face cache ({cache}) and cannot be downloaded{offline}: "
        f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}",
        f"on a machine with internet access download {url}/resolve/{revision or 'main'}/{filename} (repository "
        f"page: {url}) and either (1) put it at {local} (checkpoints/; LVS_CHECKPOINTS_DIR moves that folder) - it "
        f"is then used directly - or (2) on that machine run `hf download {repo_id} {filename}` and copy its "
        f"Hugging Face cache folder ($HF_HOME/hub) to {cache} (or point HF_HOME / cache_dir= at the copy)",
    ) from None


def _file_kind(path: Path, preset: str) -> tuple[str, str | None] | None:
    """(``all``/``encoder``/``pickle``/``plain``, stored dtype) of a checkpoints/ file; None = not for ``preset``."""
    if not is_safetensors(path):
        return "pickle", None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = parse_metadata(path, fh.metadata() or {})
    except Exception as err:  # noqa: BLE001 - an unreadable neighbour must not hide a good file
        log.warning("skipping %s while looking for %s: %s", path, preset, err)
        return None
    if meta is None:
        return "plain", None
    if meta.get("preset") not in (None, preset):
        log.info("skipping %s: its metadata says preset %r, not %r", path, meta.get("preset"), preset)
        return None
    return meta["parts"], meta.get("dtype")


def find_named_checkpoint(name: str, *, parts: str | None = None, dtype: torch.dtype = torch.float32) -> Path | None:
    """The file in checkpoints/ for a preset/variant name (rule 3 of the module docstring), or None."""
    preset = canonical_preset(name)
    root = _paths.CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    order = (
        (["encoder"] if parts == "encoder" else [])
        + ["all", "pickle", "plain"]
        + (["encoder"] if parts is None else [])
    )
    ranked: list[tuple[tuple[int, int], Path]] = []
    for p in sorted(root.iterdir()):
        stem, _, suffix = p.name.lower().rpartition(".")
        if not p.is_file() or f".{suffix}" not in LOADABLE_SUFFIXES:
            continue
        if stem != preset and not (stem.startswith(preset) and stem[len(preset)] in "-_."):
            continue
        kind = _file_kind(p, preset)
        if kind is not None and kind[0] in order:
            ranked.append(((order.index(kind[0]), int(kind[1] not in (None, dtype_name(dtype)))), p))
    if not ranked:
        return None
    best = min(rank for rank, _ in ranked)
    top = [p for rank, p in ranked if rank == best]
    if len(top) > 1:
        raise CheckpointConfigError(
            root,
            f"several checkpoints fit {preset!r} (parts={parts!r}) equally well: {head([p.name for p in top])}",
            "pass the path of the one you mean instead of the preset name",
        )
    return top[0]


def _from_preset_name(
    text: str, *, parts: str | None, dtype: torch.dtype, cache_dir: str | os.PathLike[str] | None
) -> Path:
    try:
        preset = canonical_preset(text)
    except KeyError as err:
        raise CheckpointNotFoundError(
            text,
            "is neither an existing file nor a preset/variant name",
            f"{err.args[0]}; or a Hugging Face reference like {_EXAMPLE_REF}",
        ) from None
    found = find_named_checkpoint(preset, parts=parts, dtype=dtype)
    if found is not None:
        log.info("preset %r -> %s", preset, found)
        return found
    if preset in OFFICIAL_FILES:
        return _hf_fetch(REDUCIO_HF_REPO, OFFICIAL_FILES[preset], revision=None, cache_dir=cache_dir)
    usable = f" usable with parts={parts!r}" if parts == "all" else ""
    raise CheckpointNotFoundError(
        _paths.CHECKPOINTS_DIR,
        f"no checkpoint for preset {preset!r} (looked for {preset}*{{{','.join(LOADABLE_SUFFIXES)}}}{usable})",
        "train one (python -m lib.vae train ...) or copy it there, or pass its path",
    )


def resolve_checkpoint(
    source: str | os.PathLike[str],
    *,
    parts: str | None = None,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The local file behind ``source`` (module docstring). May download; never loads."""
    check_parts(parts, allow_none=True)
    text = os.fspath(source)
    if text == "standin":  # the shipped pretrained stand-in (lib.vae.standin), sha256-checked
        from lib.vae.standin import standin_path

        return standin_path()
    if re.match(r"(hf://|https?://huggingface\.co/)", text):
        repo_id, filename, revision = _parse_hf_source(text)
        return _hf_fetch(repo_id, filename, revision=revision, cache_dir=cache_dir)
    path = Path(text).expanduser()
    tried = [path] if path.is_absolute() else [Path.cwd() / path, _paths.REPO_ROOT / path]
    for p in tried:
        if p.is_file():
            return p.resolve()
        if p.is_dir():
            raise CheckpointNotFoundError(
                p, "is a directory, not a checkpoint file", f"pass a file ({', '.join(LOADABLE_SUFFIXES)}) inside it"
            )
    looks_like_path = "/" in text or os.sep in text or text.lower().endswith(LOADABLE_SUFFIXES) or text[:1] in ".~"
    if not looks_like_path:
        return _from_preset_name(text, parts=parts, dtype=dtype, cache_dir=cache_dir)
    hint = ""
    if text.startswith(REDUCIO_HF_REPO):
        hint = f"; for the Hub write hf://{text}"
    elif path.name in OFFICIAL_FILES.values():  # a params file pointing at a not-yet-downloaded release
        hint = f"; to fetch it from the Hub (or find it in checkpoints/) pass hf://{REDUCIO_HF_REPO}/{path.name}"
    looked = f" (looked in {', '.join(str(p.parent) for p in tried)})" if len(tried) > 1 else ""
    raise CheckpointNotFoundError(
        text,
        f"no such file{looked}",
        f"check the path{hint}; official checkpoints: {HF_REPO_URL} (put them in {_paths.CHECKPOINTS_DIR})",
    )
