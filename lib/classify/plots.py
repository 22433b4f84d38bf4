"""Figures of the classifier study: learning curves, confusion matrix, per-class accuracy and
accuracy versus cost. Every function returns a matplotlib ``Figure`` (save it with
:meth:`lib.runs.RunDir.save_figure`); matplotlib is imported lazily (the notebooks extra)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a history.csv as dicts; numeric cells become floats, empty cells None."""
    rows: list[dict[str, Any]] = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                try:
                    row[key] = float(value) if value not in ("", None) else None
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if value is not None and value != "":
            xs.append(float(row["epoch"]))
            ys.append(float(value))
    return xs, ys


def plot_learning_curves(history: str | os.PathLike[str] | Sequence[Mapping[str, Any]], *, title: str = "") -> Any:
    """Loss (train, val) and accuracy (train clip, val clip, val video) per epoch; a dotted line
    marks the selected (best val video top-1) epoch."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = read_history(history) if isinstance(history, (str, os.PathLike)) else list(history)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        xs, ys = _column(rows, key)
        if xs:
            ax_loss.plot(xs, ys, marker=".", label=label)
    for key, label in (
        ("train_acc", "train (clip)"),
        ("val_clip_top1", "val (clip)"),
        ("val_video_top1", "val (video)"),
    ):
        xs, ys = _column(rows, key)
        if xs:
            ax_acc.plot(xs, [100 * y for y in ys], marker=".", label=label)
    xs, ys = _column(rows, "val_video_top1")
    if ys:
        ax_acc.axvline(xs[int(np.argmax(ys))], color="grey", linestyle=":", label="selected")
    ax_loss.set(xlabel="epoch", ylabel="loss (cross-entropy)", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    normalize: bool = True,
    title: str = "",
    max_labels: int = 40,
) -> Any:
    """Heatmap of a (K, K) confusion matrix (rows: true class, columns: predicted), row-normalised
    to recall by default. Class names label the axes when there are at most ``max_labels``."""
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    k = cm.shape[0]
    shown = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None) if normalize else cm
    size = min(14.0, 2.5 + 0.35 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class" if normalize else "clips")
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if k <= max_labels:
        ax.set_xticks(range(k), names, rotation=90, fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
        if k <= 15:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(
                            j,
                            i,
                            f"{shown[i, j]:.2f}" if normalize else int(cm[i, j]),
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if shown[i, j] > 0.5 * np.nanmax(shown) else "black",
                        )
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.tight_layout()
    return fig


def plot_per_class_accuracy(
    per_class: Sequence[float | None], class_names: Sequence[str] | None = None, *, title: str = "", sort: bool = True
) -> Any:
    """Horizontal bars of per-class accuracy (%), sorted ascending so the weakest classes lead."""
    import matplotlib.pyplot as plt

    values = np.array([np.nan if v is None else 100 * float(v) for v in per_class])
    names = np.array(list(class_names) if class_names is not None else [str(i) for i in range(len(values))])
    order = np.argsort(np.nan_to_num(values, nan=-1.0)) if sort else np.arange(len(values))
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.22 * len(values) + 1)))
    ax.barh(range(len(values)), np.nan_to_num(values[order]), color="tab:blue")
    ax.set_yticks(range(len(values)), names[order], fontsize=7 if len(values) > 30 else 9)
    mean = np.nanmean(values) if np.isfinite(values).any() else float("nan")
    if math.isfinite(mean):
        ax.axvline(mean, color="grey", linestyle=":", label=f"mean {mean:.1f} %")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel="accuracy (%)", xlim=(0, 100), title=title or "per-class accuracy")
    fig.tight_layout()
    return fig


COST_LABELS = {
    "flops_per_clip": "forward FLOPs per clip (log scale)",
    "train_seconds": "training time in s (log scale)",
    "params": "parameters (log scale)",
    "seconds_per_epoch": "seconds per epoch (log scale)",
}


def _label_offsets(ax: Any, points: Sequence[tuple[float, float, str]], fontsize: float) -> list[tuple[float, float]]:
    """Offsets (points) for the names of ``points`` so that no two labels overlap: each label takes
    the first of a few positions around its point whose box is free (a greedy placement)."""
    ax.autoscale_view()
    scale = ax.figure.dpi / 72.0
    char_w, line_h = 0.58 * fontsize, 1.3 * fontsize  # points
    taken: list[tuple[float, float, float, float]] = []
    offsets = []
    for x, y, name in points:
        px, py = ax.transData.transform((x, y)) / scale  # in points
        width = char_w * len(name)
        for dx, dy in (
            (5, 4),
            (5, -4 - line_h),
            (-5 - width, 4),
            (-5 - width, -4 - line_h),
            (5, 4 + line_h),
            (5, -4 - 2 * line_h),
            (-5 - width, 4 + line_h),
            (-5 - width, -4 - 2 * line_h),
        ):
            box = (px + dx, py + dy, px + dx + width, py + dy + line_h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                break
        taken.append(box)
        offsets.append((dx, dy))
    return offsets


def plot_accuracy_vs_cost(
    results: Sequence[Mapping[str, Any]], *, x: str = "flops_per_clip", y: str = "test_video_top1", title: str = ""
) -> Any:
    """Scatter of accuracy against a cost on a log x axis, one point per model with error bars
    (std over seeds) and its name, names placed so they do not overlap. ``results``: dicts with
    ``model``, ``x`` (e.g. ``flops_per_clip``, ``train_seconds``, ``params``) and ``y`` as a
    fraction, plus an optional ``<y>_std`` and ``input_kind`` (colours latent vs pixel models)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    colours = {
        "latent": "tab:blue",
        "latent+content": "tab:purple",
        "pixels": "tab:orange",
        "pooled pixels": "tab:grey",
    }
    seen_kinds: set[str] = set()
    points = []
    for r in results:
        if r.get(x) in (None, 0) or r.get(y) is None:
            continue
        kind = str(r.get("input_kind", "latent"))
        std = r.get(f"{y}_std")
        ax.errorbar(
            float(r[x]),
            100 * float(r[y]),
            yerr=None if std is None else 100 * float(std),
            fmt="o",
            capsize=3,
            color=colours.get(kind, "tab:grey"),
            label=None if kind in seen_kinds else kind,
        )
        seen_kinds.add(kind)
        points.append((float(r[x]), 100 * float(r[y]), str(r["model"])))
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.12)
    for (px, py, name), offset in zip(points, _label_offsets(ax, points, 8)):
        ax.annotate(name, (px, py), textcoords="offset points", xytext=offset, fontsize=8)
    ax.set(
        xlabel=COST_LABELS.get(x, x.replace("_", " ") + " (log scale)"),
        ylabel=f"{y.replace('_', ' ')} (%)",
        title=title or "accuracy vs cost",
    )
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3, which="both")
    if seen_kinds:
        ax.legend(fontsize=8, title="input", title_fontsize=8)
    fig.tight_layout()
    return fig


def save_run_figures(
    run_dir: str | os.PathLike[str], metrics: Mapping[str, Any], *, split: str = "test", level: str = "video"
) -> list[Path]:
    """Learning curves, confusion matrix and per-class accuracy of one run into its figures/."""
    import matplotlib.pyplot as plt

    from lib.runs import RunDir

    run = RunDir(Path(run_dir))
    names = metrics.get("class_names")
    split_metrics = metrics["splits"][split][level]
    figures = {
        "learning_curves": plot_learning_curves(run.path / "history.csv"),
        f"confusion_{split}_{level}": plot_confusion_matrix(
            split_metrics["confusion"], names, title=f"{split} ({level} level)"
        ),
        f"per_class_{split}_{level}": plot_per_class_accuracy(
            split_metrics["per_class_accuracy"], names, title=f"{split} ({level} level)"
        ),
    }
    paths = []
    for name, fig in figures.items():
        paths.append(run.save_figure(fig, name))
        plt.close(fig)
    return paths
