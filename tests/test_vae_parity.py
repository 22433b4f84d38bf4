"""Parity of the clean-room Reducio-VAE with the official code, on the reference data.

The data (``<shared>/reducio/``, produced with the official implementation; see its README) exist
on development machines only: every test here takes the ``shared_reference`` fixture and skips
cleanly without it. The self-contained counterparts are in tests/test_vae_model.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lib.vae import ReducioConfig, ReducioVAE, get_preset
from lib.vae.attention import FusionBlock
from lib.vae.config import TRAINING_ONLY_KEYS

ATOL = RTOL = 1e-4  # the reference README's suggestion for float32 (observed max here ~2e-5)
FINAL = ["enc3d_out_prequant", "moments", "mean", "logvar", "z_layernorm",
         "content_feat2", "content_feat3", "content_feat4", "xrec"]
# reference tensor name -> module whose forward output it is (official module paths)
HOOKED = {
    "enc3d.down2.downsample_out": "encoder_3d.down.2.downsample",
    "enc3d.down3.downsample_out": "encoder_3d.down.3.downsample",
    "enc3d.down4.downsample_out": "encoder_3d.down.4.downsample",
    "enc3d.mid.attn_1_out": "encoder_3d.mid.attn_1",
    "dec.conv_in_out": "decoder.conv_in",
    "dec.mid.fuse0_out": "decoder.mid.fuse.0",
    "dec.mid.attn_1_out": "decoder.mid.attn_1",
    "dec.mid.block_2_out": "decoder.mid.block_2",
    "dec.up5.upsample_out": "decoder.up.5.upsample",
    "dec.up4.upsample_out": "decoder.up.4.upsample",
    "dec.up3.fuse0_out": "decoder.up.3.fuse.0",
    "dec.up2.fuse0_out": "decoder.up.2.fuse.0",
}


@pytest.fixture(scope="module")
def ref_dir(shared_reference: Path) -> Path:
    path = shared_reference / "reducio"
    if not path.is_dir():
        pytest.skip(f"no Reducio reference data in {path}")
    return path


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _official_listing(path: Path) -> dict[str, tuple[int, ...]]:
    keys = json.loads(path.read_text())["keys"]
    return {k: tuple(v["shape"]) for k, v in keys.items() if not k.startswith("loss.")}


def _architecture(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in TRAINING_ONLY_KEYS}


@pytest.mark.parametrize(("preset", "listing", "yaml_file"), [
    ("reducio-ft4", "official_config_state_dict.json", "reducio_kl_ft4_fs32_z16_attn23.yaml"),
    ("reducio-ft2", "official_config_ft2_state_dict.json", "reducio_kl_ft2_fs32_z16_attn23.yaml"),
])
def test_released_state_dict_equals_official(ref_dir: Path, preset: str, listing: str, yaml_file: str) -> None:
    official = _official_listing(ref_dir / listing)
    params = yaml.safe_load((ref_dir / "configs" / yaml_file).read_text())["model"]["params"]
    assert get_preset(preset) == _architecture(params)  # the literal preset is the released YAML
    model = ReducioVAE.from_config(params, device="meta")  # built straight from the YAML
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(ours.items()) == list(official.items())  # same keys, shapes and order
    counts = json.loads((ref_dir / listing).read_text())["param_counts"]
    for name, module in model.named_children():
        assert sum(p.numel() for p in module.parameters()) == counts[name], name
    assert sum(p.numel() for p in model.parameters()) == counts["total_without_loss"]


def test_small_config_is_reference_small_preset(ref_dir: Path) -> None:
    params = json.loads((ref_dir / "small_config.json").read_text())["params"]
    assert get_preset("reference-small") == _architecture(params)
    assert ReducioConfig.from_params(params) == ReducioConfig.from_params(get_preset("reference-small"))


@pytest.mark.slow
def test_full_config_shapes(ref_dir: Path) -> None:
    shapes = json.loads((ref_dir / "shapes_full_config.json").read_text())
    model = ReducioVAE.from_preset("reducio-ft4", device="meta").eval()
    for size, expected in shapes.items():
        h, w = (int(v) for v in size.split("x"))
        x = torch.empty(1, 3, 16, h, w, device="meta")
        with torch.no_grad():
            mean = model.encode(x).mean
            feats = model.encoder_2d(model.content_frame(x))
            decoded = model.decode(mean, [feats[i] for i in (2, 3, 4)])
        assert list(mean.shape) == expected["mean"], size
        assert mean[0].numel() == expected["numel_per_clip"]
        assert [list(f.shape) for f in feats] == expected["content_feats"], size
        assert list(decoded.shape) == expected["decoded"], size


@pytest.fixture(scope="module")
def small_run(ref_dir: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Run the README call sequence on both cases; name -> (ours, reference)."""
    model = ReducioVAE.from_preset("reference-small").eval()
    weights = {k: v.float() for k, v in _load(ref_dir / "small_weights_fp16.safetensors").items()}
    model.load_state_dict(weights, strict=True)
    io = _load(ref_dir / "small_io_float32.safetensors")
    modules = dict(model.named_modules())
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for case in ("caseA", "caseB"):
        got: dict[str, torch.Tensor] = {}
        handles = [modules[m].register_forward_hook(lambda _m, _i, out, n=n, got=got: got.__setitem__(n, out))
                   for n, m in HOOKED.items()]
        x = io[f"{case}.input"]
        with torch.no_grad():
            got["enc3d_out_prequant"] = model.encoder_3d(x)
            posterior = model.encode(x)
            got.update(moments=posterior.moments, mean=posterior.mean, logvar=posterior.logvar)
            got["z_layernorm"] = model.normalize_latent(posterior.mean)
            feats = model.content_features(model.content_frame(x))
            got.update({f"content_feat{i}": f for i, f in zip((2, 3, 4), feats, strict=True)})
            got["xrec"] = model.decode(got["z_layernorm"], feats)
            assert torch.equal(model.reconstruct(x), got["xrec"])
        for h in handles:
            h.remove()
        for name in FINAL + list(HOOKED):
            pairs[f"{case}.{name}"] = (got[name], io[f"{case}.{name}"])
    return pairs


@pytest.mark.parametrize("case", ["caseA", "caseB"])
@pytest.mark.parametrize("name", FINAL + list(HOOKED))
@pytest.mark.slow
def test_small_model_matches_official(small_run: dict, case: str, name: str) -> None:
    ours, ref = small_run[f"{case}.{name}"]
    assert ours.shape == ref.shape
    err = float((ours - ref).abs().max())
    assert torch.allclose(ours, ref, atol=ATOL, rtol=RTOL), f"{case}.{name}: max abs error {err:.2e}"


def test_fusion_block_unit(ref_dir: Path) -> None:
    data = _load(ref_dir / "fuse_block_unit_float32.safetensors")
    block = FusionBlock(dim=128, context_dim=256, temporal_length=16)  # 2 heads, context dim != dim
    weights = {k.removeprefix("weights."): v for k, v in data.items() if k.startswith("weights.")}
    # Our table is the exact float32 sinusoid; the reference stores it rounded to float16.
    assert torch.equal(block.pos_embed.detach().half().float(), weights["pos_embed"])
    block.load_state_dict(weights, strict=True)
    with torch.no_grad():
        y = block(data["input.x"], data["input.context"])
    assert torch.allclose(y, data["output.y"], atol=ATOL, rtol=RTOL), float((y - data["output.y"]).abs().max())
