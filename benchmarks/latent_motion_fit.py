"""How much of the pretraining pool's motion a VAE's latent holds linearly.

For each VAE: encode the centre clip of a spread subset of pool videos to the posterior mean,
and fit a ridge regression from each latent cell (C values + 1) to the pool's ground-truth
displacements of the frames and 8x8-pixel blocks that cell covers (the target of
:mod:`lib.vae.latent_motion`, 128 values per cell) on one half of the clips; print the held-out
half's mean squared error, the target variance and R^2 (0: nothing linear; 1: all of it).

Usage: ``python benchmarks/latent_motion_fit.py [--pool data/synth_pretrain] [--videos 120]
[--threads 1] VAE [VAE ...]`` (VAE: a weights file or any ``load_reducio`` source, e.g. ``standin``).
"""

from __future__ import annotations

import argparse
import platform

import torch

from lib.vae.clip_data import center_clips, decode_clip_bank
from lib.vae.latent_motion import coarse_field, field_to_cells
from lib.vae.loading import load_reducio
from lib.vae.local import input_policy
from lib.vae.pool_bank import attach_pool_motion, pool_records

BLOCK = 8
RIDGE = 1e-3


def cell_rows(z: torch.Tensor, coarse: torch.Tensor, *, blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent (N, C, T', H', W') and coarse target (N, 2, T, H, W) as per-cell rows:
    (N * cells, C) and (N * cells, 2 * 4 * blocks^2), cells in the same order."""
    cells = field_to_cells(coarse, temporal_factor=4, blocks=blocks)
    c, k = z.shape[1], cells.shape[1]
    return z.permute(0, 2, 3, 4, 1).reshape(-1, c), cells.permute(0, 2, 3, 4, 1).reshape(-1, k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vae", nargs="+")
    ap.add_argument("--pool", default="data/synth_pretrain")
    ap.add_argument("--videos", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    records = pool_records(args.pool)
    records = records[:: max(1, len(records) // args.videos)][: args.videos]
    bank = decode_clip_bank(records, size=(72, 96), mode="center", workers=1, progress=False)
    bank = attach_pool_motion(bank, args.pool, workers=1, progress=False)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s); {len(bank)} pool centre clips")
    print("| VAE | target variance (px^2) | held-out MSE (px^2) | R^2 |\n|---|---|---|---|")
    for source in args.vae:
        vae = load_reducio(source, device="cpu").float().eval()
        ch, cw = input_policy(vae).crop
        top, left = (bank.size[0] - ch) // 2, (bank.size[1] - cw) // 2
        x = center_clips(bank, range(len(bank)), crop=(ch, cw))
        field = bank.motion[:, :, :, top : top + ch, left : left + cw].float().permute(0, 2, 1, 3, 4)
        with torch.no_grad():
            z = torch.cat([vae.encode(x[i : i + 16]).mean for i in range(0, len(x), 16)])
        feats, targets = cell_rows(z, coarse_field(field, BLOCK), blocks=32 // BLOCK)
        cells = feats.shape[0] // len(x)
        split = (len(x) // 2) * cells  # whole clips on each side
        a = torch.cat([feats, torch.ones(len(feats), 1)], 1).double()
        b = targets.double()
        w = torch.linalg.solve(a[:split].T @ a[:split] + RIDGE * torch.eye(a.shape[1], dtype=a.dtype),
                               a[:split].T @ b[:split])
        mse = (a[split:] @ w - b[split:]).square().mean().item()
        var = (b[split:] - b[:split].mean(0)).square().mean().item()
        print(f"| {source} | {var:.3f} | {mse:.3f} | {1 - mse / var:.3f} |")


if __name__ == "__main__":
    main()
