"""Command line of the data layer: ``python -m lib.data {summary,report,synth,download}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lib.data.errors import DataError


def _add_split_args(p: argparse.ArgumentParser) -> None:
    from lib.data.ucf101 import DEFAULT_VAL_FRACTION, DEFAULT_VAL_SEED

    p.add_argument("--root", required=True, type=Path,
                   help="folder holding UCF-101/<Class>/*.avi and ucfTrainTestlist/*.txt side by side")
    p.add_argument("--fold", type=int, default=1, choices=(1, 2, 3), help="official split (1-3)")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help="fraction of the train list's groups held out for validation (whole groups)")
    p.add_argument("--seed", type=int, default=DEFAULT_VAL_SEED, help="seed of the validation-group draw")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_sum = sub.add_parser("summary", help="print one JSON object: class and video counts per split, missing files")
    _add_split_args(p_sum)

    p_rep = sub.add_parser("report", help="human-readable integrity report (missing files, per-class counts, groups)")
    _add_split_args(p_rep)

    p_syn = sub.add_parser("synth", help="write the synthetic action dataset in UCF101's layout")
    p_syn.add_argument("--out", required=True, type=Path, help="dataset root to create (UCF-101/ and ucfTrainTestlist/)")
    p_syn.add_argument("--preset", default="smoke", help="smoke (seconds, CI) or default (the study's dataset)")
    p_syn.add_argument("--seed", type=int, default=0)
    p_syn.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")

    p_dl = sub.add_parser("download", help="download (resumable, verified) and extract the official UCF101 archives")
    p_dl.add_argument("--root", required=True, type=Path, help="where UCF-101/ and ucfTrainTestlist/ will be extracted")
    p_dl.add_argument("--splits-only", action="store_true", help="only the split-list zip (~100 KB)")
    p_dl.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after extraction")

    args = parser.parse_args(argv)
    try:
        if args.command == "summary":
            from lib.data.ucf101 import summarize

            print(json.dumps(summarize(args.root, fold=args.fold, val_fraction=args.val_fraction, seed=args.seed)))
        elif args.command == "report":
            from lib.data.ucf101 import format_report, integrity_report

            report = integrity_report(args.root, fold=args.fold, val_fraction=args.val_fraction, seed=args.seed)
            print(format_report(report))
        elif args.command == "synth":
            from lib.data.synth import generate

            root = generate(args.out, preset=args.preset, seed=args.seed, workers=args.workers)
            print(f"synthetic dataset ready at {root}")
        elif args.command == "download":
            from lib.data.download import download_ucf101

            download_ucf101(args.root, splits_only=args.splits_only, keep_archives=args.keep_archives)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
