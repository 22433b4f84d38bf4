"""Figures of notebook 02 (the latent cache): channel statistics, storage, 2-D projections."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def channel_stats_plot(stats: pd.DataFrame, *, title: str = "latent channels (train split)"):  # noqa: ANN201
    """Mean +- std per channel (bars) with the min/max range (thin lines)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(stats) + 2), 3.2))
    x = np.arange(len(stats))
    ax.vlines(x, stats["min"], stats["max"], color="0.75", linewidth=1, label="min..max")
    ax.errorbar(x, stats["mean"], yerr=stats["std"], fmt="o", color="C0", capsize=3, label="mean +- std")
    ax.axhline(0, color="0.5", linewidth=0.6)
    ax.set_xticks(x, [str(c) for c in stats.index])
    ax.set_xlabel("channel")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def storage_plot(table: pd.DataFrame):  # noqa: ANN201
    """Horizontal bars of bytes per storage form (log scale), labelled with the ratio to the latents."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))
    ax.barh(y, table["bytes"], color=[f"C{i}" for i in range(len(table))])
    ax.set_yticks(y, table.index, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("bytes (log scale)")
    for yi, (b, r) in enumerate(zip(table["bytes"], table["x latents"])):
        ax.text(b, yi, f"  {r:g}x", va="center", fontsize=8)
    ax.set_title("the same clips, stored as ...")
    fig.tight_layout()
    return fig


def projection_plot(points: Sequence[np.ndarray], labels: np.ndarray, class_names: Sequence[str],
                    titles: Sequence[str]):  # noqa: ANN201
    """One scatter per 2-D projection ((N, 2) arrays), points coloured by class (one colour per
    class in every panel); at most two panels per row, so the figure stays 10 inches wide."""
    columns = min(2, len(points))
    rows = -(-len(points) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(10, 4.2 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for ax in axes.flat[len(points):]:
        ax.set_axis_off()
    for ax, xy, title in zip(axes.flat, points, titles):
        xy = np.asarray(xy)
        for label, name in enumerate(class_names):
            mask = labels == label
            if mask.any():
                ax.scatter(xy[mask, 0], xy[mask, 1], s=8, alpha=0.75, color=cmap(label % cmap.N), label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(class_names) <= 20:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, markerscale=2, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(labels), 5), frameon=False)
    fig.tight_layout()
    return fig
