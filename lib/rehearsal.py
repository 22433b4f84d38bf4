"""The rehearsal of the UCF101 study path on a machine without UCF101, the released checkpoint or a GPU.

``params/ucf101_rehearsal.yaml`` runs notebooks 00-07 with the settings of
``params/ucf101_reducio.yaml`` on inputs shaped like the real ones:

- a UCF101-layout tree (:mod:`lib.data.synth_ucf101`): official class folders, file names, list
  lines and labels, real-format videos (XVID AVI, 320x240, 25 and 29.97 fps), restricted to
  :data:`REHEARSAL_SELECTION`;
- a PyTorch-Lightning ``.ckpt`` (:mod:`lib.vae.lightning_ckpt`) of the ``reducio-rehearsal``
  preset with random weights: the released ft4 key names and flags, 16x4x7x9 latents at 224x288,
  training-only ``loss.*`` tensors and OmegaConf hyper-parameters, found by preset name in
  ``checkpoints/`` exactly as ``vae_source: ft4`` finds the released file (an existing file is
  kept: delete it to write it again).

:func:`prepare` makes both where the params file points (``python -m lib.rehearsal prepare``);
``make rehearsal`` then runs ``python -m lib.study run params/ucf101_rehearsal.yaml``.

The two params files may differ only in the keys of :data:`ALLOWED_DIFFERENCES` (where the data,
the checkpoint and the results live, and sizes); any other difference means the rehearsal no
longer exercises the real path. :func:`disallowed_differences` lists them
(``python -m lib.rehearsal diff``; a test runs it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.data.synth_ucf101 import LayoutSelection, ensure_layout, parse_groups
from lib.paths import PARAMS_DIR, resolve_path
from lib.study import RUNNER_KEY, read_params_file

REAL_PARAMS: Path = PARAMS_DIR / "ucf101_reducio.yaml"
REHEARSAL_PARAMS: Path = PARAMS_DIR / "ucf101_rehearsal.yaml"

#: The videos of the rehearsal tree: the first and last class, the pair that case-sensitive sorting
#: swaps (HammerThrow/Hammering) and the folder whose file names differ in case (HandstandPushups);
#: one group of each fold's test part (1, 8, 15), so that every fold notebook 02 records has a test
#: group and two train groups (one of them becomes validation); one clip per group.
REHEARSAL_SELECTION = LayoutSelection(
    classes=("ApplyEyeMakeup", "HammerThrow", "Hammering", "HandstandPushups", "YoYo"),
    groups=(1, 8, 15), clips_per_group=1)
CHECKPOINT_PRESET = "reducio-rehearsal"
CHECKPOINT_FILE = "reducio-rehearsal-fs32-attn23.ckpt"  # named like the released reducio-ft4-fs32-attn23.ckpt
CHECKPOINT_SEED = 0
#: Write the checkpoint's hyper-parameters as an OmegaConf DictConfig, as Lightning training runs
#: configured by OmegaConf do (``load_reducio`` skips such objects unexecuted), not as a plain dict.
OMEGACONF_HPARAMS = True

_SIZES = frozenset({"seeds", "pixel_seeds", "epochs", "pixel_epochs", "num_workers"})
#: Per notebook, the keys whose values may differ between the real and the rehearsal params file;
#: the runner's time limits (``runner``, see lib.study) are sizes of the machine and may all differ.
ALLOWED_DIFFERENCES: dict[str, frozenset[str]] = {
    "00_environment_check": frozenset({"dataset_root", "reducio_checkpoint", "classes_in_grid", "videos_per_class"}),
    "01_reconstruction": frozenset({"dataset_root", "vae_source", "num_videos"}),
    "02_latent_cache": frozenset({"dataset_root", "vae_source", "cache_name", "batch_size", "num_workers",
                                  "projection_points"}),
    **{name: frozenset({"cache_name", "params_file"}) | _SIZES
       for name in ("03_lstm", "04_transformer", "05_conv3d", "06_pixel_baseline")},
    "07_compare": frozenset({"cache_name"}),
}
_ABSENT = "<absent>"


@dataclass(frozen=True)
class Difference:
    """One parameter whose value differs between two params files (``<absent>`` where missing)."""

    notebook: str
    key: str
    real: Any
    rehearsal: Any

    @property
    def allowed(self) -> bool:
        """Whether :data:`ALLOWED_DIFFERENCES` lets this key differ (any key of the runner section)."""
        return self.notebook == RUNNER_KEY or self.key in ALLOWED_DIFFERENCES.get(self.notebook, frozenset())

    def __str__(self) -> str:
        return f"{self.notebook}.{self.key}: {self.real!r} (real) vs {self.rehearsal!r} (rehearsal)"


def _load(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    content = read_params_file(resolve_path(path))  # syntax errors name the file, line and column
    return {name: dict(values or {}) for name, values in content.items()}


def param_differences(real: str | os.PathLike[str] = REAL_PARAMS,
                      rehearsal: str | os.PathLike[str] = REHEARSAL_PARAMS) -> list[Difference]:
    """Every (notebook, key) whose value differs, a notebook or key missing from one file included."""
    a, b = _load(real), _load(rehearsal)
    out = []
    for notebook in sorted(set(a) | set(b)):
        if notebook not in a or notebook not in b:
            out.append(Difference(notebook, "*", "present" if notebook in a else _ABSENT,
                                  "present" if notebook in b else _ABSENT))
            continue
        for key in sorted(set(a[notebook]) | set(b[notebook])):
            va, vb = a[notebook].get(key, _ABSENT), b[notebook].get(key, _ABSENT)
            if va != vb or type(va) is not type(vb):
                out.append(Difference(notebook, key, va, vb))
    return out


def disallowed_differences(real: str | os.PathLike[str] = REAL_PARAMS,
                           rehearsal: str | os.PathLike[str] = REHEARSAL_PARAMS) -> list[Difference]:
    """The differences :data:`ALLOWED_DIFFERENCES` does not allow (empty: the rehearsal is faithful)."""
    return [d for d in param_differences(real, rehearsal) if not d.allowed]


def _one_value(params: Mapping[str, Mapping[str, Any]], key: str, path: Path) -> str:
    values = {str(v[key]) for v in params.values() if key in v}
    if len(values) != 1:
        raise ValueError(f"{path}: the notebooks must agree on one {key}, found {sorted(values) or 'none'}")
    return values.pop()


def checkpoint_path(vae_source: str) -> Path:
    """Where the rehearsal checkpoint for ``vae_source`` lives: a path as given (repo-relative or
    absolute), the preset name :data:`CHECKPOINT_PRESET` -> ``checkpoints/`` + :data:`CHECKPOINT_FILE`."""
    import lib.paths

    if vae_source.strip().lower() == CHECKPOINT_PRESET:
        return lib.paths.CHECKPOINTS_DIR / CHECKPOINT_FILE
    if "/" in vae_source or vae_source.endswith(".ckpt"):
        return resolve_path(vae_source)
    raise ValueError(f"vae_source {vae_source!r} is neither {CHECKPOINT_PRESET!r} nor a .ckpt path: "
                     "the rehearsal writes only its own checkpoint")


def ensure_checkpoint(path: str | os.PathLike[str], *, omegaconf_hparams: bool = OMEGACONF_HPARAMS) -> Path:
    """The rehearsal checkpoint at ``path``, written (seeded random weights) when missing."""
    from lib.vae.lightning_ckpt import random_reducio, save_lightning_checkpoint

    path = Path(path)
    if not path.is_file():
        save_lightning_checkpoint(random_reducio(CHECKPOINT_PRESET, seed=CHECKPOINT_SEED), path,
                                  omegaconf_hparams=omegaconf_hparams, seed=CHECKPOINT_SEED)
    return path


def prepare(params_file: str | os.PathLike[str] = REHEARSAL_PARAMS, *,
            selection: LayoutSelection = REHEARSAL_SELECTION, seed: int = 0, workers: int | None = None,
            progress: bool = True) -> dict[str, Path]:
    """Generate the tree and the checkpoint a rehearsal params file points at (only what is missing).

    Every notebook with a ``dataset_root`` must name the same one, every notebook with a
    ``vae_source`` the same one. Returns ``{"dataset_root": ..., "checkpoint": ...}``.
    """
    path = resolve_path(params_file)
    params = _load(path)
    root = ensure_layout(resolve_path(_one_value(params, "dataset_root", path)), selection, seed=seed,
                         workers=workers, progress=progress)
    checkpoint = ensure_checkpoint(checkpoint_path(_one_value(params, "vae_source", path)))
    return {"dataset_root": root, "checkpoint": checkpoint}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.rehearsal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_prep = sub.add_parser("prepare", help="generate the tree and the checkpoint the rehearsal params file names")
    p_prep.add_argument("--params", default=str(REHEARSAL_PARAMS), help="rehearsal params file")
    p_prep.add_argument("--classes", default=",".join(REHEARSAL_SELECTION.classes or ()),
                        help="comma-separated official class folders")
    p_prep.add_argument("--groups", default=",".join(map(str, REHEARSAL_SELECTION.groups or ())), help="e.g. 1,8-10")
    p_prep.add_argument("--clips-per-group", type=int, default=REHEARSAL_SELECTION.clips_per_group)
    p_prep.add_argument("--workers", type=int, default=None, help="video writer processes (default: all cores)")
    p_diff = sub.add_parser("diff", help="list how the rehearsal params file differs from the real one")
    p_diff.add_argument("--real", default=str(REAL_PARAMS))
    p_diff.add_argument("--rehearsal", default=str(REHEARSAL_PARAMS))
    args = parser.parse_args(argv)
    if args.command == "diff":
        differences = param_differences(args.real, args.rehearsal)
        for d in differences:
            print(f"{'allowed   ' if d.allowed else 'DISALLOWED'} {d}")
        bad = [d for d in differences if not d.allowed]
        print(f"{len(differences)} differences, {len(bad)} not allowed (lib.rehearsal.ALLOWED_DIFFERENCES)")
        return 1 if bad else 0
    selection = LayoutSelection(classes=tuple(filter(None, args.classes.split(","))) or None,
                                groups=parse_groups(args.groups) if args.groups else None,
                                clips_per_group=args.clips_per_group)
    made = prepare(args.params, selection=selection, workers=args.workers)
    for name, where in made.items():
        print(f"{name}: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
