"""Figures shared by the notebooks (matplotlib; no state, each function returns a Figure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lib.data.clips import ClipSpec
from lib.data.ucf101 import VideoRecord
from lib.data.video import iter_clips, tensor_to_frames


def pick_per_class(records: Sequence[VideoRecord], *, num_classes: int, per_class: int) -> list[list[VideoRecord]]:
    """The first ``per_class`` records (list order) of each of the first ``num_classes`` labels."""
    by_label: dict[int, list[VideoRecord]] = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record)
    labels = sorted(by_label)[:num_classes]
    return [by_label[label][:per_class] for label in labels]


def class_frame_grid(
    records: Sequence[VideoRecord],
    *,
    num_classes: int = 4,
    videos_per_class: int = 2,
    frames_shown: int = 4,
    spec: ClipSpec = ClipSpec(),
):
    """One row per video: ``frames_shown`` evenly spaced frames of its centre clip, as sampled
    (16 frames at 16 fps by timestamp), with class, group and source frame index as titles."""
    import matplotlib.pyplot as plt

    rows = [r for group in pick_per_class(records, num_classes=num_classes, per_class=videos_per_class) for r in group]
    if not rows:
        raise ValueError("class_frame_grid: no videos to show (empty split?)")
    fig, axes = plt.subplots(len(rows), frames_shown, figsize=(2.0 * frames_shown, 1.6 * len(rows)), squeeze=False)
    positions = np.linspace(0, spec.num_frames - 1, frames_shown).round().astype(int)
    for row, record in zip(axes, rows):
        clip, tensor = next(iter_clips(record.path, spec=spec, mode="center"))
        frames = tensor_to_frames(tensor)  # (T, H, W, 3) uint8
        for ax, pos in zip(row, positions):
            ax.imshow(frames[pos])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"frame {clip.frame_indices[pos]} ({clip.start_time + pos / spec.target_fps:.2f}s)", fontsize=7)
        row[0].set_ylabel(f"{record.class_name}\ng{record.group:02d} c{record.clip_number:02d}", fontsize=8)
    fig.tight_layout()
    return fig
