"""The interactive view of notebook 07: pick a model and a test video, see its frames and its
per-clip class probabilities (:func:`test_video_view`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lib.cache import open_cache
from lib.classify.figures import test_video_figure
from lib.classify.predict import PREDICTIONS_NAME, video_predictions
from lib.data.video import VideoReader
from lib.interactive import InteractiveView, show_figure, widgets_available


def test_video_view(
    frame: Any, cache_dir: str | os.PathLike[str], *, model: str | None = None, video: int = 0, fold: int = 1
) -> Any:
    """Pick a model and a test video: its frames (one per clip) and per-clip class probabilities,
    predicted vs true.

    In a Jupyter kernel with ipywidgets: an :class:`~lib.interactive.InteractiveView` (dropdowns
    over the live view in JupyterLab; the static view of ``model`` and ``video`` where widgets
    cannot render, e.g. an executed notebook opened without a kernel). Elsewhere: that figure."""
    cache = open_cache(cache_dir)
    videos = cache.videos("test", fold)
    names = cache.class_names
    rows = frame[frame["summary_path"].map(lambda p: any(Path(p).parent.glob(f"seed*/{PREDICTIONS_NAME}")))]
    if rows.empty:
        raise FileNotFoundError("no model of this study kept test predictions; run notebooks 03-06 first")
    models = {f"{r['model']} ({r['notebook']})": r["summary_path"] for _, r in rows.iterrows()}
    first = next((k for k in models if model and k.startswith(model + " ")), next(iter(models)))

    def draw(model_key: str, index: int) -> Any:
        entry = videos[index]
        pred = video_predictions(models[model_key], index)
        with VideoReader(entry.path) as reader:
            frames = reader.read_frames([idx[len(idx) // 2] for idx in entry.clip_frame_indices])
        return test_video_figure(entry, pred, frames, names, model_key)

    def label(model_key: str, index: int) -> str:
        return f"test video {index} ({videos[index].id}), {model_key}"

    if not widgets_available():
        return draw(first, video)
    import ipywidgets as widgets  # optional: only where widgets_available() says a kernel can show them

    model_box = widgets.Dropdown(options=list(models), value=first, description="model")
    video_box = widgets.Dropdown(
        options=[(f"{i}: {v.id}", i) for i, v in enumerate(videos)], value=video, description="test video"
    )
    out = widgets.Output()
    picture = show_figure(out, draw(first, video), text=label(first, video))

    def refresh(*_: Any) -> None:
        show_figure(out, draw(model_box.value, video_box.value), text=label(model_box.value, video_box.value))

    model_box.observe(refresh, names="value")
    video_box.observe(refresh, names="value")
    view = widgets.VBox([widgets.HBox([model_box, video_box]), out])
    return InteractiveView(
        view, picture, f"test-video view (model and video dropdowns); static view: {label(first, video)}"
    )
