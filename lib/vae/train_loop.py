"""The VAE training run (:func:`run`): decode the banks, build or restore the model, train with
checkpoints, evaluate, write ``metrics.json``. The contract (files, determinism, resume) is
stated in :mod:`lib.vae.train`; the files themselves in :mod:`lib.vae.train_state`.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lib.data.clips import ClipSpec
from lib.data.natural import natural_video_paths
from lib.runs import RunDir, atomic_write_text
from lib.training import WarmupCosine, restore_rng_state
from lib.vae.clip_data import (
    ClipBank,
    ClipBatchSampler,
    bank_summary,
    decode_clip_bank,
    make_generator,
    train_val_records,
)
from lib.vae.latent_motion import LatentMotionReadout
from lib.vae.pool_bank import attach_pool_motion, concat_banks, decode_natural_bank, pool_records
from lib.vae.presets import get_preset
from lib.vae.train_eval import evaluate, heldout_record, spread_indices
from lib.vae.train_presets import RunConfig, ema_decay_at, lr_schedule
from lib.vae.train_state import (
    HISTORY_NAME,
    METRICS_NAME,
    STATE_FORMAT,
    STATE_NAME,
    WEIGHTS_NAME,
    atomic_torch_save,
    capture_rng_state,
    check_resumable,
    export_weights,
    history_row,
    last_logged_step,
    load_train_state,
    mean_last,
    read_history,
    remove_stale_temps,
)
from lib.vae.train_step import (
    MotionInputs,
    build_model,
    build_optimizer,
    describe_device,
    resolve_device,
    seed_everything,
    train_step,
    update_ema,
)

POSTERIOR_DOMAIN = 0x5A3F  # seed stream of the per-step posterior noise

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Banks:
    """The decoded clips of a run: training bank, held-out val bank, the split's groups."""

    train: ClipBank
    val: ClipBank
    groups: dict[str, list[int]]
    seconds: float


def load_banks(cfg: RunConfig, *, workers: int | None, progress: bool) -> Banks:
    """Decode the training bank and the held-out val bank of a run (test never read).

    ``labelled`` runs train on the fold's train split of ``data_root``; ``pool`` runs on every
    clip of the pretraining pool ``data_root`` plus ``natural_repeats`` copies of the natural
    footage, and take their held-out clips from the val split of ``eval_root``.
    """
    start = time.perf_counter()
    p = cfg.preset
    held_root = cfg.eval_root if p.data == "pool" else cfg.data_root
    train_records, val_records, split = train_val_records(held_root, fold=cfg.fold, val_fraction=cfg.val_fraction,
                                                          val_seed=cfg.val_seed)
    if not val_records:
        raise ValueError(f"{held_root}: fold {cfg.fold} has no validation videos (val_fraction "
                         f"{cfg.val_fraction}); the held-out PSNR needs some")
    spec = ClipSpec()
    if p.data == "pool":
        train_records = pool_records(cfg.data_root)
    elif _needs_motion(p):
        raise ValueError("the motion terms need ground-truth displacements: a pool run (data 'pool')")
    train = decode_clip_bank(train_records, size=p.bank_size, spec=spec, mode="all",
                             max_clips_per_video=p.max_train_clips_per_video, workers=workers, progress=progress,
                             desc="decode train")
    if p.data == "pool" and _needs_motion(p):
        train = attach_pool_motion(train, cfg.data_root, workers=workers, progress=progress)
    if p.data == "pool" and p.natural_repeats > 0:
        natural = decode_natural_bank(natural_video_paths(), size=p.bank_size, spec=spec)
        train = concat_banks([train, natural], repeats=[1, p.natural_repeats])
    val = decode_clip_bank(val_records, size=p.bank_size, spec=spec, mode="center", workers=workers, progress=progress,
                           desc="decode val")
    if p.data == "labelled" and train.group_set & (set(split.val_groups) | set(split.groups("test"))):
        raise AssertionError("internal error: held-out groups in the training bank")
    groups = {s: list(split.groups(s)) for s in ("train", "val", "test")}
    if p.data == "pool":
        groups = {"pool": sorted(train.group_set), "val": list(split.val_groups)}
    return Banks(train=train, val=val, groups=groups, seconds=time.perf_counter() - start)


def _needs_motion(preset: Any) -> bool:
    """Whether a preset's loss reads the pool's ground-truth displacements."""
    return preset.loss.motion > 0 or preset.loss.latent_motion > 0


def build_readout(model: Any, preset: Any) -> LatentMotionReadout | None:
    """The latent motion readout of a preset with the ``latent_motion`` term (None otherwise)."""
    if preset.loss.latent_motion <= 0:
        return None
    return LatentMotionReadout(latent_channels=model.config.embed_dim)


@dataclass
class _Training:
    """One invocation's objects and the loop's progress (``step``, ``elapsed`` over every
    invocation of the run; ``clips_seen``, ``train_seconds`` over this one)."""

    cfg: RunConfig
    out: Path
    banks: Banks
    model: Any
    optimizer: torch.optim.Optimizer
    ema: torch.nn.Module | None
    readout: torch.nn.Module | None
    sampler: ClipBatchSampler
    schedule: WarmupCosine
    probe: list[int]
    history: RunDir
    log: Log
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    devices: list[str] = field(default_factory=list)  # what trained the run, over its invocations
    step: int = 0
    elapsed: float = 0.0
    logged: int = 0  # last step history.csv holds
    pending: list[dict[str, Any]] = field(default_factory=list)  # rows not yet flushed
    clips_seen: int = 0
    train_seconds: float = 0.0

    @property
    def scored(self) -> Any:
        """What probes, the final evaluation and the export use: the weight average if any."""
        return self.ema if self.ema is not None else self.model


def run(cfg: RunConfig, out: Path, *, workers: int | None = None, progress: bool = True, stop_after: int | None = None,
        time_limit: float | None = None, until_step: int | None = None, device: str = "cpu",
        log: Log = _stderr) -> dict[str, Any]:
    """Train (or resume, or finish) the run ``cfg`` in ``out``; return its status.

    ``device``: where the model trains (``cpu``, ``cuda[:N]``, ``auto``); the banks stay in CPU
    memory and each batch is copied over. Not part of the run's identity: a run may be resumed
    on another device (``train_state.pt`` and ``metrics.json`` list every device that trained it),
    but only a same-device, same-thread-count resume is bit-identical to an uninterrupted run.

    ``stop_after``: optimizer steps to run in THIS invocation before checkpointing and returning
    (as if the job had been killed right after that checkpoint; for preemptible jobs and tests).
    ``time_limit``: the same after this many seconds of training in this invocation.
    ``until_step``: checkpoint and return once the run has reached this step, however many
    invocations that takes (a rerun at or past it returns at once). The shipped stand-in is a
    checkpoint of the ``pretrain`` run taken this way (``make vae``).
    Returns ``{"status": "complete"|"stopped", "step": ..., "metrics": {...} (when complete)}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    state = load_train_state(out)
    if state is not None:
        check_resumable(state, cfg, out)
        if state["step"] >= cfg.preset.steps and (out / METRICS_NAME).is_file():
            log(f"{out}: run already complete ({state['step']} steps); nothing to do")
            return {"status": "complete", "step": state["step"],
                    "metrics": json.loads((out / METRICS_NAME).read_text())}
        if until_step is not None and state["step"] >= until_step:
            log(f"{out}: run at step {state['step']} (>= {until_step}); nothing to do")
            return {"status": "stopped", "step": state["step"]}
    dev = resolve_device(device)
    seed_everything(cfg.seed)
    banks = load_banks(cfg, workers=workers, progress=progress)
    log(f"train bank: {bank_summary(banks.train)}; val bank: {bank_summary(banks.val)}; "
        f"decoded in {banks.seconds:.1f} s; groups {banks.groups}")
    training = _start(cfg, out, banks, state, log, dev)
    start_step = training.step
    if _train(training, progress=progress, stop_after=stop_after, time_limit=time_limit, until_step=until_step):
        return {"status": "stopped", "step": training.step}
    if training.step == start_step:
        # Nothing trained in this invocation (the state was final, metrics missing): make sure the
        # export matches the state (a kill may have struck between the two writes).
        export_weights(training.scored, out, cfg, training.step)
    metrics = _evaluate_and_record(training)
    return {"status": "complete", "step": training.step, "metrics": metrics}


def _start(cfg: RunConfig, out: Path, banks: Banks, state: dict[str, Any] | None, log: Log,
           device: torch.device) -> _Training:
    """The seeded model, optimizer, weight average and sampler on ``device``, restored from
    ``state`` if any (seeded on the CPU, so the initial weights do not depend on the device)."""
    p = cfg.preset
    model = build_model(p, cfg.seed).to(device)
    readout = build_readout(model, p)
    if readout is not None:
        readout = readout.to(device)
    optimizer = build_optimizer(model, p, readout)
    ema = copy.deepcopy(model).requires_grad_(False) if p.ema_decay > 0 else None
    step, elapsed = 0, 0.0
    devices = list(state.get("devices", [])) if state is not None else []
    if describe_device(device) not in devices:
        devices.append(describe_device(device))
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if readout is not None:
            readout.load_state_dict(state["readout"])
        optimizer.load_state_dict(state["optimizer"])  # moves the moments to the parameters' device
        restore_rng_state(state["rng"])
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        log(f"resuming {out} at step {step}/{p.steps} ({elapsed:.0f} s trained so far)")
    n_params = sum(t.numel() for t in model.parameters())
    log(f"model {p.model_preset}: {n_params / 1e6:.2f} M parameters; {p.steps} steps x {p.batch_size} clips of "
        f"{p.crop[0]}x{p.crop[1]}; device {describe_device(device)}; torch threads {torch.get_num_threads()}")
    sampler = ClipBatchSampler(banks.train, batch_size=p.batch_size, crop=p.crop, hflip=p.hflip, seed=cfg.seed,
                               color=p.color_aug)
    probe = spread_indices(len(banks.val), p.probe_clips) if p.probe_clips > 0 else []
    return _Training(cfg=cfg, out=out, banks=banks, model=model, optimizer=optimizer, ema=ema, readout=readout,
                     sampler=sampler,
                     schedule=lr_schedule(p), probe=probe, history=RunDir(out), log=log, device=device,
                     devices=devices, step=step, elapsed=elapsed,
                     logged=last_logged_step(out / HISTORY_NAME))


def _train(t: _Training, *, progress: bool, stop_after: int | None, time_limit: float | None,
           until_step: int | None = None) -> bool:
    """Optimizer steps until the preset's last one, checkpointing every ``checkpoint_every``;
    True when ``stop_after`` / ``time_limit`` / ``until_step`` stopped the run early (checkpoint written)."""
    p = t.cfg.preset
    start_step, run_start = t.step, time.perf_counter()
    with tqdm(total=p.steps, initial=t.step, unit="step", desc=f"train {p.name}", disable=not progress) as bar:
        while t.step < p.steps:
            terms = _step(t)
            rate = t.clips_seen / max(t.train_seconds, 1e-9)
            bar.set_postfix(loss=f"{terms['loss']:.4f}", l1=f"{terms['l1']:.4f}", clips_s=f"{rate:.2f}")
            bar.update()
            stop = (stop_after is not None and t.step - start_step >= stop_after) or (
                time_limit is not None and time.perf_counter() - run_start >= time_limit) or (
                until_step is not None and t.step >= until_step)
            if t.step % p.checkpoint_every == 0 or t.step == p.steps or stop:
                _checkpoint(t)
            if stop and t.step < p.steps:
                t.log(f"stopped at step {t.step}/{p.steps} after {time.perf_counter() - run_start:.0f} s; rerun the "
                      "same command to resume")
                return True
    return False


def _step(t: _Training) -> dict[str, float]:
    """One optimizer step at ``t.step`` (lr, batch, crops and posterior noise all functions of
    the step); appends its history row to ``t.pending`` and returns its loss terms."""
    p, step = t.cfg.preset, t.step
    t0 = time.perf_counter()
    lr = t.schedule.apply(t.optimizer, step)  # each group at lr x its lr_scale
    x = t.sampler.batch(step, p.crop_at(step)).to(t.device)  # (B, 3, 16, h, w) in [-1, 1]
    motion = None
    if _needs_motion(p):
        field_px, has_field = t.sampler.motion(step, p.crop_at(step))
        motion = MotionInputs(field_px.to(t.device), has_field.to(t.device), readout=t.readout)
    terms = train_step(t.model, t.optimizer, x, weights=p.loss, motion=motion,
                       generator=make_generator(t.cfg.seed, POSTERIOR_DOMAIN, step), grad_clip=p.grad_clip,
                       bf16=p.bf16, sample=p.sample_posterior, mse_head_only=p.mse_head_only)
    t.step += 1
    if t.ema is not None:
        update_ema(t.ema, t.model, ema_decay_at(t.step, p))
    dt = time.perf_counter() - t0
    t.elapsed += dt
    t.train_seconds += dt
    t.clips_seen += x.shape[0]
    t.pending.append(history_row(t.step, terms, lr, t.elapsed, t.clips_seen / max(t.train_seconds, 1e-9)))
    return terms


def _checkpoint(t: _Training) -> None:
    """Probe the held-out clips, flush the pending history rows (never a logged step twice),
    write ``train_state.pt`` (the commit point), then export ``vae.safetensors``."""
    p, at_step = t.cfg.preset, t.step
    if t.probe:
        m = evaluate(t.scored, t.banks.val, crop=p.crop, batch_size=p.eval_batch_size, indices=t.probe)
        if t.pending and t.pending[-1]["step"] == at_step:
            t.pending[-1]["probe_psnr"], t.pending[-1]["probe_ssim"] = f"{m['psnr']:.4f}", f"{m['ssim']:.4f}"
    for row in t.pending:
        if row["step"] > t.logged:  # steps a killed run already logged are not written twice
            t.history.append_history(row)
            t.logged = row["step"]
    t.pending.clear()
    atomic_torch_save({"format": STATE_FORMAT, "step": at_step, "elapsed_s": t.elapsed, "config": t.cfg.to_dict(),
                       "model_params": get_preset(p.model_preset), "model": t.model.state_dict(),
                       **({"ema": t.ema.state_dict()} if t.ema is not None else {}),
                       **({"readout": t.readout.state_dict()} if t.readout is not None else {}),
                       "optimizer": t.optimizer.state_dict(), "rng": capture_rng_state(), "devices": t.devices,
                       "torch": str(torch.__version__)}, t.out / STATE_NAME)
    export_weights(t.scored, t.out, t.cfg, at_step)


def _evaluate_and_record(t: _Training) -> dict[str, Any]:
    """Evaluate the held-out clips and write ``metrics.json`` (last: it marks the run complete)."""
    p = t.cfg.preset
    t.log(f"evaluating on {len(t.banks.val)} held-out clips ...")
    t_eval = time.perf_counter()
    held = evaluate(t.scored, t.banks.val, crop=p.crop, batch_size=p.eval_batch_size,
                    indices=spread_indices(len(t.banks.val), p.val_clips))
    metrics = _metrics(t, held, time.perf_counter() - t_eval)
    atomic_write_text(t.out / METRICS_NAME, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    t.log(f"held-out ({held['clips']} val clips, {p.crop[0]}x{p.crop[1]}): VAE PSNR {held['psnr']:.2f} dB / SSIM "
          f"{held['ssim']:.4f}; repeat-content-frame baseline {held['baseline_psnr']:.2f} dB / "
          f"{held['baseline_ssim']:.4f} (blurred {held['blurred_psnr']:.2f} / {held['blurred_ssim']:.4f}); "
          f"trained {t.elapsed:.0f} s ({metrics['train_clips_per_s']:.2f} clips/s)")
    return metrics


def _metrics(t: _Training, held: dict[str, float], eval_seconds: float) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    cfg, p, step = t.cfg, t.cfg.preset, t.step
    last_rows = read_history(t.out / HISTORY_NAME)
    return {
        "train_preset": p.name,
        "model_preset": p.model_preset,
        "parameters": sum(x.numel() for x in t.model.parameters()),
        "weights": f"exponential moving average (decay {p.ema_decay})" if t.ema is not None else "last step",
        "steps": step,
        "batch_size": p.batch_size,
        "clips_seen": step * p.batch_size,
        "seed": cfg.seed,
        "data_root": cfg.data_root,
        "fold": cfg.fold,
        "val_fraction": cfg.val_fraction,
        "val_seed": cfg.val_seed,
        "groups": t.banks.groups,
        "resolution": {"bank": list(p.bank_size), "crop": list(p.crop),
                       "latent": list(t.model.latent_shape(16, *p.crop))},
        "train_bank": bank_summary(t.banks.train),
        "val_bank": bank_summary(t.banks.val),
        "heldout": heldout_record(held),
        "train_wall_time_s": round(t.elapsed, 2),
        "train_clips_per_s": round(step * p.batch_size / max(t.elapsed, 1e-9), 4),
        "decode_time_s": round(t.banks.seconds, 2),
        "eval_time_s": round(eval_seconds, 2),
        "final_train_loss_mean_last_10": mean_last(last_rows, "loss", 10),
        "final_train_l1_mean_last_10": mean_last(last_rows, "l1", 10),
        "config": cfg.to_dict(),
        "threads": torch.get_num_threads(),
        "devices": t.devices,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "files": {"weights": WEIGHTS_NAME, "state": STATE_NAME, "history": HISTORY_NAME},
    }

