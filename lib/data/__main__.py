"""Command line of the data layer: ``python -m lib.data {summary,report,synth,download}``.

Paths typed on the command line are taken from the working directory (``~`` expanded); a folder
that cannot be written is an error naming it, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lib.errors import ActionableError
from lib.paths import unwritable_error


def _user_path(text: str) -> Path:
    """argparse type: a path the user typed, taken from the working directory (``~`` expanded)."""
    return Path(text).expanduser().absolute()


def _val_fraction(text: str) -> float:
    """argparse type: a float in [0, 1) (0 = no validation set)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _add_split_args(p: argparse.ArgumentParser) -> None:
    from lib.data.ucf101 import DEFAULT_VAL_FRACTION, DEFAULT_VAL_SEED

    p.add_argument("--root", required=True, type=_user_path,
                   help="folder holding UCF-101/<Class>/*.avi and ucfTrainTestlist/*.txt side by side")
    p.add_argument("--fold", type=int, default=1, choices=(1, 2, 3), help="official split (1-3)")
    p.add_argument("--val-fraction", type=_val_fraction, default=DEFAULT_VAL_FRACTION,
                   help="fraction of the train list's groups held out for validation (whole groups, the same "
                        "group numbers for every class; at least one group; 0 = no validation set)")
    p.add_argument("--seed", type=int, default=DEFAULT_VAL_SEED, help="seed of the validation-group draw")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the four commands (``summary``, ``report``, ``synth``, ``download``)."""
    parser = argparse.ArgumentParser(prog="python -m lib.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_sum = sub.add_parser("summary", help="print one JSON object: class and video counts per split, missing files")
    _add_split_args(p_sum)
    p_rep = sub.add_parser("report", help="human-readable integrity report (missing files, per-class counts, groups)")
    _add_split_args(p_rep)
    p_rep.add_argument("--no-per-class", action="store_true", help="omit the per-class count table")
    _add_synth_parser(sub)
    _add_download_parser(sub)
    return parser


def _add_synth_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_syn = sub.add_parser("synth", help="write the synthetic action dataset in UCF101's layout, or the unlabelled "
                                          "pretraining pool of the stand-in VAE")
    p_syn.add_argument("--out", required=True, type=_user_path,
                       help="dataset root to create (UCF-101/ and ucfTrainTestlist/)")
    p_syn.add_argument("--preset", default="smoke",
                       help="smoke (seconds, CI), default (the study's labelled dataset), pretrain (the VAE's "
                            "unlabelled pool, videos/*.avi), pretrain_smoke, or ucf101-layout (a stand-in for "
                            "UCF101 in its exact official layout: 101 classes, 13,320 short placeholder videos, "
                            "the official split lists)")
    p_syn.add_argument("--seed", type=int, default=None,
                       help="dataset seed (default 0 for labelled presets, 1 for the pretraining pool)")
    p_syn.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p_syn.add_argument("--classes", default=None,
                       help="ucf101-layout only: comma-separated official class folders to write (default: all)")
    p_syn.add_argument("--groups", default=None,
                       help="ucf101-layout only: groups to write, e.g. 1,8-10 (default: 1-25)")
    p_syn.add_argument("--clips-per-group", type=int, default=None,
                       help="ucf101-layout only: at most this many clips per (class, group) (default: all)")


def _add_download_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_dl = sub.add_parser("download", help="download (resumable, verified) and extract the official UCF101 archives")
    p_dl.add_argument("--root", required=True, type=_user_path,
                      help="where UCF-101/ and ucfTrainTestlist/ will be extracted")
    p_dl.add_argument("--splits-only", action="store_true", help="only the split-list zip (~100 KB)")
    p_dl.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after extraction")
    p_dl.add_argument("--videos-url", default=None, help="mirror of UCF101.rar (default: the official URL)")
    p_dl.add_argument("--splits-url", default=None,
                      help="mirror of UCF101TrainTestSplits-RecognitionTask.zip (default: the official URL)")
    p_dl.add_argument("--archive-dir", type=_user_path, default=None,
                      help="where archives are downloaded (default ROOT/archives)")
    p_dl.add_argument("--force", action="store_true",
                      help="replace an existing UCF-101/ or ucfTrainTestlist/ not extracted by this command")
    p_dl.add_argument("--retries", type=int, default=5, help="retries of a failed transfer (resumed, with backoff)")
    p_dl.add_argument("--no-progress", action="store_true", help="no progress bar")


def _summary(args: argparse.Namespace) -> None:
    from lib.data.ucf101_report import summarize

    print(json.dumps(summarize(args.root, fold=args.fold, val_fraction=args.val_fraction, seed=args.seed)))


def _report(args: argparse.Namespace) -> None:
    from lib.data.ucf101_report import format_report, integrity_report

    report = integrity_report(args.root, fold=args.fold, val_fraction=args.val_fraction, seed=args.seed)
    print(format_report(report, per_class=not args.no_per_class))


def _synth(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from lib.data.synth import generate
    from lib.data.synth_pool import DEFAULT_POOL_SEED, POOL_PRESETS, generate_pool
    from lib.data.synth_ucf101 import LAYOUT_PRESET, LayoutSelection, generate_layout, parse_groups

    subset = {"--classes": args.classes, "--groups": args.groups, "--clips-per-group": args.clips_per_group}
    if args.preset != LAYOUT_PRESET and any(v is not None for v in subset.values()):
        parser.error(f"{', '.join(k for k, v in subset.items() if v is not None)} only apply to "
                     f"--preset {LAYOUT_PRESET}")
    if args.preset == LAYOUT_PRESET:
        try:
            groups = parse_groups(args.groups) if args.groups is not None else None
        except ValueError as err:
            parser.error(str(err))
        classes = tuple(filter(None, args.classes.split(","))) if args.classes is not None else None
        selection = LayoutSelection(classes=classes, groups=groups, clips_per_group=args.clips_per_group)
        root = generate_layout(args.out, selection, seed=args.seed or 0, workers=args.workers)
        print(f"UCF101-layout stand-in ready at {root}")
    elif args.preset in POOL_PRESETS:
        seed = DEFAULT_POOL_SEED if args.seed is None else args.seed
        root = generate_pool(args.out, preset=args.preset, seed=seed, workers=args.workers)
        print(f"pretraining pool ready at {root}")
    else:
        root = generate(args.out, preset=args.preset, seed=args.seed or 0, workers=args.workers)
        print(f"synthetic dataset ready at {root}")


def _download(args: argparse.Namespace) -> None:
    import logging

    from lib.data.download import UCF101_SPLITS_URL, UCF101_VIDEOS_URL, Transfer, download_ucf101

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = download_ucf101(
        args.root, splits_only=args.splits_only, keep_archives=args.keep_archives,
        videos_url=args.videos_url or UCF101_VIDEOS_URL, splits_url=args.splits_url or UCF101_SPLITS_URL,
        archive_dir=args.archive_dir, force=args.force,
        transfer=Transfer(retries=args.retries, progress=not args.no_progress))
    what = "split lists" if args.splits_only else "videos and split lists"
    print(f"UCF101 {what} ready and validated at {root}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "summary":
            _summary(args)
        elif args.command == "report":
            _report(args)
        elif args.command == "synth":
            _synth(args, parser)
        elif args.command == "download":
            _download(args)
    except ActionableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        typed = unwritable_error(err, what=f"the output of `{args.command}`", fix="choose a writable folder")
        if typed is None:
            raise
        print(f"error: {typed}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
