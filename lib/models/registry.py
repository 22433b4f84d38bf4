"""Name -> classifier registry: ``register``, ``build_model``, ``list_models``, ``model_info``.

Every model is an ``nn.Module`` class with a keyword-only constructor
``Model(*, num_classes, input_shape, config)`` and one config dataclass. It registers itself with
:func:`register`, which records its family, the kind of input it takes and a one-line summary.
:func:`build_model` builds it from a name, the number of classes, the per-clip input shape and
config overrides (the fields of its config dataclass; e.g. from a params YAML file). An unknown
name lists the known ones; an unknown or ill-typed override names the valid fields.

Input kinds (what the study / engine must feed ``model(*inputs)``):

- ``"latent"``: ``forward(latent)``, latent (B, C, T', H', W') float32 (cached VAE latents, or
  the equal-size pooled-pixel control);
- ``"latent+content"``: ``forward(latent, content)``, content (B, D) float32 (the content-frame
  appearance features cached next to the latent; D = the config field ``content_dim``);
- ``"pixels"``: ``forward(pixels)``, raw frames (B, 3, T, H, W) float32 RGB in [-1, 1].

All models return (B, num_classes) raw logits (train with ``nn.CrossEntropyLoss``, no softmax).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args, get_origin

from torch import nn

from lib.errors import ActionableError

Family = Literal["lstm", "transformer", "conv3d", "fusion", "pixel", "probe"]
InputKind = Literal["latent", "pixels", "latent+content"]
FAMILIES: Final[tuple[str, ...]] = get_args(Family)
INPUT_KINDS: Final[tuple[str, ...]] = get_args(InputKind)


class ModelConfigError(ActionableError):
    """A model name, override or input shape that cannot build a model. ``path`` is where the
    request came from (e.g. the params file) when the caller said so, else None."""


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model.

    ``origin``: ``"paper"`` (faithful to the published study), ``"ours"`` (our stronger models)
    or ``"reference"`` (pixel-space baselines). ``recipe``: suggested training settings
    (``lib.classify.TrainConfig`` field names, ``augment`` a preset of :mod:`lib.models.augment`),
    a starting point, not a tuned result.
    """

    name: str
    family: str
    input_kind: str
    origin: str
    summary: str
    model_cls: type[nn.Module]
    config_cls: type
    recipe: Mapping[str, Any]

    def defaults(self) -> dict[str, Any]:
        """The config dataclass's default field values (what overrides may change)."""
        return dataclasses.asdict(self.config_cls())


_REGISTRY: dict[str, ModelInfo] = {}


def register(
    name: str,
    *,
    family: Family,
    input_kind: InputKind,
    config: type,
    summary: str,
    origin: Literal["paper", "ours", "reference"] = "ours",
    recipe: Mapping[str, Any] | None = None,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: add ``cls`` to the registry under ``name`` (a duplicate name is a bug)."""
    if family not in FAMILIES or input_kind not in INPUT_KINDS:
        raise ValueError(f"register({name!r}): family must be one of {FAMILIES} and input_kind one of {INPUT_KINDS}")
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"register({name!r}): config must be a dataclass, got {config!r}")

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        known = _REGISTRY.get(name)
        if known is not None and (known.model_cls.__module__, known.model_cls.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            # (the same class again, e.g. after importlib.reload / notebook autoreload, replaces itself)
            raise ValueError(f"model name {name!r} is registered twice ({known.model_cls} and {cls})")
        _REGISTRY[name] = ModelInfo(
            name=name,
            family=family,
            input_kind=input_kind,
            origin=origin,
            summary=summary,
            model_cls=cls,
            config_cls=config,
            recipe=dict(recipe or {}),
        )
        return cls

    return decorator


def list_models(*, family: str | None = None, input_kind: str | None = None) -> list[str]:
    """Registered names (registration order), optionally only one family / input kind."""
    return [
        n
        for n, i in _REGISTRY.items()
        if (family is None or i.family == family) and (input_kind is None or i.input_kind == input_kind)
    ]


def model_info(name: str, *, origin: str | os.PathLike[str] | None = None) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; an unknown name is an error listing the known ones."""
    if name not in _REGISTRY:
        raise ModelConfigError(origin, f"unknown model name {name!r}", f"use one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the field type ``hint`` wants (YAML gives lists for tuples, ints for floats),
    or raise TypeError. Handles the types config dataclasses use: bool, int, float, str,
    Literal[...], tuple[int, ...] and ``X | None``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg)
            except TypeError as exc:
                errors.append(str(exc))
        raise TypeError("; ".join(errors))
    if origin is Literal:
        if value not in args:
            raise TypeError(f"expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list of values, got {value!r}")
        item_hint = args[0] if args else Any
        return tuple(_coerce(v, item_hint) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    return value


def make_config(name: str, overrides: Mapping[str, Any], *, origin: str | os.PathLike[str] | None = None) -> Any:
    """The config dataclass of ``name`` with ``overrides`` applied and validated."""
    info = model_info(name, origin=origin)
    hints = typing.get_type_hints(info.config_cls)
    valid = [f.name for f in dataclasses.fields(info.config_cls)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ModelConfigError(
            origin,
            f"model {name!r} has no config field(s) {unknown}",
            f"valid fields of {info.config_cls.__name__}: {valid}",
        )
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        try:
            values[key] = _coerce(value, hints[key])
        except TypeError as exc:
            kind = hints[key].__name__ if isinstance(hints[key], type) else str(hints[key]).replace("typing.", "")
            raise ModelConfigError(
                origin,
                f"model {name!r}: field {key!r} ({kind}): {exc}",
                f"give {key} a value of type {kind} (default {getattr(info.config_cls(), key)!r})",
            ) from None
    try:
        return info.config_cls(**values)
    except ValueError as exc:  # the config's own __post_init__ checks
        raise ModelConfigError(origin, f"model {name!r}: {exc}", f"defaults: {info.defaults()}") from None


def _check_shape(
    name: str, num_classes: Any, input_shape: Any, input_kind: str, origin: str | os.PathLike[str] | None
) -> tuple[int, ...]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ModelConfigError(
            origin,
            f"model {name!r}: num_classes must be an int >= 2, got {num_classes!r}",
            "pass the dataset's number of classes",
        )
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    if len(shape) != 4 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ModelConfigError(
            origin,
            f"model {name!r}: input_shape must be 4 positive ints (C, T, H, W), got {input_shape!r}",
            "pass the per-clip shape without the batch axis, e.g. (16, 4, 7, 9)",
        )
    if input_kind == "pixels" and shape[0] != 3:
        raise ModelConfigError(
            origin,
            f"model {name!r} takes RGB frames (3, T, H, W), got input_shape {shape}",
            "pass the decoded clip shape, e.g. (3, 16, 112, 112)",
        )
    return shape


def build_model(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int, int],
    origin: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build the registered model ``name`` for ``num_classes`` classes and per-clip input
    ``input_shape`` = (C, T, H, W) (for fusion models the latent's shape; the content size is
    the ``content_dim`` override). ``overrides`` set fields of the model's config dataclass.
    ``origin`` (e.g. the params file the request came from) is named in every error.

    The model maps its inputs (see the module docstring) to (B, num_classes) logits and carries
    ``.config``, ``.num_classes``, ``.input_shape`` and ``.input_shapes`` (per-clip shape of
    each forward argument).
    """
    info = model_info(name, origin=origin)
    shape = _check_shape(name, num_classes, input_shape, info.input_kind, origin)
    config = make_config(name, overrides, origin=origin)
    try:
        return info.model_cls(num_classes=num_classes, input_shape=shape, config=config)
    except ValueError as exc:  # e.g. a grid the configuration cannot cover
        raise ModelConfigError(
            origin, f"model {name!r} with input_shape {shape}: {exc}", "change the overrides or the input shape"
        ) from None
