"""``python -m lib.zoo``: the zoo's geometry table, its cost table, and tiny random-init VAEs.

* ``geometry`` - every adapter's frame rule, factors, channels, spatial multiple, normalisation and
  latent shape at a clip size (default the UCF101 bucket, 16 x 224 x 288), as a Markdown table;
* ``cost`` - parameters, encode GFLOPs and latent bytes per clip of every released architecture
  (counted on the meta device: no weights, no download) next to Reducio's, as a Markdown table;
* ``tiny --out DIR`` - tiny random-init diffusers folders of every adapter (``DIR/<name>``), the
  ``diffusers:DIR/<name>`` sources of tests and the embedded zoo study.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.zoo.adapters import ADAPTERS
from lib.zoo.report import cost_rows, geometry_rows


def markdown(rows: list[dict[str, object]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("geometry", "cost"):
        p = sub.add_parser(name)
        p.add_argument("--clip", type=int, nargs=3, default=[16, 224, 288], metavar=("T", "H", "W"))
    t = sub.add_parser("tiny", help="write tiny random-init VAE folders")
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--arch", nargs="+", default=list(ADAPTERS), choices=list(ADAPTERS))
    t.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "tiny":
        from lib.zoo.tiny import write_tiny_vae

        for name in args.arch:
            print(write_tiny_vae(name, args.out.absolute() / name, seed=args.seed))
        return 0
    clip = tuple(args.clip)
    print(markdown(geometry_rows(clip) if args.command == "geometry" else cost_rows(clip)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
