"""Train a reduced-width Reducio-VAE locally: ``python -m lib.vae train``.

::

    python -m lib.vae train [--data DIR] --preset NAME --out DIR [--seed S] [overrides]

A run (:func:`lib.vae.train_loop.run`; presets in :mod:`lib.vae.train_presets`):

1. decodes the training clips ONCE into a uint8 bank at reduced resolution (a ``labelled``
   preset: the fold's train split minus the validation groups; a ``pool`` preset: the unlabelled
   pretraining pool plus natural footage, :mod:`lib.vae.pool_bank`) and one centre clip per
   held-out validation video (:mod:`lib.vae.clip_data`); test videos are never read;
2. builds ``ReducioVAE.from_config(get_preset(model_preset))`` with a seeded initialisation
   (:mod:`lib.vae.train_step`);
3. trains with AdamW on the official forward pass (posterior sample -> per-sample latent layer
   norm -> decoder conditioned on the content frame ``(T - 1) // 2``) under the preset's loss
   (:mod:`lib.vae.losses`), random crops, flips and colour remapping, bfloat16 autocast, the
   warm-up + cosine schedule of :class:`lib.training.WarmupCosine` and gradient-norm clipping;
4. checkpoints every ``checkpoint_every`` steps and at the end, then measures the held-out
   PSNR/SSIM of the VAE and of two trivial baselines (:mod:`lib.vae.train_eval`).

Output folder (``--out``; the files and their formats: :mod:`lib.vae.train_state`):

``vae.safetensors``
    weights + config metadata, loadable by ``load_reducio(path)`` alone; the training
    provenance under the metadata's ``training`` entry.
``train_state.pt``
    everything a resume needs (step, elapsed time, the run's config, model / EMA / AdamW state,
    RNG states); tensors and plain containers only. It is the commit point of a checkpoint.
``history.csv``
    append-only, one row per step (loss terms, gradient norm, lr, elapsed seconds, clips/s; the
    held-out probe PSNR/SSIM on checkpoint steps), never a step twice.
``metrics.json``
    held-out PSNR/SSIM of the VAE and of the baselines, steps, wall time, clips/s, seed, data
    root, resolutions, split groups; written last (its presence means the run is complete).

Determinism and resume: every random choice is a function of ``(seed, step)`` (batch order,
crops and flips, the posterior noise), and so is the learning rate; the model init is seeded.
A resumed run restores weights, AdamW moments and RNG states exactly, so killing a run and
rerunning the same command reproduces the uninterrupted run's weights bit for bit (same machine
and thread count). ``train_state.pt`` is written before ``vae.safetensors``; the export is
refreshed from the state at the end. A killed run loses at most ``checkpoint_every`` steps. A
rerun of a finished run does nothing (it re-evaluates if ``metrics.json`` is missing); a rerun
with other settings or another architecture in the same folder is refused
(:func:`lib.vae.train_state.check_resumable`). One run per folder at a time: temp files a killed
run left behind are deleted at start.

Measured outcomes of the presets live in ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from lib.data.errors import DataError
from lib.data.synth import PRESETS as SYNTH_PRESETS
from lib.data.synth import ensure_synthetic
from lib.data.synth_pool import ensure_pool
from lib.training import restore_rng_state
from lib.vae.train_eval import BLUR_BASELINE_SIGMA, evaluate
from lib.vae.train_loop import run
from lib.vae.train_presets import LOCAL_LOSS, PRESETS, RunConfig, TrainPreset, ema_decay_at, lr_at
from lib.vae.train_state import (
    HISTORY_COLUMNS,
    HISTORY_NAME,
    METRICS_NAME,
    STATE_NAME,
    WEIGHTS_NAME,
    TrainStateError,
    capture_rng_state,
    export_weights,
    load_train_state,
)
from lib.vae.train_step import build_model, build_optimizer, resolve_device, train_step

# The names scripts, tests and lib.vae.local use from this module (the command's namespace).
__all__ = [
    "BLUR_BASELINE_SIGMA",
    "HISTORY_COLUMNS",
    "HISTORY_NAME",
    "LOCAL_LOSS",
    "METRICS_NAME",
    "PRESETS",
    "STATE_NAME",
    "WEIGHTS_NAME",
    "RunConfig",
    "TrainPreset",
    "TrainStateError",
    "build_model",
    "build_optimizer",
    "build_parser",
    "capture_rng_state",
    "config_from_args",
    "ema_decay_at",
    "evaluate",
    "export_weights",
    "load_train_state",
    "lr_at",
    "main",
    "restore_rng_state",
    "run",
    "train_step",
]


def _pair(text: str) -> tuple[int, int]:
    """argparse type: ``HxW`` -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 64x96), got {text!r}") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.vae train",
        description="Train a reduced-width Reducio-VAE on a UCF101-layout dataset's training split (fold's train "
        "list minus the group-disjoint validation groups); resumable (rerun the same command).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset root (UCF-101/ + ucfTrainTestlist/); default: the embedded synthetic dataset of "
        "the same preset name, generated if missing",
    )
    parser.add_argument(
        "--eval-data",
        type=Path,
        default=None,
        help="pool presets: the labelled dataset whose validation split gives the held-out metrics "
        "(default: the embedded default dataset)",
    )
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="training preset")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; resumed if it holds a run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of init, data order, crops and posterior noise")
    parser.add_argument("--fold", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--val-fraction", type=float, default=0.1, help="groups held out of the train list")
    parser.add_argument("--val-seed", type=int, default=0, help="seed of the validation-group draw")
    _add_preset_overrides(parser)
    _add_invocation_options(parser)
    return parser


def _add_preset_overrides(parser: argparse.ArgumentParser) -> None:
    over = parser.add_argument_group("preset overrides (they change the run's identity: resume needs the same)")
    over.add_argument("--model-preset", default=None, help="lib.vae.presets name (widths)")
    over.add_argument("--steps", type=int, default=None)
    over.add_argument("--batch-size", type=int, default=None)
    over.add_argument("--lr", type=float, default=None)
    over.add_argument("--warmup-steps", type=int, default=None)
    over.add_argument("--out-lr-scale", type=float, default=None, help="lr multiplier of the decoder's conv_out")
    over.add_argument("--ema-decay", type=float, default=None, help="weight average decay (0 = off)")
    over.add_argument("--checkpoint-every", type=int, default=None)
    over.add_argument("--bank-size", type=_pair, default=None, help="stored frame size HxW (e.g. 72x96)")
    over.add_argument("--crop", type=_pair, default=None, help="training/eval crop HxW, multiples of 32")
    over.add_argument("--val-clips", type=int, default=None, help="held-out clips evaluated at the end")
    over.add_argument("--probe-clips", type=int, default=None, help="held-out clips evaluated at checkpoints")
    over.add_argument("--l1-weight", type=float, default=None)
    over.add_argument("--mse-weight", type=float, default=None)
    over.add_argument("--ssim-weight", type=float, default=None)
    over.add_argument("--grad-weight", type=float, default=None)
    over.add_argument("--kl-weight", type=float, default=None)
    over.add_argument("--shift-weight", type=float, default=None, help="auxiliary global-shift term (px)")
    over.add_argument("--pyramid-weight", type=float, default=None, help="L1 of 2x/4x/8x pooled frames")
    over.add_argument(
        "--motion-weight",
        type=float,
        default=None,
        help="L1 (px) of the displacement field against the pool's ground truth",
    )
    over.add_argument(
        "--latent-motion-weight",
        type=float,
        default=None,
        help="squared error (px^2) of the latent's linear motion readout against the pool's coarse ground truth",
    )
    over.add_argument(
        "--mse-scope",
        choices=("all", "head"),
        default=None,
        help="the MSE term trains the whole model or only the decoder's conv_out",
    )
    over.add_argument("--no-hflip", action="store_true", help="disable random horizontal flips")
    over.add_argument("--no-color-aug", action="store_true", help="disable random channel permutation/negatives")
    over.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default=None,
        help="training forward under bfloat16 autocast or in float32",
    )


def _add_invocation_options(parser: argparse.ArgumentParser) -> None:
    run_opts = parser.add_argument_group("this invocation only (not part of the run's identity)")
    run_opts.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores)")
    run_opts.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    run_opts.add_argument("--device", default="cpu",
                          help="cpu (default), cuda[:N], or auto (CUDA when available); recorded in metrics.json")
    run_opts.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="checkpoint and exit after this many steps (resume by rerunning without it)",
    )
    run_opts.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="checkpoint and exit after this many seconds of training (resumable)",
    )
    run_opts.add_argument(
        "--until-step",
        type=int,
        default=None,
        help="checkpoint and exit once the run reaches this step (resumable; a rerun past it does nothing)",
    )
    run_opts.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's :class:`RunConfig` from parsed arguments (preset + overrides + data root)."""
    preset = PRESETS[args.preset]
    changes: dict[str, Any] = {}
    for arg, name in (
        ("model_preset", "model_preset"),
        ("steps", "steps"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("warmup_steps", "warmup_steps"),
        ("checkpoint_every", "checkpoint_every"),
        ("bank_size", "bank_size"),
        ("crop", "crop"),
        ("val_clips", "val_clips"),
        ("probe_clips", "probe_clips"),
        ("out_lr_scale", "out_lr_scale"),
        ("ema_decay", "ema_decay"),
    ):
        if getattr(args, arg) is not None:
            changes[name] = getattr(args, arg)
    if args.mse_scope is not None:
        changes["mse_head_only"] = args.mse_scope == "head"
    if args.no_hflip:
        changes["hflip"] = False
    if args.no_color_aug:
        changes["color_aug"] = False
    if args.precision is not None:
        changes["bf16"] = args.precision == "bf16"
    loss_changes = {
        k: getattr(args, f"{k}_weight")
        for k in ("l1", "mse", "ssim", "grad", "kl", "shift", "pyramid", "motion", "latent_motion")
        if getattr(args, f"{k}_weight") is not None
    }
    if loss_changes:
        changes["loss"] = replace(preset.loss, **loss_changes)
    if changes.get("warmup_steps") is None and "steps" in changes:
        changes["warmup_steps"] = min(preset.warmup_steps, max(0, changes["steps"] // 5))
    preset = replace(preset, **changes)
    if preset.data == "pool":
        smoke = preset.name.endswith("smoke")
        pool_root = (
            args.data.expanduser().resolve()
            if args.data is not None
            else ensure_pool("pretrain_smoke" if smoke else "pretrain", progress=not args.no_progress)
        )
        eval_root = (
            args.eval_data.expanduser().resolve()
            if args.eval_data is not None
            else ensure_synthetic("smoke" if smoke else "default", progress=not args.no_progress)
        )
        return RunConfig(
            preset=preset,
            seed=args.seed,
            data_root=str(pool_root),
            fold=args.fold,
            val_fraction=args.val_fraction,
            val_seed=args.val_seed,
            eval_root=str(eval_root),
        )
    if args.data is None:
        if args.preset not in SYNTH_PRESETS:
            raise ValueError(f"no embedded synthetic dataset named {args.preset!r}; pass --data")
        data_root = ensure_synthetic(args.preset, seed=0, progress=not args.no_progress)
    else:
        data_root = args.data.expanduser().resolve()
    return RunConfig(
        preset=preset,
        seed=args.seed,
        data_root=str(data_root),
        fold=args.fold,
        val_fraction=args.val_fraction,
        val_seed=args.val_seed,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m lib.vae train ...``; returns the exit code (0 done or stopped, 1 error)."""
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        cfg = config_from_args(args)  # ValueError here = an invalid setting, reported as such
        resolve_device(args.device)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        result = run(
            cfg,
            args.out.expanduser().resolve(),
            workers=args.workers,
            progress=not args.no_progress,
            stop_after=args.stop_after,
            time_limit=args.time_limit,
            until_step=args.until_step,
            device=args.device,
        )
    except (DataError, TrainStateError) as err:  # anything else is a bug: keep its traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result["status"] == "complete":
        print(
            json.dumps(
                {
                    "out": str(args.out),
                    **result["metrics"]["heldout"],
                    "steps": result["step"],
                    "train_wall_time_s": result["metrics"]["train_wall_time_s"],
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
