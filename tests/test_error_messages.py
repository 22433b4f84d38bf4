"""Error messages read once: a wrapper that quotes the error it wraps and passes its fix on says
"Fix:" a single time (e.g. a model-override typo in a params file, wrapped by the classifier)."""

from __future__ import annotations

import pytest

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


def test_model_override_typo_says_fix_once() -> None:
    # the classifier wraps the registry's refusal of an override when it builds a model for a cache
    pytest.importorskip("lib.models")
    from lib.classify import InputMismatchError
    from lib.models.registry import ModelConfigError, make_config

    with pytest.raises(ModelConfigError) as refused:
        make_config("conv3d_paper", {"chanels": 8}, origin="params/x.yaml")
    wrapped = InputMismatchError("/caches/latent16", f"cannot build model 'conv3d_paper' for clips of shape "
                                                     f"(16, 4, 2, 3): {refused.value}", refused.value.fix)
    message = str(wrapped)
    assert message.count("Fix:") == 1, message
    assert "params/x.yaml" in message and "'chanels'" in message and message.endswith(refused.value.fix)
