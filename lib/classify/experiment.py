"""One call per model for the study notebooks: train every seed, score, aggregate, cost.

``run_experiment(ExperimentSpec(model_name=..., cache_dir=..., seeds=(0, 1, 2), run_dir=...))``
loads the data once, then for each seed trains into ``<run_dir>/<model>/seed<k>/`` (config.json, history.csv,
last.pt, best.pt, metrics.json, figures/) with :func:`lib.classify.engine.train_and_evaluate`
(the test split scored once, with the selected checkpoint), skipping seeds already finished,
and writes ``<run_dir>/<model>/summary.json``: per-seed results, mean +- std over seeds, and
the cost row. :func:`collect_results` reads every summary back for the comparison notebook.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from lib.classify.config import TrainConfig
from lib.classify.cost import (
    CostRow,
    count_parameters,
    forward_flops,
    machine_description,
    mean_cost,
    measure_inference,
)
from lib.classify.data import TensorClips, standardize_splits
from lib.classify.engine import train_and_evaluate
from lib.classify.errors import InputMismatchError, RunMismatchError, UnknownNameError
from lib.classify.loading import ExperimentData, PixelInputSpec, load_latent_data, load_pixel_data
from lib.classify.metrics import aggregate_seeds, aggregate_split_table, headline
from lib.classify.plots import save_run_figures
from lib.data.clips import SamplingMode
from lib.data.spatial import SpatialPolicy
from lib.errors import ActionableError
from lib.paths import resolve_path
from lib.runs import RunDir, atomic_write_text

SUMMARY_NAME = "summary.json"


class ModelFactory(Protocol):
    """Where models come from (default: the :mod:`lib.models` registry; tests pass their own)."""

    def info(self, name: str, origin: str | None) -> Any:  # .family, .input_kind, optional .recipe/.origin
        ...

    def build(
        self, name: str, *, num_classes: int, input_shape: tuple[int, ...], origin: str | None, **overrides: Any
    ) -> nn.Module: ...


class RegistryModels:
    """:class:`ModelFactory` over :mod:`lib.models` (unknown names list the known ones)."""

    def info(self, name: str, origin: str | None) -> Any:
        from lib.models import model_info

        return model_info(name, origin=origin)

    def build(
        self, name: str, *, num_classes: int, input_shape: tuple[int, ...], origin: str | None, **overrides: Any
    ) -> nn.Module:
        from lib.models import build_model

        return build_model(name, num_classes=num_classes, input_shape=input_shape, origin=origin, **overrides)  # type: ignore[arg-type]


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` wrote to ``summary.json`` (also available as ``summary``)."""

    model_name: str
    root: Path
    summary: dict[str, Any]

    @property
    def aggregate(self) -> dict[str, Any]:
        return self.summary["aggregate"]

    @property
    def per_seed(self) -> list[dict[str, Any]]:
        return self.summary["per_seed"]

    @property
    def cost(self) -> dict[str, Any]:
        return self.summary["cost"]

    def accuracy(self, split: str = "test", level: str = "video") -> tuple[float, float | None]:
        entry = self.aggregate[f"{split}.{level}_top1"]
        return entry["mean"], entry["std"]

    def table(self) -> str:
        return self.summary["table"]


def finished_seed_metrics(seed_dir: Path) -> dict[str, Any] | None:
    """The metrics of a seed folder whose run is complete and costed, else None."""
    path = seed_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if metrics.get("complete") and "cost" in metrics else None


# Settings that may differ between the run that finished a seed and a rerun (where and how fast,
# not what): everything else must match, or the stored result belongs to another experiment.
_RUNTIME_ONLY = frozenset({"device", "progress", "num_workers", "max_train_seconds", "eval_batch_size"})


def _check_same_config(seed_dir: Path, finished: Mapping[str, Any], config: TrainConfig) -> None:
    """A finished seed is reused only for the same training settings; never silently when stale."""
    stored = {k: v for k, v in (finished.get("config") or {}).items() if k not in _RUNTIME_ONLY}
    asked = {k: v for k, v in config.record().items() if k not in _RUNTIME_ONLY}
    diff = {k: (stored.get(k), asked.get(k)) for k in sorted(set(stored) | set(asked)) if stored.get(k) != asked.get(k)}
    if diff:
        raise RunMismatchError(
            seed_dir,
            f"holds a finished run with other training settings (stored vs asked: {diff})",
            "use another run_dir, or delete this seed folder to retrain it with the new settings",
        )


def _check_kind(info: Any, name: str, data: ExperimentData | None, cache_dir: Any, data_root: Any) -> None:
    kind = info.input_kind
    if data is not None:
        if data.input_kind != kind:
            raise InputMismatchError(
                data.source,
                f"provides {data.input_kind!r} inputs but model {name!r} takes {kind!r}",
                "pass data of the model's input kind (latent cache, cache with content features, or videos)",
            )
        return
    if kind == "pixels" and data_root is None and cache_dir is None:
        raise InputMismatchError(
            None,
            f"model {name!r} is a pixel model and needs videos",
            "pass data_root (the video dataset) and/or cache_dir (to train on the cache's clips)",
        )
    if kind != "pixels" and cache_dir is None:
        raise InputMismatchError(
            data_root,
            f"model {name!r} takes {kind!r} inputs from a latent cache",
            "pass cache_dir (build it with python -m lib.cache build), or choose a pixel model",
        )


def _check_shapes(
    name: str, data: ExperimentData, root: Path, seeds: Sequence[int], expected_input_shape: Sequence[int] | None
) -> None:
    """The data's per-clip shape must be what the caller expects and what earlier seeds of this
    model trained on (their config.json); else nothing is trained and the error says why."""
    shapes = [list(s) for s in data.input_shapes()]
    if expected_input_shape is not None and list(expected_input_shape) != shapes[0]:
        raise InputMismatchError(
            data.source,
            f"clips have shape {tuple(shapes[0])} but model {name!r} is configured for "
            f"input_shape {tuple(expected_input_shape)}",
            "use the cache built for this configuration, or change the model's input_shape",
        )
    for seed in seeds:
        config_path = root / f"seed{seed}" / "config.json"
        if config_path.is_file():
            recorded = json.loads(config_path.read_text()).get("params", {}).get("input_shapes")
            if recorded is not None and recorded != shapes:
                raise InputMismatchError(
                    data.source,
                    f"clips have shapes {shapes} but model {name!r} in {config_path.parent} was trained on {recorded}",
                    "point cache_dir at the cache that run used, or use a fresh run_dir",
                )


def _cost_row(
    name: str,
    model: nn.Module,
    data: ExperimentData,
    metrics: Mapping[str, Any],
    device: torch.device,
    measure: bool,
    amp_dtype: torch.dtype | None,
) -> CostRow:
    shapes = data.input_shapes()
    fit = metrics["fit"]
    clips_per_s = None
    if measure:
        pixels = data.input_kind == "pixels"
        # pixel models cost ~1e3-1e4x a latent model per clip: small batches keep CPU timing short
        batch = (64 if device.type == "cuda" else 8) if pixels else 256
        clips_per_s = measure_inference(
            model,
            shapes,
            device=device,
            batch_size=batch,
            warmup=1 if pixels else 3,
            min_seconds=0.5,
            amp_dtype=amp_dtype,
        )
    return CostRow(
        model=name,
        input_kind=data.input_kind,
        params=count_parameters(model),
        flops_per_clip=forward_flops(model, shapes),
        train_seconds=fit["train_seconds"],
        seconds_per_epoch=fit["seconds_per_epoch"],
        epochs=fit["epochs_completed"],
        inference_clips_per_s=clips_per_s,
        eval_clips_per_s=metrics["eval_clips_per_s"].get("test"),
        input_bytes_per_clip=data.input_bytes_per_clip(),
        encode_seconds_per_clip=data.encode_seconds_per_clip,
        encode_seconds_total=data.encode_seconds_total,
        device=str(device),
        machine=machine_description(),
    )


def _standardized(data: ExperimentData, mode: str) -> ExperimentData:
    """``data`` with TrainConfig.input_standardize applied (train-split statistics only)."""
    if mode == "none":
        return data
    sources = (data.train, data.val, data.test)
    if not all(s is None or isinstance(s, TensorClips) for s in sources):
        raise InputMismatchError(
            data.source,
            f"input_standardize={mode!r} applies to cached latents / pooled pixels, not to decoded pixel clips",
            "set input_standardize: none for pixel models",
        )
    assert isinstance(data.train, TensorClips)
    train, (val, test) = standardize_splits(data.train, [data.val, data.test], mode)  # type: ignore[list-item]
    assert test is not None
    return dataclasses.replace(
        data, train=train, val=val, test=test, provenance={**data.provenance, "input_standardize": mode}
    )


@dataclass(frozen=True)
class ExperimentSpec:
    """One model of a study: what to train, on which data, for which seeds, what to record.

    Data: ``cache_dir`` for latent models (``cache_kind``: the stored array, "latent" by
    default; a pooled-pixel control cache is read the same way); for pixel models
    ``cache_dir`` (the cache's clips, decoded from its dataset or from ``data_root``) and/or
    ``data_root`` (``pixel_spatial``, ``clip_mode``, ``num_workers``; ``pixel_in_memory``: decode
    every clip once into RAM, :mod:`lib.classify.pixel_bank`, instead of every epoch); or ready
    ``data``. ``train_config``: :class:`TrainConfig` fields; with ``use_recipe`` they override the
    model's registry recipe (recorded in summary.json); a complete :class:`TrainConfig` is taken
    as is. ``model_overrides``: fields of the model's config dataclass. ``origin`` (e.g. the
    params file) is named in errors about the model name or its overrides. ``models``: where
    models come from (default: the :mod:`lib.models` registry).
    """

    model_name: str
    run_dir: str | os.PathLike[str] | RunDir
    cache_dir: str | os.PathLike[str] | None = None
    data_root: str | os.PathLike[str] | None = None
    data: ExperimentData | None = None
    fold: int = 1
    seeds: Sequence[int] = (0, 1, 2)
    train_config: Mapping[str, Any] | TrainConfig | None = None
    model_overrides: Mapping[str, Any] | None = None
    use_recipe: bool = True
    cache_kind: str = "latent"
    pixel_spatial: SpatialPolicy | None = None
    pixel_flip: bool = True
    clip_mode: SamplingMode = "all"
    num_workers: int = 0
    pixel_in_memory: bool = False
    expected_input_shape: Sequence[int] | None = None
    measure_inference_speed: bool = True
    figures: bool = True
    origin: str | os.PathLike[str] | None = None
    models: ModelFactory | None = None

    @property
    def origin_text(self) -> str | None:
        return str(self.origin) if self.origin is not None else None


def run_experiment(spec: ExperimentSpec) -> ExperimentResult:
    """Train and score ``spec.model_name`` once per seed; aggregate over seeds (see module doc)."""
    models = spec.models or RegistryModels()
    try:
        info = models.info(spec.model_name, spec.origin_text)
    except (KeyError, LookupError) as exc:
        raise UnknownNameError(
            spec.origin_text, f"unknown model name {spec.model_name!r} ({exc})", "use a registered model name"
        ) from exc
    seeds = list(spec.seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {seeds}")
    config = _train_config(spec, info)
    overrides = dict(spec.model_overrides or {})
    run = spec.run_dir if isinstance(spec.run_dir, RunDir) else RunDir(resolve_path(spec.run_dir))
    root = run.path / spec.model_name
    root.mkdir(parents=True, exist_ok=True)

    done = {seed: finished_seed_metrics(root / f"seed{seed}") for seed in seeds}
    for seed, finished in done.items():
        if finished is not None:
            _check_same_config(root / f"seed{seed}", finished, config.replace(seed=seed))
    if any(m is None for m in done.values()):
        data = _experiment_data(spec, info, config, root)
        _fill_content_dim(spec.model_name, info, data, overrides)
        for seed in seeds:
            if done[seed] is None:
                done[seed] = _run_seed(
                    spec, models, info, data, config.replace(seed=seed), overrides, root / f"seed{seed}"
                )
    per_seed_metrics = [done[seed] for seed in seeds]
    summary = _summarize(spec.model_name, info, seeds, per_seed_metrics, config, overrides, spec.fold)  # type: ignore[arg-type]
    atomic_write_text(root / SUMMARY_NAME, json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return ExperimentResult(spec.model_name, root, summary)


def _train_config(spec: ExperimentSpec, info: Any) -> TrainConfig:
    """The seeds' training settings: the registry recipe (with ``use_recipe``) under the spec's
    ``train_config``, or a complete :class:`TrainConfig` as given; ``num_workers`` applied."""
    if isinstance(spec.train_config, TrainConfig):
        config = spec.train_config  # a complete config is taken as is
    else:
        recipe = dict(getattr(info, "recipe", None) or {}) if spec.use_recipe else {}
        config = TrainConfig.from_mapping(recipe, **dict(spec.train_config or {}))
    if spec.num_workers and config.num_workers != spec.num_workers:
        config = config.replace(num_workers=spec.num_workers)
    return config


def _experiment_data(spec: ExperimentSpec, info: Any, config: TrainConfig, root: Path) -> ExperimentData:
    """The spec's data (given, or loaded from the cache / videos), standardised and checked
    against the model's input kind, the expected shape and earlier seeds' shapes."""
    _check_kind(info, spec.model_name, spec.data, spec.cache_dir, spec.data_root)
    data = spec.data
    if data is None:
        if info.input_kind == "pixels":
            pixels = PixelInputSpec(
                spatial=spec.pixel_spatial,
                clip_mode=spec.clip_mode,
                num_workers=config.num_workers,
                flip=spec.pixel_flip,
                in_memory=spec.pixel_in_memory,
            )
            data = load_pixel_data(spec.data_root, cache_dir=spec.cache_dir, fold=spec.fold, pixels=pixels)
        else:
            assert spec.cache_dir is not None
            data = load_latent_data(
                spec.cache_dir, fold=spec.fold, with_content=info.input_kind == "latent+content", kind=spec.cache_kind
            )
    data = _standardized(data, config.input_standardize)
    _check_shapes(spec.model_name, data, root, list(spec.seeds), spec.expected_input_shape)
    return data


def _fill_content_dim(name: str, info: Any, data: ExperimentData, overrides: dict[str, Any]) -> None:
    """Fusion models take their ``content_dim`` from the cache; a different override is refused."""
    if info.input_kind != "latent+content":
        return
    content_dim = data.input_shapes()[1][0]
    if overrides.setdefault("content_dim", content_dim) != content_dim:
        raise InputMismatchError(
            data.source,
            f"content features have {content_dim} values but model {name!r} "
            f"is configured with content_dim={overrides['content_dim']}",
            "drop the content_dim override (it is taken from the cache)",
        )


def _run_seed(
    spec: ExperimentSpec,
    models: ModelFactory,
    info: Any,
    data: ExperimentData,
    config: TrainConfig,
    overrides: dict[str, Any],
    seed_dir: Path,
) -> dict[str, Any]:
    name = spec.model_name
    shapes = data.input_shapes()
    torch.manual_seed(config.seed)  # the model's initialisation is part of the seed
    try:
        model = models.build(
            name, num_classes=data.num_classes, input_shape=tuple(shapes[0]), origin=spec.origin_text, **overrides
        )
    except ActionableError as exc:
        raise InputMismatchError(
            data.source,
            f"cannot build model {name!r} for clips of shape {shapes[0]}: {exc}",
            exc.fix or "check the model overrides and the cache's latent shape",
        ) from exc
    run = RunDir(seed_dir)
    run.save_config(
        {
            "model": name,
            "seed": config.seed,
            "train_config": config.record(),
            "model_overrides": overrides,
            "input_shapes": [list(s) for s in shapes],
            "data": data.describe(),
        }
    )
    result = train_and_evaluate(
        model,
        train=data.train,
        val=data.val,
        test=data.test,
        config=config,
        run_dir=run,
        class_names=data.class_names,
        extra={"model": name, "seed": config.seed, "model_overrides": overrides, "data": data.describe()},
    )
    metrics = dict(result.metrics)
    device = config.resolved_device()
    metrics["cost"] = _cost_row(
        name, model, data, metrics, device, spec.measure_inference_speed, config.amp_dtype(device)
    ).record()
    run.save_metrics(metrics)
    if spec.figures:
        save_run_figures(seed_dir, metrics)
    return metrics


def _summarize(
    name: str,
    info: Any,
    seeds: list[int],
    per_seed: list[dict[str, Any]],
    config: TrainConfig,
    overrides: dict[str, Any],
    fold: int,
) -> dict[str, Any]:
    compact = []
    for seed, metrics in zip(seeds, per_seed):
        splits = {split: headline(m) for split, m in metrics["splits"].items()}
        compact.append({"seed": seed, **splits, "fit": metrics["fit"], "cost": metrics["cost"]})
    aggregate = aggregate_seeds([{k: v for k, v in c.items() if k != "seed"} for c in compact])
    title = f"{name} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}, mean +- std)"
    return {
        "model": name,
        "family": getattr(info, "family", None),
        "input_kind": getattr(info, "input_kind", None),
        "origin": getattr(info, "origin", None),
        "seeds": seeds,
        "fold": fold,
        "per_seed": compact,
        "aggregate": aggregate,
        "cost": mean_cost([c["cost"] for c in compact]),
        "config": {k: v for k, v in config.record().items() if k != "seed"},
        "model_overrides": overrides,
        "data": per_seed[0].get("data"),
        "class_names": per_seed[0].get("class_names"),
        "table": aggregate_split_table(aggregate, title=title),
    }


def results_row(summary: Mapping[str, Any]) -> dict[str, Any]:
    """One flat row of a summary: accuracies (mean and ``_std``) per split and level, and costs."""
    row: dict[str, Any] = {k: summary.get(k) for k in ("model", "family", "input_kind", "origin")}
    row["seeds"] = len(summary.get("seeds", []))
    for key, entry in summary["aggregate"].items():
        split, _, metric = key.partition(".")
        if split in ("train", "val", "test") and "." not in metric:
            row[f"{split}_{metric}"] = entry["mean"]
            row[f"{split}_{metric}_std"] = entry["std"]
    cost = summary.get("cost", {})
    for key in (
        "params",
        "flops_per_clip",
        "train_seconds",
        "seconds_per_epoch",
        "inference_clips_per_s",
        "eval_clips_per_s",
        "input_bytes_per_clip",
        "encode_seconds_per_clip",
        "device",
        "machine",
    ):
        row[key] = cost.get(key)
    return row


def collect_results(runs_root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every ``summary.json`` under ``runs_root`` as a flat row (:func:`results_row`) with its
    ``summary_path``, sorted by model name then path."""
    root = resolve_path(runs_root)
    rows = []
    for path in sorted(root.rglob(SUMMARY_NAME)):
        summary = json.loads(path.read_text())
        if "aggregate" not in summary:
            continue
        rows.append({**results_row(summary), "summary_path": str(path)})
    return sorted(rows, key=lambda r: (str(r["model"]), r["summary_path"]))
