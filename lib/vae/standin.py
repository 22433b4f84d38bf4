"""The shipped stand-in VAE: a pretrained, frozen Reducio-architecture VAE for the embedded study.

On UCF101 the study encodes clips with the released Reducio checkpoint, which was pretrained on
other footage and is frozen. The embedded default mirrors that with this file: the
``local-default`` architecture (the released geometry at reduced width) pretrained on the
unlabelled pool of :mod:`lib.data.synth_pool` plus real natural footage
(:mod:`lib.data.natural`), never on the labelled dataset the classifiers use.

- ``lib/vae/weights/reducio-standin-v1.safetensors``: fp16 weights + config in the metadata, as
  :func:`lib.vae.saving.save_reducio` writes them; the metadata's ``standin`` entry holds the
  provenance (command, commit, pool preset and seed, steps, wall time, machine) and the quality
  figures of :func:`lib.vae.probe.probe_vae` measured on this very file.
- ``lib/vae/weights/reducio-standin-v1.json``: the file's sha256 and the same provenance,
  readable without torch. :func:`standin_path` refuses a file whose sha256 differs.

``load_reducio("standin")`` loads it. ``make vae`` regenerates both files
(``python -m lib.vae train --preset pretrain`` then ``python -m lib.vae standin``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from lib.errors import ActionableError
from lib.paths import REPO_ROOT

STANDIN_SOURCE = "standin"  # the name load_reducio / --vae / vae_source accept
STANDIN_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
STANDIN_FILE = WEIGHTS_DIR / f"reducio-standin-v{STANDIN_VERSION}.safetensors"
STANDIN_RECORD = STANDIN_FILE.with_suffix(".json")
REGENERATE = (
    "make vae (python -m lib.vae train --preset pretrain --out checkpoints/pretrain-seed0, then "
    "python -m lib.vae standin --run checkpoints/pretrain-seed0)"
)


class StandinError(ActionableError):
    """The shipped stand-in VAE is missing or does not match its recorded checksum."""


def read_record(record: Path = STANDIN_RECORD) -> dict[str, Any]:
    """The stand-in's record (sha256 + provenance)."""
    try:
        return json.loads(record.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise StandinError(
            record, f"unreadable stand-in record ({err})", f"restore it from git or regenerate: {REGENERATE}"
        ) from None


def standin_path(*, verify: bool = True, weights: Path = STANDIN_FILE, record: Path = STANDIN_RECORD) -> Path:
    """Path of the shipped stand-in weights, after checking their sha256 against the record."""
    from lib.vae.loading import file_sha256

    if not weights.is_file():
        raise StandinError(
            weights,
            "the shipped stand-in VAE is missing",
            f"restore it (git checkout -- {weights}) or regenerate it: {REGENERATE}",
        )
    if verify:
        expected = read_record(record).get("sha256")
        actual = file_sha256(weights)
        if actual != expected:
            raise StandinError(
                weights,
                f"sha256 {actual} differs from the recorded {expected} (a damaged or foreign file)",
                f"restore it (git checkout -- {weights}) or regenerate it: {REGENERATE}",
            )
    return weights


def git_commit() -> str:
    """The repository's HEAD commit (with ``-dirty`` when tracked files differ), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """CPU model, cores, torch version and threads of this process."""
    import os

    import torch

    from lib.env_check import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _run_summary(run_dir: Path) -> dict[str, Any]:
    """Steps, wall time, config and held-out figures of a pretraining run: from its metrics.json
    when finished, else from its last checkpoint (train_state.pt) with ``finished: false``."""
    import torch

    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        return {
            "finished": True,
            "config": m["config"],
            "train_preset": m["train_preset"],
            "model_preset": m["model_preset"],
            "seed": m["seed"],
            "steps": m["steps"],
            "batch_size": m["batch_size"],
            "train_wall_time_s": m["train_wall_time_s"],
            "train_clips": m["train_bank"]["clips"],
            "heldout": m["heldout"],
            "devices": m.get("devices", []),
        }
    state_path = run_dir / "train_state.pt"
    if not state_path.is_file():
        raise StandinError(
            run_dir,
            "holds no pretraining run (no metrics.json, no train_state.pt)",
            "train one: python -m lib.vae train --preset pretrain --out " + str(run_dir),
        )
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    cfg = state["config"]
    return {
        "finished": False,
        "config": cfg,
        "train_preset": cfg["preset"]["name"],
        "model_preset": cfg["preset"]["model_preset"],
        "seed": cfg["seed"],
        "steps": int(state["step"]),
        "planned_steps": cfg["preset"]["steps"],
        "batch_size": cfg["preset"]["batch_size"],
        "train_wall_time_s": round(float(state["elapsed_s"]), 2),
        "train_clips": None,
        "heldout": None,
        "devices": list(state.get("devices", [])),
    }


def provenance(run_dir: Path, *, command: str) -> dict[str, Any]:
    """What produced a pretraining run: command, commit, pool, steps, wall time, machine."""
    from lib.data.synth import MANIFEST_NAME

    run = _run_summary(run_dir)
    cfg = run["config"]
    pool_manifest = json.loads((Path(cfg["data_root"]) / MANIFEST_NAME).read_text())
    return {
        "command": command,
        "commit": git_commit(),
        "finished": run["finished"],
        "train_preset": run["train_preset"],
        "model_preset": run["model_preset"],
        "seed": run["seed"],
        "data": {
            "pool_generator": pool_manifest["generator"],
            "pool_generator_version": pool_manifest["generator_version"],
            "pool_preset": pool_manifest["preset"]["name"],
            "pool_seed": pool_manifest["seed"],
            "pool_videos": pool_manifest["num_videos"],
            "natural_footage": cfg["preset"]["natural_repeats"] > 0,
            "train_clips": run["train_clips"],
            "eval_root": Path(cfg["eval_root"]).name,
        },
        "steps": run["steps"],
        **({"planned_steps": run["planned_steps"]} if not run["finished"] else {}),
        "batch_size": run["batch_size"],
        "train_wall_time_s": run["train_wall_time_s"],
        "machine": machine(),
        "train_devices": run["devices"],
        "training_metrics": {"heldout": run["heldout"]},
    }


def export_standin(
    run_dir: str | Path, *, command: str, out: Path = STANDIN_FILE, record: Path = STANDIN_RECORD,
    progress: bool = True, device: str = "cpu", probe_data: Path | None = None,
) -> dict[str, Any]:
    """Write the stand-in from a pretraining run: fp16 weights, probe figures measured on that fp16
    file (encoded on ``device``; on the labelled ``probe_data``, default the embedded default),
    provenance in its metadata, and the sha256 record. Returns the record."""
    import torch

    from lib.runs import atomic_write_text
    from lib.vae.loading import file_sha256, load_reducio, save_reducio
    from lib.vae.probe import probe_vae

    run_dir = Path(run_dir)
    vae = load_reducio(str(run_dir / "vae.safetensors"), device="cpu")
    training = dict((vae.checkpoint_info.metadata or {}).get("training") or {})
    info = provenance(run_dir, command=command)
    draft = out.with_name(f".{out.name}.draft.safetensors")
    save_reducio(vae, draft, dtype=torch.float16, extra={"training": training})
    quality = probe_vae(draft, data_root=probe_data, progress=progress, device=device)
    info["quality"] = quality
    save_reducio(
        load_reducio(str(draft), device="cpu"), out, dtype=torch.float16, extra={"training": training, "standin": info}
    )
    draft.unlink(missing_ok=True)
    entry = {
        "file": out.name,
        "sha256": file_sha256(out),
        "bytes": out.stat().st_size,
        "version": STANDIN_VERSION,
        **info,
    }
    atomic_write_text(record, json.dumps(entry, indent=2) + "\n")
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lib.vae standin",
        description="Export a finished pretraining run as the shipped stand-in VAE "
        f"({STANDIN_FILE.relative_to(REPO_ROOT)}), with probe figures and "
        "provenance; or check the shipped file (--check).",
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="the pretraining run folder (python -m lib.vae train --preset pretrain --out RUN)",
    )
    parser.add_argument("--command", default="make vae", help="the command recorded as the file's origin")
    parser.add_argument(
        "--check", action="store_true", help="only verify the shipped file's sha256 and print its record"
    )
    args = parser.parse_args(argv)
    try:
        if args.check or args.run is None:
            standin_path()
            print(json.dumps(read_record(), indent=2))
            return 0
        entry = export_standin(args.run.expanduser().resolve(), command=args.command)
    except ActionableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from lib.vae.probe import format_probe

    print(format_probe(entry["quality"]))
    print(f"wrote {STANDIN_FILE} (sha256 {entry['sha256']}) and {STANDIN_RECORD}")
    return 0
