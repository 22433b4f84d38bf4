"""Checkpoint loading, safety and conversion for the Reducio-VAE (lib/vae/loading.py with its
checkpoint_* and safe_pickle modules, convert.py).

Self-contained: checkpoints are made here from the ``local-smoke`` preset of the real model
(random weights, same key names as the official files) in every shape the loader accepts.
Nothing touches the network: the Hugging Face test runs in a subprocess with HF_HUB_OFFLINE=1
and an empty temporary HF_HOME. Tests on ``../shared/reference`` skip when it is absent.
"""

from __future__ import annotations

import functools
import importlib
import json
import operator
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import lib.paths
from lib.paths import REPO_ROOT
from lib.vae import ReducioVAE, load_reducio
from lib.vae import __main__ as vae_cli
from lib.vae import convert as convert_mod
from lib.vae.loading import (
    DECODER_PREFIXES,
    ENCODER_PREFIXES,
    METADATA_KEY,
    CheckpointConfigError,
    CheckpointDtypeError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NonFiniteCheckpointError,
    UnsafeCheckpointError,
    coerce_config,
    file_sha256,
    infer_preset,
    match_presets,
    preset_from_filename,
    save_reducio,
)
from lib.vae.presets import PRESETS as MODEL_PRESETS
from lib.vae.presets import get_preset

PRESET = "local-smoke"
CLIP_SHAPE = (1, 3, 16, 32, 32)  # smallest clip the 6-level encoder accepts (latent 4 x 1 x 1)


# =============================================================================================
# Fixtures and helpers
# =============================================================================================
@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    """A real local-smoke state dict with non-trivial values everywhere (norm weights too)."""
    gen = torch.Generator().manual_seed(0)
    model = ReducioVAE.from_preset(PRESET)
    out = {}
    for key, t in model.state_dict().items():
        # pos_embed tables keep their sinusoid; everything else gets distinct random values
        out[key] = t.clone() if key.endswith("pos_embed") else torch.randn(t.shape, generator=gen) * 0.05
    return out


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.rand(CLIP_SHAPE, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture()
def checkpoints_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty checkpoints/ for name lookups (the loader reads lib.paths.CHECKPOINTS_DIR at call time)."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    monkeypatch.setattr(lib.paths, "CHECKPOINTS_DIR", root)
    return root


def assert_loaded(vae: ReducioVAE, expected: dict[str, torch.Tensor], *, dtype: torch.dtype = torch.float32) -> None:
    """Exactly ``expected`` (cast to dtype), in eval mode, nothing trainable."""
    got = vae.state_dict()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == dtype, key
        assert torch.equal(got[key], value.to(dtype)), key
    assert not vae.training
    assert not any(p.requires_grad for p in vae.parameters())


def encoder_part(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIXES)}


def mismatch_message(excinfo: pytest.ExceptionInfo[CheckpointMismatchError]) -> str:
    return str(excinfo.value)


# =============================================================================================
# Accepted layouts
# =============================================================================================
@pytest.mark.slow
def test_lightning_style_ckpt_with_state_dict(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "model.ckpt"  # no preset in the name: the config comes from the shapes
    torch.save({"state_dict": state, "epoch": 3, "global_step": 1200, "lr_schedulers": [{"last_epoch": 2}]}, path)
    vae = load_reducio(path)
    assert_loaded(vae, state)
    info = vae.checkpoint_info
    assert info.preset == PRESET and "shapes" in info.config_origin and info.parts == "all"
    assert info.path == path.resolve()


def test_plain_state_dict_with_ddp_prefix_and_loss_keys(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    loss = {
        "loss.logvar": torch.zeros(()),
        "loss.perceptual_loss.net.slice1.0.weight": torch.zeros(4, 3, 3, 3),
        "loss.discriminator.main.1.num_batches_tracked": torch.tensor(7),  # int64, like BatchNorm counters
    }
    raw = {f"module.{k}": v for k, v in {**state, **loss}.items()}
    path = tmp_path / "ddp.pt"
    torch.save(raw, path)
    vae = load_reducio(path, variant=PRESET)
    assert_loaded(vae, state)
    assert vae.checkpoint_info.skipped_loss_keys == len(loss)
    assert vae.checkpoint_info.stripped_ddp_prefix


@pytest.mark.slow
def test_fp16_checkpoint_cast_to_requested_dtype(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    half = {k: v.half() for k, v in state.items()}
    path = tmp_path / f"{PRESET}-fp16.pth"  # preset from the file name
    torch.save({"state_dict": half}, path)
    vae = load_reducio(path)
    assert vae.checkpoint_info.file_dtypes == ("float16",)
    assert "file name" in vae.checkpoint_info.config_origin
    assert_loaded(vae, half, dtype=torch.float32)
    assert_loaded(load_reducio(path, dtype="bf16"), half, dtype=torch.bfloat16)


@pytest.mark.slow
def test_safetensors_without_metadata(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    assert_loaded(load_reducio(path), state)  # shapes -> local-smoke
    assert_loaded(load_reducio(path, variant=PRESET), state)
    assert load_reducio(path, config=get_preset(PRESET)).checkpoint_info.config_origin == "from the config= argument"
    with pytest.raises(CheckpointMismatchError) as excinfo:
        load_reducio(path, variant="local-default")
    message = mismatch_message(excinfo)
    assert "preset 'local-default' (from variant='local-default'" in message
    assert f"hint: the file's keys and shapes match preset '{PRESET}'" in message


@pytest.mark.slow
def test_safetensors_with_metadata_loads_alone(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    source = tmp_path / "run.ckpt"
    torch.save({"state_dict": state}, source)
    vae = load_reducio(source, variant=PRESET)
    path = save_reducio(vae, tmp_path / "trained.safetensors", extra={"train_steps": 10})
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()[METADATA_KEY])
    assert meta["params"] == vae.config.to_params()
    assert (meta["parts"], meta["dtype"], meta["preset"], meta["train_steps"]) == ("all", "float32", PRESET, 10)
    again = load_reducio(path)
    assert_loaded(again, state)
    assert METADATA_KEY in again.checkpoint_info.config_origin
    with pytest.raises(CheckpointConfigError, match="contradicts the config stored in the file"):
        load_reducio(path, variant="ft4")


def test_yaml_and_wrapped_configs_are_accepted(shared_reference: Path) -> None:
    params, preset = coerce_config(shared_reference / "reducio" / "configs" / "reducio_kl_ft4_fs32_z16_attn23.yaml")
    assert preset == "reducio-ft4" and params["ddconfig"]["f_t"] == 2
    small = json.loads((shared_reference / "reducio" / "small_config.json").read_text())
    assert coerce_config(small)[1] == "reference-small"  # the whole section ({"params": ...}) is unwrapped


# =============================================================================================
# Strictness: every disagreement is an error that lists it
# =============================================================================================
def test_missing_keys_listed_with_counts_file_and_config(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    dropped = sorted(k for k in state if k.startswith("encoder_3d.down.1."))[:3] + ["decoder.conv_out.bias"]
    path = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {k: v for k, v in state.items() if k not in dropped}}, path)
    with pytest.raises(CheckpointMismatchError) as excinfo:
        load_reducio(path, variant=PRESET)
    err = excinfo.value
    message = str(err)
    assert str(path) in message
    assert f"preset '{PRESET}'" in message and "ch=32" in message  # names the config
    assert "4 missing key(s)" in message and "by prefix: encoder_3d. 3, decoder. 1" in message
    assert all(k in message for k in dropped)
    assert sorted(err.missing) == sorted(dropped) and not err.unexpected and not err.mismatched
    # without a hint the file's shapes match no preset: a config error that shows the closest one
    with pytest.raises(CheckpointConfigError, match=rf"match no preset \({PRESET}: 4 keys differ"):
        load_reducio(path)


def test_many_missing_keys_are_abbreviated(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "encoder-only.safetensors"
    save_file(encoder_part(state), str(path))
    with pytest.raises(CheckpointMismatchError) as excinfo:
        load_reducio(path, parts="all", variant=PRESET)
    message = str(excinfo.value)
    n_missing = len(state) - len(encoder_part(state))
    assert f"{n_missing} missing key(s)" in message and "more)" in message
    assert "hint: the file holds only the encoder" in message
    # the default (parts=None) loads what the file holds
    vae = load_reducio(path, variant=PRESET)
    assert vae.checkpoint_info.parts == "encoder"
    assert_loaded(vae, encoder_part(state))


def test_shape_mismatch_is_an_error(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    key = "encoder_3d.down.3.downsample.conv.weight"  # the key where ft4 and ft2 differ
    bad = dict(state)
    bad[key] = torch.zeros(*state[key].shape[:2], 1, 3, 3)
    path = tmp_path / "bad-shape.ckpt"
    torch.save(bad, path)
    with pytest.raises(CheckpointMismatchError) as excinfo:
        load_reducio(path, variant=PRESET)
    message = str(excinfo.value)
    assert f"{key}: file (64, 64, 1, 3, 3) vs model (64, 64, 3, 3, 3)" in message
    assert excinfo.value.mismatched == [(key, (64, 64, 1, 3, 3), (64, 64, 3, 3, 3))]


def test_unexpected_key_is_an_error(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "extra.ckpt"
    torch.save({**state, "encoder_3d.extra.weight": torch.zeros(3), "ema.decay": torch.tensor(0.99)}, path)
    with pytest.raises(CheckpointMismatchError) as excinfo:
        load_reducio(path, variant=PRESET)
    assert sorted(excinfo.value.unexpected) == ["ema.decay", "encoder_3d.extra.weight"]
    assert "2 unexpected key(s)" in str(excinfo.value)
    # an unexpected encoder-side key is an error with parts="encoder" too
    with pytest.raises(CheckpointMismatchError, match="encoder_3d.extra.weight"):
        load_reducio(path, variant=PRESET, parts="encoder")


@pytest.mark.slow
def test_encoder_parts_ignore_decoder_keys_but_need_encoder_keys(
    tmp_path: Path, state: dict[str, torch.Tensor]
) -> None:
    full = tmp_path / f"{PRESET}.ckpt"
    torch.save({"state_dict": state}, full)
    vae = load_reducio(full, parts="encoder")
    assert_loaded(vae, encoder_part(state))
    assert not hasattr(vae, "decoder") and not hasattr(vae, "encoder_2d")
    assert vae.checkpoint_info.ignored_decoder_keys == len(state) - len(encoder_part(state))
    # a file lacking decoder keys is fine for the encoder, one lacking an encoder key is not
    no_decoder = {k: v for k, v in state.items() if not k.startswith("decoder.")}
    torch.save(no_decoder, tmp_path / "no-decoder.pt")
    assert_loaded(load_reducio(tmp_path / "no-decoder.pt", variant=PRESET, parts="encoder"), encoder_part(state))
    no_quant = {k: v for k, v in state.items() if not k.startswith("quant_conv.")}
    torch.save(no_quant, tmp_path / "no-quant.pt")
    with pytest.raises(CheckpointMismatchError, match=r"(?s)2 missing key\(s\).*by prefix: quant_conv. 2"):
        load_reducio(tmp_path / "no-quant.pt", variant=PRESET, parts="encoder")


def test_tensors_not_in_the_state_dict_are_materialised(
    tmp_path: Path, state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Meta-device construction must not leave a non-persistent buffer on meta (it is not in any file)."""
    import lib.vae.loading as loading

    class WithBuffer(ReducioVAE):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.register_buffer("table", torch.arange(4, dtype=torch.float32), persistent=False)

    monkeypatch.setattr(loading, "ReducioVAE", WithBuffer)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    vae = load_reducio(path, variant=PRESET, dtype=torch.float16)
    assert_loaded(vae, state, dtype=torch.float16)
    assert not vae.table.is_meta and torch.equal(vae.table, torch.arange(4, dtype=torch.float16))


def test_truncated_files_are_reported_not_crashed(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    good_pt, good_st = tmp_path / "good.ckpt", tmp_path / "good.safetensors"
    torch.save({"state_dict": state}, good_pt)
    save_file(state, str(good_st))
    for good in (good_pt, good_st):
        cut = tmp_path / f"cut{good.suffix}"
        cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        with pytest.raises(CorruptCheckpointError, match="truncated") as excinfo:
            load_reducio(cut, variant=PRESET)
        assert str(cut) in str(excinfo.value)


def test_no_state_dict_inside(tmp_path: Path) -> None:
    path = tmp_path / "hparams.ckpt"
    torch.save({"epoch": 1, "hyper_parameters": {"lr": 1e-4}}, path)
    with pytest.raises(
        CorruptCheckpointError, match=r"holds no state dict: a dict with keys \['epoch', 'hyper_parameters'\]"
    ):
        load_reducio(path, variant=PRESET)


# =============================================================================================
# Pickle safety: never executed; code-running globals refused and explained
# =============================================================================================
class _Payload:
    """A custom class: needs an import of this test module to unpickle."""

    def __init__(self) -> None:
        self.note = "custom object"


class _ReleasedConfig:
    """A project's own config class, as released checkpoints carry them (``ldm.util.Whatever``).

    Every method a loader could run leaves a marker (in the file ``_marker`` names): ``__reduce__``
    asks the unpickler to call the class with ``"rebuilt"`` (a constructor call that leaves the
    marker) and then ``__setstate__``; on an object so rebuilt, ``__reduce__`` (a copy or re-pickle)
    leaves it too, and so does ``__getattr__`` (any lookup of an attribute it lacks).
    """

    def __init__(self, how: str, marker: str, **params: object) -> None:
        if how == "rebuilt":
            Path(marker).write_text("_ReleasedConfig.__init__ ran")
        self.__dict__.update(how=how, _marker=marker, params=params)

    def __setstate__(self, state: dict) -> None:
        Path(state["_marker"]).write_text("_ReleasedConfig.__setstate__ ran")

    def __reduce__(self) -> tuple[object, tuple[str, str], dict]:
        if self.__dict__["how"] == "rebuilt":
            Path(self.__dict__["_marker"]).write_text("_ReleasedConfig.__reduce__ ran")
        return (type(self), ("rebuilt", self.__dict__["_marker"]), dict(self.__dict__))

    def __getattr__(self, name: str) -> object:
        Path(self.__dict__["_marker"]).write_text(f"_ReleasedConfig.__getattr__({name!r}) ran")
        raise AttributeError(name)


class _SystemCall:
    """Unpickling this calls os.system(command): it would create the marker file."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


@pytest.mark.parametrize("layout", ["zip", "legacy", "raw-pickle"])
def test_malicious_pickle_refused_and_not_executed(tmp_path: Path, state: dict[str, torch.Tensor], layout: str) -> None:
    import pickle

    marker = tmp_path / "PWNED"
    payload = {"state_dict": encoder_part(state), "callback": _SystemCall(f"touch {marker}")}
    path = tmp_path / f"evil-{layout}.ckpt"
    if layout == "zip":
        torch.save(payload, path)
    elif layout == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=4)
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        load_reducio(path, variant=PRESET)
    assert not marker.exists(), "the payload ran"
    message = str(excinfo.value)
    assert str(path) in message
    assert "system" in message  # what was found (posix.system / nt.system)
    assert "was not executed" in message and "trust" in message and "safetensors" in message  # why + how
    assert "weights_only" not in message  # never the advice to unpickle unsafely


@pytest.mark.parametrize("module", [__name__, "ldm.util"])
def test_custom_class_pickle_loads_and_is_reported(
    tmp_path: Path,
    state: dict[str, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    module: str,
) -> None:
    import logging

    marker = tmp_path / "PWNED"
    hparams = _ReleasedConfig("made", str(marker), embed_dim=16, ddconfig={"ch": 32})
    path = tmp_path / "released.ckpt"
    with monkeypatch.context() as mp:  # "ldm.util": importable under that name only while torch.save runs
        if module != __name__:
            for name in ("ldm", module):
                mp.setitem(sys.modules, name, types.ModuleType(name))
            mp.setattr(sys.modules[module], "_ReleasedConfig", _ReleasedConfig, raising=False)
            mp.setattr(_ReleasedConfig, "__module__", module)
        torch.save({"state_dict": state, "epoch": 2, "hyper_parameters": hparams}, path)
    assert not marker.exists(), "saving ran a method"
    name = f"{module}._ReleasedConfig"
    caplog.set_level(logging.INFO, logger="lib.vae")
    vae = load_reducio(path, variant=PRESET)
    assert_loaded(vae, state)
    assert vae.checkpoint_info.skipped_objects == ("epoch", f"hyper_parameters ({name})")
    assert f"skipped: epoch, hyper_parameters ({name})" in caplog.text
    assert "ldm" not in sys.modules
    assert not marker.exists(), marker.read_text()


@pytest.mark.slow
def test_plain_objects_of_protocol_1_load(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "protocol1.ckpt"  # protocols 0/1 rebuild plain objects through copyreg._reconstructor
    torch.save({"state_dict": state, "hyper_parameters": _Payload()}, path, pickle_protocol=1)
    skipped = load_reducio(path, variant=PRESET).checkpoint_info.skipped_objects
    assert len(skipped) == 1 and skipped[0].startswith("hyper_parameters (") and _dotted(_Payload) in skipped[0]
    assert "copyreg._reconstructor" in skipped[0]


# =============================================================================================
# Lightning-style checkpoints: restricted unpickling keeps the state dict, skips the rest
# =============================================================================================
# Look-alikes of the objects Lightning checkpoints carry beside their state dict. Each pickles
# under the real dotted name (registered in sys.modules only while torch.save runs), with the
# same state layout; their own methods would leave a marker file if the loader ever ran them.
_MARKERS: list[Path] = []


def _touch_marker(what: str) -> None:
    for marker in _MARKERS:
        marker.write_text(what)


class ContainerMetadata:
    """omegaconf.base.ContainerMetadata (a dataclass: NEWOBJ + BUILD of its fields)."""

    def __init__(self, key: object, object_type: object) -> None:
        import collections
        import typing

        self.__dict__.update(
            ref_type=typing.Any,
            object_type=object_type,
            optional=True,
            key=key,
            flags={},
            flags_root=False,
            resolver_cache=collections.defaultdict(dict),
            key_type=typing.Any,
            element_type=typing.Any,
        )

    def __setstate__(self, state: dict) -> None:
        _touch_marker("ContainerMetadata.__setstate__ ran")


class AnyNode:
    """omegaconf.nodes.AnyNode: a leaf value with its metadata and parent."""

    def __init__(self, value: object, key: object, parent: object) -> None:
        self.__dict__.update(_metadata=ContainerMetadata(key, None), _parent=parent, _flags_cache=None, _val=value)

    def __setstate__(self, state: dict) -> None:
        _touch_marker("AnyNode.__setstate__ ran")


class DictConfig:
    """omegaconf.dictconfig.DictConfig: __getstate__ gives _metadata, _parent, _flags_cache, _content."""

    def __init__(self, content: dict, key: object = None, parent: object = None) -> None:
        self.__dict__.update(_metadata=ContainerMetadata(key, dict), _parent=parent, _flags_cache=None)
        self.__dict__["_content"] = {
            k: DictConfig(v, k, self) if isinstance(v, dict) else AnyNode(v, k, self) for k, v in content.items()
        }

    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        _touch_marker("DictConfig.__setstate__ ran")


class AttributeDict(dict):
    """pytorch_lightning.utilities.parsing.AttributeDict (a dict subclass: NEWOBJ + SETITEMS)."""

    def __setitem__(self, key: object, value: object) -> None:
        _touch_marker("AttributeDict.__setitem__ ran")
        super().__setitem__(key, value)


class ModelCheckpoint:
    """pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint: Lightning < 1.5 keys callback states by type."""


_LOOKALIKES = {
    ContainerMetadata: "omegaconf.base",
    AnyNode: "omegaconf.nodes",
    DictConfig: "omegaconf.dictconfig",
    AttributeDict: "pytorch_lightning.utilities.parsing",
    ModelCheckpoint: "pytorch_lightning.callbacks.model_checkpoint",
}
for _cls, _module in _LOOKALIKES.items():
    _cls.__module__ = _module


class _SetstateBomb:
    """A class whose own constructor and __setstate__ leave a marker (pickled by NEWOBJ + BUILD)."""

    def __init__(self) -> None:
        self.x = 1

    def __setstate__(self, state: dict) -> None:
        _touch_marker("_SetstateBomb.__setstate__ ran")


class _TensorFromPayload:
    """Pickles as torch's own tensor rebuild helper, fed an os.system call instead of a storage."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        from collections import OrderedDict

        return (torch._utils._rebuild_tensor_v2, (_SystemCall(self.command), 0, (1,), (1,), False, OrderedDict()))


def _dotted(obj: object) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"  # type: ignore[attr-defined]


SYSTEM = f"{os.system.__module__}.system"  # posix.system (nt.system on Windows)


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    """A file that any method of a look-alike (or a payload) would create; registered for the test."""
    path = tmp_path / "PWNED"
    _MARKERS.append(path)
    yield path
    _MARKERS.remove(path)


def save_as_lightning(path: Path, ckpt: dict, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> Path:
    """torch.save with the look-alikes importable under their real names, for the save only."""
    with monkeypatch.context() as mp:
        for cls, module in _LOOKALIKES.items():
            for depth in range(1, module.count(".") + 2):
                name = ".".join(module.split(".")[:depth])
                if name not in sys.modules:
                    mp.setitem(sys.modules, name, types.ModuleType(name))
            mp.setattr(sys.modules[module], cls.__qualname__, cls, raising=False)
        torch.save(ckpt, path, **kwargs)
    return path


def lightning_ckpt(
    state: dict[str, torch.Tensor],
    *,
    hparams: object = None,
    callback_state: object = None,
    optimizer_extra: object = None,
) -> dict:
    """A checkpoint laid out like Lightning 1.x writes them (the official training code's format)."""
    if hparams is None:
        hparams = DictConfig({"embed_dim": 16, "ddconfig": {"ch": 32, "f_t": 2}, "monitor": "val/rec_loss"})
    param_group = {"lr": 4.5e-6, "betas": (0.5, 0.9), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False, "params": [0]}
    if optimizer_extra is not None:
        param_group["extra"] = optimizer_extra
    return {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": {**state, "loss.logvar": torch.zeros(())},
        "callbacks": {
            ModelCheckpoint: callback_state
            if callback_state is not None
            else {"monitor": "val/rec_loss", "best_model_score": torch.tensor(0.1), "dirpath": "/runs/ckpts"}
        },
        "loops": {"fit_loop": {"state_dict": {}, "epoch_loop.state_dict": {"_batches_that_stepped": 1200}}},
        "optimizer_states": [
            {
                "state": {0: {"step": torch.tensor(1200.0), "exp_avg": torch.zeros(4), "exp_avg_sq": torch.zeros(4)}},
                "param_groups": [param_group],
            }
        ],
        "lr_schedulers": [{"base_lrs": [4.5e-6], "last_epoch": 3, "_step_count": 4, "lr_lambdas": [None]}],
        "hyper_parameters": hparams,
    }


@pytest.mark.parametrize(
    "hparams_kind,layout",
    [("omegaconf", "zip"), ("omegaconf", "legacy"), ("argparse", "zip"), ("attributedict", "zip")],
)
@pytest.mark.slow
def test_lightning_checkpoint_loads_and_reports_skipped_objects(
    tmp_path: Path,
    state: dict[str, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
    marker: Path,
    caplog: pytest.LogCaptureFixture,
    hparams_kind: str,
    layout: str,
) -> None:
    import argparse
    import logging

    hparams, kind_name = {
        "omegaconf": (None, "omegaconf.dictconfig.DictConfig"),
        "argparse": (
            argparse.Namespace(embed_dim=16, lr=4.5e-6, ckpt_path=Path("/runs/last.ckpt")),
            "argparse.Namespace",
        ),
        "attributedict": (AttributeDict(embed_dim=16, lr=4.5e-6), "pytorch_lightning.utilities.parsing.AttributeDict"),
    }[hparams_kind]
    path = save_as_lightning(
        tmp_path / "reducio-run.ckpt",
        lightning_ckpt(state, hparams=hparams),
        monkeypatch,
        _use_new_zipfile_serialization=layout == "zip",
    )
    modules_before = set(sys.modules)
    caplog.set_level(logging.INFO, logger="lib.vae")
    vae = load_reducio(path, variant=PRESET)
    assert_loaded(vae, state)
    assert not marker.exists(), marker.read_text()
    assert not {m for m in set(sys.modules) - modules_before if m.startswith(("omegaconf", "pytorch_lightning"))}
    info = vae.checkpoint_info
    assert info.skipped_loss_keys == 1
    skipped = dict(entry.partition(" ")[::2] for entry in info.skipped_objects)
    assert set(skipped) == {
        "epoch",
        "global_step",
        "pytorch-lightning_version",
        "callbacks",
        "loops",
        "optimizer_states",
        "lr_schedulers",
        "hyper_parameters",
    }
    assert skipped["hyper_parameters"].startswith(f"({kind_name}")
    assert skipped["callbacks"] == "(pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint)"
    assert skipped["optimizer_states"] == skipped["epoch"] == ""
    if hparams_kind == "omegaconf":
        assert "omegaconf.base.ContainerMetadata" in skipped["hyper_parameters"]
    assert "skipped: epoch, global_step, pytorch-lightning_version, callbacks (" in caplog.text
    assert f"hyper_parameters ({kind_name}" in caplog.text


@pytest.mark.parametrize(
    "hidden_in", ["hyper_parameters", "hyper_parameters-argparse", "callbacks", "optimizer_states"]
)
@pytest.mark.slow
def test_payload_hidden_in_metadata_never_runs(
    tmp_path: Path, state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch, marker: Path, hidden_in: str
) -> None:
    import argparse

    payload = _SystemCall(f"touch {marker}")
    kwargs = {
        "hyper_parameters": {"hparams": DictConfig({"lr": 1e-4, "target": payload})},
        "hyper_parameters-argparse": {"hparams": argparse.Namespace(lr=1e-4, hook=payload)},
        "callbacks": {"callback_state": {"monitor": "val/rec_loss", "on_load": payload}},
        "optimizer_states": {"optimizer_extra": [payload]},
    }[hidden_in]
    path = save_as_lightning(tmp_path / "evil.ckpt", lightning_ckpt(state, **kwargs), monkeypatch)
    entry = hidden_in.partition("-")[0]
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        load_reducio(path, variant=PRESET)
    assert not marker.exists(), "the payload ran"
    message = str(excinfo.value)
    assert str(path) in message and f"names {SYSTEM} (in {entry})" in message
    assert "was not executed" in message and f"allow_globals=('{SYSTEM}',)" in message
    assert "weights_only" not in message
    assert excinfo.value.globals == [SYSTEM]
    # allowed explicitly, it is still an inert placeholder: the file loads and nothing runs
    vae = load_reducio(path, variant=PRESET, allow_globals=[SYSTEM])
    assert_loaded(vae, state)
    assert not marker.exists(), "the payload ran"
    assert any(e.startswith(f"{entry} (") and SYSTEM in e for e in vae.checkpoint_info.skipped_objects)


@pytest.mark.slow
def test_class_methods_never_run_allowed_or_not(tmp_path: Path, state: dict[str, torch.Tensor], marker: Path) -> None:
    path = tmp_path / "custom-class.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": _SetstateBomb()}, path)
    name = _dotted(_SetstateBomb)
    assert load_reducio(path, variant=PRESET).checkpoint_info.skipped_objects == (f"hyper_parameters ({name})",)
    vae = load_reducio(path, variant=PRESET, allow_globals=[name])  # allowing a name that is not denied changes nothing
    assert_loaded(vae, state)
    assert vae.checkpoint_info.skipped_objects == (f"hyper_parameters ({name})",)
    module_prefix = name.rpartition(".")[0] + "."  # a whole module tree
    assert load_reducio(path, variant=PRESET, allow_globals=[module_prefix]).checkpoint_info.skipped_objects
    assert not marker.exists(), marker.read_text()


class _CallsGlobal:
    """Pickles as a call of ``fn(*args)``: what a hostile file does with a denylisted global."""

    def __init__(self, fn: object, *args: object) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (self.fn, self.args)


_DENIED_CALLS = {  # what pickle writes for each callable -> (callable, arguments; {marker} is the marker file)
    "builtins.eval": (eval, ("__import__('os').system('touch {marker}')",)),
    "builtins.getattr": (getattr, (_Payload, "__init__")),
    "subprocess.call": (subprocess.call, (["touch", "{marker}"],)),
    "functools.partial": (functools.partial, (os.system, "touch {marker}")),
    "operator.methodcaller": (operator.methodcaller, ("system", "touch {marker}")),
    "importlib.import_module": (importlib.import_module, ("os",)),
    "torch.serialization.load": (torch.load, ("{marker}",)),
}


@pytest.mark.parametrize("name", list(_DENIED_CALLS))
@pytest.mark.slow
def test_denylisted_globals_refused_and_never_run(
    tmp_path: Path, state: dict[str, torch.Tensor], marker: Path, name: str
) -> None:
    fn, args = _DENIED_CALLS[name]
    args = tuple(
        a.format(marker=marker)
        if isinstance(a, str)
        else [x.format(marker=marker) for x in a]
        if isinstance(a, list)
        else a
        for a in args
    )
    path = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"hook": _CallsGlobal(fn, *args)}}, path)
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        load_reducio(path, variant=PRESET)
    assert not marker.exists(), "the payload ran"
    message = str(excinfo.value)
    assert f"names {name}" in message and "(in hyper_parameters)" in message and "was not executed" in message
    assert name in excinfo.value.globals and "weights_only" not in message
    # the override takes module trees too; the objects stay inert placeholders
    vae = load_reducio(path, variant=PRESET, allow_globals=[g.rpartition(".")[0] + "." for g in excinfo.value.globals])
    assert_loaded(vae, state)
    assert name in vae.checkpoint_info.skipped_objects[0]
    assert not marker.exists(), "the payload ran"


def test_denylist_rule() -> None:
    from lib.vae.safe_pickle import is_denied_global

    for name in (
        "os.system",
        "os.path.join",
        "posix.system",
        "nt.system",
        "builtins.exec",
        "sys.modules",
        "torch._C._nn.gelu",
        "torch.jit.load",
        "pickle.loads",
        "copyreg._reduce_ex",
        "runpy.run_path",
    ):
        assert is_denied_global(name), name
    for name in (
        "copyreg._reconstructor",
        "torch._C.Generator",
        "builtins.print",
        "ldm.util.instantiate_from_config",
        "omegaconf.dictconfig.DictConfig",
        "argparse.Namespace",
        "osx.thing",
        "systemd.x",
        "codecs.encode",
        "torch.loader",
        "functools.partialx",
        "numpy.dtype",
    ):
        assert not is_denied_global(name), name
    assert not is_denied_global("os.system", ["os."]) and not is_denied_global("os.system", ["os.system"])
    assert is_denied_global("os.system", ["os.sys"])


def test_tensor_rebuild_fed_a_payload_is_refused_even_when_allowed(
    tmp_path: Path, state: dict[str, torch.Tensor], marker: Path
) -> None:
    path = tmp_path / "evil-tensor.ckpt"
    torch.save({"state_dict": {**state, "quant_conv.bias": _TensorFromPayload(f"touch {marker}")}}, path)
    for allow in ((), (SYSTEM,)):
        with pytest.raises(UnsafeCheckpointError) as excinfo:
            load_reducio(path, variant=PRESET, allow_globals=allow)
        message = str(excinfo.value)
        assert "rebuilt from objects of unknown type (handed to torch._utils._rebuild_tensor_v2)" in message
        assert "allow_globals" not in excinfo.value.fix and "weights_only" not in message
    assert not marker.exists(), "the payload ran"


def test_placeholders_are_inert(marker: Path) -> None:
    import io
    import pickle

    from lib.vae.safe_pickle import (
        Placeholder,
        UnpickleReport,
        restricted_pickle_module,
    )

    blob = pickle.dumps(
        {"a": _SystemCall(f"touch {marker}"), "b": _SetstateBomb(), "c": {1, 2}, "d": b"xy"}, protocol=2
    )
    report = UnpickleReport()
    obj = restricted_pickle_module(report).load(io.BytesIO(blob))
    assert not marker.exists()
    assert isinstance(obj["a"], Placeholder) and obj["a"].dotted == SYSTEM and obj["a"].args == (f"touch {marker}",)
    assert isinstance(obj["b"], Placeholder) and obj["b"].state == {"x": 1}
    assert obj["c"] == {1, 2} and obj["d"] == b"xy"
    assert report.placeholders() == [SYSTEM, _dotted(_SetstateBomb)]
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(obj["a"])
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated; its archives still exist
def test_torchscript_archive_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(UnsafeCheckpointError, match="TorchScript archive"):
        load_reducio(path, variant=PRESET)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_integer_weights_give_a_typed_error(tmp_path: Path, state: dict[str, torch.Tensor], fmt: str) -> None:
    key = "quant_conv.weight"
    bad = {**state, key: torch.zeros(state[key].shape, dtype=torch.int64)}
    path = tmp_path / f"int-weights.{fmt}"
    if fmt == "ckpt":
        torch.save({"state_dict": bad}, path)
    else:
        save_file(bad, str(path))
    with pytest.raises(CheckpointDtypeError) as excinfo:
        load_reducio(path, variant=PRESET)
    assert not isinstance(excinfo.value, RuntimeError)
    message = str(excinfo.value)
    assert str(path) in message and f"{key} (int64; the model has float32)" in message
    assert excinfo.value.keys == {key: "int64"}


@pytest.mark.slow
def test_non_finite_weights_are_refused(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    nan_key, inf_key = "encoder_3d.conv_in.weight", "quant_conv.bias"
    bad = dict(state)
    bad[nan_key] = state[nan_key].clone()
    bad[nan_key].view(-1)[3] = float("nan")
    bad[inf_key] = state[inf_key].clone()
    bad[inf_key][0] = float("-inf")
    path = tmp_path / "diverged.ckpt"
    torch.save({"state_dict": bad}, path)
    with pytest.raises(NonFiniteCheckpointError) as excinfo:
        load_reducio(path, variant=PRESET, parts="encoder")
    message = str(excinfo.value)
    assert str(path) in message and "2 weight tensor(s) hold NaN or inf" in message
    assert excinfo.value.keys == [nan_key, inf_key]
    assert "earlier checkpoint" in excinfo.value.fix
    # finite in the file, but beyond float16: named as an overflow of the requested dtype
    big = dict(state)
    big[inf_key] = state[inf_key].clone()
    big[inf_key][0] = 1e6
    torch.save(big, tmp_path / "big.pt")
    assert_loaded(load_reducio(tmp_path / "big.pt", variant=PRESET), big)
    with pytest.raises(NonFiniteCheckpointError, match=rf"{inf_key} \(overflows float16\)") as excinfo:
        load_reducio(tmp_path / "big.pt", variant=PRESET, dtype="fp16")
    assert "dtype=float32 or bfloat16" in excinfo.value.fix


def test_train_state_error_does_not_quote_torch_advice(tmp_path: Path) -> None:
    from lib.vae import train

    torch.save({"format": 1, "hparams": _Payload()}, tmp_path / train.STATE_NAME)
    with pytest.raises(train.TrainStateError) as excinfo:
        train.load_train_state(tmp_path)
    message = str(excinfo.value)
    assert "objects beyond tensors and plain containers" in message and "weights_only" not in message


# =============================================================================================
# Sources: preset names in checkpoints/, Hugging Face references
# =============================================================================================
@pytest.mark.slow
def test_preset_name_found_in_checkpoints(checkpoints_dir: Path, state: dict[str, torch.Tensor]) -> None:
    src = checkpoints_dir / "source-weights.ckpt"  # not named after the preset: never a candidate
    torch.save(state, src)
    full = load_reducio(src, variant=PRESET)
    save_reducio(full, checkpoints_dir / f"{PRESET}.safetensors")
    save_reducio(
        load_reducio(src, variant=PRESET, parts="encoder"),
        checkpoints_dir / f"{PRESET}-encoder-fp16.safetensors",
        dtype="fp16",
    )
    assert load_reducio(PRESET).checkpoint_info.path.name == f"{PRESET}.safetensors"
    enc = load_reducio(PRESET, parts="encoder", dtype=torch.float16)
    assert enc.checkpoint_info.path.name == f"{PRESET}-encoder-fp16.safetensors"
    assert_loaded(enc, {k: v.half() for k, v in encoder_part(state).items()}, dtype=torch.float16)
    with pytest.raises(
        CheckpointNotFoundError, match=r"(?s)no checkpoint for preset 'local-default'.*python -m lib.vae train"
    ):
        load_reducio("local-default")
    with pytest.raises(CheckpointNotFoundError, match="neither an existing file nor a preset"):
        load_reducio("no-such-preset")


@pytest.mark.slow
def test_preset_lookup_prefers_full_model_and_reports_ties(
    checkpoints_dir: Path, state: dict[str, torch.Tensor]
) -> None:
    torch.save({"state_dict": state}, checkpoints_dir / f"{PRESET}-run1.ckpt")
    enc = load_reducio(checkpoints_dir / f"{PRESET}-run1.ckpt", parts="encoder")
    save_reducio(enc, checkpoints_dir / f"{PRESET}-encoder.safetensors")
    assert load_reducio(PRESET).checkpoint_info.path.name == f"{PRESET}-run1.ckpt"  # the full model first
    assert load_reducio(PRESET, parts="encoder").checkpoint_info.path.name == f"{PRESET}-encoder.safetensors"
    torch.save({"state_dict": state}, checkpoints_dir / f"{PRESET}_run2.pt")
    with pytest.raises(
        CheckpointConfigError, match=rf"several checkpoints fit '{PRESET}'.*{PRESET}-run1.ckpt, {PRESET}_run2.pt"
    ):
        load_reducio(PRESET)
    assert load_reducio(PRESET, parts="encoder").checkpoint_info.path.name == f"{PRESET}-encoder.safetensors"


@pytest.mark.slow
def test_file_kind_is_sniffed_and_duplicate_keys_refused(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    misnamed = tmp_path / "weights.ckpt"  # really a safetensors file: read as one, never unpickled
    save_file(state, str(misnamed))
    assert_loaded(load_reducio(misnamed, variant=PRESET), state)
    key = "quant_conv.bias"
    torch.save({**state, f"module.{key}": state[key]}, tmp_path / "dupes.pt")
    with pytest.raises(CorruptCheckpointError, match=rf"'{key}' and 'module.{key}' name the same weight"):
        load_reducio(tmp_path / "dupes.pt", variant=PRESET)


@pytest.mark.slow
def test_hf_reference_uses_checkpoints_copy_without_network(
    checkpoints_dir: Path, state: dict[str, torch.Tensor]
) -> None:
    # A file named like the official ft4 file in checkpoints/ is taken as is (no Hub call). Its
    # name says ft4, its shapes say local-smoke: the error says both.
    torch.save({"state_dict": state}, checkpoints_dir / "reducio-ft4-fs32-attn23.ckpt")
    with pytest.raises(CheckpointMismatchError) as excinfo:
        load_reducio("hf://microsoft/Reducio-VAE/reducio-ft4-fs32-attn23.ckpt")
    message = str(excinfo.value)
    assert str(checkpoints_dir / "reducio-ft4-fs32-attn23.ckpt") in message
    assert "preset 'reducio-ft4' (from the file name" in message and f"match preset '{PRESET}'" in message


@pytest.mark.slow
def test_hf_offline_gives_clear_error(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 + an empty temporary HF_HOME, in a subprocess (the hub reads them at import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        LVS_CHECKPOINTS_DIR=str(tmp_path / "ckpts"),
        PYTHONPATH=str(REPO_ROOT),
    )
    custom_cache = tmp_path / "custom-cache"
    code = (
        "import sys\n"
        "from lib.vae.loading import load_reducio, CheckpointDownloadError\n"
        "for src, cache in (('hf://microsoft/Reducio-VAE/reducio-ft4-fs32-attn23.ckpt', None), ('ft2', None),\n"
        "                   ('ft4', sys.argv[1])):\n"
        "    try:\n"
        "        load_reducio(src, cache_dir=cache)\n"
        "    except CheckpointDownloadError as err:\n"
        "        print(str(err).replace('\\n', ' '))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(custom_cache)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3, proc.stdout + proc.stderr
    names = ("reducio-ft4-fs32-attn23.ckpt", "reducio-ft2-fs32-attn23.ckpt", "reducio-ft4-fs32-attn23.ckpt")
    caches = (tmp_path / "hf" / "hub", tmp_path / "hf" / "hub", custom_cache)
    for line, name, cache in zip(lines, names, caches):
        assert f"hf://microsoft/Reducio-VAE/{name}" in line
        assert "HF_HUB_OFFLINE is set" in line
        assert "https://huggingface.co/microsoft/Reducio-VAE" in line
        assert str(tmp_path / "ckpts" / name) in line  # where to put it by hand
        assert f"not in the Hugging Face cache ({cache})" in line  # the cache that was searched
    assert not any(tmp_path.rglob("*.ckpt"))


def test_missing_path_and_bad_hf_reference(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="no such file"):
        load_reducio(tmp_path / "absent.ckpt")
    with pytest.raises(CheckpointNotFoundError, match="for the Hub write hf://microsoft/Reducio-VAE"):
        load_reducio("microsoft/Reducio-VAE/reducio-ft4-fs32-attn23.ckpt")
    with pytest.raises(CheckpointNotFoundError, match="pass hf://microsoft/Reducio-VAE/reducio-ft2-fs32-attn23.ckpt"):
        load_reducio(tmp_path / "reducio-ft2-fs32-attn23.ckpt")
    with pytest.raises(CheckpointNotFoundError, match="must name a file"):
        load_reducio("hf://microsoft/Reducio-VAE")


# =============================================================================================
# Conversion
# =============================================================================================
@pytest.mark.slow
def test_encoder_only_conversion_round_trips(
    tmp_path: Path, state: dict[str, torch.Tensor], clip: torch.Tensor
) -> None:
    src = tmp_path / f"{PRESET}-release.ckpt"
    torch.save({"state_dict": {**state, "loss.logvar": torch.zeros(())}}, src)
    full = convert_mod.convert_checkpoint(src, tmp_path / "full.safetensors")
    enc = convert_mod.convert_checkpoint(src, tmp_path / "enc16.safetensors", parts="encoder", dtype="fp16")
    enc32 = convert_mod.convert_checkpoint(src, tmp_path / "enc32.safetensors", parts="encoder")
    with safe_open(enc.destination, framework="pt") as fh:
        keys = list(fh.keys())
        meta = json.loads(fh.metadata()[METADATA_KEY])
    assert keys and all(k.startswith(ENCODER_PREFIXES) for k in keys)
    assert not any(k.startswith(DECODER_PREFIXES) for k in keys)
    assert enc.size_bytes < enc32.size_bytes < full.size_bytes < src.stat().st_size
    assert enc.size_bytes < 0.55 * enc32.size_bytes  # fp16 halves it
    assert meta["params"] == ReducioVAE.from_preset(PRESET, device="meta").config.to_params()
    assert (meta["parts"], meta["dtype"], meta["preset"], meta["source_file"]) == (
        "encoder",
        "float16",
        PRESET,
        src.name,
    )
    assert meta["source_sha256"] == file_sha256(src) == enc.source_sha256
    # round trip: same weights -> bit-identical encoder outputs
    reference = load_reducio(src, parts="encoder")
    converted = load_reducio(enc32.destination)  # no other argument
    assert converted.checkpoint_info.parts == "encoder"
    with torch.no_grad():
        assert torch.equal(reference.encode(clip).moments, converted.encode(clip).moments)
        ref16 = load_reducio(src, parts="encoder", dtype=torch.float16)
        got16 = load_reducio(enc.destination, dtype=torch.float16)
        assert_loaded(got16, dict(ref16.state_dict()), dtype=torch.float16)
        assert torch.equal(ref16.float().encode(clip).moments, got16.float().encode(clip).moments)
    assert_loaded(load_reducio(full.destination), state)


@pytest.mark.slow
def test_conversion_write_is_atomic(
    tmp_path: Path, state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src.ckpt"
    torch.save(state, src)
    import safetensors.torch

    def failing_save(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    dst = tmp_path / "out.safetensors"
    with pytest.raises(OSError, match="disk full"):
        convert_mod.convert_checkpoint(src, dst, variant=PRESET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.ckpt"]  # no dst, no temp file


@pytest.mark.slow
def test_converter_cli_subprocess(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    src = tmp_path / "vae.ckpt"
    torch.save({"state_dict": state}, src)
    dst = tmp_path / "out" / "vae-encoder-fp16.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "lib.vae",
        "convert",
        str(src),
        str(dst),
        "--parts",
        "encoder",
        "--dtype",
        "fp16",
        "--variant",
        PRESET,
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["destination"] == str(dst) and report["parts"] == "encoder" and report["dtype"] == "float16"
    assert report["num_tensors"] == len(encoder_part(state))
    assert load_reducio(dst).checkpoint_info.preset == PRESET


@pytest.mark.slow
def test_converter_cli_errors_in_process(
    tmp_path: Path, state: dict[str, torch.Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "vae.ckpt"
    torch.save(state, src)
    dst = tmp_path / "vae.safetensors"
    assert convert_mod.main([str(src), str(dst), "--variant", PRESET]) == 0
    capsys.readouterr()
    assert convert_mod.main([str(src), str(dst), "--variant", PRESET]) == 1
    assert "already exists" in capsys.readouterr().err
    assert convert_mod.main([str(src), str(dst), "--variant", PRESET, "--overwrite", "--dtype", "bf16"]) == 0
    assert load_reducio(dst).checkpoint_info.file_dtypes == ("bfloat16",)
    assert convert_mod.main([str(src), str(tmp_path / "x.ckpt")]) == 1
    assert "must be a .safetensors file" in capsys.readouterr().err


def test_cli_dispatch(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("lib.vae.train")
    fake.main = lambda argv: seen.append(list(argv)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lib.vae.train", fake)
    assert vae_cli.main(["train", "--preset", "local-smoke", "--steps", "3"]) == 0
    assert seen == [["--preset", "local-smoke", "--steps", "3"]]
    assert vae_cli.main([]) == 2 and "commands:" in capsys.readouterr().out
    assert vae_cli.main(["bogus"]) == 2 and "unknown command 'bogus'" in capsys.readouterr().err


# =============================================================================================
# Variant inference
# =============================================================================================
def test_variant_from_file_name() -> None:
    assert preset_from_filename("reducio-ft4-fs32-attn23.ckpt") == "reducio-ft4"
    assert preset_from_filename("reducio-ft2-fs32-attn23.ckpt") == "reducio-ft2"
    assert preset_from_filename("my_FT2_weights.safetensors") == "reducio-ft2"
    assert preset_from_filename("shift4.ckpt") is None and preset_from_filename("ft42.pt") is None
    assert preset_from_filename("local-default-step100.safetensors") == "local-default"


@pytest.mark.slow
def test_variant_from_shapes_of_meta_models() -> None:
    def encoder_shapes(name: str) -> dict[str, tuple[int, ...]]:
        return {
            k: tuple(v.shape)
            for k, v in ReducioVAE.from_preset(name, parts="encoder", device="meta").state_dict().items()
        }

    for name in ("reducio-ft4", "reducio-ft2", PRESET, "local-default"):
        shapes = {k: tuple(v.shape) for k, v in ReducioVAE.from_preset(name, device="meta").state_dict().items()}
        assert infer_preset(shapes) == name
        encoder = {k: s for k, s in shapes.items() if k.startswith(ENCODER_PREFIXES)}
        assert encoder == encoder_shapes(name)
        twins = [other for other in MODEL_PRESETS if other != name and encoder_shapes(other) == encoder]
        # presets sharing an encoder path (local-smoke / local-default) are ambiguous from it alone
        assert infer_preset(encoder) == (None if twins else name)
    assert encoder_shapes("local-smoke") == encoder_shapes("local-default")


# =============================================================================================
# Reference data (../shared/reference; skipped when absent)
# =============================================================================================
def test_official_listings_give_ft4_and_ft2(shared_reference: Path) -> None:
    """The released key->shape listings (with their loss.* keys) resolve to the right variant; they
    differ exactly in the two documented shapes."""
    listings = {}
    for name, file in (
        ("reducio-ft4", "official_config_state_dict.json"),
        ("reducio-ft2", "official_config_ft2_state_dict.json"),
    ):
        keys = json.loads((shared_reference / "reducio" / file).read_text())["keys"]
        shapes = {k: tuple(v["shape"]) for k, v in keys.items()}
        listings[name] = shapes
        assert any(k.startswith("loss.") for k in shapes)
        assert infer_preset(shapes) == name
        assert match_presets(shapes)[0] == (name, 0)
    differ = sorted(k for k in listings["reducio-ft4"] if listings["reducio-ft4"][k] != listings["reducio-ft2"][k])
    assert differ == ["decoder.mid.fuse.0.pos_embed", "encoder_3d.down.3.downsample.conv.weight"]


@pytest.mark.slow
def test_small_reference_weights(shared_reference: Path) -> None:
    ref = shared_reference / "reducio"
    small = json.loads((ref / "small_config.json").read_text())
    path = ref / "small_weights_fp16.safetensors"
    vae = load_reducio(path, config=small["params"])
    with safe_open(str(path), framework="pt") as fh:
        expected = {k: fh.get_tensor(k) for k in fh.keys()}
    assert_loaded(vae, expected, dtype=torch.float32)
    assert vae.checkpoint_info.preset == "reference-small"
    assert load_reducio(path).checkpoint_info.preset == "reference-small"  # also from the shapes alone
    with safe_open(str(ref / "small_io_float32.safetensors"), framework="pt") as fh:
        x, moments = fh.get_tensor("caseA.input"), fh.get_tensor("caseA.moments")
    encoder = load_reducio(path, config=small, parts="encoder")
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode(x).moments, moments, atol=1e-4, rtol=1e-4)
