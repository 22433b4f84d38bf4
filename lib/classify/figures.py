"""The classifier notebooks' figures (03-07): learning curves and confusion matrices of one
family's runs, accuracy against a cost across a study, and one test video's frames over its
per-clip class probabilities. Needs the ``notebooks`` extra (matplotlib).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lib.classify.experiment import ExperimentResult
from lib.classify.plots import plot_accuracy_vs_cost, plot_confusion_matrix, plot_per_class_accuracy, read_history
from lib.runs import ADHOC_STUDY, RunDir


def learning_curves(results: Mapping[str, ExperimentResult], *, seed: int | None = None) -> Any:
    """One column per model: loss (top) and accuracy in % (bottom) per epoch of one seed (the first)."""
    import matplotlib.pyplot as plt  # heavy (loads a backend): only when a figure is drawn
    from matplotlib.ticker import MaxNLocator

    columns = max(len(results), 1)
    fig, axes = plt.subplots(2, columns, figsize=(min(10.0, 3.4 * columns + 0.6), 5.6), squeeze=False, sharex="col")
    for col, (name, result) in enumerate(results.items()):
        s = seed if seed is not None else result.summary["seeds"][0]
        rows = read_history(result.root / f"seed{s}" / "history.csv")
        epochs = [r["epoch"] for r in rows]
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            if any(r.get(key) is not None for r in rows):
                axes[0, col].plot(
                    epochs, [r.get(key) for r in rows], style, marker=".", label=key.removesuffix("_loss")
                )
        labels = {"train_acc": "train (clip)", "val_clip_top1": "val (clip)", "val_video_top1": "val (video)"}
        for key, style in (("train_acc", "-"), ("val_clip_top1", "--"), ("val_video_top1", ":")):
            if any(r.get(key) is not None for r in rows):
                axes[1, col].plot(
                    epochs,
                    [None if r.get(key) is None else 100 * r[key] for r in rows],
                    style,
                    marker=".",
                    label=labels[key],
                )
        axes[0, col].set_title(f"{name} (seed {s})", fontsize=9)
        axes[1, col].set_xlabel("epoch")
        axes[1, col].set_ylim(0, 100)
        if col == 0:
            axes[0, col].set_ylabel("loss (cross-entropy)")
            axes[1, col].set_ylabel("accuracy (%)")
        for ax in axes[:, col]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_figure(result: ExperimentResult, *, split: str = "test", seed: int | None = None) -> Any:
    """Confusion matrix (row-normalised) and per-class accuracy of one seed, video level."""
    s = seed if seed is not None else result.summary["seeds"][0]
    metrics = RunDir(result.root / f"seed{s}").load_metrics()
    video = metrics["splits"][split]["video"]
    names = metrics.get("class_names")
    fig1 = plot_confusion_matrix(
        np.asarray(video["confusion"]), names, title=f"{result.model_name}: {split} confusion (video level, seed {s})"
    )
    fig2 = plot_per_class_accuracy(
        video["per_class_accuracy"], names, title=f"{result.model_name}: {split} per-class accuracy"
    )
    return fig1, fig2


def study_label(study_dir: str | os.PathLike[str]) -> str:
    """How figure titles name a study: ``study 'default'``, or what a hand run's folder holds."""
    name = Path(study_dir).name
    return "notebooks run by hand" if name == ADHOC_STUDY else f"study '{name}'"


def accuracy_cost_figure(frame: Any, *, x: str = "flops_per_clip", title: str = "") -> Any:
    """Test video top-1 against a cost (log x), one point per model, error bars over seeds."""
    return plot_accuracy_vs_cost(frame.to_dict("records"), x=x, y="test_video_top1", title=title)


def test_video_figure(
    entry: Any, pred: Mapping[str, Any], frames: Sequence[Any], names: Sequence[str], model_key: str
) -> Any:
    """Frames of one test video (one per clip) over its per-clip class probabilities; each class
    keeps one colour whatever the model or video, and the clip axis has integer ticks."""
    import matplotlib.pyplot as plt  # heavy (loads a backend): only when a figure is drawn
    from matplotlib.ticker import MaxNLocator

    n = len(frames)
    shown = min(n, 8)  # frames of at most 8 clips, evenly spaced, so each stays readable at 10 inches
    picks = np.linspace(0, n - 1, shown).round().astype(int) if n else np.array([], dtype=int)
    fig = plt.figure(figsize=(10, 5.6))
    grid = fig.add_gridspec(2, max(shown, 1), height_ratios=[1, 1.5])
    for col, i in enumerate(picks):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(frames[i])
        ax.set_axis_off()
        ax.set_title(f"clip {i}", fontsize=9)
    ax = fig.add_subplot(grid[1, :])
    probs = pred["probs"]
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    top = probs.mean(0).argsort(descending=True)[:5].tolist()
    for k in dict.fromkeys([pred["label"]] + top):
        true = k == pred["label"]
        ax.plot(
            range(n),
            probs[:, k].numpy(),
            "-" if true else "--",
            marker="o",
            color=cmap(k % cmap.N),
            linewidth=2.2 if true else 1.2,
            label=names[k] + (" (true)" if true else ""),
        )
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.5, max(n - 0.5, 0.5))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("clip (1 s each)")
    ax.set_ylabel("p(class)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    verdict = "correct" if pred["predicted"] == pred["label"] else "wrong"
    fig.suptitle(
        f"{entry.id}: true {names[pred['label']]}, predicted {names[pred['predicted']]} ({verdict})\n{model_key}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
