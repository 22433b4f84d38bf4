"""Write a Reducio-VAE as a PyTorch-Lightning ``.ckpt``, the format the released checkpoints and
training runs of the official code come in.

The file is ``torch.save`` of a dict::

    {"state_dict": {<official key names>: tensors, "loss.*": ...}, "epoch": int, "global_step": int,
     "pytorch-lightning_version": str, "hyper_parameters": <model.params of the official YAML>}

``state_dict`` holds the model's weights under its own (official) key names plus a few of the
training-only ``loss.*`` tensors the official LightningModule carries (LPIPS and discriminator
entries with the official names and shapes, including an int64 ``num_batches_tracked``), which
loaders skip. ``hyper_parameters`` is the ``model.params`` section of the official YAML: the
architecture (``ddconfig``, ``ddconfig_2d``, ``embed_dim``...) plus the training entries
(``lossconfig``, schedulers, ``monitor``...).

By default ``hyper_parameters`` is a plain dict (ints, floats, strings, lists, dicts), which
``torch.load(weights_only=True)`` reads. With ``omegaconf_hparams=True`` it is an OmegaConf
``DictConfig``, as in checkpoints of training scripts that pass their OmegaConf config to
``save_hyperparameters``: its pickle names ``omegaconf.*`` classes, which ``weights_only`` refuses
and :func:`lib.vae.load_reducio` skips without importing them. Where omegaconf is not installed,
classes named like omegaconf's (``omegaconf.dictconfig.DictConfig``, ``omegaconf.listconfig.ListConfig``,
``omegaconf.nodes.AnyNode``, ``omegaconf.base.ContainerMetadata``) carrying the same state layout
are written instead; such a file loads where omegaconf is installed or where the loader imports
nothing it names, as ``load_reducio``'s does.

:func:`random_reducio` builds a preset with seeded random weights (the rehearsal's stand-in for
the released ft4 file: ``python -m lib.rehearsal prepare``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from lib.vae.model import ReducioVAE
from lib.vae.presets import get_preset

#: Version string recorded in the file (loaders read it as text and never interpret it).
LIGHTNING_VERSION = "1.9.4"

# Training-only entries of the official model.params (reducio_kl_ft4_fs32_z16_attn23.yaml).
_TRAINING_PARAMS: dict[str, Any] = {
    "monitor": "train/rec_loss",
    "image_key": "jpg",
    "automatic_optimization": False,
    "freeze_2d": False,
    "freeze_3d": False,
    "scheduler_config": {"target": "ldm.lr_scheduler.LambdaLinearScheduler",
                         "params": {"warm_up_steps": [0], "cycle_lengths": [1000000], "f_start": [1.0],
                                    "f_max": [1.0], "f_min": [0.01]}},
    "scheduler_disc_config": {"target": "ldm.lr_scheduler.WarmupLR",
                              "params": {"warmup_factor": 0.1, "warmup_start_iters": 5000, "warmup_iters": 1000}},
    "lossconfig": {"target": "ldm.modules.losses.contperceptual.LPIPSWithDiscriminator",
                   "params": {"disc_start": 10001, "kl_weight": 1e-06, "disc_weight": 0.05, "use_adaptive_gan": True,
                              "enable_2d": False, "rec_weight": 1.0, "loss_norm": "l1", "perceptual_weight": 0.1,
                              "disc_loss_scale": 0.1, "use_groupnorm": False, "act_tanh": False}},
}

# The official LightningModule's small loss.* tensors (names and shapes of the released ft4
# config's state dict); the large LPIPS/discriminator convolutions are left out.
LOSS_KEYS: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
    "loss.logvar": ((), torch.float32),
    "loss.perceptual_loss.scaling_layer.shift": ((1, 3, 1, 1), torch.float32),
    "loss.perceptual_loss.scaling_layer.scale": ((1, 3, 1, 1), torch.float32),
    **{f"loss.perceptual_loss.lin{i}.model.1.weight": ((1, c, 1, 1), torch.float32)
       for i, c in enumerate((64, 128, 256, 512, 512))},
    "loss.discriminator.main.0.bias": ((64,), torch.float32),
    **{f"loss.discriminator.main.{i}.{name}": (((c,), torch.float32) if name != "num_batches_tracked"
                                               else ((), torch.int64))
       for i, c in ((3, 128), (6, 256), (9, 512))
       for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")},
    "loss.discriminator.main.11.bias": ((1,), torch.float32),
}


def random_reducio(preset: str, *, seed: int = 0) -> ReducioVAE:
    """The full model of ``preset`` (lib.vae.presets) with the weights of ``torch.manual_seed(seed)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ReducioVAE.from_config(get_preset(preset)).eval()


def hyper_parameters(vae: ReducioVAE) -> dict[str, Any]:
    """The official YAML's ``model.params`` for ``vae``: its architecture plus the training entries."""
    return {**vae.config.to_params(), **copy.deepcopy(_TRAINING_PARAMS)}


def loss_tensors(*, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded values for :data:`LOSS_KEYS` (the variances positive, the counters zero)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, (shape, dtype) in LOSS_KEYS.items():
        if dtype == torch.int64:
            out[key] = torch.zeros(shape, dtype=dtype)
        elif key.endswith("running_var"):
            out[key] = torch.ones(shape, dtype=dtype)
        else:
            out[key] = torch.randn(shape, generator=gen, dtype=dtype)
    return out


def lightning_checkpoint(vae: ReducioVAE, *, epoch: int = 0, global_step: int = 0,
                         hparams: Mapping[str, Any] | None = None, with_loss_keys: bool = True,
                         seed: int = 0) -> dict[str, Any]:
    """The dict :func:`save_lightning_checkpoint` writes (plain types only)."""
    state = {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    if with_loss_keys:
        state.update(loss_tensors(seed=seed))
    return {
        "epoch": int(epoch),
        "global_step": int(global_step),
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": state,
        "hyper_parameters": dict(hparams) if hparams is not None else hyper_parameters(vae),
    }


def save_lightning_checkpoint(vae: ReducioVAE, path: str | os.PathLike[str], *, epoch: int = 0,
                              global_step: int = 0, hparams: Mapping[str, Any] | None = None,
                              with_loss_keys: bool = True, omegaconf_hparams: bool = False, seed: int = 0) -> Path:
    """Write ``vae`` as a Lightning ``.ckpt`` (module docstring) atomically: temp file + rename."""
    dst = Path(path)
    ckpt = lightning_checkpoint(vae, epoch=epoch, global_step=global_step, hparams=hparams,
                                with_loss_keys=with_loss_keys, seed=seed)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        if omegaconf_hparams:
            with _omegaconf_classes() as create:
                ckpt["hyper_parameters"] = create(ckpt["hyper_parameters"])
                torch.save(ckpt, tmp)
        else:
            torch.save(ckpt, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


# ------------------------------------------------------------------------------------------------
# OmegaConf hyper-parameters
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _omegaconf_classes() -> Iterator[typing.Callable[[Mapping[str, Any]], Any]]:
    """Yield a function turning a plain dict into a DictConfig: omegaconf's own where it is
    installed, else look-alike classes registered under omegaconf's module names while inside."""
    try:
        from omegaconf import OmegaConf
    except ImportError:
        pass
    else:
        yield OmegaConf.create
        return
    names = ("omegaconf", "omegaconf.base", "omegaconf.nodes", "omegaconf.dictconfig", "omegaconf.listconfig")
    if any(name in sys.modules for name in names):
        raise RuntimeError("a partial omegaconf module is already imported; cannot write look-alike classes")
    modules = {name: types.ModuleType(name) for name in names}

    def make(module: str, name: str) -> type:
        cls = type(name, (), {"__module__": module, "__qualname__": name})
        setattr(modules[module], name, cls)
        return cls

    metadata_cls = make("omegaconf.base", "ContainerMetadata")
    node_cls = make("omegaconf.nodes", "AnyNode")
    dict_cls = make("omegaconf.dictconfig", "DictConfig")
    list_cls = make("omegaconf.listconfig", "ListConfig")

    def with_state(cls: type, state: dict[str, Any]) -> Any:
        obj = object.__new__(cls)
        obj.__dict__.update(state)
        return obj

    def metadata(key: Any, *, container: bool) -> Any:
        return with_state(metadata_cls, {"ref_type": typing.Any, "object_type": dict if container else None,
                                         "optional": True, "key": key, "flags": {}, "flags_root": False,
                                         "resolver_cache": {}, "key_type": typing.Any, "element_type": typing.Any})

    def convert(value: Any, key: Any, parent: Any) -> Any:
        if isinstance(value, Mapping):
            node = with_state(dict_cls, {"_metadata": metadata(key, container=True), "_parent": parent,
                                         "_flags_cache": None})
            node.__dict__["_content"] = {k: convert(v, k, node) for k, v in value.items()}
            return node
        if isinstance(value, (list, tuple)):
            node = with_state(list_cls, {"_metadata": metadata(key, container=True), "_parent": parent,
                                         "_flags_cache": None})
            node.__dict__["_content"] = [convert(v, i, node) for i, v in enumerate(value)]
            return node
        return with_state(node_cls, {"_metadata": metadata(key, container=False), "_parent": parent,
                                     "_flags_cache": None, "_val": value})

    sys.modules.update(modules)
    try:
        yield lambda params: convert(params, None, None)
    finally:
        for name in names:
            sys.modules.pop(name, None)
