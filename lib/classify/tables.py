"""The classifier notebooks' tables (03-07): accuracy per model (mean ± std over seeds, next to
the published numbers), per-split tables, the inputs read from a cache, and the study-wide
accuracy and cost tables built from every ``summary.json`` under a study's run folder.

Needs the ``notebooks`` extra (pandas): every table here is a DataFrame or a styled one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lib.classify.experiment import ExperimentResult, collect_results
from lib.classify.loading import load_latent_data
from lib.tables import markdown, record_table, styled

# The published student study (UCF101 split 1, Reducio latents): train / val / test top-1 in %.
PUBLISHED: dict[str, dict[str, float]] = {
    "conv3d": {"train": 92.33, "val": 70.47, "test": 72.47},
    "lstm": {"train": 96.07, "val": 52.72, "test": 54.30},
    "transformer": {"train": 97.0, "val": 32.0, "test": 30.0},
}


def _pct(entry: Mapping[str, Any] | None) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    std = entry.get("std")
    return f"{100 * entry['mean']:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def accuracy_frame(results: Mapping[str, ExperimentResult], *, level: str = "video") -> Any:
    """DataFrame, one row per model: train / val / test top-1 (%), test top-5 and mean class
    accuracy, mean ± std over seeds, next to the published number of the model's family."""
    rows = []
    for name, result in results.items():
        agg = result.aggregate
        family = result.summary.get("family")
        row = {"model": name, "seeds": len(result.summary.get("seeds", []))}
        for split in ("train", "val", "test"):
            row[f"{split} top-1 %"] = _pct(agg.get(f"{split}.{level}_top1"))
        row["test top-5 %"] = _pct(agg.get(f"test.{level}_top5"))
        row["test mean class %"] = _pct(agg.get(f"test.{level}_mean_class_accuracy"))
        paper = PUBLISHED.get(str(family)) if result.summary.get("origin") == "paper" else None
        row["published test %"] = paper["test"] if paper else None
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def accuracy_table(results: Mapping[str, ExperimentResult], *, level: str = "video") -> Any:
    """:func:`accuracy_frame` as a styled table with a caption saying what the numbers are."""
    return styled(
        accuracy_frame(results, level=level),
        f"Top-1 accuracy in % per split ({level} level: the mean of clip softmax over a video's clips), mean ± std "
        "over seeds; published test %: the student study on UCF101 split 1 (comparable only there)",
    )


def result_tables(results: Mapping[str, ExperimentResult]) -> Any:
    """Every model's per-split table (video and clip accuracy, top-5, mean class accuracy), rendered."""
    return markdown("\n\n".join(result.table() for result in results.values()))


def data_table(cache_dir: str | os.PathLike[str], *, fold: int = 1, kind: str = "latent") -> Any:
    """What the classifiers of a notebook read from a cache: inputs, clips per split, provenance."""
    described = load_latent_data(cache_dir, fold=fold, kind=kind).describe()
    return record_table(
        described,
        f"The classifiers' inputs: fold {fold} of the {kind} cache (clips per split, input "
        "shape per clip, bytes per clip)",
    )


def study_frame(study_dir: str | os.PathLike[str]) -> Any:
    """Every model trained anywhere under ``study_dir`` (one row per summary.json), accuracies in %."""
    rows = collect_results(study_dir)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    notebooks, kinds = [], []
    for path, kind in zip(frame["summary_path"], frame["input_kind"]):
        parent = Path(path).parent.parent  # <notebook run dir>[/pooled_pixels]/<model>/summary.json
        pooled = parent.name == "pooled_pixels"
        notebooks.append(f"{parent.parent.name}/pooled_pixels" if pooled else parent.name)
        kinds.append("pooled pixels" if pooled else kind)
    frame["notebook"], frame["input_kind"] = notebooks, kinds
    return frame


def headline_table(frame: Any) -> Any:
    """The study's accuracy table: video/clip top-1 (%) per split, mean ± std, ordered by family."""
    order = {"lstm": 0, "transformer": 1, "conv3d": 2, "fusion": 3, "pixel": 4}
    rows = []
    for _, r in frame.sort_values(
        by=["family", "model"], key=lambda s: s.map(order) if s.name == "family" else s
    ).iterrows():

        def pct(key: str, r: Any = r) -> str:
            mean, std = r.get(key), r.get(f"{key}_std")
            if mean is None or (isinstance(mean, float) and np.isnan(mean)):
                return "n/a"
            return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None and not np.isnan(std) else "")

        paper = PUBLISHED.get(str(r["family"])) if r.get("origin") == "paper" and r["input_kind"] == "latent" else None
        rows.append(
            {
                "model": r["model"],
                "input": r["input_kind"],
                "notebook": r["notebook"],
                "seeds": r["seeds"],
                "train": pct("train_video_top1"),
                "val": pct("val_video_top1"),
                "test (video)": pct("test_video_top1"),
                "test (clip)": pct("test_clip_top1"),
                "published test": f"{paper['test']:.2f}" if paper else "",
                "params": f"{int(r['params']):,}"
                if r.get("params") == r.get("params") and r.get("params") is not None
                else "",
                "MFLOPs/clip": f"{r['flops_per_clip'] / 1e6:.1f}" if r.get("flops_per_clip") else "",
                "train s": f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "",
            }
        )
    return pd.DataFrame(rows)


def study_table(frame: Any) -> Any:
    """:func:`headline_table` as a styled table with a caption."""
    return styled(
        headline_table(frame),
        "Video-level top-1 accuracy in % (mean ± std over seeds) of every model of the "
        "study; published test: the student study on UCF101 split 1 (comparable only there); MFLOPs: forward, "
        "per clip; train s: training time on this machine",
        hide_index=True,
    )


def cost_table(frame: Any) -> Any:
    """:func:`cost_frame` as a styled table with a caption."""
    return styled(
        cost_frame(frame),
        "What each model costs on this machine: parameters, forward MFLOPs per clip, "
        "training time (s), seconds per epoch, inference clips/s, input bytes per clip, the one-off encoding "
        "cost (ms per clip, latent models: paid once in 02) and test video top-1 (%)",
        precision=1,
    )


def cost_frame(frame: Any) -> Any:
    """Cost of every model on this machine: parameters, forward MFLOPs per clip, training time,
    inference clips/s, input bytes per clip and the one-off encode cost per clip."""
    out = pd.DataFrame(
        {
            "model": frame["model"],
            "input": frame["input_kind"],
            "params": frame["params"].astype("Int64"),
            "MFLOPs/clip": (frame["flops_per_clip"] / 1e6).round(2),
            "train s": frame["train_seconds"].round(1),
            "s/epoch": frame["seconds_per_epoch"].round(2),
            "inference clips/s": frame["inference_clips_per_s"].round(0),
            "input bytes/clip": frame["input_bytes_per_clip"].astype("Int64"),
            "encode ms/clip (one-off)": (frame["encode_seconds_per_clip"].astype(float) * 1e3).round(2),
            "test video top-1 %": (100 * frame["test_video_top1"]).round(1),
        }
    )
    return out.set_index("model")
