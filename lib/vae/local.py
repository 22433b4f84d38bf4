"""Which VAE a notebook uses, the locally trained VAEs, and the input geometry a VAE expects.

Notebooks pass their ``vae_source`` parameter through :func:`resolve_vae_source`:

- ``""`` or ``"standin"``: the shipped pretrained stand-in (:mod:`lib.vae.standin`), the
  embedded study's frozen VAE, sha256-checked;
- ``"local:<preset>"``: a VAE trained in the study itself by :func:`ensure_local_vae` on the
  labelled dataset's training split (``local:smoke`` in seconds, ``local:default`` ~10 min into
  ``checkpoints/local-<preset>-seed0/``, reused afterwards); an option for ablations, not the
  default, because a VAE trained on the classifiers' own split is not the regime under study;
- anything else (a path, ``hf://microsoft/Reducio-VAE/<file>``, ``ft4``): as
  :func:`lib.vae.load_reducio` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lib.data.spatial import CropPolicy
from lib.errors import ActionableError
from lib.paths import CHECKPOINTS_DIR


def local_vae_dir(preset: str, seed: int = 0) -> Path:
    return CHECKPOINTS_DIR / f"local-{preset}-seed{seed}"


def ensure_local_vae(
    *, preset: str = "smoke", seed: int = 0, data_root: str | Path | None = None, progress: bool = False
) -> Path:
    """Path of the trained ``vae.safetensors`` of training ``preset``, training it first if the
    run directory has no finished run (an interrupted run resumes)."""
    from lib.vae import train

    out = local_vae_dir(preset, seed)
    weights = out / train.WEIGHTS_NAME
    if weights.is_file() and (out / train.METRICS_NAME).is_file():
        return weights
    if data_root is None:
        from lib.data.synth import ensure_synthetic

        data_root = ensure_synthetic(preset="smoke" if preset == "smoke" else "default")
    args = ["--data", str(data_root), "--preset", preset, "--out", str(out), "--seed", str(seed)]
    if not progress:
        args.append("--no-progress")
    code = train.main(args)
    if code != 0 or not weights.is_file():
        raise RuntimeError(f"training the local VAE ({preset}) into {out} failed (exit {code}); rerun to resume")
    return weights


LOCAL_PREFIX = "local:"


def resolve_vae_source(vae_source: str, *, data_root: str | Path | None = None) -> str:
    """The loadable source behind a notebook's ``vae_source`` (see the module docstring)."""
    text = str(vae_source).strip()
    if text in ("", "standin"):
        from lib.vae.standin import standin_path

        return str(standin_path())
    if text.startswith(LOCAL_PREFIX):
        return str(ensure_local_vae(preset=text[len(LOCAL_PREFIX) :], data_root=data_root))
    return text


class UnknownGeometryError(ActionableError):
    """A locally trained VAE whose training geometry is not recorded with its weights."""


def input_policy(vae: Any) -> CropPolicy:
    """The spatial policy a loaded VAE expects: a locally trained one records its training
    geometry (short side of the stored frames, centre crop) in its checkpoint metadata; a
    released-architecture VAE gets the study's bucket for Reducio (240x320 -> short side 224 ->
    centre crop 224x288). A local-architecture VAE (the motion-compensated decoder extensions)
    without recorded geometry is refused: guessing the released bucket would encode ~10x more
    pixels than it was trained on, under the same weights hash."""
    info = getattr(vae, "checkpoint_info", None)
    training = ((info.metadata or {}).get("training") if info is not None else None) or {}
    if "crop" in training and "bank_size" in training:
        return CropPolicy(short_side=int(training["bank_size"][0]), crop=tuple(int(v) for v in training["crop"]))
    dd = vae.config.ddconfig
    if dd.content_warp or dd.content_residual or dd.coarse_flow:
        where = getattr(info, "path", None) if info is not None else None
        raise UnknownGeometryError(
            where,
            "a locally trained VAE (motion-compensated decoder) whose training geometry "
            "(crop, stored frame size) is not recorded with its weights",
            "load the vae.safetensors its training wrote (or convert that file with python -m "
            "lib.vae convert, which keeps the geometry), or pass the spatial policy explicitly",
        )
    return CropPolicy()
