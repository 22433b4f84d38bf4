"""Figures shared by the notebooks (matplotlib; no state, each function returns a Figure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lib.data.clips import ClipSpec
from lib.data.ucf101 import VideoRecord
from lib.data.video import iter_clips, tensor_to_frames

DEFAULT_CLIP_SPEC = ClipSpec()  # the data layer's clips: 16 frames at 16 fps


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
    spec: ClipSpec = DEFAULT_CLIP_SPEC,
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
            ax.set_title(
                f"frame {clip.frame_indices[pos]} ({clip.start_time + pos / spec.target_fps:.2f}s)", fontsize=7
            )
        row[0].set_ylabel(f"{record.class_name}\ng{record.group:02d} c{record.clip_number:02d}", fontsize=8)
    fig.tight_layout()
    return fig


def reconstruction_strip(
    original, reconstruction, *, content_index: int, frames_shown: int = 8, title: str = "", psnr=None
):
    """Two rows for one clip: original frames over reconstructed frames (``frames_shown``
    evenly spaced), the content frame outlined in orange; per-frame PSNR in the titles if given.
    ``original``/``reconstruction``: (C, T, H, W) in [-1, 1]."""
    import matplotlib.pyplot as plt

    num_frames = original.shape[1]
    positions = sorted(set(np.linspace(0, num_frames - 1, frames_shown).round().astype(int).tolist()) | {content_index})
    column = min(1.7, 10.0 / len(positions))  # at most 10 inches wide: JupyterLab shows it unscaled, text readable
    fig, axes = plt.subplots(2, len(positions), figsize=(column * len(positions), 2 * column + 0.6), squeeze=False)
    for col, t in enumerate(positions):
        for row, (label, clip) in enumerate((("original", original), ("reconstruction", reconstruction))):
            ax = axes[row, col]
            ax.imshow(tensor_to_frames(clip[:, t : t + 1])[0])
            ax.set_xticks([])
            ax.set_yticks([])
            if t == content_index:
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:orange")
                    spine.set_linewidth(2.5)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
        head = f"t={t}" + (" (content)" if t == content_index else "")
        if psnr is not None:
            head += f"\n{float(psnr[t]):.1f} dB"
        axes[0, col].set_title(head, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def per_frame_metric_plot(table, *, metrics: Sequence[str] = ("psnr", "ssim")):
    """Lines of each metric over frame index, one line per (clip, method) - one colour per clip,
    solid for the VAE, dotted for the baseline; ``table`` is a DataFrame with columns clip,
    method, frame and the metrics."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    units = {"psnr": "PSNR (dB)", "ssim": "SSIM (1 = identical)"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(10, 3.6), squeeze=False)
    colours = {clip: f"C{i}" for i, clip in enumerate(dict.fromkeys(table["clip"]))}
    for ax, metric in zip(axes[0], metrics):
        for (clip, method), rows in table.groupby(["clip", "method"], sort=False):
            ax.plot(
                rows["frame"],
                rows[metric],
                marker=".",
                linestyle="-" if method == "vae" else ":",
                color=colours[clip],
                label=f"{method}: {clip}",
            )
        ax.set_xlabel("frame")
        ax.set_ylabel(units.get(metric, metric.upper()))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def latent_channel_maps(latent, *, title: str = ""):
    """Every latent channel (rows) at every latent time step (columns): ``latent`` (C, T', H', W').
    One colour scale per channel so channels are comparable over time."""
    import matplotlib.pyplot as plt

    channels, steps = latent.shape[0], latent.shape[1]
    fig, axes = plt.subplots(channels, steps, figsize=(0.9 * steps + 1.0, 0.6 * channels + 0.6), squeeze=False)
    for c in range(channels):
        lo, hi = float(latent[c].min()), float(latent[c].max())
        for t in range(steps):
            ax = axes[c, t]
            ax.imshow(latent[c, t].numpy(), cmap="coolwarm", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(f"ch {c}", fontsize=6, rotation=0, ha="right", va="center")
            if c == 0:
                ax.set_title(f"t'={t}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def scrub_view(original, reconstruction, latent, *, frame: int, channel: int):
    """One view of the scrubber: original and reconstructed frame ``frame`` and latent channel
    ``channel`` at the latent step that covers that frame."""
    import matplotlib.pyplot as plt

    num_frames, steps = original.shape[1], latent.shape[1]
    step = min(frame * steps // num_frames, steps - 1)  # latent step t' covers frames [t'*T/T', (t'+1)*T/T')
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
    axes[0].imshow(tensor_to_frames(original[:, frame : frame + 1])[0])
    axes[0].set_title(f"original, frame {frame}", fontsize=8)
    axes[1].imshow(tensor_to_frames(reconstruction[:, frame : frame + 1])[0])
    axes[1].set_title("reconstruction", fontsize=8)
    image = axes[2].imshow(latent[channel, step].numpy(), cmap="coolwarm")
    axes[2].set_title(f"latent channel {channel}, step {step}", fontsize=8)
    fig.colorbar(image, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def latent_scrubber(original, reconstruction, latent):
    """A scrubber over frames and latent channels: sliders and the view of :func:`scrub_view`.

    In a Jupyter kernel with ipywidgets: an :class:`~lib.interactive.InteractiveView` (the live
    widget in JupyterLab; a static picture of frame 0 / channel 0 where widgets cannot render,
    e.g. an executed notebook opened without a kernel). Elsewhere: the figure of that view."""
    from lib.interactive import InteractiveView, show_figure, widgets_available

    first = scrub_view(original, reconstruction, latent, frame=0, channel=0)
    if not widgets_available():
        return first
    import ipywidgets as widgets

    frame_slider = widgets.IntSlider(value=0, min=0, max=original.shape[1] - 1, description="frame")
    channel_slider = widgets.IntSlider(value=0, min=0, max=latent.shape[0] - 1, description="channel")
    output = widgets.Output()
    picture = show_figure(output, first, text="scrubber view: frame 0, channel 0")

    def redraw(_change: object = None) -> None:
        frame, channel = frame_slider.value, channel_slider.value
        show_figure(
            output,
            scrub_view(original, reconstruction, latent, frame=frame, channel=channel),
            text=f"scrubber view: frame {frame}, channel {channel}",
        )

    frame_slider.observe(redraw, names="value")
    channel_slider.observe(redraw, names="value")
    view = widgets.VBox([widgets.HBox([frame_slider, channel_slider]), output])
    return InteractiveView(
        view, picture, "latent scrubber (frame and channel sliders); static view: frame 0, channel 0"
    )
