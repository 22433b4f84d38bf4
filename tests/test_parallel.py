"""lib.classify.parallel: (model, seed) runs trained in worker processes equal a sequential run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from lib.cache import BuildOptions, CacheSpec, build_cache
from lib.classify import views
from lib.data.synth import ensure_synthetic
from lib.runs import RunDir
from lib.vae.local import ensure_local_vae

TIMING_COLUMNS = {"epoch_seconds", "val_seconds", "train_clips_per_s", "elapsed_seconds"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parallel") / "latent"
    build_cache(CacheSpec(data_root=ensure_synthetic(preset="smoke"), vae_source=str(ensure_local_vae(preset="smoke"))),
                out, BuildOptions(num_workers=0, batch_size=8, threads=1, progress=False))
    return out


def _history(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(fh)]


@pytest.mark.slow
def test_parallel_jobs_store_what_a_sequential_run_stores(cache_dir: Path, tmp_path: Path) -> None:
    models, seeds = ["conv3d_paper", "lstm_paper"], [0, 1]
    config = {"epochs": 2, "device": "cpu", "progress": False}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: CPU results depend on it
    try:
        sequential = views.train_models(models, cache_dir=cache_dir, fold=1, run=RunDir(tmp_path / "seq"), seeds=seeds,
                                        train_config=config)
    finally:
        torch.set_num_threads(threads)
    parallel = views.train_models(models, cache_dir=cache_dir, fold=1, run=RunDir(tmp_path / "par"), seeds=seeds,
                                  train_config=config, jobs=2, threads=1)
    for name in models:
        assert parallel[name].summary["seeds"] == seeds
        for seed in seeds:
            a = json.loads((tmp_path / "seq" / name / f"seed{seed}" / "metrics.json").read_text())
            b = json.loads((tmp_path / "par" / name / f"seed{seed}" / "metrics.json").read_text())
            assert a["splits"] == b["splits"], (name, seed)  # every clip/video metric and confusion matrix
            assert _history(tmp_path / "seq" / name / f"seed{seed}" / "history.csv") == \
                _history(tmp_path / "par" / name / f"seed{seed}" / "history.csv")
        assert parallel[name].accuracy("test") == sequential[name].accuracy("test")


@pytest.mark.slow
def test_a_failing_job_is_reported_with_its_model_and_seed(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="conv3d_paper seed [01] failed in its worker process"):
        views.train_models(["conv3d_paper"], cache_dir=cache_dir, fold=1, run=RunDir(tmp_path), seeds=[0, 1],
                           train_config={"epochs": 1, "device": "cpu", "no_such_setting": 1}, jobs=2)
