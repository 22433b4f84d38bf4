"""The files of a VAE training run's output folder and the rules for resuming one.

``train_state.pt`` (format :data:`STATE_FORMAT`) is the commit point of a checkpoint: step,
elapsed seconds, the run's config (:meth:`RunConfig.to_dict`), the architecture behind the model
preset, model / EMA / AdamW state dicts and the global RNG states, as tensors and plain containers
only (``torch.load(weights_only=True)`` reads it). ``history.csv`` holds :data:`HISTORY_COLUMNS`,
one row per step, never a step twice. ``vae.safetensors`` loads with ``load_reducio`` alone and
carries the run's provenance under its metadata's ``training`` entry. Every file is written to a
temporary name and renamed.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lib import training
from lib.errors import ActionableError, unsafe_load_cause
from lib.runs import atomic_write
from lib.training import refuse_other_settings, settings_differences
from lib.vae.loading import save_reducio
from lib.vae.presets import get_preset
from lib.vae.train_presets import RunConfig

WEIGHTS_NAME = "vae.safetensors"
STATE_NAME = "train_state.pt"
HISTORY_NAME = "history.csv"
METRICS_NAME = "metrics.json"
STATE_FORMAT = 1
HISTORY_COLUMNS = ("step", "loss", "l1", "ssim", "grad", "kl", "shift", "pyramid", "motion", "latent_motion",
                   "grad_norm", "lr", "elapsed_s", "clips_per_s", "probe_psnr", "probe_ssim")
LOSS_COLUMNS = ("loss", "l1", "ssim", "grad", "kl", "shift", "pyramid", "motion", "latent_motion", "grad_norm")
RNG_STREAMS = ("torch", "numpy", "python")  # the global generators a train state's "rng" entry holds


class TrainStateError(ActionableError):
    """The output folder holds a run that this command cannot continue (other settings, bad file)."""


def capture_rng_state() -> dict[str, Any]:
    """The global torch, numpy and python RNG states, as ``train_state.pt`` records them
    (restore with :func:`lib.training.restore_rng_state`)."""
    return training.capture_rng_state(RNG_STREAMS)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save atomically (temp file, fsync, rename): a kill leaves the old file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def remove_stale_temps(out: Path) -> list[Path]:
    """Delete temp files a killed run left in ``out`` (ours and save_reducio's); returns them."""
    stale = [p for name in (STATE_NAME, WEIGHTS_NAME, METRICS_NAME) for p in out.glob(f".{name}.*")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_train_state(out: Path) -> dict[str, Any] | None:
    """The saved training state of ``out`` (None when there is none), read with weights_only=True."""
    path = out / STATE_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable state is reported the same way
        cause = unsafe_load_cause(err)  # never torch's own text: its advice is to unpickle unsafely
        raise TrainStateError(path, f"unreadable training state ({cause})",
                              f"delete {path} to restart from the last exported weights' step 0, or the whole folder"
                              ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainStateError(path, f"not a train state of format {STATE_FORMAT}", "use another --out")
    return state


def last_logged_step(path: Path) -> int:
    """Largest ``step`` in history.csv (0 when absent or empty)."""
    if not path.is_file():
        return 0
    last = 0
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                last = max(last, int(row["step"]))
            except (KeyError, TypeError, ValueError):
                continue  # a torn last line of a killed write: ignored, the step is re-logged
    return last


def _training_metadata(cfg: RunConfig, step: int) -> dict[str, Any]:
    p = cfg.preset
    return {"training": {"step": step, "steps": p.steps, "train_preset": p.name, "seed": cfg.seed,
                         "data_root": cfg.data_root, "fold": cfg.fold, "val_fraction": cfg.val_fraction,
                         "val_seed": cfg.val_seed, "crop": list(p.crop), "bank_size": list(p.bank_size)}}


def export_weights(model: torch.nn.Module, out: Path, cfg: RunConfig, step: int) -> Path:
    """Write ``vae.safetensors`` (weights + config metadata) atomically, loadable by load_reducio."""
    return save_reducio(model, out / WEIGHTS_NAME, preset=cfg.preset.model_preset, extra=_training_metadata(cfg, step))


def check_resumable(state: Mapping[str, Any], cfg: RunConfig, out: Path) -> None:
    """Refuse to continue the saved run of ``out`` under another architecture or other settings.

    The preset NAME is part of ``cfg``; the architecture behind a name can change between
    versions (e.g. the residual decoder), and same-shaped weights would load silently.
    """
    model_preset = cfg.preset.model_preset
    saved_arch = state.get("model_params")
    if saved_arch is not None and saved_arch != get_preset(model_preset):
        raise TrainStateError(out, f"holds a run of an older/different {model_preset!r} architecture "
                                   f"({saved_arch['ddconfig']} vs now {get_preset(model_preset)['ddconfig']})",
                              "delete that folder (or pass another --out) to train the current one")
    saved = RunConfig.from_dict(state["config"]).to_dict()
    refuse_other_settings(settings_differences(saved, cfg.to_dict()), lambda diff: TrainStateError(
        out, f"holds a run with other settings (saved vs asked: {diff})",
        "rerun with the saved settings to resume it, or pass another --out"))


def history_row(step: int, terms: Mapping[str, float], lr: float, elapsed: float, clips_per_s: float) -> dict[str, Any]:
    """One ``history.csv`` row (probe columns empty; a checkpoint step fills them)."""
    row = {"step": step, **{k: f"{terms.get(k, 0.0):.6g}" for k in LOSS_COLUMNS},
           "lr": f"{lr:.6g}", "elapsed_s": f"{elapsed:.2f}", "clips_per_s": f"{clips_per_s:.3f}",
           "probe_psnr": "", "probe_ssim": ""}
    return {k: row[k] for k in HISTORY_COLUMNS}


def read_history(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def mean_last(rows: Sequence[Mapping[str, str]], key: str, n: int) -> float | None:
    """Mean of ``key`` over the last ``n`` rows that have it (rounded), None when none has."""
    values = [float(r[key]) for r in rows[-n:] if r.get(key)]
    return round(sum(values) / len(values), 6) if values else None
