"""Error messages read once: a wrapper that quotes the error it wraps and passes its fix on says
"Fix:" a single time (the model-override typo of a params file used to print it twice)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lib.errors import ActionableError


def test_a_quoted_fix_is_not_repeated() -> None:
    inner = ActionableError("params/x.yaml", "model 'm' has no config field(s) ['hiden']", "valid fields: ['hidden']")
    outer = ActionableError("/caches/c", f"cannot build model 'm': {inner}", inner.fix)
    assert str(outer).count("Fix:") == 1
    assert str(outer) == ("/caches/c: cannot build model 'm': params/x.yaml: model 'm' has no config field(s) "
                          "['hiden']. Fix: valid fields: ['hidden']")
    # another fix, or a fix that only resembles the quoted one, is kept
    assert str(ActionableError(None, f"wrapped: {inner}", "use a fresh folder")).count("Fix:") == 2
    assert ActionableError(None, "see Fix: b", "b").reason == "see Fix: b"
    newline = type("NewlineFix", (ActionableError,), {"fix_separator": "\nFix: "})(None, "bad", "do this")
    assert str(ActionableError(None, f"wrapped: {newline}", newline.fix)) == "wrapped: bad. Fix: do this"


def test_model_override_typo_says_fix_once(tmp_path: Path) -> None:
    pytest.importorskip("lib.models")
    from lib.classify import InputMismatchError, TensorClips
    from lib.classify.experiment import run_experiment
    from lib.classify.loading import ExperimentData

    def split(name: str) -> TensorClips:
        video_index = torch.arange(8).repeat_interleave(2)
        return TensorClips((torch.randn(len(video_index), 16, 4, 2, 3).half(),), video_index % 4, video_index,
                           split=name, source=f"latents {name}")

    data = ExperimentData(split("train"), split("val"), split("test"), ["a", "b", "c", "d"], "latent",
                          "/caches/latent16")
    with pytest.raises(InputMismatchError, match="has no config field") as excinfo:
        run_experiment(model_name="conv3d_paper", run_dir=tmp_path, data=data, seeds=(0,), origin="params/x.yaml",
                       model_overrides={"chanels": 8}, measure_inference_speed=False, figures=False,
                       train_config={"epochs": 1, "progress": False, "device": "cpu"})
    message = str(excinfo.value)
    assert message.count("Fix:") == 1, message
    assert "params/x.yaml" in message and "'chanels'" in message
