"""The training/evaluation engine (lib.classify) on tiny synthetic tensors and a tiny local model.

Each training here takes well under a second: a 4-class task whose class is written into the
mean of one latent channel (plus noise), a 2-layer MLP with BatchNorm and dropout, a few epochs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lib.classify import (
    InputMismatchError,
    RunMismatchError,
    TensorClips,
    TrainConfig,
    TrainingDivergedError,
    UnknownNameError,
    fit,
    train_and_evaluate,
)
from lib.classify.checkpoint import load_checkpoint
from lib.classify.loading import ExperimentData
from lib.classify.metrics import (
    aggregate_seeds,
    classification_metrics,
    confusion_matrix,
    mean_class_accuracy,
    split_table,
    topk_accuracy,
    video_level,
)
from lib.classify.optim import WarmupCosine, parameter_groups
from lib.errors import ActionableError

NUM_CLASSES = 4
SHAPE = (4, 2, 2, 3)  # (C, T, H, W): a miniature latent


def toy_clips(num_videos: int, seed: int, split: str, clips_per_video: int = 3, noise: float = 0.8) -> TensorClips:
    """Clips whose class k raises the mean of channel k; all clips of a video share its label."""
    g = torch.Generator().manual_seed(seed)
    video_index = torch.arange(num_videos).repeat_interleave(clips_per_video)
    labels = video_index % NUM_CLASSES
    x = torch.randn(len(labels), *SHAPE, generator=g) * noise
    x[torch.arange(len(labels)), labels] += 1.0
    return TensorClips((x.half(),), labels, video_index, split=split, source=f"toy {split}")


class TinyNet(nn.Module):
    """(B, C, T, H, W) -> (B, K): flatten, linear, BatchNorm, ReLU, dropout, linear."""

    def __init__(self, in_features: int = math.prod(SHAPE), num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def fast_config(**changes: Any) -> TrainConfig:
    base = dict(epochs=6, batch_size=32, lr=3e-3, warmup_epochs=1, progress=False, patience=None, device="cpu")
    base.update(changes)
    return TrainConfig(**base)


def noisy_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x + 0.05 * torch.randn(x.shape, generator=generator)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Tiny tensors: one thread avoids OpenMP hand-offs that dominate on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def splits() -> dict[str, TensorClips]:
    return {"train": toy_clips(80, 0, "train"), "val": toy_clips(16, 1, "val"), "test": toy_clips(24, 2, "test")}


# --- training -------------------------------------------------------------------------------------
def test_fit_learns_a_separable_task(tmp_path: Path, splits: dict[str, TensorClips]) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    result = train_and_evaluate(
        model,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        config=fast_config(label_smoothing=0.1),
        run_dir=tmp_path,
    )
    test = result.splits["test"]
    assert test["video"]["top1"] >= 0.9 and test["clip"]["top1"] >= 0.8, test["video"]
    assert result.metrics["fit"]["epochs_completed"] == 6 and result.fit.best_epoch is not None
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["splits"]["test"]["video"]["count"] == 24 and stored["test_evaluations"] == 1
    assert len((tmp_path / "history.csv").read_text().strip().splitlines()) == 1 + 6


def _deterministic_columns(path: Path) -> list[list[str]]:
    lines = path.read_text().strip().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if not name.endswith("seconds") and name != "train_clips_per_s"]
    return [[line.split(",")[i] for i in keep] for line in lines]


def test_resume_after_interruption_gives_identical_weights_and_history(
    tmp_path: Path, splits: dict[str, TensorClips]
) -> None:
    config = fast_config(mixup_alpha=0.4, label_smoothing=0.1, augment=noisy_augment, grad_clip=0.5)

    torch.manual_seed(1)
    straight = TinyNet()
    fit(straight, splits["train"], splits["val"], config, tmp_path / "straight")

    class Killed(Exception):
        pass

    def kill_after_epoch_3(row: dict[str, Any]) -> None:
        if row["epoch"] == 3:
            raise Killed

    torch.manual_seed(1)
    interrupted = TinyNet()
    with pytest.raises(Killed):
        fit(interrupted, splits["train"], splits["val"], config, tmp_path / "resumed", on_epoch_end=kill_after_epoch_3)
    history = tmp_path / "resumed" / "history.csv"
    before = history.read_bytes()
    # the process may also die after last.pt is written but before its history row: drop that row
    history.write_bytes(b"".join(before.splitlines(keepends=True)[:-1]))
    prefix = history.read_bytes()

    torch.manual_seed(123)  # a fresh process: different global RNG, freshly initialised model
    resumed = TinyNet()
    result = fit(resumed, splits["train"], splits["val"], config, tmp_path / "resumed")
    assert result.resumed_from_epoch == 3 and result.epochs_completed == 6
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    best_a = load_checkpoint(tmp_path / "straight" / "best.pt")["model"]
    best_b = load_checkpoint(tmp_path / "resumed" / "best.pt")["model"]
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    assert _deterministic_columns(tmp_path / "straight" / "history.csv") == _deterministic_columns(history)
    assert history.read_bytes().startswith(prefix)  # append-only: earlier rows untouched

    again = fit(resumed, splits["train"], splits["val"], config, tmp_path / "resumed")  # finished: returns at once
    assert again.epochs_completed == 6 and len(history.read_text().strip().splitlines()) == 7


def test_resume_refuses_other_settings_and_fresh_run_refuses_existing_dir(
    tmp_path: Path, splits: dict[str, TensorClips]
) -> None:
    config = fast_config(epochs=2)
    fit(TinyNet(), splits["train"], splits["val"], config, tmp_path)
    with pytest.raises(RunMismatchError, match="lr"):
        fit(TinyNet(), splits["train"], splits["val"], config.replace(lr=1e-4), tmp_path)
    with pytest.raises(RunMismatchError, match="resume=True"):
        fit(TinyNet(), splits["train"], splits["val"], config, tmp_path, resume=False)
    fit(
        TinyNet(), splits["train"], splits["val"], config.replace(device="cpu", progress=False), tmp_path
    )  # free fields ok


class ExplodesAfter(TinyNet):
    """Returns NaN logits from the ``after``-th training forward on (a diverging model)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                out = out * float("nan")
        return out


def test_nan_loss_raises_clear_error_and_keeps_last_good_checkpoint(
    tmp_path: Path, splits: dict[str, TensorClips]
) -> None:
    steps_per_epoch = len(splits["train"]) // 32
    model = ExplodesAfter(after=2 * steps_per_epoch + 2)  # epoch 3, step 2
    with pytest.raises(TrainingDivergedError) as info:
        fit(model, splits["train"], splits["val"], fast_config(), tmp_path)
    message = str(info.value)
    assert "epoch 3" in message and f"step {2 * steps_per_epoch + 2}" in message and "lower lr" in message
    assert str(tmp_path / "last.pt") in message and info.value.last_good_checkpoint == tmp_path / "last.pt"
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["epoch"] == 2 and all(
        torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point()
    )
    assert len((tmp_path / "history.csv").read_text().strip().splitlines()) == 1 + 2


def test_nan_in_the_inputs_is_named_as_the_cause(tmp_path: Path) -> None:
    data = toy_clips(20, 0, "train")
    data.inputs[0][5, 0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="input batch itself holds NaN"):
        fit(TinyNet(), data, None, fast_config(epochs=1, batch_size=64), tmp_path)
    assert not (tmp_path / "last.pt").exists()


def test_shape_mismatch_is_a_clear_error(tmp_path: Path, splits: dict[str, TensorClips]) -> None:
    wrong = TinyNet(in_features=5 * 2 * 2 * 3)
    with pytest.raises(
        InputMismatchError, match=r"toy train.*TinyNet cannot take inputs of shape \[\(4, 2, 2, 3\)\].*input_shape"
    ):
        fit(wrong, splits["train"], splits["val"], fast_config(epochs=1), tmp_path)
    with pytest.raises(InputMismatchError, match="labels go up to 3 but the model has 2 outputs"):
        fit(TinyNet(num_classes=2), splits["train"], None, fast_config(epochs=1), tmp_path / "b")


class SpySource:
    """Wraps a batch source and counts how often it is iterated."""

    def __init__(self, inner: TensorClips) -> None:
        self.inner, self.split, self.iterations = inner, inner.split, 0
        self.labels = inner.labels

    def __len__(self) -> int:
        return len(self.inner)

    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        return self.inner.input_shapes()

    def input_bytes_per_clip(self) -> int:
        return self.inner.input_bytes_per_clip()

    def on(self, device: torch.device) -> SpySource:
        return self

    def batches(self, *args: Any, **kwargs: Any) -> Any:
        self.iterations += 1
        return self.inner.batches(*args, **kwargs)


def test_test_split_is_scored_once_and_never_during_fit(tmp_path: Path, splits: dict[str, TensorClips]) -> None:
    test = SpySource(splits["test"])
    seen_during_fit: list[int] = []
    result = train_and_evaluate(
        TinyNet(),
        train=splits["train"],
        val=splits["val"],
        test=test,
        config=fast_config(epochs=3),
        run_dir=tmp_path,
        on_epoch_end=lambda row: seen_during_fit.append(test.iterations),
    )
    assert seen_during_fit == [0, 0, 0] and test.iterations == 1 and not result.reused
    again = train_and_evaluate(
        TinyNet(), train=splits["train"], val=splits["val"], test=test, config=fast_config(epochs=3), run_dir=tmp_path
    )
    assert again.reused and test.iterations == 1 and again.metrics == result.metrics
    with pytest.raises(InputMismatchError, match="fit\\(\\) never sees the test split"):
        fit(TinyNet(), splits["test"], None, fast_config(epochs=1), tmp_path / "x")


# --- metrics --------------------------------------------------------------------------------------
def test_video_level_mean_of_clip_softmax_on_a_hand_example() -> None:
    # video 0: clips favour class 0 (0.6) and class 1 (0.7): mean (0.45, 0.5, 0.05) -> class 1
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.3, 0.7, 0.0], [0.1, 0.1, 0.8]])
    labels = torch.tensor([0, 0, 2])
    video_index = torch.tensor([7, 7, 3])
    video_probs, video_labels, ids = video_level(probs, labels, video_index)
    assert ids.tolist() == [3, 7] and video_labels.tolist() == [2, 0]
    assert torch.allclose(video_probs, torch.tensor([[0.1, 0.1, 0.8], [0.45, 0.5, 0.05]], dtype=torch.float64))
    logits = probs.clamp(min=1e-6).log()  # softmax(log p) == p for rows summing to 1
    metrics = classification_metrics(logits, labels, video_index)
    assert metrics["clip"]["top1"] == pytest.approx(2 / 3) and metrics["video"]["top1"] == pytest.approx(1 / 2)
    assert metrics["video"]["confusion"] == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]
    with pytest.raises(InputMismatchError, match="different labels"):
        video_level(probs, torch.tensor([0, 1, 2]), video_index)


def test_top5_and_mean_class_accuracy_on_hand_examples() -> None:
    scores = torch.tensor([[9, 8, 7, 6, 5, 4, 0.0], [0, 1, 2, 3, 4, 5, 6.0], [6, 5, 4, 3, 2, 1, 0.0]])
    labels = torch.tensor([4, 0, 6])  # ranks: 5th (in top-5), 7th (out), 7th (out)
    assert topk_accuracy(scores, labels, 5) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, labels, 1) == 0.0
    # class 0: 3 samples, 3 right; class 1: 1 sample, 0 right -> clip acc 3/4, mean class acc 1/2
    predicted, truth = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 1])
    assert mean_class_accuracy(predicted, truth, 3) == pytest.approx(0.5)
    assert confusion_matrix(predicted, truth, 2).tolist() == [[3, 0], [1, 0]]


def test_aggregate_seeds_mean_and_sample_std() -> None:
    runs = [{"test": {"video_top1": v}, "note": "x"} for v in (0.70, 0.72, 0.74)]
    agg = aggregate_seeds(runs)
    assert agg["test.video_top1"]["mean"] == pytest.approx(0.72)
    assert agg["test.video_top1"]["std"] == pytest.approx(0.02) and agg["test.video_top1"]["n"] == 3
    assert "note" not in agg and aggregate_seeds(runs[:1])["test.video_top1"]["std"] is None


def test_split_table_has_the_published_rows(tmp_path: Path, splits: dict[str, TensorClips]) -> None:
    logits = torch.randn(len(splits["val"]), NUM_CLASSES)
    m = classification_metrics(logits, splits["val"].labels, splits["val"].video_index)
    table = split_table({"train": m, "val": m, "test": m})
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["Train", "Val", "Test"]
    assert f"{100 * m['video']['top1']:.2f} %" in table


def test_schedule_and_weight_decay_groups() -> None:
    sched = WarmupCosine(lr=1.0, min_lr=0.1, warmup_steps=4, total_steps=14)
    assert [sched.lr_at(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert sched.lr_at(13) == pytest.approx(0.1) and sched.lr_at(8) == pytest.approx(0.55)
    groups = parameter_groups(TinyNet(), 0.05)
    decayed = {id(p) for p in groups[0]["params"]}  # type: ignore[union-attr]
    net = TinyNet().net
    assert len(groups[0]["params"]) == 2 and len(groups[1]["params"]) == 4  # type: ignore[arg-type]
    assert id(net[2].weight) not in decayed


def test_config_rejects_unknown_settings() -> None:
    with pytest.raises(UnknownNameError, match="unknown training setting.*'lerning_rate'.*valid settings"):
        TrainConfig.from_mapping({"lerning_rate": 1e-3})
    with pytest.raises(ValueError, match="lr must be a number, got '1e-3' \\(YAML reads 1e-3 as text"):
        TrainConfig.from_mapping({"lr": "1e-3"})
    with pytest.raises(UnknownNameError, match="select_on"):
        TrainConfig(select_on="test_top1")


# --- experiments ----------------------------------------------------------------------------------
class TinyFactory:
    """A stand-in for the lib.models registry: one latent model, counting builds."""

    def __init__(self) -> None:
        self.builds = 0

    def info(self, name: str, origin: str | None) -> Any:
        if name != "tiny":
            raise KeyError(f"{name!r} (known: ['tiny'])")
        return SimpleNamespace(family="conv3d", input_kind="latent", origin="ours", recipe={"lr": 3e-3})

    def build(
        self, name: str, *, num_classes: int, input_shape: tuple[int, ...], origin: str | None, **overrides: Any
    ) -> nn.Module:
        self.builds += 1
        return TinyNet(in_features=math.prod(input_shape), num_classes=num_classes)


def toy_data(splits: dict[str, TensorClips]) -> ExperimentData:
    return ExperimentData(
        splits["train"],
        splits["val"],
        splits["test"],
        [f"c{i}" for i in range(NUM_CLASSES)],
        "latent",
        "/caches/toy",
        encode_seconds_per_clip=0.5,
        encode_seconds_total=60.0,
    )


def test_run_experiment_trains_seeds_aggregates_and_skips_finished_ones(
    tmp_path: Path, splits: dict[str, TensorClips]
) -> None:
    from lib.classify.experiment import ExperimentSpec, collect_results, run_experiment

    factory = TinyFactory()
    kwargs = dict(
        model_name="tiny",
        run_dir=tmp_path,
        data=toy_data(splits),
        seeds=(0, 1),
        models=factory,
        train_config={"epochs": 3, "batch_size": 32, "progress": False, "device": "cpu"},
    )
    result = run_experiment(ExperimentSpec(**kwargs, measure_inference_speed=False, figures=False))
    assert factory.builds == 2
    for seed in (0, 1):
        assert (tmp_path / "tiny" / f"seed{seed}" / "metrics.json").is_file()
    summary = json.loads((tmp_path / "tiny" / "summary.json").read_text())
    accs = [s["test"]["video_top1"] for s in summary["per_seed"]]
    assert summary["aggregate"]["test.video_top1"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["aggregate"]["test.video_top1"]["n"] == 2 and summary["config"]["lr"] == 3e-3  # the recipe
    cost = summary["cost"]
    assert cost["params"] == sum(p.numel() for p in TinyNet().parameters()) and cost["flops_per_clip"] > 0
    assert cost["input_bytes_per_clip"] == math.prod(SHAPE) * 2 and cost["encode_seconds_per_clip"] == 0.5
    assert "Test" in result.table() and "+-" in result.table()

    again = run_experiment(ExperimentSpec(**kwargs))  # both seeds finished: nothing is built or trained
    assert factory.builds == 2 and again.summary["aggregate"] == result.summary["aggregate"]
    rows = collect_results(tmp_path)
    assert len(rows) == 1 and rows[0]["model"] == "tiny" and rows[0]["test_video_top1"] == pytest.approx(np.mean(accs))


def test_run_experiment_input_errors_name_the_cache_and_model(tmp_path: Path, splits: dict[str, TensorClips]) -> None:
    from lib.classify.experiment import ExperimentSpec
    from lib.classify.experiment import run_experiment as run_spec

    def run_experiment(**fields: Any) -> Any:
        return run_spec(ExperimentSpec(**fields))

    base = dict(
        run_dir=tmp_path,
        data=toy_data(splits),
        seeds=(0,),
        models=TinyFactory(),
        train_config={"epochs": 1, "progress": False, "device": "cpu"},
        measure_inference_speed=False,
        figures=False,
    )
    with pytest.raises(UnknownNameError, match="unknown model name 'resnet'.*known: \\['tiny'\\]"):
        run_experiment(model_name="resnet", **base)
    with pytest.raises(
        InputMismatchError,
        match=r"/caches/toy: clips have shape \(4, 2, 2, 3\) but model 'tiny' is configured for "
        r"input_shape \(16, 4, 7, 9\)",
    ):
        run_experiment(model_name="tiny", expected_input_shape=(16, 4, 7, 9), **base)
    with pytest.raises(
        InputMismatchError, match="/data/ucf101: model 'tiny' takes 'latent' inputs from a latent cache"
    ):
        run_experiment(model_name="tiny", **{**base, "data": None}, data_root="/data/ucf101")
    pixel_factory = TinyFactory()
    pixel_factory.info = lambda name, origin: SimpleNamespace(family="pixel", input_kind="pixels", recipe={})  # type: ignore[method-assign]
    with pytest.raises(
        InputMismatchError, match="/caches/toy: provides 'latent' inputs but model 'tiny' takes 'pixels'"
    ):
        run_experiment(model_name="tiny", **{**base, "models": pixel_factory})
    run_experiment(model_name="tiny", **base)
    other = {
        name: TensorClips((torch.randn(len(s), 4, 2, 3, 3).half(),), s.labels, s.video_index, split=name)
        for name, s in splits.items()
    }
    other_data = ExperimentData(
        other["train"], other["val"], other["test"], ["a", "b", "c", "d"], "latent", "/caches/other"
    )
    with pytest.raises(
        InputMismatchError, match=r"/caches/other: .*model 'tiny' in .*seed0 was trained on \[\[4, 2, 2, 3\]\]"
    ):
        run_experiment(model_name="tiny", **{**base, "data": other_data, "seeds": (0, 1)})


def test_standardize_splits_uses_train_statistics_only() -> None:
    from lib.classify.data import standardization_stats, standardize_splits

    g = torch.Generator().manual_seed(0)
    pattern = torch.randn(4, 2, 3, 3, generator=g) * 5  # a large clip-independent offset per value
    train_x = (pattern + 0.1 * torch.randn(200, 4, 2, 3, 3, generator=g)).half()
    test_x = (pattern + 7.0 + 0.1 * torch.randn(50, 4, 2, 3, 3, generator=g)).half()  # shifted: must NOT be re-centred
    labels = torch.zeros(200, dtype=torch.long)
    train = TensorClips(train_x, labels, split="train")
    test = TensorClips(test_x, torch.zeros(50, dtype=torch.long), split="test")
    std_train, (std_test, none) = standardize_splits(train, [test, None], "element")
    x = std_train.inputs[0].float()
    assert std_train.inputs[0].dtype == torch.float16 and none is None
    assert x.mean(0).abs().max() < 0.02 and (x.std(0) - 1).abs().max() < 0.02  # every value position ~N(0, 1)
    mean, std = standardization_stats(train_x, "element")
    assert mean.shape == (4, 2, 3, 3) and torch.allclose(mean, train_x.float().mean(0), atol=1e-3)
    expected = (test_x.float() - mean) / std
    assert torch.allclose(std_test.inputs[0].float(), expected, atol=0.05, rtol=1e-2)  # train stats applied to test
    assert std_test.inputs[0].float().mean() > 30  # the shift survives: no test statistics used
    ch_mean, ch_std = standardization_stats(train_x, "channel")
    assert ch_mean.shape == (4, 1, 1, 1)
    assert torch.allclose(ch_mean.flatten(), train_x.float().transpose(0, 1).reshape(4, -1).mean(1), atol=1e-3)
    constant = TensorClips(torch.ones(10, 2, 1, 1, 1), torch.zeros(10, dtype=torch.long), split="train")
    assert torch.equal(standardize_splits(constant, [], "element")[0].inputs[0], torch.zeros(10, 2, 1, 1, 1))
    assert standardize_splits(train, [test], "none")[0] is train
    with pytest.raises(ValueError, match="input_standardize"):
        TrainConfig(input_standardize="global")


# --- pixels ---------------------------------------------------------------------------------------
def test_pixel_clip_dataset_decodes_lossless_video_with_and_without_workers(tmp_path: Path) -> None:
    from lib.classify.pixels import PixelClipDataset, PixelClipItem, PixelClips
    from lib.data.spatial import CropPolicy
    from lib.data.video_writer import write_video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(20, 48, 64, 3), dtype=np.uint8)
    paths = [write_video(tmp_path / f"v{i}.avi", np.roll(frames, i, axis=0), fps=16, codec="ffv1") for i in range(2)]
    items = [
        PixelClipItem(paths[v], tuple(range(start, start + 8)), label=v, video_index=v)
        for v in (0, 1)
        for start in (0, 10)
    ]
    policy = CropPolicy(short_side=32, crop=(32, 40))
    dataset = PixelClipDataset(items, policy, augment=True)
    clip, label, video = PixelClipDataset(items, policy)[3]
    expected = policy.apply_to_frames(torch.from_numpy(np.roll(frames, 1, axis=0)[10:18]))
    assert clip.dtype == torch.float32 and tuple(clip.shape) == (3, 8, 32, 40) and (label, video) == (1, 1)
    assert torch.equal(clip, expected) and clip.min() >= -1 and clip.max() <= 1

    device = torch.device("cpu")
    results = {}
    for workers in (0, 2):
        source = PixelClips(dataset, split="train", num_workers=workers)
        evaluated = torch.cat([b.inputs[0] for b in source.batches(3, shuffle=False, generator=None, device=device)])
        augmented = [
            b
            for b in source.batches(
                3, shuffle=True, generator=torch.Generator().manual_seed(5), device=device, train=True
            )
        ]
        results[workers] = (
            evaluated,
            torch.cat([b.inputs[0] for b in augmented]),
            torch.cat([b.labels for b in augmented]),
        )
    assert torch.equal(results[0][0][3], expected)  # evaluation: centre crop, no flip
    for a, b in zip(results[0], results[2]):
        assert torch.equal(a, b)  # same clips, same crops and flips for any worker count
    order = torch.randperm(4, generator=torch.Generator().manual_seed(5))  # the sampler's epoch order
    assert torch.equal(results[0][2], torch.tensor([items[i].label for i in order.tolist()]))
    augmented, centred = results[0][1], results[0][0][order]
    assert augmented.shape == centred.shape and not torch.equal(augmented, centred)  # random crops / flips applied


@pytest.mark.slow
def test_pixel_bank_holds_the_streamed_clips_and_augments_within_the_frame(tmp_path: Path) -> None:
    from lib.classify.pixel_bank import PixelBankClips
    from lib.classify.pixels import PixelClipDataset, PixelClipItem, PixelClips
    from lib.data.spatial import CropPolicy
    from lib.data.video_writer import write_video

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(20, 48, 64, 3), dtype=np.uint8)
    paths = [write_video(tmp_path / f"v{i}.avi", np.roll(frames, i, axis=1), fps=16, codec="ffv1") for i in range(2)]
    items = [
        PixelClipItem(paths[v], tuple(range(start, start + 8)), label=v, video_index=v)
        for v in (0, 1)
        for start in (0, 10)
    ]
    # no resize (short_side None): the stored frames are the decoded pixels exactly
    policy = CropPolicy(short_side=None, crop=(32, 40))
    device = torch.device("cpu")
    stream = PixelClips(PixelClipDataset(items, policy, augment=True, flip=False), split="train")
    bank = PixelBankClips(stream, num_workers=2)
    assert (
        tuple(bank.clips.shape) == (4, 3, 8, 48, 64) and bank.clips.dtype == torch.uint8
    )  # whole frames kept for crops
    assert bank.input_shapes() == ((3, 8, 32, 40),) and bank.input_bytes_per_clip() == 3 * 8 * 32 * 40
    streamed = torch.cat([b.inputs[0] for b in stream.batches(3, shuffle=False, generator=None, device=device)])
    banked = torch.cat([b.inputs[0] for b in bank.batches(3, shuffle=False, generator=None, device=device)])
    assert torch.equal(banked, streamed)  # evaluation: the same centre crops, bit for bit

    batches = list(bank.batches(4, shuffle=True, generator=torch.Generator().manual_seed(3), device=device, train=True))
    x, labels = batches[0].inputs[0], batches[0].labels
    order = torch.randperm(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(labels, torch.tensor([items[i].label for i in order.tolist()]))
    full = bank.clips.float() / 127.5 - 1
    for clip, i in zip(x, order.tolist()):  # each augmented clip is some 32x40 window of its own frames, unflipped
        windows = full[i].unfold(2, 32, 1).unfold(3, 40, 1)  # (3, 8, 17, 25, 32, 40)
        match = (windows - clip[:, :, None, None]).abs().amax(dim=(0, 1, 4, 5)) == 0
        assert match.any()
    again = list(bank.batches(4, shuffle=True, generator=torch.Generator().manual_seed(3), device=device, train=True))
    assert torch.equal(again[0].inputs[0], x)  # the generator alone decides crops
    assert not torch.equal(x, streamed[order])  # crops really are random (17 x 25 positions each)


# --- figures and cost -----------------------------------------------------------------------------
@pytest.mark.slow
def test_figures_and_cost_table(tmp_path: Path, splits: dict[str, TensorClips]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from lib.classify.cost import CostRow, cost_table, measure_inference
    from lib.classify.plots import plot_accuracy_vs_cost, read_history, save_run_figures

    result = train_and_evaluate(
        TinyNet(),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        config=fast_config(epochs=2),
        run_dir=tmp_path,
        class_names=["a", "b", "c", "d"],
    )
    paths = save_run_figures(tmp_path, result.metrics)
    assert sorted(p.name for p in paths) == [
        "confusion_test_video.png",
        "learning_curves.png",
        "per_class_test_video.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)
    history = read_history(tmp_path / "history.csv")
    assert [row["epoch"] for row in history] == [1.0, 2.0] and history[0]["val_video_top1"] is not None
    fig = plot_accuracy_vs_cost(
        [
            {
                "model": "tiny",
                "input_kind": "latent",
                "flops_per_clip": 1e4,
                "test_video_top1": 0.9,
                "test_video_top1_std": 0.01,
            },
            {"model": "pix", "input_kind": "pixels", "flops_per_clip": 1e9, "test_video_top1": 0.8},
        ]
    )
    assert fig.axes[0].get_xscale() == "log"

    speed = measure_inference(TinyNet(), [SHAPE], batch_size=64, warmup=1, min_seconds=0.05)
    assert speed > 0
    row = CostRow(
        model="tiny",
        input_kind="latent",
        params=1234,
        flops_per_clip=5_000_000,
        train_seconds=12.5,
        seconds_per_epoch=2.5,
        epochs=5,
        inference_clips_per_s=speed,
        eval_clips_per_s=None,
        input_bytes_per_clip=8064,
        encode_seconds_per_clip=0.04,
        encode_seconds_total=400.0,
        device="cpu",
        machine="test machine",
    )
    table = cost_table([row])
    assert "| tiny | latent | 1.23 k | 5.00 MFLOP | 12.5 s | 2.50 |" in table and "8.06 kB" in table
    assert "Measured on: test machine" in table


@pytest.mark.slow
def test_with_the_model_registry(tmp_path: Path) -> None:
    """run_experiment with the real lib.models registry (its default factory) on latent-shaped
    tensors: the paper 3D-conv model learns the toy signal in a few epochs."""
    models = pytest.importorskip("lib.models")
    from lib.classify.experiment import ExperimentSpec
    from lib.classify.experiment import run_experiment as run_spec

    def run_experiment(**fields: Any) -> Any:
        return run_spec(ExperimentSpec(**fields))

    def latent_split(num_videos: int, seed: int, split: str) -> TensorClips:
        g = torch.Generator().manual_seed(seed)
        video_index = torch.arange(num_videos).repeat_interleave(2)
        labels = video_index % NUM_CLASSES
        x = torch.randn(len(labels), 16, 4, 2, 3, generator=g) * 0.5
        x[torch.arange(len(labels)), labels] += 1.0
        return TensorClips((x.half(),), labels, video_index, split=split, source=f"latents {split}")

    data = ExperimentData(
        latent_split(60, 0, "train"),
        latent_split(12, 1, "val"),
        latent_split(12, 2, "test"),
        ["a", "b", "c", "d"],
        "latent",
        "/caches/latent16",
    )
    result = run_experiment(
        model_name="conv3d_paper",
        run_dir=tmp_path,
        data=data,
        seeds=(0,),
        measure_inference_speed=False,
        figures=False,
        train_config={"epochs": 5, "batch_size": 16, "progress": False, "device": "cpu"},
    )
    assert result.accuracy("test")[0] >= 0.75
    # A finished seed is reused for the same settings (device may differ) but never for others.
    again = run_experiment(
        model_name="conv3d_paper",
        run_dir=tmp_path,
        data=data,
        seeds=(0,),
        measure_inference_speed=False,
        figures=False,
        train_config={"epochs": 5, "batch_size": 16, "progress": True, "device": "cpu"},
    )
    assert again.accuracy("test") == result.accuracy("test")
    with pytest.raises(ActionableError, match="other training settings.*batch_size"):
        run_experiment(
            model_name="conv3d_paper",
            run_dir=tmp_path,
            data=data,
            seeds=(0,),
            measure_inference_speed=False,
            figures=False,
            train_config={"epochs": 5, "batch_size": 8, "progress": False, "device": "cpu"},
        )
    assert result.cost["flops_per_clip"] == models.forward_flops(
        models.build_model("conv3d_paper", num_classes=4, input_shape=(16, 4, 2, 3)), [(16, 4, 2, 3)]
    )
    with pytest.raises(ActionableError, match="unknown model name 'conv9d'.*conv3d_paper"):
        run_experiment(model_name="conv9d", run_dir=tmp_path, data=data, seeds=(0,), origin="params/default.yaml")
