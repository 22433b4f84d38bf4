"""How fast can a VAE's encoder learn the labelled classes at all? A capacity diagnostic.

Trains a copy of the VAE's encoder (3D encoder + quant_conv, from the given weights) together
with a linear layer on its flattened posterior mean, with cross-entropy on the LABELS of the
labelled default's fold-1 training centre clips (64x96, batch ``--batch``, AdamW, bf16 autocast),
and prints, every ``--every`` steps, the mean training loss since the last row (ln 10 = 2.303 is
chance for 10 classes) and the fixed-protocol linear probe of ``python -m lib.vae probe`` on the
current latents (val, bf16 encode). It reads labels, so it is never a way to make a stand-in VAE;
it bounds what label-free pretraining can reach in the same number of steps on this machine: an
encoder that cannot fit the training labels in N steps will not learn motion from pixels in N.

Usage: ``python benchmarks/encoder_supervised_check.py [--vae lib/vae/weights/reducio-standin-v1.safetensors]
[--steps 400] [--every 100] [--batch 8] [--lr 5e-4] [--threads 1]``
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.env_check import cpu_model  # noqa: E402
from lib.vae.clip_data import center_clips, decode_clip_bank, train_val_records  # noqa: E402
from lib.vae.loading import load_reducio  # noqa: E402
from lib.vae.probe import encode_means, linear_probe  # noqa: E402
from lib.vae.standin import standin_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", default=str(standin_path()))
    parser.add_argument("--data", default="data/synth_default", help="the labelled default (python -m lib.data synth)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4, help="encoder lr (the head's is 2x)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"machine: {cpu_model() or platform.processor()}, {os.cpu_count()} cores, {args.threads} torch thread(s)")
    train_records, val_records, _ = train_val_records(args.data)
    banks = {n: decode_clip_bank(r, size=(72, 96), mode="center", progress=False)
             for n, r in (("train", train_records), ("val", val_records))}
    clips = {n: center_clips(b, range(len(b)), crop=(64, 96)) for n, b in banks.items()}
    labels = {n: torch.tensor(b.labels) for n, b in banks.items()}
    vae = load_reducio(args.vae, parts="encoder", device="cpu").float().requires_grad_(True)
    with torch.no_grad():
        features = vae.encode(clips["val"][:1]).mean.numel()
    head = torch.nn.Linear(features, int(labels["train"].max()) + 1)
    opt = torch.optim.AdamW([{"params": vae.parameters(), "lr": args.lr},
                             {"params": head.parameters(), "lr": 2 * args.lr}], weight_decay=0.0)

    def probe() -> float:
        vae.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = {n: encode_means(vae, x).float() for n, x in clips.items()}
        vae.train()
        return linear_probe(z["train"], labels["train"], z["val"], labels["val"]).val_accuracy

    print(f"{len(clips['train'])} train / {len(clips['val'])} val centre clips, latent {features} values, "
          f"chance loss ln {head.out_features} = {math.log(head.out_features):.3f}\n")
    print("| step | clips seen | train loss (mean since last row) | train batch accuracy | probe val % | s |")
    print("|---|---|---|---|---|---|")
    start = time.perf_counter()
    print(f"| 0 | 0 | - | - | {100 * probe():.1f} | {time.perf_counter() - start:.0f} |", flush=True)
    g = torch.Generator().manual_seed(args.seed)
    losses, hits = [], []
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(clips["train"]), (args.batch,), generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = vae.encode(clips["train"][idx]).mean
        logits = head(z.float().flatten(1))
        loss = F.cross_entropy(logits, labels["train"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        hits.append((logits.argmax(1) == labels["train"][idx]).float().mean().item())
        if step % args.every == 0:
            print(f"| {step} | {step * args.batch} | {sum(losses) / len(losses):.3f} | "
                  f"{100 * sum(hits) / len(hits):.1f} % | {100 * probe():.1f} | {time.perf_counter() - start:.0f} |",
                  flush=True)
            losses, hits = [], []


if __name__ == "__main__":
    main()
