"""Which config builds the model for a checkpoint file.

The first that applies wins:

a. ``config=`` (a ``model.params`` dict, a ``ReducioConfig``, a preset name, or a .json/.yaml file);
b. the config stored in the safetensors metadata (a contradicting ``variant=`` is an error);
c. ``variant=`` (``"ft4"``/``"ft2"`` or any preset name);
d. the file name: a preset name in it (``reducio-ft4-fs32-attn23.ckpt`` -> ``reducio-ft4``), else an
   ``ft4`` / ``ft2`` token;
e. the state-dict shapes: the file's key->shape listing is compared with every preset built on
   the meta device; exactly one must match. For the released files this is the ft4/ft2 rule:
   ``encoder_3d.down.3.downsample.conv.weight`` has kernel ``(3, 3, 3)`` in ft4 and ``(1, 3, 3)``
   in ft2, and ``decoder.mid.fuse.0.pos_embed`` has length 4 (ft4) or 8 (ft2).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lib.vae.checkpoint_errors import CheckpointConfigError
from lib.vae.checkpoint_io import METADATA_KEY, Reader, file_parts, normalise_keys
from lib.vae.config import ReducioConfig
from lib.vae.model import ReducioVAE
from lib.vae.presets import PRESETS, get_preset

#: Short names of the released checkpoints -> preset names.
VARIANT_ALIASES: dict[str, str] = {"ft4": "reducio-ft4", "ft2": "reducio-ft2"}
ConfigLike = Mapping[str, Any] | ReducioConfig | str | os.PathLike[str]
_FT_TOKEN = re.compile(r"(?:^|[^a-z0-9])ft([24])(?![0-9])")


def canonical_preset(name: str) -> str:
    """``"ft4"`` -> ``"reducio-ft4"``; a preset name stays; anything else is a ``KeyError``."""
    key = name.strip().lower()
    key = VARIANT_ALIASES.get(key, key)
    if key not in PRESETS:
        raise KeyError(f"unknown Reducio variant/preset {name!r}; known: "
                       f"{', '.join(list(VARIANT_ALIASES) + list(PRESETS))}")
    return key


def describe_params(params: Mapping[str, Any]) -> str:
    """One line naming the architecture knobs that change shapes."""
    dd, d2 = params.get("ddconfig", {}), params.get("ddconfig_2d", {})
    return (f"ch={dd.get('ch')} ch_mult={dd.get('ch_mult')} num_res_blocks={dd.get('num_res_blocks')} "
            f"f_t={dd.get('f_t')} z_channels={dd.get('z_channels')}; 2D ch={d2.get('ch')} ch_mult={d2.get('ch_mult')}")


def preset_of_params(params: Mapping[str, Any]) -> str | None:
    """The preset whose architecture equals ``params`` (after normalisation), if any."""
    try:
        cfg = ReducioConfig.from_params(params)
    except (ValueError, TypeError, KeyError):
        return None
    return next((name for name in PRESETS if ReducioConfig.from_params(get_preset(name)) == cfg), None)


@dataclass(frozen=True)
class ResolvedConfig:
    """The ``model.params`` that builds the model, and where they came from (for messages)."""

    params: dict[str, Any]
    preset: str | None
    origin: str

    def describe(self) -> str:
        name = f"preset {self.preset!r}" if self.preset else "a custom config"
        return f"{name} ({self.origin}; {describe_params(self.params)})"


def _unwrap_params(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Accept ``model.params``, the ``model`` section or the whole YAML/JSON (``model.params``)."""
    if "ddconfig" in obj:
        return dict(obj)
    for key in ("params", "model"):
        if isinstance(obj.get(key), Mapping):
            return _unwrap_params(obj[key])
    raise ValueError(f"not a Reducio config: no 'ddconfig' (top-level keys: {sorted(obj)[:10]})")


def coerce_config(config: ConfigLike) -> tuple[dict[str, Any], str | None]:
    """``config=`` of :func:`load_reducio` -> (``model.params`` dict, preset name if it is one).

    Accepted: a ``model.params`` dict (or a dict holding it under ``params`` / ``model.params``,
    like the official YAML or ``small_config.json``), a ``ReducioConfig``, a preset/variant name,
    or the path of a ``.json`` / ``.yaml`` file holding one of those dicts.
    """
    if isinstance(config, ReducioConfig):
        params = config.to_params()
        return params, preset_of_params(params)
    if isinstance(config, Mapping):
        params = _unwrap_params(config)
        return params, preset_of_params(params)
    text = os.fspath(config)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise CheckpointConfigError(path, "config file not found", "pass an existing .json/.yaml or a preset name")
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
        else:
            import yaml  # the official YAMLs use anchors; safe_load resolves them

            data = yaml.safe_load(path.read_text())
        params = _unwrap_params(data)
        return params, preset_of_params(params)
    try:
        name = canonical_preset(text)
    except KeyError as err:
        raise CheckpointConfigError(None, f"config={text!r} is neither a preset name nor a .json/.yaml file",
                                    str(err.args[0])) from None
    return get_preset(name), name


def preset_from_filename(name: str) -> str | None:
    """A preset named in a file name (longest name first), else an ``ft4``/``ft2`` token."""
    stem = Path(name).name.lower()
    for preset in sorted(PRESETS, key=len, reverse=True):
        if preset in stem:
            return preset
    m = _FT_TOKEN.search(stem)
    return VARIANT_ALIASES[f"ft{m.group(1)}"] if m else None


@cache
def _preset_shapes(preset: str, parts: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a preset's state dict, from a model built on the meta device (no memory)."""
    model = ReducioVAE.from_config(get_preset(preset), parts=parts, device="meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def match_presets(shapes: Mapping[str, Sequence[int]]) -> list[tuple[str, int]]:
    """Every preset with the number of keys whose presence or shape differs from ``shapes``.

    ``shapes`` is a state-dict listing (key -> shape; ``loss.*`` and a ``module.`` prefix are
    ignored). An encoder-only listing is compared with the presets' encoder part. Sorted best first.
    """
    mapping, _, _ = normalise_keys(list(shapes))
    clean = {k: tuple(int(d) for d in shapes[raw]) for k, raw in mapping.items()}
    parts = file_parts(list(clean))
    scored = []
    for name in PRESETS:
        expected = _preset_shapes(name, parts)
        scored.append((name, sum(1 for k in set(clean) | set(expected) if clean.get(k) != expected.get(k))))
    return sorted(scored, key=lambda item: item[1])


def infer_preset(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The one preset whose keys and shapes equal ``shapes`` exactly; None if none or several do."""
    exact = [name for name, diff in match_presets(shapes) if diff == 0]
    return exact[0] if len(exact) == 1 else None


def resolve_config(reader: Reader, *, config: ConfigLike | None, variant: str | None) -> ResolvedConfig:
    """Pick the config for a file (order a-e of the module docstring)."""
    path = reader.path
    variant_preset: str | None = None
    if variant is not None:
        try:
            variant_preset = canonical_preset(variant)
        except KeyError as err:
            raise CheckpointConfigError(path, f"variant={variant!r} is unknown", str(err.args[0])) from None
    if config is not None:
        params, preset = coerce_config(config)
        return ResolvedConfig(params, preset, "from the config= argument")
    meta = reader.metadata
    if meta is not None:
        stored = meta.get("preset") or preset_of_params(meta["params"])
        if variant_preset is not None and stored is not None and stored != variant_preset:
            raise CheckpointConfigError(
                path, f"variant={variant!r} contradicts the config stored in the file (preset {stored!r})",
                "drop variant= (the stored config is used), or pass config= to override it deliberately",
            )
        return ResolvedConfig(dict(meta["params"]), stored, f"stored in the file's metadata key {METADATA_KEY!r}")
    if variant_preset is not None:
        return ResolvedConfig(get_preset(variant_preset), variant_preset, f"from variant={variant!r}")
    named = preset_from_filename(path.name)
    if named is not None:
        return ResolvedConfig(get_preset(named), named, "from the file name")
    return _config_from_shapes(reader)


def _config_from_shapes(reader: Reader) -> ResolvedConfig:
    file_keys = reader.keys()
    shapes = {k: reader.shape(k) for k in file_keys}
    scores = match_presets(shapes)
    exact = [name for name, diff in scores if diff == 0]
    if len(exact) == 1:
        return ResolvedConfig(get_preset(exact[0]), exact[0], "inferred from the state-dict shapes")
    if exact:
        raise CheckpointConfigError(
            reader.path, f"the state-dict shapes fit several presets equally ({', '.join(exact)}) and nothing else "
            "names one", f"pass variant= (one of {', '.join(exact)}) or config=",
        )
    closest = ", ".join(f"{name}: {diff} keys differ" for name, diff in scores[:3])
    raise CheckpointConfigError(
        reader.path, f"cannot tell which config this file needs: no metadata, no variant in the file name, and its "
        f"{len(shapes)} keys match no preset ({closest})",
        "pass config= (a model.params dict, a .yaml/.json file or a preset name) or variant= (ft4, ft2, a preset)",
    )
