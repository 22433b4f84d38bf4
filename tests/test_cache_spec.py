"""CacheSpec is the source of the cache key: the same settings give the key caches were always built with."""

from __future__ import annotations

from pathlib import Path

import decord
import pytest

from lib.cache.encoders import PooledPixelsEncoder
from lib.cache.key import key_hash
from lib.cache.manifest import make_key
from lib.cache.plan import CachePlan, VideoJob
from lib.cache.spec import BuildOptions, CacheSpec
from lib.data.spatial import make_spatial_policy


def _plan() -> CachePlan:
    """Four videos of two classes in two folds' train and val splits (nothing on disk is read)."""
    pairs = [(c, g) for c in range(2) for g in (1, 8)]
    jobs = [VideoJob(i, f"C{c}/v_C{c}_g{g:02d}_c01.avi", Path(f"/nowhere/C{c}/v_C{c}_g{g:02d}_c01.avi"), f"C{c}", c, g,
                     1, 1000 + 7 * i, 0) for i, (c, g) in enumerate(pairs)]
    return CachePlan(root=Path("/nowhere"), classes=["C0", "C1"], folds=(1, 2), splits=("train", "val"),
                     val_fraction=0.25, val_seed=3, videos=jobs)


# Computed by the key function before build settings became a CacheSpec (decord version pinned below).
PINNED = {
    "random_sampled": "f76f10732a61fad916b970ed1a4d2288c80a55569d707934b3d55f3c672bdbb7",
    "all_layer_norm": "2c27357e46d3d850c421a53785ee52be39a3563de5b284aa409d0609b87daea8",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_cache_key_of_a_spec_is_pinned(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decord, "__version__", "0.6.0")
    settings = {
        "random_sampled": dict(clip_mode="random", clip_seed=5, storage_dtype="float16", sample=True, sample_seed=3,
                               logvar=True),
        "all_layer_norm": dict(clip_mode="all", storage_dtype="float32", layer_norm=True, content_features=True),
    }[name]
    spec = CacheSpec(data_root="/nowhere", vae_source="pooled-pixels", folds=(1, 2), splits=("train", "val"),
                     val_fraction=0.25, val_seed=3, pool_shape=(16, 4, 7, 9), **settings)
    spatial = make_spatial_policy("crop", short_side=224, crop=(224, 288))
    key = make_key(spec, encoder=PooledPixelsEncoder(pool_shape=spec.pool_shape), spatial=spatial, plan=_plan())
    assert key_hash(key) == PINNED[name]


def test_spec_is_a_value() -> None:
    a = CacheSpec(data_root="d", vae_source="v", folds=1, splits=["val"], pool_shape=[3, 4, 2, 2])
    b = CacheSpec(data_root="d", vae_source="v", folds=(1,), splits=("val",), pool_shape=(3, 4, 2, 2))
    assert a == b and hash(a) == hash(b) and a.folds == (1,) and a.clip_spec.num_frames == 16
    assert BuildOptions().batch_size == 8
