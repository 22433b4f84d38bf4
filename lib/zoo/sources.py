"""``diffusers:`` VAE sources: a Hugging Face hub repo or a local folder, loaded through diffusers.

Forms (``--vae`` / ``vae_source``):

* ``diffusers:<org>/<repo>[@<revision>]`` - a hub repo. The VAE is read from its ``vae/``
  subfolder (the layout of every video pipeline repo), or from the repo root for a standalone VAE
  repo (e.g. ``stabilityai/sd-vae-ft-mse``); :data:`lib.zoo.adapters.ADAPTERS` records which for
  the released checkpoints. Files come through ``huggingface_hub`` (its cache, ``HF_HOME``);
  offline, a repo not in that cache is an error saying where to put the files.
* ``diffusers:<folder>`` - a local folder holding a diffusers VAE (``config.json`` with
  ``_class_name`` and the weights), or a pipeline folder with it in ``vae/``; a relative path is
  taken from the working directory, then from the repository.

The adapter is chosen by the config's ``_class_name``. diffusers itself is an optional
dependency (``pip install -e .[zoo]``): without it a ``diffusers:`` source is an error saying so,
and nothing else in the toolkit imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.errors import ActionableError
from lib.paths import REPO_ROOT
from lib.zoo.adapters import ADAPTERS, Adapter, adapter_for_class

DIFFUSERS_PREFIX = "diffusers:"  # "diffusers:<org>/<repo>[@revision]" or "diffusers:<folder>"
CONFIG_NAME = "config.json"
FIX_INSTALL = "install the optional zoo dependencies: pip install -e '.[zoo]' (diffusers 0.42.x)"


class ZooSourceError(ActionableError):
    """A ``diffusers:`` source that cannot be resolved or loaded (names the source and the fix)."""


@dataclass(frozen=True)
class ZooSource:
    """A parsed ``diffusers:`` source. ``folder`` is set for local sources, ``repo`` for hub ones."""

    text: str
    folder: Path | None = None
    repo: str | None = None
    revision: str | None = None
    subfolder: str = ""

    @property
    def is_local(self) -> bool:
        return self.folder is not None

    def identity(self) -> dict[str, Any]:
        """What names the model in a cache key (besides its weights' hash)."""
        if self.is_local:
            return {"origin": "local", "folder_name": self.folder.name, "subfolder": self.subfolder}
        return {"origin": "hub", "repo": self.repo, "revision": self.revision or "main", "subfolder": self.subfolder}


def is_diffusers_source(source: str) -> bool:
    return str(source).startswith(DIFFUSERS_PREFIX)


def require_diffusers() -> Any:
    """The ``diffusers`` module, or a ZooSourceError saying how to install it."""
    try:
        import diffusers
    except ImportError:
        raise ZooSourceError(None, "a diffusers: VAE source needs the diffusers package, which is not installed",
                             FIX_INSTALL) from None
    return diffusers


def _local_folder(spec: str) -> Path | None:
    path = Path(spec).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    return next((p.resolve() for p in candidates if p.is_dir()), None)


def parse_source(source: str) -> ZooSource:
    """Split a ``diffusers:`` source into a local folder (with its VAE subfolder) or a hub repo."""
    if not is_diffusers_source(source):
        raise ZooSourceError(source, "is not a diffusers: source", "write diffusers:<org>/<repo> or diffusers:<folder>")
    spec = source[len(DIFFUSERS_PREFIX):].strip()
    if not spec:
        raise ZooSourceError(source, "names no repo or folder", "write diffusers:<org>/<repo>[@revision] or "
                             "diffusers:<folder>")
    folder = _local_folder(spec)
    if folder is not None:
        if (folder / CONFIG_NAME).is_file():
            return ZooSource(source, folder=folder)
        if (folder / "vae" / CONFIG_NAME).is_file():
            return ZooSource(source, folder=folder, subfolder="vae")
        raise ZooSourceError(folder, f"holds no diffusers VAE ({CONFIG_NAME} here or in vae/)",
                             "pass the folder save_pretrained wrote (config.json and the safetensors weights)")
    repo, _, revision = spec.partition("@")
    if repo.count("/") != 1 or any(not part for part in repo.split("/")) or spec.startswith((".", "/", "~")):
        raise ZooSourceError(source, f"{spec!r} is neither an existing folder nor a hub repo id <org>/<repo>",
                             "check the path (relative paths are taken from the working directory), or write "
                             "diffusers:<org>/<repo>[@revision]")
    known = {a.repo: a.subfolder for a in ADAPTERS.values()}
    return ZooSource(source, repo=repo, revision=revision or None, subfolder=known.get(repo, "vae"))


def _hub_config(src: ZooSource) -> tuple[dict[str, Any], str]:
    """The VAE's config.json from the hub (or the local hub cache), and the subfolder it was in."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ZooSourceError(src.text, "huggingface_hub is not installed", FIX_INSTALL) from None
    subfolders = [src.subfolder] + ([""] if src.subfolder == "vae" and src.repo not in
                                    {a.repo for a in ADAPTERS.values()} else [])
    last: Exception | None = None
    for sub in subfolders:
        try:
            path = hf_hub_download(src.repo, CONFIG_NAME, subfolder=sub or None, revision=src.revision)
            return json.loads(Path(path).read_text()), sub
        except Exception as err:  # offline, missing file, gated or unknown repo
            last = err
    where = f"{src.repo}/{src.subfolder}" if src.subfolder else src.repo
    raise ZooSourceError(
        src.text,
        f"cannot get {where}/{CONFIG_NAME} ({type(last).__name__}: {str(last).splitlines()[0] if last else ''})",
        f"on a machine with access run: huggingface-cli download {src.repo}"
        + (f" --revision {src.revision}" if src.revision else "")
        + (f" --include '{src.subfolder}/*'" if src.subfolder else "")
        + " --local-dir DIR, copy DIR here and pass --vae diffusers:DIR (or point HF_HOME at a hub cache holding it)",
    ) from None


def read_config(src: ZooSource) -> tuple[dict[str, Any], ZooSource]:
    """The VAE's config and the source with its subfolder settled."""
    if src.is_local:
        path = src.folder / src.subfolder / CONFIG_NAME
        try:
            return json.loads(path.read_text()), src
        except (OSError, ValueError) as err:
            raise ZooSourceError(path, f"cannot be read as JSON ({err})",
                                 "re-save the VAE with save_pretrained") from None
    config, sub = _hub_config(src)
    return config, ZooSource(src.text, repo=src.repo, revision=src.revision, subfolder=sub)


def load_zoo_vae(source: str, *, device: str = "cpu") -> tuple[Any, Adapter, ZooSource]:
    """Load the VAE of a ``diffusers:`` source in float32, frozen, in eval mode."""
    import torch

    diffusers = require_diffusers()
    src = parse_source(source)
    config, src = read_config(src)
    class_name = config.get("_class_name")
    if not isinstance(class_name, str):
        raise ZooSourceError(src.folder or src.text, f"{CONFIG_NAME} has no _class_name",
                             "save the VAE with diffusers' save_pretrained, which records its class")
    try:
        adapter = adapter_for_class(class_name, origin=src.text)
    except ValueError as err:
        raise ZooSourceError(src.text, str(err),
                             "use one of the classes listed, or add an adapter in lib/zoo") from None
    cls = getattr(diffusers, class_name)
    where = str(src.folder) if src.is_local else src.repo
    kwargs: dict[str, Any] = {"torch_dtype": torch.float32, "low_cpu_mem_usage": False}  # no accelerate needed
    if src.subfolder:
        kwargs["subfolder"] = src.subfolder
    if src.revision:
        kwargs["revision"] = src.revision
    try:
        model = cls.from_pretrained(where, **kwargs)
    except (OSError, ValueError, RuntimeError) as err:
        raise ZooSourceError(src.text, f"{class_name}.from_pretrained failed: {str(err).splitlines()[0]}",
                             "check that the folder holds the weights save_pretrained wrote (or download the repo "
                             "again)") from None
    bad = [n for n, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise ZooSourceError(src.text, f"weights hold NaN or infinite values ({', '.join(bad[:3])})",
                             "download the checkpoint again")
    model = model.to(device).eval().requires_grad_(False)
    return model, adapter, src
