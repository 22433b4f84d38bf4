"""What the classifier notebooks (03-07) call, so that each notebook cell is one call.

This module trains (:func:`train_models`: :func:`~lib.classify.experiment.run_experiment` for
several models on data loaded once; finished seeds are skipped, so a rerun of a notebook
resumes) and picks the model to look at (:func:`best_model`). What the notebooks show comes from
the modules named below and is reachable here under the same names:

- tables: :mod:`lib.classify.tables` (accuracy per model, per-split tables, the cache's inputs,
  the study's accuracy and cost tables);
- figures: :mod:`lib.classify.figures` (learning curves, confusion, accuracy vs cost);
- the interactive test-video view: :mod:`lib.classify.widgets`;
- the caches a notebook reads: :mod:`lib.classify.caches`;
- the README's results block: :mod:`lib.publish`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from lib.classify.caches import ensure_smoke_caches, study_caches
from lib.classify.experiment import ExperimentResult, ExperimentSpec, finished_seed_metrics, run_experiment
from lib.classify.figures import accuracy_cost_figure, confusion_figure, learning_curves, study_label
from lib.classify.loading import ExperimentData, load_latent_data
from lib.classify.parallel import SeedJob, run_seed_jobs
from lib.classify.predict import video_predictions
from lib.classify.tables import (
    PUBLISHED,
    accuracy_frame,
    accuracy_table,
    cost_frame,
    cost_table,
    data_table,
    headline_table,
    result_tables,
    study_frame,
    study_table,
)
from lib.classify.widgets import test_video_view
from lib.models import model_info
from lib.publish import README_BEGIN, README_END, update_readme
from lib.runs import RunDir
from lib.tables import frame_to_markdown

__all__ = [
    "PUBLISHED",
    "README_BEGIN",
    "README_END",
    "accuracy_cost_figure",
    "accuracy_frame",
    "accuracy_table",
    "best_model",
    "confusion_figure",
    "cost_frame",
    "cost_table",
    "data_table",
    "ensure_smoke_caches",
    "frame_to_markdown",
    "headline_table",
    "learning_curves",
    "result_tables",
    "study_caches",
    "study_frame",
    "study_label",
    "study_table",
    "test_video_view",
    "train_models",
    "update_readme",
    "video_predictions",
]


def train_models(
    model_names: Sequence[str],
    *,
    cache_dir: str | os.PathLike[str],
    fold: int,
    run: RunDir,
    seeds: Sequence[int],
    train_config: Mapping[str, Any] | None = None,
    model_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    origin: str | None = None,
    jobs: int = 1,
    threads: int = 1,
) -> dict[str, ExperimentResult]:
    """Train every model of ``model_names`` for every seed into ``run/<model>/seed<k>/``.

    The cache's latent array is read once per input kind (latent, or latent + content features
    for fusion models). ``train_config`` (e.g. ``{"epochs": 30}``) overrides each model's registry recipe;
    ``model_overrides`` maps a model name to fields of its config dataclass. ``jobs`` > 1 trains
    the unfinished (model, seed) runs in that many worker processes with ``threads`` torch
    threads each (:mod:`lib.classify.parallel`; same results as ``jobs=1``), then aggregates here.
    """
    if jobs > 1:
        pending = [
            SeedJob(
                model_name=name,
                seed=int(seed),
                cache_dir=os.fspath(cache_dir),
                run_path=os.fspath(run.path),
                fold=fold,
                train_config=dict(train_config or {}),
                model_overrides=dict((model_overrides or {}).get(name, {})),
                origin=origin,
            )
            for name in model_names
            for seed in seeds
            if finished_seed_metrics(run.path / name / f"seed{seed}") is None
        ]
        for name in model_names:  # an unknown name fails here, before any worker starts
            model_info(name, origin=origin)
        run_seed_jobs(pending, workers=jobs, threads=threads)
    loaded: dict[str, ExperimentData] = {}
    results: dict[str, ExperimentResult] = {}
    for name in model_names:
        input_kind = model_info(name, origin=origin).input_kind
        if input_kind not in loaded:
            loaded[input_kind] = load_latent_data(cache_dir, fold=fold, with_content=input_kind == "latent+content")
        results[name] = run_experiment(
            ExperimentSpec(
                model_name=name,
                run_dir=run,
                data=loaded[input_kind],
                seeds=tuple(seeds),
                train_config=dict(train_config or {}),
                model_overrides=dict((model_overrides or {}).get(name, {})),
                origin=origin,
            )
        )
    return results


def best_model(results: Mapping[str, ExperimentResult], *, split: str = "val") -> str:
    """Name of the model with the highest mean video top-1 on ``split`` (val: selection, not test)."""
    return max(results, key=lambda n: results[n].aggregate.get(f"{split}.video_top1", {}).get("mean") or -1.0)
