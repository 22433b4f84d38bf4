"""``python -m lib.vae <command> ...``: the VAE command line.

Commands:
  convert  checkpoint -> self-describing .safetensors (lib/vae/convert.py)
  train    train a Reducio-VAE locally (lib/vae/train.py)
  probe    linear probe of a VAE's latents + held-out reconstruction (lib/vae/probe.py)
  standin  export a pretraining run as the shipped stand-in VAE, or --check it (lib/vae/standin.py)

Each command parses its own arguments (``python -m lib.vae convert --help``). The modules are
imported only when their command runs, so ``convert`` works without training dependencies.
"""

from __future__ import annotations

import sys

USAGE = """usage: python -m lib.vae <command> [args...]

commands:
  convert  SRC DST [--parts encoder|all] [--dtype fp16|bf16|fp32] [--variant ft4|ft2] [--overwrite]
           convert a Reducio checkpoint into a self-describing .safetensors
  train    train a Reducio-VAE locally (see: python -m lib.vae train --help)
  probe    --vae PATH [--data ROOT]: linear probe of the latents, pooled-pixel control, held-out
           reconstruction against two trivial baselines
  standin  --run DIR | --check: export a finished `train --preset pretrain` run as the shipped
           stand-in VAE (fp16, provenance, sha256 record), or verify the shipped file

run `python -m lib.vae <command> --help` for a command's options."""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand's ``main(argv)``; returns its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "convert":
        from lib.vae.convert import main as convert_main

        return convert_main(rest)
    if command == "train":
        try:
            from lib.vae.train import main as train_main
        except ModuleNotFoundError as err:
            if err.name != "lib.vae.train":  # a missing dependency of train.py: show the real error
                raise
            print("error: this checkout has no lib/vae/train.py, so `train` is unavailable", file=sys.stderr)
            return 1
        return train_main(rest)
    if command == "standin":
        from lib.vae.standin import main as standin_main

        return standin_main(rest)
    if command == "probe":
        from lib.vae.probe import main as probe_main

        return probe_main(rest)
    print(f"error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
