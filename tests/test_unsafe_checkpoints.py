"""A training state or classifier checkpoint that ``weights_only`` refuses is reported without
torch's advice (to retry with ``weights_only=False``, which would run the file's code), and the
code inside is never run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lib.errors import unsafe_load_cause

MARKER_NAME = "payload-ran"


class _RunsCode:
    """Unpickling this calls ``os.system``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _malicious_state(path: Path, marker: Path) -> None:
    torch.save({"format": 1, "payload": _RunsCode(marker)}, path)
    with pytest.raises(Exception, match="weights_only") as refused:  # torch's refusal carries the advice
        torch.load(path, weights_only=True)
    assert "False" in str(refused.value)


def _assert_refused_cleanly(message: str, marker: Path) -> None:
    assert "objects beyond tensors and plain containers" in message
    assert "weights_only" not in message and "weights only" not in message.lower()
    assert not marker.exists(), "the pickled payload ran"


def test_classifier_checkpoint_refusal_never_quotes_torch_advice(tmp_path: Path) -> None:
    from lib.classify.checkpoint import LAST_NAME, load_checkpoint
    from lib.classify.errors import RunMismatchError

    marker = tmp_path / MARKER_NAME
    _malicious_state(tmp_path / LAST_NAME, marker)
    with pytest.raises(RunMismatchError) as excinfo:
        load_checkpoint(tmp_path / LAST_NAME)
    message = str(excinfo.value)
    _assert_refused_cleanly(message, marker)
    assert str(tmp_path / LAST_NAME) in message and "Fix: delete it" in message
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__  # no chained torch text


def test_vae_train_state_refusal_never_quotes_torch_advice(tmp_path: Path) -> None:
    from lib.vae import train

    marker = tmp_path / MARKER_NAME
    _malicious_state(tmp_path / train.STATE_NAME, marker)
    with pytest.raises(train.TrainStateError) as excinfo:
        train.load_train_state(tmp_path)
    _assert_refused_cleanly(str(excinfo.value), marker)
    assert excinfo.value.__suppress_context__


def test_other_load_failures_keep_their_type_and_first_line(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    torch.save({"w": torch.zeros(64)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(Exception) as excinfo:
        torch.load(truncated, weights_only=True)
    cause = unsafe_load_cause(excinfo.value)
    assert cause.startswith(type(excinfo.value).__name__) and "\n" not in cause
