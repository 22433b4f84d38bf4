"""Local VAE training: losses, the clip bank (train split only), the loop, checkpoints and resume.

Everything runs on the embedded ``smoke`` dataset (generated on first use, ~2 s) with the
``local-smoke`` model at 32x32, so the whole file takes well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from lib.data.synth import ensure_synthetic
from lib.vae.clip_data import (
    ClipBatchSampler,
    center_clips,
    decode_clip_bank,
    frames_to_clips,
    train_val_records,
)
from lib.vae.losses import VAELossWeights, gradient_l1, kl_standard_normal, l1, psnr, ssim, vae_loss
from lib.vae.train import (
    BLUR_BASELINE_SIGMA,
    HISTORY_COLUMNS,
    HISTORY_NAME,
    METRICS_NAME,
    PRESETS,
    STATE_NAME,
    WEIGHTS_NAME,
    build_model,
    build_optimizer,
    capture_rng_state,
    lr_at,
    main,
    restore_rng_state,
    train_step,
)


@pytest.fixture(scope="module")
def smoke_root() -> Path:
    return ensure_synthetic("smoke", seed=0, progress=False)


def _clip(seed: int, shape: tuple[int, ...] = (2, 3, 16, 32, 32)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


# --- losses ----------------------------------------------------------------------------------------
def test_ssim_identical_is_one_and_decreases_with_noise() -> None:
    x = _clip(0)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    scores = [ssim((x + s * noise).clamp(-1, 1), x).mean().item() for s in (0.0, 0.05, 0.1, 0.2, 0.4)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    # Images (B, C, H, W) are scored like one-frame videos; frames of a video independently.
    assert torch.allclose(ssim(x[:, :, 0], x[:, :, 0]), torch.ones(2), atol=1e-5)
    per_frame = torch.stack([ssim(x[:, :, t] * 0.5, x[:, :, t]) for t in range(16)], dim=1).mean(dim=1)
    assert torch.allclose(ssim(x * 0.5, x), per_frame, atol=1e-6)


def test_ssim_is_differentiable_and_handles_small_frames() -> None:
    x = _clip(2, (1, 3, 4, 8, 6)).requires_grad_()  # frames smaller than the 11-tap window
    y = _clip(3, (1, 3, 4, 8, 6))
    s = ssim(x, y)
    s.sum().backward()
    assert s.shape == (1,) and torch.isfinite(x.grad).all()


def test_l1_psnr_gradient() -> None:
    x = _clip(4)
    assert torch.equal(l1(x, x), torch.zeros(2))
    assert torch.allclose(l1(x + 0.25, x), torch.full((2,), 0.25))
    # An error of 0.02 on [-1, 1] (range 2) is an error of 0.01 on [0, 1]: 40 dB.
    assert torch.allclose(psnr(x + 0.02, x), torch.full((2,), 40.0), atol=1e-3)
    assert torch.equal(psnr(x, x), torch.full((2,), 100.0))  # capped for identical inputs
    assert torch.equal(gradient_l1(x, x), torch.zeros(2))
    assert torch.allclose(gradient_l1(x + 0.3, x), torch.zeros(2), atol=1e-6)  # a constant shift has no gradient
    assert (gradient_l1(x.roll(1, dims=-1), x) > 0).all()


def test_kl_of_standard_normal_is_zero() -> None:
    zeros = torch.zeros(3, 16, 4, 2, 3)
    assert torch.equal(kl_standard_normal(zeros, zeros), torch.zeros(3))
    mean, logvar = torch.randn(3, 16, 4, 2, 3), torch.randn(3, 16, 4, 2, 3)
    kl = kl_standard_normal(mean, logvar)
    assert (kl > 0).all()
    # Closed form per element: 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2), summed.
    expected = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    assert torch.allclose(kl, expected)


def test_vae_loss_terms() -> None:
    x = _clip(5)
    zeros = torch.zeros(2, 16, 4, 1, 1)
    loss, terms = vae_loss(x, x, mean=zeros, logvar=zeros, weights=VAELossWeights())
    assert loss.item() == pytest.approx(0.0, abs=1e-5) and terms["ssim"] == pytest.approx(1.0, abs=1e-5)
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    loss2, terms2 = vae_loss(x, noisy, mean=zeros + 1, logvar=zeros, weights=VAELossWeights(ssim=0, grad=0))
    expected = terms2["l1"] + 1e-6 * terms2["kl"] / x[0].numel()
    assert loss2.item() == pytest.approx(expected, rel=1e-6)
    assert terms2["kl"] == pytest.approx(0.5 * 16 * 4, rel=1e-6)  # mean 1 everywhere: 0.5 per value
    assert terms2["mse"] == pytest.approx((noisy - x).square().mean().item(), rel=1e-6)
    loss3, _ = vae_loss(x, noisy, mean=zeros + 1, logvar=zeros, weights=VAELossWeights(l1=0, ssim=0, grad=0, mse=2))
    assert loss3.item() == pytest.approx(2 * terms2["mse"] + 1e-6 * terms2["kl"] / x[0].numel(), rel=1e-6)


def test_global_shift_targets_recover_known_shifts() -> None:
    """Frames made by moving a smooth image by known (sub-pixel) shifts: the teacher finds them."""
    from lib.vae.decoder import warp_frame
    from lib.vae.losses import global_shift_targets

    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.interpolate(torch.rand(2, 3, 16, 24, generator=g), size=(64, 96), mode="bicubic",
                                            align_corners=False)
    shifts = (torch.rand(2, 2, 16, generator=g) * 4 - 2)  # within +-2 px: inside the +-3 search
    shifts[:, :, 7] = 0
    clip = warp_frame(image, shifts[..., None, None].expand(-1, -1, -1, 64, 96))
    found = global_shift_targets(clip, content_index=7)
    assert found.shape == (2, 2, 16) and torch.equal(found[:, :, 7], torch.zeros(2, 2))
    assert (found - shifts).abs().max() < 0.35 and (found - shifts).abs().mean() < 0.1
    integer = torch.zeros(1, 2, 16)
    integer[0, 0, 3], integer[0, 1, 12] = 2.0, -3.0  # frame 3: 2 px right; frame 12: 3 px up (search border)
    clip = warp_frame(image[:1], integer[..., None, None].expand(-1, -1, -1, 64, 96))
    assert torch.allclose(global_shift_targets(clip, content_index=7), integer, atol=0.05)


def test_shift_term_needs_and_scores_the_displacement_field() -> None:
    x = _clip(3)
    zeros = torch.zeros(2, 16, 4, 1, 1)
    weights = VAELossWeights(shift=0.5)
    with pytest.raises(ValueError, match="displacement field"):
        vae_loss(x, x, mean=zeros, logvar=zeros, weights=weights)
    flow = torch.zeros(2, 2, 16, 32, 32)
    flow[:, 0] = 1.5  # every frame said to be moved 1.5 px in x; a static clip's teacher says 0
    static = x[:, :, 7:8].expand_as(x).contiguous()
    loss, terms = vae_loss(static, static, mean=zeros, logvar=zeros, weights=weights, flow=flow, content_index=7)
    assert terms["shift"] == pytest.approx(0.75, abs=0.01)  # mean over x and y of |1.5 - 0| and |0 - 0| (sub-px noise)
    assert loss.item() == pytest.approx(0.5 * terms["shift"], abs=1e-5)
    model = build_model(PRESETS["smoke"], seed=0)
    rec, posterior, field = model(x, sample=False, return_flow=True)
    assert rec.shape == x.shape and field.shape == (2, 2, 16, 32, 32) and torch.equal(field, torch.zeros_like(field))


def test_lr_schedule() -> None:
    p = PRESETS["default"]
    assert lr_at(0, p) == pytest.approx(p.lr / p.warmup_steps)
    assert lr_at(p.warmup_steps - 1, p) == pytest.approx(p.lr)
    assert lr_at(p.warmup_steps, p) == pytest.approx(p.lr)
    assert lr_at(p.steps - 1, p) == pytest.approx(p.lr * p.final_lr_fraction)
    lrs = [lr_at(s, p) for s in range(p.warmup_steps, p.steps)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


# --- data ------------------------------------------------------------------------------------------
def test_bank_uses_only_train_split_groups(smoke_root: Path) -> None:
    train, val, split = train_val_records(smoke_root)
    bank = decode_clip_bank(train, size=(36, 48), progress=False)
    held_out = set(split.val_groups) | set(split.groups("test"))
    assert held_out and split.val_groups
    assert bank.group_set == set(split.groups("train"))
    assert not bank.group_set & held_out
    assert set(bank.relpaths) <= {r.relpath for r in split.train}
    assert bank.frames.dtype == torch.uint8 and bank.frames.shape[1:] == (16, 36, 48, 3)
    val_bank = decode_clip_bank(val, size=(36, 48), mode="center", progress=False)
    assert val_bank.group_set == set(split.val_groups) and len(val_bank) == len(val)


def test_sampler_is_a_function_of_seed_and_step(smoke_root: Path) -> None:
    train, _, _ = train_val_records(smoke_root)
    bank = decode_clip_bank(train, size=(36, 48), progress=False)
    a = ClipBatchSampler(bank, batch_size=3, crop=(32, 32), hflip=True, seed=7)
    b = ClipBatchSampler(bank, batch_size=3, crop=(32, 32), hflip=True, seed=7)
    assert torch.equal(a.batch(5), b.batch(5))  # a fresh sampler (a resumed run) gives the same batch
    assert not torch.equal(a.batch(5), a.batch(6))
    x = a.batch(0)
    assert x.shape == (3, 3, 16, 32, 32) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    # One epoch visits every clip exactly once.
    n = len(bank)
    seen = torch.cat([ClipBatchSampler(bank, batch_size=1, crop=(32, 32), hflip=False, seed=7).indices(s)
                      for s in range(n)])
    assert sorted(seen.tolist()) == list(range(n))
    # Clips equal the data layer's conversion of the stored uint8 frames (centre crop, no flip).
    c = center_clips(bank, [0], crop=(36, 48))
    assert torch.equal(c, frames_to_clips(bank.frames[:1]))
    assert torch.equal(c[0, :, 0, 0, 0], bank.frames[0, 0, 0, 0].float() / 127.5 - 1)


# --- training --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_step_reduces_loss_on_a_fixed_batch(smoke_root: Path) -> None:
    train, _, _ = train_val_records(smoke_root)
    bank = decode_clip_bank(train, size=(36, 48), progress=False)
    x = ClipBatchSampler(bank, batch_size=2, crop=(32, 32), hflip=False, seed=0).batch(0)
    preset = PRESETS["smoke"]
    model = build_model(preset, seed=0)
    opt = build_optimizer(model, preset)
    for group in opt.param_groups:
        group["lr"] = 1e-3
    losses = [train_step(model, opt, x, weights=preset.loss, generator=torch.Generator().manual_seed(i),
                         grad_clip=1.0)["loss"] for i in range(14)]
    # The residual decoder starts AT the content-frame baseline (step 0); Adam's first steps
    # move every weight by ~lr and perturb it, after which fitting this batch must bring the
    # loss well down again.
    assert min(losses[8:]) < 0.75 * max(losses[:3]), losses


@pytest.mark.slow
def test_mse_head_only_reaches_conv_out_alone(smoke_root: Path) -> None:
    train, _, _ = train_val_records(smoke_root)
    bank = decode_clip_bank(train, size=(36, 48), progress=False)
    x = ClipBatchSampler(bank, batch_size=2, crop=(32, 32), hflip=False, seed=0).batch(0)
    mse_only = VAELossWeights(l1=0.0, ssim=0.0, grad=0.0, kl=0.0, mse=30.0)
    grads = {}
    for head_only in (False, True):
        model = build_model(PRESETS["smoke"], seed=0)
        with torch.no_grad():  # conv_out starts at zero, which would block every gradient behind it
            for p in model.decoder.conv_out.parameters():
                p.copy_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the step changes nothing: gradients only
        terms = train_step(model, opt, x, weights=mse_only, generator=torch.Generator().manual_seed(0),
                           grad_clip=0.0, mse_head_only=head_only)
        assert terms["loss"] == pytest.approx(30.0 * terms["mse"], rel=1e-6)  # logged as the full objective
        grads[head_only] = {n: (p.grad.abs().sum().item() if p.grad is not None else 0.0)
                            for n, p in model.named_parameters()}
    head = [n for n in grads[True] if n.startswith("decoder.conv_out.")]
    assert head and all(grads[True][n] > 0 for n in head)
    # Same head gradient either way (the MSE is its only term); nothing else gets any when head-only.
    assert all(grads[True][n] == pytest.approx(grads[False][n], rel=1e-4) for n in head)
    assert all(v == 0.0 for n, v in grads[True].items() if n not in head)
    assert sum(v for n, v in grads[False].items() if n.startswith("encoder")) > 0


def test_rng_state_roundtrip_through_weights_only_load(tmp_path: Path) -> None:
    import random

    import numpy as np

    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def _cli(root: Path, out: Path, *extra: str) -> int:
    return main(["--data", str(root), "--preset", "smoke", "--out", str(out), "--no-progress", "--steps", "4",
                 "--checkpoint-every", "2", *extra])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


@pytest.fixture(scope="module")
def uninterrupted(smoke_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vae_full")
    assert _cli(smoke_root, out) == 0
    return out


@pytest.mark.slow
def test_smoke_run_writes_its_files_and_loads(uninterrupted: Path) -> None:
    from lib.vae.loading import load_reducio

    out = uninterrupted
    for name in (WEIGHTS_NAME, STATE_NAME, HISTORY_NAME, METRICS_NAME):
        assert (out / name).is_file(), name
    metrics = json.loads((out / METRICS_NAME).read_text())
    assert metrics["steps"] == 4 and metrics["heldout"]["clips"] > 0
    assert set(metrics["heldout"]) >= {"vae", "baseline_repeat_content_frame", "baseline_blurred_content_frame"}
    assert metrics["heldout"]["baseline_blurred_content_frame"]["sigma_px"] == BLUR_BASELINE_SIGMA
    assert metrics["groups"]["train"] and not set(metrics["groups"]["train"]) & set(metrics["groups"]["val"])
    with open(out / HISTORY_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and tuple(rows[0]) == HISTORY_COLUMNS
    assert rows[1]["probe_psnr"] and not rows[0]["probe_psnr"]  # probes at checkpoints only

    state = torch.load(out / STATE_NAME, weights_only=True)  # plain types + tensors only
    assert state["step"] == 4
    assert state["devices"] == metrics["devices"] and len(metrics["devices"]) == 1  # what trained it
    assert metrics["devices"][0].startswith("cpu: ")
    loaded = load_reducio(out / WEIGHTS_NAME)
    assert PRESETS["smoke"].ema_decay > 0  # the export is the weight average, the state holds both
    averaged, last = build_model(PRESETS["smoke"], seed=0), build_model(PRESETS["smoke"], seed=0)
    averaged.load_state_dict(state["ema"])
    last.load_state_dict(state["model"])
    x = _clip(9, (1, 3, 16, 32, 32))
    with torch.no_grad():
        assert torch.equal(loaded.reconstruct(x), averaged.eval().reconstruct(x))
        assert not torch.equal(loaded.reconstruct(x), last.eval().reconstruct(x))
    assert loaded.checkpoint_info.metadata["training"]["step"] == 4


@pytest.mark.slow
def test_resume_equals_uninterrupted(smoke_root: Path, uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    assert _cli(smoke_root, out, "--stop-after", "1") == 0  # "killed" right after its step-1 checkpoint
    assert torch.load(out / STATE_NAME, weights_only=True)["step"] == 1
    assert not (out / METRICS_NAME).exists()
    assert _cli(smoke_root, out) == 0  # the same command resumes at step 1 and finishes
    full = torch.load(uninterrupted / STATE_NAME, weights_only=True)
    resumed = torch.load(out / STATE_NAME, weights_only=True)
    assert resumed["step"] == full["step"] == 4
    for key, value in full["model"].items():
        assert torch.equal(resumed["model"][key], value), key  # bit for bit
    for pid, s in full["optimizer"]["state"].items():
        assert all(torch.equal(resumed["optimizer"]["state"][pid][k], v) for k, v in s.items())
    a, b = _weights(uninterrupted / WEIGHTS_NAME), _weights(out / WEIGHTS_NAME)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with open(out / HISTORY_NAME, newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]  # no step logged twice
    m_full = json.loads((uninterrupted / METRICS_NAME).read_text())["heldout"]
    m_res = json.loads((out / METRICS_NAME).read_text())["heldout"]
    assert m_full == m_res


@pytest.mark.slow
def test_rerun_of_finished_run_and_changed_settings(smoke_root: Path, uninterrupted: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = (uninterrupted / STATE_NAME).stat().st_mtime_ns
    assert _cli(smoke_root, uninterrupted) == 0
    assert (uninterrupted / STATE_NAME).stat().st_mtime_ns == before  # nothing retrained
    assert _cli(smoke_root, uninterrupted, "--lr", "0.01") == 1
    assert "other settings" in capsys.readouterr().err


def test_gaussian_blur_keeps_constants_and_averages_noise() -> None:
    from lib.vae.losses import gaussian_blur

    flat = torch.full((1, 3, 9, 11), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.0), flat, atol=1e-6)  # normalised, replicated borders
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1.0
    out = gaussian_blur(impulse, 1.0)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5) and out[0, 0, 4, 4].item() == pytest.approx(
        (1 / (2 * torch.pi)) / 1.0, rel=0.05)  # peak of a unit 2D gaussian, sampled
    noise = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert gaussian_blur(noise, 1.0).std().item() < 0.4 * noise.std().item()  # 1/(2 sqrt(pi) sigma) = 0.28


def test_local_presets_train_with_the_mse_term() -> None:
    # Without MSE the local decoder never learns to filter the content frame (lib.vae.losses).
    for name in ("smoke", "default"):
        weights = PRESETS[name].loss
        assert weights.mse > 0 and weights.l1 > 0 and (weights.ssim > 0 or weights.grad > 0) and weights.shift == 0
        assert PRESETS[name].mse_head_only  # MSE on the whole model cost the latents class information


@pytest.mark.slow
def test_until_step_stops_at_that_step_however_many_invocations(smoke_root: Path, uninterrupted: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "until"
    assert _cli(smoke_root, out, "--stop-after", "1") == 0  # a first invocation ends at step 1
    assert _cli(smoke_root, out, "--until-step", "3") == 0  # the next runs steps 2-3, not 3 more
    state = torch.load(out / STATE_NAME, weights_only=True)
    assert state["step"] == 3 and not (out / METRICS_NAME).exists()
    before = (out / STATE_NAME).stat().st_mtime_ns
    assert _cli(smoke_root, out, "--until-step", "3") == 0  # already there: nothing retrained
    assert (out / STATE_NAME).stat().st_mtime_ns == before
    full = torch.load(uninterrupted / STATE_NAME, weights_only=True)
    assert full["step"] == 4 and full["model"].keys() == state["model"].keys()


def test_device_is_checked_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lib.vae.train_step import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="cpu, cuda"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        return
    with pytest.raises(ValueError, match="no CUDA device.*--device cpu"):
        resolve_device("cuda")
    out = tmp_path / "run"
    assert main(["--preset", "smoke", "--out", str(out), "--device", "cuda", "--no-progress"]) == 1
    assert "no CUDA device" in capsys.readouterr().err and not out.exists()  # nothing decoded, nothing written
