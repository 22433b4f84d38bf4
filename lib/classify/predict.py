"""Inference over a batch source: clip logits, labels and video indices, in the source's order."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lib.classify.data import BatchSource, num_batches
from lib.classify.errors import InputMismatchError
from lib.classify.metrics import classification_metrics


@dataclass(frozen=True)
class Predictions:
    """``logits`` (N, K) float32 CPU, ``labels`` (N,) int64, ``video_index`` (N,) int64, and the
    wall time of the pass (``seconds``, data loading included)."""

    logits: torch.Tensor
    labels: torch.Tensor
    video_index: torch.Tensor
    seconds: float

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(dim=1)

    @property
    def loss(self) -> float:
        return F.cross_entropy(self.logits, self.labels).item()

    @property
    def clips_per_second(self) -> float:
        return self.labels.numel() / self.seconds if self.seconds > 0 else float("nan")

    def metrics(self, num_classes: int | None = None) -> dict[str, Any]:
        return classification_metrics(self.logits, self.labels, self.video_index, num_classes)


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: BatchSource,
    *,
    batch_size: int = 512,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> Predictions:
    """Run ``model`` (in eval mode, restored afterwards) over every clip of ``data`` in order."""
    device = device or model_device(model)
    was_training = model.training
    model.eval()
    logits, labels, videos = [], [], []
    start = time.perf_counter()
    bar = tqdm(
        total=num_batches(len(data), batch_size),
        desc=desc or f"eval {data.split or ''}".strip(),
        disable=not progress,
        leave=False,
    )
    try:
        for batch in data.on(device).batches(batch_size, shuffle=False, generator=None, device=device, train=False):
            with autocast(device, amp_dtype):
                out = model(*batch.inputs)
            logits.append(out.float().cpu())
            labels.append(batch.labels.cpu())
            videos.append(batch.video_index.cpu())
            bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    if not logits:
        raise InputMismatchError(
            getattr(data, "source", None) or f"{data.split} split",
            "has no clips to evaluate",
            "check the cache/split (an empty split cannot be scored)",
        )
    return Predictions(torch.cat(logits), torch.cat(labels), torch.cat(videos), time.perf_counter() - start)


PREDICTIONS_NAME = "predictions_test.pt"


def save_predictions(path: Path, preds: Predictions) -> None:
    """Write clip logits (float32), labels and video indices atomically (``torch.save``)."""
    from lib.runs import atomic_write

    payload = {
        "logits": preds.logits.float(),
        "labels": preds.labels,
        "video_index": preds.video_index,
        "seconds": preds.seconds,
    }
    atomic_write(path, lambda fh: torch.save(payload, fh))


def load_predictions(path: Path) -> Predictions:
    """Read back :func:`save_predictions` (tensors only: ``weights_only=True``)."""
    d = torch.load(path, map_location="cpu", weights_only=True)
    return Predictions(d["logits"], d["labels"], d["video_index"], float(d["seconds"]))


def video_predictions(summary_path: str | os.PathLike[str], video: int, *, seed: int | None = None) -> dict[str, Any]:
    """Per-clip softmax of test video number ``video`` (its index in the cache's test list) for
    the model of ``summary_path``: ``{"probs": (clips, K), "label", "predicted" (video level)}``."""
    root = Path(summary_path).parent
    seeds = sorted(int(p.name[4:]) for p in root.glob("seed*") if (p / PREDICTIONS_NAME).is_file())
    if not seeds:
        raise FileNotFoundError(
            f"{root}: no {PREDICTIONS_NAME} (runs from before predictions were kept); rerun the notebook"
        )
    preds = load_predictions(root / f"seed{seed if seed is not None else seeds[0]}" / PREDICTIONS_NAME)
    rows = preds.video_index == video
    if not bool(rows.any()):
        raise IndexError(f"test video {video} has no clips in {root}")
    probs = preds.probs[rows]
    return {
        "probs": probs,
        "label": int(preds.labels[rows][0]),
        "predicted": int(probs.mean(0).argmax()),
        "num_videos": int(preds.video_index.max()) + 1,
    }
