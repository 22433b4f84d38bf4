"""Train several (model, seed) runs side by side in worker processes.

Why: the latent classifiers are small, and on a CPU one torch thread per run is faster per clip
than several threads on one run (their kernels are too small to split well). So a study on a
2-core machine trains two seeds at once, one thread each, instead of one seed on two threads.

Each job is an ordinary :func:`~lib.classify.experiment.run_experiment` call for ONE seed in a
fresh ``spawn`` process (no forked torch thread pools), loading its data from the cache itself,
writing into the same ``<run>/<model>/seed<k>/`` folder a sequential run would use. With the same
thread count a CPU run is deterministic, so the stored results equal those of a sequential run
(tested), and a sequential rerun afterwards finds every seed finished and only aggregates.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lib.classify.experiment import ExperimentSpec, run_experiment
from lib.runs import RunDir


@dataclass(frozen=True)
class SeedJob:
    """One model trained for one seed (the arguments of a single-seed run_experiment call)."""

    model_name: str
    seed: int
    cache_dir: str
    run_path: str
    fold: int = 1
    cache_kind: str = "latent"
    train_config: dict[str, Any] = field(default_factory=dict)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None

    @property
    def label(self) -> str:
        return f"{self.model_name} seed {self.seed}"


def _train_seed(job: SeedJob, threads: int) -> dict[str, Any]:
    """Worker entry point: one seed, ``threads`` torch threads, no progress bars (the parent reports)."""
    if threads > 0:
        torch.set_num_threads(threads)
    result = run_experiment(ExperimentSpec(
        model_name=job.model_name, run_dir=RunDir(Path(job.run_path)), cache_dir=job.cache_dir, fold=job.fold,
        seeds=(job.seed,), train_config={**job.train_config, "progress": False}, model_overrides=job.model_overrides,
        origin=job.origin, cache_kind=job.cache_kind))
    return result.per_seed[0]


def run_seed_jobs(jobs: Sequence[SeedJob], *, workers: int, threads: int = 1,
                  report: Callable[[str], None] = print) -> None:
    """Run ``jobs`` in ``workers`` spawned processes with ``threads`` torch threads each.

    The first failing job stops the rest (jobs not started are cancelled; finished seeds stay
    on disk, so a rerun resumes) and its exception is raised here.
    """
    if not jobs:
        return
    workers = max(1, min(workers, len(jobs)))
    report(f"training {len(jobs)} run(s) in {workers} process(es), {threads} torch thread(s) each")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_train_seed, job, threads): job for job in jobs}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                job = futures[future]
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise RuntimeError(f"{job.label} failed in its worker process: {error}") from error
                metrics = future.result()
                top1 = metrics.get("splits", {}).get("test", {}).get("video", {}).get("top1")
                report(f"  done: {job.label}" + (f" (test video top-1 {100 * top1:.2f} %)" if top1 is not None else ""))

