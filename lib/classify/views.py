"""What the classifier notebooks (03-07) show, so that each notebook cell is one call.

- :func:`train_models`: run :func:`~lib.classify.experiment.run_experiment` for several models on
  data loaded once (finished seeds are skipped: a rerun of a notebook resumes);
- :func:`accuracy_frame`: the published-format table (train / val / test accuracy) of several
  models, mean +- std over seeds;
- :func:`learning_curves`, :func:`confusion_figure`: figures of one family's runs;
- :func:`study_frame`, :func:`cost_frame`, :func:`accuracy_cost_figure`: the comparison across a
  whole study (every ``summary.json`` under the study's run folder);
- :func:`video_predictions`: per-clip class probabilities over time for one test video, read
  from the stored test predictions (the test split is never scored again).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lib.classify.experiment import ExperimentResult, collect_results, run_experiment
from lib.classify.loading import ExperimentData
from lib.classify.predict import PREDICTIONS_NAME, load_predictions
from lib.runs import RunDir

# The published student study (UCF101 split 1, Reducio latents): train / val / test top-1 in %.
PUBLISHED: dict[str, dict[str, float]] = {
    "conv3d": {"train": 92.33, "val": 70.47, "test": 72.47},
    "lstm": {"train": 96.07, "val": 52.72, "test": 54.30},
    "transformer": {"train": 97.0, "val": 32.0, "test": 30.0},
}


def train_models(model_names: Sequence[str], *, cache_dir: str | os.PathLike[str], fold: int, run: RunDir,
                 seeds: Sequence[int], train_config: Mapping[str, Any] | None = None,
                 model_overrides: Mapping[str, Mapping[str, Any]] | None = None, origin: str | None = None,
                 kind: str = "latent", jobs: int = 1, threads: int = 1) -> dict[str, ExperimentResult]:
    """Train every model of ``model_names`` for every seed into ``run/<model>/seed<k>/``.

    The cache is read once per input kind (latent, or latent + content features for fusion
    models). ``train_config`` (e.g. ``{"epochs": 30}``) overrides each model's registry recipe;
    ``model_overrides`` maps a model name to fields of its config dataclass. ``jobs`` > 1 trains
    the unfinished (model, seed) runs in that many worker processes with ``threads`` torch
    threads each (:mod:`lib.classify.parallel`; same results as ``jobs=1``), then aggregates here.
    """
    from lib.classify.experiment import _seed_done
    from lib.classify.loading import load_latent_data
    from lib.classify.parallel import SeedJob, run_seed_jobs
    from lib.models import model_info

    if jobs > 1:
        pending = [SeedJob(model_name=name, seed=int(seed), cache_dir=os.fspath(cache_dir), run_path=os.fspath(run.path),
                           fold=fold, cache_kind=kind, train_config=dict(train_config or {}),
                           model_overrides=dict((model_overrides or {}).get(name, {})), origin=origin)
                   for name in model_names for seed in seeds
                   if _seed_done(run.path / name / f"seed{seed}") is None]
        for name in model_names:  # an unknown name fails here, before any worker starts
            model_info(name, origin=origin)
        run_seed_jobs(pending, workers=jobs, threads=threads)
    loaded: dict[str, ExperimentData] = {}
    results: dict[str, ExperimentResult] = {}
    for name in model_names:
        input_kind = model_info(name, origin=origin).input_kind
        if input_kind not in loaded:
            loaded[input_kind] = load_latent_data(cache_dir, fold=fold, with_content=input_kind == "latent+content", kind=kind)
        results[name] = run_experiment(model_name=name, run_dir=run, data=loaded[input_kind], seeds=tuple(seeds),
                                       train_config=dict(train_config or {}),
                                       model_overrides=dict((model_overrides or {}).get(name, {})), origin=origin)
    return results


def _pct(entry: Mapping[str, Any] | None) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    std = entry.get("std")
    return f"{100 * entry['mean']:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def accuracy_frame(results: Mapping[str, ExperimentResult], *, level: str = "video") -> Any:
    """DataFrame, one row per model: train / val / test top-1 (%), test top-5 and mean class
    accuracy, mean ± std over seeds, next to the published number of the model's family."""
    import pandas as pd

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
    from lib.tables import styled

    return styled(accuracy_frame(results, level=level),
                  f"Top-1 accuracy in % per split ({level} level: the mean of clip softmax over a video's clips), mean ± std "
                  "over seeds; published test %: the student study on UCF101 split 1 (comparable only there)")


def result_tables(results: Mapping[str, ExperimentResult]) -> Any:
    """Every model's per-split table (video and clip accuracy, top-5, mean class accuracy), rendered."""
    from lib.tables import markdown

    return markdown("\n\n".join(result.table() for result in results.values()))


def data_table(cache_dir: str | os.PathLike[str], *, fold: int = 1, kind: str = "latent") -> Any:
    """What the classifiers of a notebook read from a cache: inputs, clips per split, provenance."""
    from lib.classify.loading import load_latent_data
    from lib.tables import record_table

    described = load_latent_data(cache_dir, fold=fold, kind=kind).describe()
    return record_table(described, f"The classifiers' inputs: fold {fold} of the {kind} cache (clips per split, input "
                                   "shape per clip, bytes per clip)")


def learning_curves(results: Mapping[str, ExperimentResult], *, seed: int | None = None) -> Any:
    """One column per model: loss (top) and accuracy in % (bottom) per epoch of one seed (the first)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from lib.classify.plots import read_history

    columns = max(len(results), 1)
    fig, axes = plt.subplots(2, columns, figsize=(min(10.0, 3.4 * columns + 0.6), 5.6), squeeze=False, sharex="col")
    for col, (name, result) in enumerate(results.items()):
        s = seed if seed is not None else result.summary["seeds"][0]
        rows = read_history(result.root / f"seed{s}" / "history.csv")
        epochs = [r["epoch"] for r in rows]
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            if any(r.get(key) is not None for r in rows):
                axes[0, col].plot(epochs, [r.get(key) for r in rows], style, marker=".", label=key.removesuffix("_loss"))
        labels = {"train_acc": "train (clip)", "val_clip_top1": "val (clip)", "val_video_top1": "val (video)"}
        for key, style in (("train_acc", "-"), ("val_clip_top1", "--"), ("val_video_top1", ":")):
            if any(r.get(key) is not None for r in rows):
                axes[1, col].plot(epochs, [None if r.get(key) is None else 100 * r[key] for r in rows], style,
                                  marker=".", label=labels[key])
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


def best_model(results: Mapping[str, ExperimentResult], *, split: str = "val") -> str:
    """Name of the model with the highest mean video top-1 on ``split`` (val: selection, not test)."""
    return max(results, key=lambda n: results[n].aggregate.get(f"{split}.video_top1", {}).get("mean") or -1.0)


def confusion_figure(result: ExperimentResult, *, split: str = "test", seed: int | None = None) -> Any:
    """Confusion matrix (row-normalised) and per-class accuracy of one seed, video level."""

    from lib.classify.plots import plot_confusion_matrix, plot_per_class_accuracy

    s = seed if seed is not None else result.summary["seeds"][0]
    metrics = RunDir(result.root / f"seed{s}").load_metrics()
    video = metrics["splits"][split]["video"]
    names = metrics.get("class_names")
    fig1 = plot_confusion_matrix(np.asarray(video["confusion"]), names,
                                 title=f"{result.model_name}: {split} confusion (video level, seed {s})")
    fig2 = plot_per_class_accuracy(video["per_class_accuracy"], names, title=f"{result.model_name}: {split} per-class accuracy")
    return fig1, fig2


# ---- the whole study ------------------------------------------------------------------------------
def study_frame(study_dir: str | os.PathLike[str]) -> Any:
    """Every model trained anywhere under ``study_dir`` (one row per summary.json), accuracies in %."""
    import pandas as pd

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
    import pandas as pd

    order = {"lstm": 0, "transformer": 1, "conv3d": 2, "fusion": 3, "pixel": 4}
    rows = []
    for _, r in frame.sort_values(by=["family", "model"], key=lambda s: s.map(order) if s.name == "family" else s).iterrows():
        def pct(key: str) -> str:
            mean, std = r.get(key), r.get(f"{key}_std")
            if mean is None or (isinstance(mean, float) and np.isnan(mean)):
                return "n/a"
            return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None and not np.isnan(std) else "")
        paper = PUBLISHED.get(str(r["family"])) if r.get("origin") == "paper" and r["input_kind"] == "latent" else None
        rows.append({"model": r["model"], "input": r["input_kind"], "notebook": r["notebook"], "seeds": r["seeds"],
                     "train": pct("train_video_top1"), "val": pct("val_video_top1"), "test (video)": pct("test_video_top1"),
                     "test (clip)": pct("test_clip_top1"), "published test": f"{paper['test']:.2f}" if paper else "",
                     "params": f"{int(r['params']):,}" if r.get("params") == r.get("params") and r.get("params") is not None else "",
                     "MFLOPs/clip": f"{r['flops_per_clip'] / 1e6:.1f}" if r.get("flops_per_clip") else "",
                     "train s": f"{r['train_seconds']:.0f}" if r.get("train_seconds") else ""})
    return pd.DataFrame(rows)


def study_table(frame: Any) -> Any:
    """:func:`headline_table` as a styled table with a caption."""
    from lib.tables import styled

    return styled(headline_table(frame), "Video-level top-1 accuracy in % (mean ± std over seeds) of every model of the "
                  "study; published test: the student study on UCF101 split 1 (comparable only there); MFLOPs: forward, "
                  "per clip; train s: training time on this machine", hide_index=True)


def cost_table(frame: Any) -> Any:
    """:func:`cost_frame` as a styled table with a caption."""
    from lib.tables import styled

    return styled(cost_frame(frame), "What each model costs on this machine: parameters, forward MFLOPs per clip, "
                  "training time (s), seconds per epoch, inference clips/s, input bytes per clip, the one-off encoding "
                  "cost (ms per clip, latent models: paid once in 02) and test video top-1 (%)", precision=1)


def study_label(study_dir: str | os.PathLike[str]) -> str:
    """How figure titles name a study: ``study 'default'``, or what a hand run's folder holds."""
    from lib.runs import ADHOC_STUDY

    name = Path(study_dir).name
    return "notebooks run by hand" if name == ADHOC_STUDY else f"study '{name}'"


def cost_frame(frame: Any) -> Any:
    """Cost of every model on this machine: parameters, forward MFLOPs per clip, training time,
    inference clips/s, input bytes per clip and the one-off encode cost per clip."""
    import pandas as pd

    out = pd.DataFrame({
        "model": frame["model"], "input": frame["input_kind"],
        "params": frame["params"].astype("Int64"),
        "MFLOPs/clip": (frame["flops_per_clip"] / 1e6).round(2),
        "train s": frame["train_seconds"].round(1),
        "s/epoch": frame["seconds_per_epoch"].round(2),
        "inference clips/s": frame["inference_clips_per_s"].round(0),
        "input bytes/clip": frame["input_bytes_per_clip"].astype("Int64"),
        "encode ms/clip (one-off)": (frame["encode_seconds_per_clip"].astype(float) * 1e3).round(2),
        "test video top-1 %": (100 * frame["test_video_top1"]).round(1),
    })
    return out.set_index("model")


def accuracy_cost_figure(frame: Any, *, x: str = "flops_per_clip", title: str = "") -> Any:
    """Test video top-1 against a cost (log x), one point per model, error bars over seeds."""
    from lib.classify.plots import plot_accuracy_vs_cost

    return plot_accuracy_vs_cost(frame.to_dict("records"), x=x, y="test_video_top1", title=title)


def video_predictions(summary_path: str | os.PathLike[str], video: int, *, seed: int | None = None) -> dict[str, Any]:
    """Per-clip softmax of test video number ``video`` (its index in the cache's test list) for
    the model of ``summary_path``: ``{"probs": (clips, K), "label", "predicted" (video level)}``."""
    root = Path(summary_path).parent
    seeds = sorted(int(p.name[4:]) for p in root.glob("seed*") if (p / PREDICTIONS_NAME).is_file())
    if not seeds:
        raise FileNotFoundError(f"{root}: no {PREDICTIONS_NAME} (runs from before predictions were kept); rerun the notebook")
    preds = load_predictions(root / f"seed{seed if seed is not None else seeds[0]}" / PREDICTIONS_NAME)
    rows = preds.video_index == video
    if not bool(rows.any()):
        raise IndexError(f"test video {video} has no clips in {root}")
    probs = preds.probs[rows]
    return {"probs": probs, "label": int(preds.labels[rows][0]), "predicted": int(probs.mean(0).argmax()),
            "num_videos": int(preds.video_index.max()) + 1}


# ---- caches ----------------------------------------------------------------------------------------
def study_caches(cache_name: str, *, fold: int = 1) -> tuple[Path, Path | None]:
    """(latent cache dir, pooled-pixels cache dir or None) of ``data/caches/<cache_name>/``.

    The caches are built by notebook 02. So that notebooks 03-06 also run alone on their smoke
    defaults (nbmake), the ``smoke`` caches are built here with 02's default settings when
    missing; any other missing cache is an error saying how to build it.
    """
    from lib.cache import open_cache
    from lib.cache.report import cache_paths

    latent_dir, pooled_dir = cache_paths(cache_name)
    if not _cache_complete(latent_dir):
        if cache_name != "smoke":
            from lib.errors import ActionableError

            raise ActionableError(latent_dir, f"no finished latent cache named {cache_name!r}",
                                  "run notebook 02_latent_cache with this cache_name first (or `python -m lib.cache build "
                                  f"--out {latent_dir} ...`)")
        _build_smoke_caches()
    open_cache(latent_dir)  # validates (a partial or stale cache raises here, naming the fix)
    return latent_dir, (pooled_dir if _cache_complete(pooled_dir) else None)


def _cache_complete(path: Path) -> bool:
    from lib.cache import open_cache

    try:
        open_cache(path)
    except Exception:  # noqa: BLE001 - any reason (absent, partial, stale) means "not usable"
        return False
    return True


def _build_smoke_caches() -> None:
    """The caches notebook 02 builds on its defaults (same settings, so 02 later reuses them)."""
    from lib.cache.report import build_study_caches
    from lib.cache.spec import BuildOptions, CacheSpec
    from lib.data.synth import ensure_synthetic
    from lib.vae.local import resolve_vae_source

    spec = CacheSpec(data_root=ensure_synthetic(preset="smoke"), vae_source=resolve_vae_source(""), folds=(1, 2, 3),
                     val_fraction=0.1, val_seed=0, clip_mode="all", dtype="float32", content_features=True)
    build_study_caches(spec, cache_name="smoke", pooled_pixels=True,
                       options=BuildOptions(batch_size=8, num_workers=2, device="auto", replace_stale=True))


# ---- the README's result section ---------------------------------------------------------------
README_BEGIN = "<!-- study-results:begin (written by notebooks/07_compare.ipynb; do not edit by hand) -->"
README_END = "<!-- study-results:end -->"


def update_readme(readme: Path, table_markdown: str, figure: Path, *, note: str = "") -> bool:
    """Replace the text between the study-results markers of ``readme`` (atomically).

    Returns False (and changes nothing) when the README has no markers."""
    from lib.runs import atomic_write_text

    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        return False
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    rel = os.path.relpath(figure, readme.parent)
    body = f"{README_BEGIN}\n{note}\n\n{table_markdown}\n\n![accuracy vs cost]({rel})\n{README_END}"
    atomic_write_text(readme, head + body + tail)
    return True


def frame_to_markdown(frame: Any) -> str:
    """A DataFrame as a GitHub markdown table (no tabulate dependency)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


# ---- interactive view of a test video ------------------------------------------------------------
def _test_video_figure(entry: Any, pred: Mapping[str, Any], frames: Sequence[Any], names: Sequence[str],
                       model_key: str) -> Any:
    """Frames of one test video (one per clip) over its per-clip class probabilities; each class
    keeps one colour whatever the model or video, and the clip axis has integer ticks."""
    import matplotlib.pyplot as plt
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
        ax.plot(range(n), probs[:, k].numpy(), "-" if true else "--", marker="o", color=cmap(k % cmap.N),
                linewidth=2.2 if true else 1.2, label=names[k] + (" (true)" if true else ""))
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.5, max(n - 0.5, 0.5))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("clip (1 s each)")
    ax.set_ylabel("p(class)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    verdict = "correct" if pred["predicted"] == pred["label"] else "wrong"
    fig.suptitle(f"{entry.id}: true {names[pred['label']]}, predicted {names[pred['predicted']]} ({verdict})\n{model_key}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def test_video_view(frame: Any, cache_dir: str | os.PathLike[str], *, model: str | None = None, video: int = 0,
                    fold: int = 1) -> Any:
    """Pick a model and a test video: its frames (one per clip) and per-clip class probabilities,
    predicted vs true.

    In a Jupyter kernel with ipywidgets: an :class:`~lib.interactive.InteractiveView` (dropdowns
    over the live view in JupyterLab; the static view of ``model`` and ``video`` where widgets
    cannot render, e.g. an executed notebook opened without a kernel). Elsewhere: that figure."""
    from lib.cache import open_cache
    from lib.data.video import VideoReader
    from lib.interactive import InteractiveView, show_figure, widgets_available

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
        return _test_video_figure(entry, pred, frames, names, model_key)

    def label(model_key: str, index: int) -> str:
        return f"test video {index} ({videos[index].id}), {model_key}"

    if not widgets_available():
        return draw(first, video)
    import ipywidgets as widgets

    model_box = widgets.Dropdown(options=list(models), value=first, description="model")
    video_box = widgets.Dropdown(options=[(f"{i}: {v.id}", i) for i, v in enumerate(videos)], value=video,
                                 description="test video")
    out = widgets.Output()
    picture = show_figure(out, draw(first, video), text=label(first, video))

    def refresh(*_: Any) -> None:
        show_figure(out, draw(model_box.value, video_box.value), text=label(model_box.value, video_box.value))

    model_box.observe(refresh, names="value")
    video_box.observe(refresh, names="value")
    view = widgets.VBox([widgets.HBox([model_box, video_box]), out])
    return InteractiveView(view, picture, f"test-video view (model and video dropdowns); static view: {label(first, video)}")


def publish_results(frame: Any, figure: Any, *, study: Path, readme: Path, figures_dir: Path) -> bool:
    """Save the accuracy-vs-cost ``figure`` as ``<figures_dir>/<study>_accuracy_vs_cost.png`` and
    write the headline table of ``frame`` into ``readme`` between the study-results markers."""
    figure_path = figures_dir / f"{study.name}_accuracy_vs_cost.png"
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(figure_path, dpi=110, bbox_inches="tight")
    note = (f"Study `{study.name}` ({len(frame)} model runs), regenerated by `make study`; video-level top-1 in %, "
            f"mean ± std over seeds; machine: {frame['machine'].iloc[0]}.")
    return update_readme(readme, frame_to_markdown(headline_table(frame)), figure_path, note=note)
