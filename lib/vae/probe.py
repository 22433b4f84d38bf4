"""What a VAE's latents keep, measured: ``python -m lib.vae probe``.

The study's question is whether compressed latents keep what separates the actions. Before any
classifier is trained, three fixed-protocol measurements answer it for a VAE on a labelled
UCF101-layout dataset (by default the embedded synthetic one, fold 1):

1. **Linear probe on the latents.** One centre clip per video, encoded to the posterior mean in
   float32; every latent value standardised with the train split's mean and std; multinomial
   logistic regression (L2 penalty :data:`PROBE_L2` on the weights, full-batch L-BFGS in float64
   to convergence, so the result is a deterministic function of the features); accuracy on the
   group-disjoint validation split (train -> val, whole groups; the test split is never read).
2. **The same probe on the pooled-pixel control**: the same clips average-pooled to about the
   latent's number of values (:func:`lib.cache.encoders.pooled_shape`), so the two numbers say
   how much of the separability comes from the encoder rather than from the input size.
3. **Held-out reconstruction** of the val clips (:func:`lib.vae.train_eval.evaluate`): PSNR / SSIM of
   the VAE against two trivial baselines, the content frame repeated and the blurred content
   frame repeated.

Why these: the linear probe is the standard frozen-feature measure (a classifier that cannot
build features of its own), a fixed protocol makes two VAEs comparable without any tuning, and
the pooled control and the two baselines keep the numbers honest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

PROBE_L2 = 1e-3  # L2 penalty of the probe (per weight, on the mean cross-entropy); fixed, never tuned
PROBE_MAX_ITER = 500


@dataclass(frozen=True)
class ProbeResult:
    """Accuracy of the fixed-protocol linear probe on one feature set."""

    train_accuracy: float
    val_accuracy: float
    features: int
    train_videos: int
    val_videos: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_accuracy": round(self.train_accuracy, 4),
            "val_accuracy": round(self.val_accuracy, 4),
            "features": self.features,
            "train_videos": self.train_videos,
            "val_videos": self.val_videos,
        }


def _portable(path: str | Path) -> str:
    """``path`` relative to the repository when inside it (a record must not name one machine's folders)."""
    from lib.paths import REPO_ROOT

    try:
        return Path(path).resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return str(path)


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    *,
    l2: float = PROBE_L2,
    max_iter: int = PROBE_MAX_ITER,
) -> ProbeResult:
    """Fit the fixed-protocol probe (module docstring) on ``train_x`` (N, ...) and score ``val_x``.

    Features are flattened and standardised with the TRAIN statistics only (a constant feature
    maps to 0). Labels are 0-based class indices.
    """
    xtr = train_x.reshape(len(train_x), -1).double()
    xva = val_x.reshape(len(val_x), -1).double()
    mean, std = xtr.mean(0), xtr.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    xtr, xva = (xtr - mean) / std, (xva - mean) / std
    num_classes = int(max(train_y.max(), val_y.max())) + 1
    weight = torch.zeros(xtr.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    target = train_y.long()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(xtr @ weight + bias, target) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        train_acc = ((xtr @ weight + bias).argmax(1) == target).double().mean().item()
        val_acc = ((xva @ weight + bias).argmax(1) == val_y.long()).double().mean().item()
    return ProbeResult(train_acc, val_acc, xtr.shape[1], len(xtr), len(xva))


@torch.no_grad()
def encode_means(vae: Any, clips: torch.Tensor, *, batch_size: int = 16) -> torch.Tensor:
    """Posterior means (N, C, T', H', W') of float clips (N, 3, T, H, W), in float32, on the CPU
    (each batch is encoded on the VAE's device)."""
    device = next(vae.parameters()).device
    out = []
    for start in range(0, len(clips), batch_size):
        out.append(vae.encode_latents(clips[start : start + batch_size].float().to(device)).float().cpu())
    return torch.cat(out)


def probe_vae(
    vae_source: str | Path,
    *,
    data_root: str | Path | None = None,
    fold: int = 1,
    val_fraction: float = 0.1,
    val_seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
    reconstruction: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """The three measurements of the module docstring for the VAE ``vae_source`` (a path or any
    source :func:`lib.vae.load_reducio` accepts) on ``data_root`` (default: the embedded default
    dataset, generated if missing), encoding on ``device`` (float32 whatever the device; the
    probe itself always runs on the CPU in float64). Returns a JSON-ready dict."""
    from lib.cache.encoders import pooled_shape
    from lib.vae.clip_data import center_clips, decode_clip_bank, train_val_records
    from lib.vae.loading import load_reducio
    from lib.vae.local import input_policy

    start = time.perf_counter()
    if data_root is None:
        from lib.data.synth import ensure_synthetic

        data_root = ensure_synthetic("default", progress=progress)
    from lib.vae.train_step import resolve_device

    vae = load_reducio(str(vae_source), device="cpu").float().eval().to(resolve_device(device))
    policy = input_policy(vae)
    train_records, val_records, split = train_val_records(
        data_root, fold=fold, val_fraction=val_fraction, val_seed=val_seed
    )
    bank_size = _bank_size(policy, train_records[0].path)
    banks = {
        name: decode_clip_bank(
            records, size=bank_size, mode="center", workers=workers, progress=progress, desc=f"decode {name}"
        )
        for name, records in (("train", train_records), ("val", val_records))
    }
    clips = {name: center_clips(bank, range(len(bank)), crop=policy.crop) for name, bank in banks.items()}
    labels = {name: torch.tensor(bank.labels) for name, bank in banks.items()}
    latents = {name: encode_means(vae, x) for name, x in clips.items()}
    pool = pooled_shape(tuple(clips["train"].shape[1:]))
    pooled = {name: F.adaptive_avg_pool3d(x, pool[1:]) for name, x in clips.items()}
    result: dict[str, Any] = {
        "protocol": {
            "probe": "multinomial logistic regression, standardised features (train statistics), "
            f"L2 {PROBE_L2}, L-BFGS float64",
            "clips": "one centre clip per video",
            "latent": "posterior mean, float32",
            "data_root": _portable(data_root),
            "fold": fold,
            "val_fraction": val_fraction,
            "val_seed": val_seed,
            "crop": list(policy.crop),
            "bank_size": list(bank_size),
            "val_groups": list(split.val_groups),
        },
        "latent_probe": linear_probe(latents["train"], labels["train"], latents["val"], labels["val"]).to_dict(),
        "pooled_pixels_probe": linear_probe(pooled["train"], labels["train"], pooled["val"], labels["val"]).to_dict(),
        "latent_shape": list(latents["train"].shape[1:]),
        "pooled_shape": list(pool),
    }
    if reconstruction and getattr(vae, "has_decoder", False):
        result["reconstruction"] = _reconstruction(vae, banks["val"], crop=policy.crop)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _reconstruction(vae: Any, bank: Any, *, crop: tuple[int, int]) -> dict[str, Any]:
    """Held-out PSNR/SSIM of the VAE and of the two trivial baselines (``lib.vae.train_eval``)."""
    from lib.vae.train_eval import BLUR_BASELINE_SIGMA, evaluate

    held = evaluate(vae, bank, crop=crop)
    return {
        "clips": held["clips"],
        "vae": {"psnr": round(held["psnr"], 4), "ssim": round(held["ssim"], 5)},
        "repeat_content_frame": {"psnr": round(held["baseline_psnr"], 4), "ssim": round(held["baseline_ssim"], 5)},
        "blurred_content_frame": {
            "psnr": round(held["blurred_psnr"], 4),
            "ssim": round(held["blurred_ssim"], 5),
            "sigma_px": BLUR_BASELINE_SIGMA,
        },
        "gain_over_content_frame_db": round(held["psnr"] - held["baseline_psnr"], 4),
        "gain_over_blurred_content_frame_db": round(held["psnr"] - held["blurred_psnr"], 4),
    }


def _bank_size(policy: Any, sample_path: Path) -> tuple[int, int]:
    """The frame size clips are stored at before the centre crop: the policy's resize of the
    dataset's frames (e.g. 240x320 -> 72x96 for a VAE trained at 64x96)."""
    from lib.data.video import probe_video

    info = probe_video(sample_path)
    return policy.resize_size(info.height, info.width)


def format_probe(result: dict[str, Any]) -> str:
    """A few human-readable lines of a :func:`probe_vae` result."""
    lat, pix = result["latent_probe"], result["pooled_pixels_probe"]
    lines = [
        f"linear probe, val accuracy: latents {100 * lat['val_accuracy']:.1f} % ({lat['features']} values), "
        f"pooled pixels {100 * pix['val_accuracy']:.1f} % ({pix['features']} values); "
        f"{lat['train_videos']} train / {lat['val_videos']} val videos"
    ]
    rec = result.get("reconstruction")
    if rec:
        lines.append(
            f"held-out reconstruction ({rec['clips']} clips): VAE {rec['vae']['psnr']:.2f} dB / SSIM "
            f"{rec['vae']['ssim']:.3f}; content frame {rec['repeat_content_frame']['psnr']:.2f} dB "
            f"({rec['gain_over_content_frame_db']:+.2f}); blurred content frame "
            f"{rec['blurred_content_frame']['psnr']:.2f} dB ({rec['gain_over_blurred_content_frame_db']:+.2f})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lib.vae probe",
        description="Linear probe of a VAE's latents (and of pooled pixels) plus held-out "
        "reconstruction against two trivial baselines.",
    )
    parser.add_argument("--vae", required=True, help="weights (.safetensors / .ckpt) or any load_reducio source")
    parser.add_argument("--data", type=Path, default=None, help="labelled dataset root (default: the embedded default)")
    parser.add_argument("--fold", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--val-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="where the VAE encodes: cpu (default), cuda[:N] or auto")
    parser.add_argument("--no-reconstruction", action="store_true", help="skip the reconstruction metrics")
    parser.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from lib.data.errors import DataError
    from lib.vae.train_step import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        result = probe_vae(
            args.vae,
            data_root=args.data,
            fold=args.fold,
            val_fraction=args.val_fraction,
            val_seed=args.val_seed,
            reconstruction=not args.no_reconstruction,
            progress=True,
            device=args.device,
        )
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        from lib.runs import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(format_probe(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def vae_quality(
    vae_source: str | Path, *, mode: str = "auto", data_root: str | Path | None = None, **kwargs: Any
) -> dict[str, Any] | None:
    """The probe figures of a VAE for notebook 01: ``mode`` ``"live"`` measures them now
    (:func:`probe_vae`), ``"auto"`` reads the figures recorded in the shipped stand-in when
    ``vae_source`` is that (sha256-checked) file and measures otherwise, ``"off"`` gives None.
    The result's ``"origin"`` says which."""
    if mode not in ("auto", "live", "off"):
        raise ValueError(f"probe mode must be auto, live or off, got {mode!r}")
    if mode == "off":
        return None
    if mode == "auto":
        from lib.vae.standin import STANDIN_FILE, read_record, standin_path

        if Path(vae_source).resolve() == STANDIN_FILE.resolve():
            standin_path()  # verifies the sha256: the record describes exactly this file
            return {**read_record()["quality"], "origin": "recorded in the stand-in's metadata (make vae)"}
    return {**probe_vae(vae_source, data_root=data_root, **kwargs), "origin": "measured now"}


def quality_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (measure, value, reference) of a probe result, for a DataFrame."""
    lat, pix = result["latent_probe"], result["pooled_pixels_probe"]
    rows = [
        {
            "measure": "linear probe, val accuracy (%)",
            "VAE latents": round(100 * lat["val_accuracy"], 1),
            "reference": round(100 * pix["val_accuracy"], 1),
            "reference is": f"pooled pixels ({pix['features']} values)",
        },
        {
            "measure": "linear probe, train accuracy (%)",
            "VAE latents": round(100 * lat["train_accuracy"], 1),
            "reference": round(100 * pix["train_accuracy"], 1),
            "reference is": "pooled pixels",
        },
    ]
    rec = result.get("reconstruction")
    if rec:
        rows += [
            {
                "measure": "held-out PSNR (dB)",
                "VAE latents": rec["vae"]["psnr"],
                "reference": rec["repeat_content_frame"]["psnr"],
                "reference is": "content frame repeated",
            },
            {
                "measure": "held-out PSNR (dB)",
                "VAE latents": rec["vae"]["psnr"],
                "reference": rec["blurred_content_frame"]["psnr"],
                "reference is": "blurred content frame repeated",
            },
            {
                "measure": "held-out SSIM",
                "VAE latents": rec["vae"]["ssim"],
                "reference": rec["repeat_content_frame"]["ssim"],
                "reference is": "content frame repeated",
            },
        ]
    return rows
