"""Classification metrics at clip level and video level, split tables and seed aggregation.

Clip level: every clip is a sample. Video level: the softmax probabilities of all clips of a
video are averaged (``video_index`` groups them) and the video is classified from the mean,
the usual protocol on UCF101. Per level: top-1, top-5 (top-k with k = min(5, K)), and mean
class accuracy (the mean over classes present in the labels of per-class recall; it equals
top-1 on balanced data and exposes a model that ignores small classes). Confusion matrices
have true classes as rows and predicted classes as columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from lib.classify.errors import InputMismatchError

LEVELS = ("clip", "video")


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows of ``scores`` (N, K) whose ``labels`` (N,) is among the k largest."""
    if scores.shape[0] == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predicted.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """(K,) recall per class from a confusion matrix; NaN for a class with no sample."""
    support = confusion.sum(dim=1).double()
    correct = confusion.diagonal().double()
    return torch.where(support > 0, correct / support.clamp(min=1), torch.full_like(support, float("nan")))


def mean_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    acc = per_class_accuracy(confusion_matrix(predicted, labels, num_classes))
    present = acc[~acc.isnan()]
    return present.mean().item() if present.numel() else float("nan")


def video_level(
    probs: torch.Tensor, labels: torch.Tensor, video_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean clip probabilities per video.

    ``probs`` (N, K) float (softmax of clip logits), ``labels`` (N,), ``video_index`` (N,) ->
    (video_probs (V, K) float64, video_labels (V,), video_ids (V,) sorted). All clips of a video
    must share its label (else the split is corrupt: error)."""
    ids, inverse = torch.unique(video_index, sorted=True, return_inverse=True)
    count = torch.bincount(inverse, minlength=ids.numel()).double()
    sums = torch.zeros(ids.numel(), probs.shape[1], dtype=torch.float64).index_add_(0, inverse, probs.double())
    video_labels = torch.full((ids.numel(),), -1, dtype=torch.long).scatter_(0, inverse, labels.long())
    if not torch.equal(video_labels[inverse], labels.long()):
        bad = ids[torch.unique(inverse[video_labels[inverse] != labels.long()])][:5].tolist()
        raise InputMismatchError(
            None,
            f"clips of videos {bad} carry different labels",
            "the labels/video_index of this split are misaligned; rebuild the cache",
        )
    return sums / count[:, None], video_labels, ids


def level_metrics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    predicted = scores.argmax(dim=1)
    confusion = confusion_matrix(predicted, labels, num_classes)
    return {
        "count": int(labels.numel()),
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_accuracy": mean_class_accuracy(predicted, labels, num_classes),
        "confusion": confusion.tolist(),
        "per_class_accuracy": [None if math.isnan(v) else v for v in per_class_accuracy(confusion).tolist()],
    }


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, video_index: torch.Tensor, num_classes: int | None = None
) -> dict[str, Any]:
    """{"clip": {...}, "video": {...}, "loss": mean clip cross-entropy} from clip ``logits``
    (N, K), ``labels`` (N,), ``video_index`` (N,). Each level: count, top1, top5,
    mean_class_accuracy (fractions in [0, 1]), confusion (K x K lists), per_class_accuracy."""
    logits = logits.detach().float().cpu()
    labels, video_index = labels.cpu().long(), video_index.cpu().long()
    k = num_classes or logits.shape[1]
    probs = logits.softmax(dim=1)
    video_probs, video_labels, _ = video_level(probs, labels, video_index)
    loss = F.cross_entropy(logits, labels).item() if labels.numel() else float("nan")
    return {"clip": level_metrics(probs, labels, k), "video": level_metrics(video_probs, video_labels, k), "loss": loss}


def headline(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar numbers of one split's metrics: clip_top1, video_top1, ... (fractions)."""
    out = {"loss": float(metrics["loss"])}
    for level in LEVELS:
        for key in ("top1", "top5", "mean_class_accuracy"):
            out[f"{level}_{key}"] = float(metrics[level][key])
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f} %"


def split_table(metrics_by_split: Mapping[str, Mapping[str, Any]], *, title: str | None = None) -> str:
    """Markdown table in the published format: one row per split (Train / Val / Test) with the
    accuracy (video level, the headline), clip-level accuracy, video top-5 and mean class
    accuracy. Accepts either full split metrics or :func:`headline` dicts."""
    lines = ([f"**{title}**", ""] if title else []) + [
        "| split | accuracy (video) | accuracy (clip) | top-5 (video) | mean class acc. (video) | videos | clips |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("train", "val", "test"):
        if split not in metrics_by_split:
            continue
        m = metrics_by_split[split]
        if "video" in m:
            row = [m["video"]["top1"], m["clip"]["top1"], m["video"]["top5"], m["video"]["mean_class_accuracy"]]
            counts = [str(m["video"]["count"]), str(m["clip"]["count"])]
        else:
            row = [m.get("video_top1"), m.get("clip_top1"), m.get("video_top5"), m.get("video_mean_class_accuracy")]
            counts = ["", ""]
        lines.append(
            f"| {split.capitalize()} | " + " | ".join(_pct(v) for v in row) + " | " + " | ".join(counts) + " |"
        )
    return "\n".join(lines)


def _scalar_leaves(value: Any, prefix: str = "") -> dict[str, float]:
    """Flatten nested dicts to 'a.b.c' -> float for int/float leaves (lists are skipped)."""
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for key, sub in value.items():
            out.update(_scalar_leaves(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {prefix: float(value)}
    return {}


def aggregate_seeds(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample standard deviation (ddof 1; None for a single run) of every numeric leaf
    present in all ``runs`` (nested metric dicts, e.g. one metrics.json per seed), keyed by the
    dotted path, e.g. ``"test.video.top1" -> {"mean", "std", "n", "values"}``."""
    if not runs:
        raise ValueError("aggregate_seeds needs at least one run")
    flat = [_scalar_leaves(run) for run in runs]
    common = set(flat[0]).intersection(*flat[1:])
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(common):
        values = [f[key] for f in flat]
        t = torch.tensor(values, dtype=torch.float64)
        out[key] = {
            "mean": t.mean().item(),
            "std": t.std(correction=1).item() if len(values) > 1 else None,
            "n": len(values),
            "values": values,
        }
    return out


def format_mean_std(entry: Mapping[str, Any], *, percent: bool = True, digits: int = 2) -> str:
    """'72.47 +- 0.85 %' (or '72.47 %' for one run) from an :func:`aggregate_seeds` entry."""
    scale, unit = (100.0, " %") if percent else (1.0, "")
    mean = entry["mean"] * scale
    if entry.get("std") is None:
        return f"{mean:.{digits}f}{unit}"
    return f"{mean:.{digits}f} +- {entry['std'] * scale:.{digits}f}{unit}"


def aggregate_split_table(aggregate: Mapping[str, Mapping[str, Any]], *, title: str | None = None) -> str:
    """The :func:`split_table` layout with ``mean +- std`` over seeds, from
    :func:`aggregate_seeds` of per-seed ``{"train": headline, "val": ..., "test": ...}`` dicts."""
    lines = ([f"**{title}**", ""] if title else []) + [
        "| split | accuracy (video) | accuracy (clip) | top-5 (video) | mean class acc. (video) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("train", "val", "test"):
        keys = [
            f"{split}.video_top1",
            f"{split}.clip_top1",
            f"{split}.video_top5",
            f"{split}.video_mean_class_accuracy",
        ]
        if keys[0] not in aggregate:
            continue
        cells = [format_mean_std(aggregate[k]) if k in aggregate else "n/a" for k in keys]
        lines.append(f"| {split.capitalize()} | " + " | ".join(cells) + f" | {aggregate[keys[0]]['n']} |")
    return "\n".join(lines)
