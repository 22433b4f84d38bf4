"""CLI: ``python -m lib.cache {build,merge,info,verify,repair} ...`` (also ``torchrun ... -m lib.cache build``).

Paths typed on the command line (``--data``, ``--out``, a ``--vae`` file or folder, the cache
folder of ``merge``/``info``/``verify``/``repair``) are taken from the working directory; only
defaults come from the package.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lib.cache.spec import BuildOptions, CacheSpec
from lib.data.clips import SAMPLING_MODES
from lib.data.spatial import make_spatial_policy
from lib.data.ucf101 import SPLIT_NAMES
from lib.errors import ActionableError
from lib.paths import unwritable_error
from lib.zoo.sources import DIFFUSERS_PREFIX

VAE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def _user_path(text: str) -> str:
    """argparse type: a path the user typed, absolute from the working directory ("" stays "")."""
    return str(Path(text).expanduser().absolute()) if text else text


def _vae_source(text: str) -> str:
    """argparse type for ``--vae``: a path (an existing file or folder here, or anything that
    looks like one) becomes absolute from the working directory; names (ft4, hf://...,
    random:<preset>, pooled-pixels, a diffusers hub repo) stay as they are; ``diffusers:<folder>``
    gets the absolute folder."""
    if text.startswith(DIFFUSERS_PREFIX):
        folder = Path(text[len(DIFFUSERS_PREFIX):]).expanduser()
        return f"{DIFFUSERS_PREFIX}{folder.absolute()}" if folder.is_dir() else text
    path = Path(text).expanduser()
    if "://" in text or text.startswith("random:"):
        return text
    looks_like_path = path.exists() or "/" in text or text.lower().endswith(VAE_FILE_SUFFIXES) or text[:1] in ".~"
    return str(path.absolute()) if looks_like_path else text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _spatial(args: argparse.Namespace):  # noqa: ANN202 - SpatialPolicy | None
    if args.crop is None and args.short_side is None and args.spatial == "crop":
        return None  # the encoder's default: input_policy(vae) / the study bucket for pooled pixels
    params = {"short_side": args.short_side}
    if args.spatial == "crop":
        if args.crop is None:
            raise SystemExit("--short-side with the crop policy needs --crop H W too")
        params["crop"] = tuple(args.crop)
    elif args.crop is not None:
        raise SystemExit("--crop applies to --spatial crop only")
    return make_spatial_policy(args.spatial, **params)


def _cache_spec(args: argparse.Namespace) -> CacheSpec:
    """The CacheSpec of ``build``'s arguments."""
    return CacheSpec(
        data_root=args.data, vae_source=args.vae, folds=args.folds, splits=args.splits, val_fraction=args.val_fraction,
        val_seed=args.val_seed, clip_mode=args.clip_mode, clip_seed=args.clip_seed, spatial=_spatial(args),
        dtype=args.dtype, storage_dtype=args.storage_dtype, content_features=args.content_features, sample=args.sample,
        sample_seed=args.sample_seed, logvar=args.logvar, layer_norm=args.layer_norm, pool_shape=args.pool_shape,
        init_seed=args.init_seed)


def _build_options(args: argparse.Namespace) -> BuildOptions:
    """The BuildOptions of ``build``'s arguments."""
    return BuildOptions(
        batch_size=args.batch_size, num_workers=args.num_workers, device=args.device, threads=args.threads,
        preprocess=args.preprocess, num_shards=args.num_shards, shard_index=args.shard_index,
        retry_failed=args.retry_failed, replace_stale=args.replace_stale, content_hash=args.content_hash,
        merge=not args.no_merge, progress=not args.no_progress)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib.cache", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build, resume or finish a cache (torchrun-aware)")
    b.add_argument("--data", required=True, type=_user_path, help='UCF101-layout root ("" = synthetic smoke set)')
    b.add_argument("--vae", required=True, type=_vae_source,
                   help="load_reducio source (file, hf://..., ft4, local-smoke), a training output folder holding one "
                        "vae.safetensors, random:<preset>, or pooled-pixels")
    b.add_argument("--out", required=True, type=_user_path,
                   help="cache folder (created; resumed when it holds the same key)")
    b.add_argument("--folds", type=int, nargs="+", default=[1],
                   help="folds whose splits are cached (first = row order)")
    b.add_argument("--splits", nargs="+", default=list(SPLIT_NAMES), choices=SPLIT_NAMES)
    b.add_argument("--val-fraction", type=float, default=0.1)
    b.add_argument("--val-seed", type=int, default=0)
    b.add_argument("--clip-mode", default="all", choices=SAMPLING_MODES)
    b.add_argument("--clip-seed", type=int, default=0, help="seed of the clip draw in random mode")
    b.add_argument("--spatial", default="crop", choices=("crop", "pad"), help="spatial policy (default: the VAE's own)")
    b.add_argument("--short-side", type=int, default=None)
    b.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), default=None)
    b.add_argument("--batch-size", type=_positive, default=8, help="clips per encoder call (within one video)")
    b.add_argument("--num-workers", type=_non_negative, default=2, help="decode worker processes")
    b.add_argument("--device", default="auto")
    b.add_argument("--dtype", default="float32", help="compute dtype: float32, bfloat16 or float16 (autocast)")
    b.add_argument("--storage-dtype", default="float16", choices=("float16", "float32"))
    b.add_argument("--content-features", action="store_true", help="also store pooled content-frame features")
    b.add_argument("--sample", action="store_true", help="also store a seeded posterior sample")
    b.add_argument("--sample-seed", type=int, default=0)
    b.add_argument("--logvar", action="store_true", help="also store the posterior log-variance")
    b.add_argument("--layer-norm", action="store_true", help="per-sample latent layer norm (official extractor)")
    b.add_argument("--pool-shape", type=int, nargs=4, metavar=("C", "T", "H", "W"), default=None,
                   help="pooled-pixels output shape (default: about the Reducio latent's size)")
    b.add_argument("--init-seed", type=int, default=0, help="seed of a random:<preset> init")
    b.add_argument("--preprocess", default="auto", choices=("auto", "workers", "device"))
    b.add_argument("--threads", type=int, default=None, help="torch threads of the encoding process")
    b.add_argument("--num-shards", type=int, default=1, help="shards without torchrun (one process each)")
    b.add_argument("--shard-index", type=int, default=0)
    b.add_argument("--retry-failed", action="store_true", help="decode recorded failures again (a finished cache too)")
    b.add_argument("--replace-stale", action="store_true",
                   help="a cache of other settings in --out: build the new one beside it and swap it in when finished "
                        "(files the cache did not write are kept); without it that is an error naming the differences")
    b.add_argument("--content-hash", action="store_true",
                   help="also record each source video's sha256 (a copied or touched file keeps its cache; "
                        "verify --sources checks content)")
    b.add_argument("--no-merge", action="store_true", help="leave the merge to `python -m lib.cache merge`")
    b.add_argument("--no-progress", action="store_true")
    m = sub.add_parser("merge", help="pack a cache whose shards are all done")
    m.add_argument("out", type=_user_path)
    i = sub.add_parser("info", help="one JSON object describing a finished cache")
    i.add_argument("out", type=_user_path)
    v = sub.add_parser("verify", help="check every video's rows against their recorded digests (exit 1 on damage)")
    v.add_argument("out", type=_user_path)
    v.add_argument("--sources", action="store_true", help="also check every source video (content hashes included)")
    r = sub.add_parser("repair", help="rewrite the damaged rows only (from intact entries, else by re-encoding)")
    r.add_argument("out", type=_user_path)
    r.add_argument("--vae", type=_vae_source, default=None, help="the weights, if they moved since the build")
    r.add_argument("--data", type=_user_path, default=None, help="the dataset root, if it moved since the build")
    r.add_argument("--device", default="auto")
    r.add_argument("--threads", type=_positive, default=None, help="torch threads (default: the build's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from lib.cache import build_cache, merge_cache, open_cache

    try:
        if args.command == "build":
            summary = build_cache(_cache_spec(args), args.out, _build_options(args))
            print(summary.describe())
        elif args.command == "merge":
            print(merge_cache(args.out))
        elif args.command in ("verify", "repair"):
            from lib.cache.repair import repair_cache, verify_cache

            if args.command == "verify":
                report = verify_cache(args.out, sources=args.sources)
                print(report.describe())
                return 0 if report.ok else 1
            print(repair_cache(args.out, vae_source=args.vae, data_root=args.data, device=args.device,
                               threads=args.threads).describe())
        else:
            cache = open_cache(args.out)
            print(json.dumps({"path": str(cache.path), "source_kind": cache.source_kind, "classes": cache.num_classes,
                              "videos": cache.num_videos, "clips": cache.num_clips, "latent_shape": cache.latent_shape,
                              "arrays": list(cache.arrays), "folds": list(cache.folds), "failures": cache.failures,
                              "encode_seconds": cache.encode_seconds, "bytes_on_disk": cache.bytes_on_disk,
                              "key_hash": cache.key_hash}, indent=1))
    except ActionableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        typed = unwritable_error(err, what="a file of the cache", fix="choose a writable --out folder")
        if typed is None:
            raise
        print(f"error: {typed}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
