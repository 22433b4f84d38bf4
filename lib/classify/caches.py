"""The caches a classifier notebook (03-07) reads: ``data/caches/<cache_name>/`` as notebook 02
builds it (:func:`study_caches`), and the explicit build of the ``smoke`` caches with notebook
02's defaults (:func:`ensure_smoke_caches`), so that 03-07 also run alone on their smoke defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from lib.cache import open_cache
from lib.cache.report import build_study_caches, cache_paths
from lib.data.synth import ensure_synthetic
from lib.errors import ActionableError
from lib.vae.local import resolve_vae_source

SMOKE_CACHE = "smoke"


@dataclass(frozen=True)
class SmokeCacheSettings:
    """Notebook 02's parameter defaults (its ``parameters`` cell), so that 02 run later on its
    defaults finds these caches and reuses them instead of building them again."""

    folds: list[int] = field(default_factory=lambda: [1, 2, 3])
    val_fraction: float = 0.1
    val_seed: int = 0
    clip_mode: str = "all"
    batch_size: int = 8
    num_workers: int = 2
    device: str = "auto"
    dtype: str = "float32"
    content_features: bool = True
    layer_norm: bool = False
    pooled_pixels: bool = True
    replace_stale: bool = True


def cache_complete(path: Path) -> bool:
    """Whether ``path`` holds a finished cache of the current format."""
    try:
        open_cache(path)
    except Exception:  # noqa: BLE001 - any reason (absent, partial, stale) means "not usable"
        return False
    return True


def study_caches(cache_name: str, *, fold: int = 1) -> tuple[Path, Path | None]:
    """(latent cache dir, pooled-pixels cache dir or None) of ``data/caches/<cache_name>/``.

    The caches are built by notebook 02 (or, for ``smoke``, by :func:`ensure_smoke_caches`); a
    missing latent cache is an error saying how to build it. ``fold`` is the notebook's fold
    (every cache records folds 1-3).
    """
    latent_dir, pooled_dir = cache_paths(cache_name)
    if not cache_complete(latent_dir):
        raise ActionableError(latent_dir, f"no finished latent cache named {cache_name!r}",
                              "run notebook 02_latent_cache with this cache_name first (or `python -m lib.cache build "
                              f"--out {latent_dir} ...`)")
    open_cache(latent_dir)  # validates (a partial or stale cache raises here, naming the fix)
    return latent_dir, (pooled_dir if cache_complete(pooled_dir) else None)


def ensure_smoke_caches(cache_name: str, settings: SmokeCacheSettings | None = None) -> bool:
    """Build the ``smoke`` caches on the embedded smoke dataset with the shipped stand-in VAE
    when ``cache_name`` is ``smoke`` and they are missing; True when it built them. Any other
    name is left to notebook 02 (:func:`study_caches` then says how to build it)."""
    latent_dir, _ = cache_paths(cache_name)
    if cache_name != SMOKE_CACHE or cache_complete(latent_dir):
        return False
    build_study_caches(data_root=ensure_synthetic(preset="smoke"), vae_source=resolve_vae_source(""),
                       cache_name=cache_name, **asdict(settings or SmokeCacheSettings()))
    return True
