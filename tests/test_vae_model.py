"""Self-contained tests of the clean-room Reducio-VAE (no reference data needed).

What the official model looks like is encoded here as literals (taken from instantiating the
released configs with the official code; see tests/test_vae_parity.py for the checks against the
reference files themselves). The released configs are only ever built on the meta device.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lib.vae import PRESETS, ReducioConfig, ReducioVAE, get_preset, normalize_latent
from lib.vae.attention import sinusoidal_table

# ---- facts about the released checkpoints (official code, random init, parameters()) ----------
FT4_PARAMS = {
    "encoder_3d": 141_933_984,
    "encoder_2d": 34_126_720,
    "decoder": 261_033_731,  # includes the three frozen pos_embed tables
    "quant_conv": 1_056,
    "post_quant_conv": 272,
}
FT2_PARAMS = {**FT4_PARAMS, "encoder_3d": 137_215_392, "decoder": 261_035_779}
FT4_TOTAL, FT2_TOTAL = 437_095_763, 432_379_219
KEYS_PER_PREFIX = {"encoder_3d": 142, "encoder_2d": 104, "decoder": 262, "quant_conv": 2, "post_quant_conv": 2}
# The only state-dict differences between ft4 and ft2 (same 512 keys otherwise).
FT4_VS_FT2 = {
    "encoder_3d.down.3.downsample.conv.weight": ((512, 512, 3, 3, 3), (512, 512, 1, 3, 3)),
    "decoder.mid.fuse.0.pos_embed": ((1, 4, 1, 512), (1, 8, 1, 512)),
}
SOME_FT4_SHAPES = {
    "encoder_3d.conv_in.weight": (128, 3, 3, 3, 3),
    "encoder_3d.down.0.downsample.conv.weight": (128, 128, 1, 3, 3),
    "encoder_3d.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1, 1),
    "encoder_3d.mid.attn_1.q.weight": (512, 512, 1, 1, 1),
    "encoder_3d.conv_out.weight": (32, 512, 3, 3, 3),
    "quant_conv.weight": (32, 32, 1, 1, 1),
    "post_quant_conv.weight": (16, 16, 1, 1, 1),
    "encoder_2d.conv_in.weight": (128, 3, 3, 3),
    "encoder_2d.down.2.downsample.conv.weight": (512, 512, 3, 3),
    "encoder_2d.norm_out.weight": (512,),
    "decoder.conv_in.weight": (512, 16, 3, 3, 3),
    "decoder.up.2.fuse.0.pos_embed": (1, 16, 1, 256),
    "decoder.up.2.fuse.0.attn.to_k.weight": (256, 512),
    "decoder.up.3.fuse.0.attn.to_out.0.bias": (512,),
    "decoder.up.0.block_1.0.nin_shortcut.weight": (128, 256, 1, 1, 1),
    "decoder.up.5.upsample.conv.weight": (512, 512, 3, 3, 3),
    "decoder.conv_out.weight": (3, 128, 3, 3, 3),
}
# (H, W) of a 16-frame input -> (latent (C,T,H,W), content features [2,3,4] (C,H,W), decoded (C,T,H,W))
FT4_SHAPES = {
    (256, 256): ((16, 4, 8, 8), [(512, 64, 64), (512, 32, 32), (512, 32, 32)], (3, 16, 256, 256)),
    (240, 320): ((16, 4, 7, 10), [(512, 60, 80), (512, 30, 40), (512, 30, 40)], (3, 16, 224, 320)),
    (256, 320): ((16, 4, 8, 10), [(512, 64, 80), (512, 32, 40), (512, 32, 40)], (3, 16, 256, 320)),
    (224, 298): ((16, 4, 7, 9), [(512, 56, 74), (512, 28, 37), (512, 28, 37)], (3, 16, 224, 288)),
    (224, 288): ((16, 4, 7, 9), [(512, 56, 72), (512, 28, 36), (512, 28, 36)], (3, 16, 224, 288)),
    (224, 224): ((16, 4, 7, 7), [(512, 56, 56), (512, 28, 28), (512, 28, 28)], (3, 16, 224, 224)),
    (256, 341): ((16, 4, 8, 10), [(512, 64, 85), (512, 32, 42), (512, 32, 42)], (3, 16, 256, 320)),
    (32, 32): ((16, 4, 1, 1), [(512, 8, 8), (512, 4, 4), (512, 4, 4)], (3, 16, 32, 32)),
    (64, 64): ((16, 4, 2, 2), [(512, 16, 16), (512, 8, 8), (512, 8, 8)], (3, 16, 64, 64)),
    (48, 80): ((16, 4, 1, 2), [(512, 12, 20), (512, 6, 10), (512, 6, 10)], (3, 16, 32, 64)),
}
# Measured bf16-autocast error on CPU (local-smoke, 2 x 16x32x32, 5 seeds): relative L2 error of the
# posterior mean <= 0.021 and of the reconstruction <= 0.039. The bounds leave ~2x headroom.
BF16_REL_TOL_LATENT, BF16_REL_TOL_XREC = 0.05, 0.08


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(scope="module")
def smoke() -> ReducioVAE:
    """local-smoke widths with the official (non-residual) decoder: every output path is live."""
    torch.manual_seed(0)
    params = get_preset("local-smoke")
    for key in ("content_residual", "content_warp", "coarse_flow"):
        del params["ddconfig"][key]
    return ReducioVAE.from_config(params).eval()


@pytest.fixture(scope="module")
def ft4_meta() -> ReducioVAE:
    return ReducioVAE.from_preset("reducio-ft4", device="meta").eval()


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.rand(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


# ---- presets and config --------------------------------------------------------------------------
def test_presets_known_and_unknown_name_is_loud() -> None:
    assert set(PRESETS) >= {"reducio-ft4", "reducio-ft2", "reference-small", "local-smoke", "local-default"}
    with pytest.raises(KeyError, match="known presets: local-default, local-smoke, reducio-ft2"):
        get_preset("reducio-ft8")
    p = get_preset("reducio-ft4")
    p["ddconfig"]["ch"] = 1  # a copy: the registry is not modified
    assert get_preset("reducio-ft4")["ddconfig"]["ch"] == 128


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trip(name: str) -> None:
    params = get_preset(name)
    cfg = ReducioConfig.from_params(params)
    assert ReducioConfig.from_params(cfg.to_params()) == cfg
    out = cfg.to_params()
    for section in ("ddconfig", "ddconfig_2d"):  # every official key survives with its value
        assert {k: out[section][k] for k in params[section]} == params[section]
    assert cfg.latent_shape(16, 64, 64) == (16, 16 // cfg.temporal_factor, 2, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.embed_dim = 8  # type: ignore[misc]


def test_config_ignores_training_keys_and_rejects_unsupported() -> None:
    params = get_preset("reference-small")
    params.update(lossconfig={"target": "x"}, scheduler_config={}, monitor="train/rec_loss", freeze_2d=False)
    assert ReducioConfig.from_params(params) == ReducioConfig.from_params(get_preset("reference-small"))
    for section, key, value in [("ddconfig", "fuse_type", "concat"), ("ddconfig", "upsample_first", False),
                                ("ddconfig", "double_z", True), ("ddconfig", "ch", 48),
                                ("ddconfig", "attn_resolutions", [8]), ("ddconfig_2d", "out_z", True)]:
        bad = get_preset("reference-small")
        bad[section][key] = value
        with pytest.raises(ValueError):
            ReducioConfig.from_params(bad)
    with pytest.raises(ValueError, match="mode"):
        ReducioConfig.from_params({**get_preset("reference-small"), "mode": "causal"})


def test_config_geometry() -> None:
    ft4 = ReducioConfig.from_params(get_preset("reducio-ft4"))
    ft2 = ReducioConfig.from_params(get_preset("reducio-ft2"))
    assert (ft4.temporal_factor, ft4.spatial_factor, ft4.latent_frames) == (4, 32, 4)
    assert (ft2.temporal_factor, ft2.spatial_factor, ft2.latent_frames) == (2, 32, 8)
    assert ft4.encoder_temporal_levels == {3, 4} and ft2.encoder_temporal_levels == {4}
    assert ft4.decoder_temporal_levels == {4, 5} and ft2.decoder_temporal_levels == {5}
    assert ft4.content_feature_indices == (2, 3, 4)
    assert ReducioConfig.content_frame_index(16) == 7
    with pytest.raises(ValueError, match="too small"):
        ft4.latent_shape(16, 16, 64)


# ---- released architectures on the meta device ---------------------------------------------------
@pytest.mark.parametrize(("name", "expected", "total"), [("reducio-ft4", FT4_PARAMS, FT4_TOTAL),
                                                       ("reducio-ft2", FT2_PARAMS, FT2_TOTAL)])
def test_released_parameter_and_key_counts(name: str, expected: dict[str, int], total: int) -> None:
    model = ReducioVAE.from_preset(name, device="meta")
    assert {n: _params(m) for n, m in model.named_children()} == expected
    assert _params(model) == total
    keys = list(model.state_dict())
    assert len(keys) == 512
    assert {p: sum(k.startswith(p + ".") for k in keys) for p in KEYS_PER_PREFIX} == KEYS_PER_PREFIX
    assert all(not p.requires_grad for n, p in model.named_parameters() if n.endswith("pos_embed"))


@pytest.mark.parametrize(("name", "total", "encoder_path"), [
    ("reference-small", 6_865_171, 1_933_536),
    ("local-default", 5_256_364, 1_739_776),
    ("local-smoke", 5_173_196, 1_739_776),
])
def test_small_preset_sizes(name: str, total: int, encoder_path: int) -> None:
    assert _params(ReducioVAE.from_preset(name, device="meta")) == total
    assert _params(ReducioVAE.from_preset(name, parts="encoder", device="meta")) == encoder_path


def test_ft4_vs_ft2_shapes() -> None:
    ft4 = _shapes(ReducioVAE.from_preset("reducio-ft4", device="meta"))
    ft2 = _shapes(ReducioVAE.from_preset("reducio-ft2", device="meta"))
    assert list(ft4) == list(ft2)
    diff = {k: (ft4[k], ft2[k]) for k in ft4 if ft4[k] != ft2[k]}
    assert diff == FT4_VS_FT2
    assert {k: ft4[k] for k in SOME_FT4_SHAPES} == SOME_FT4_SHAPES


def test_encoder_only_mode() -> None:
    model = ReducioVAE.from_preset("reducio-ft4", parts="encoder", device="meta")
    assert {k.split(".")[0] for k in model.state_dict()} == {"encoder_3d", "quant_conv"}
    assert _params(model) == 141_935_040
    x = torch.empty(1, 3, 16, 224, 288, device="meta")
    assert tuple(model.encode(x).mean.shape) == (1, 16, 4, 7, 9)
    with pytest.raises(RuntimeError, match="parts='encoder'"):
        model.decode(torch.empty(1, 16, 4, 7, 9, device="meta"), [])
    with pytest.raises(RuntimeError, match="parts='encoder'"):
        model.content_features(x[:, :, 0])
    with pytest.raises(ValueError):
        ReducioVAE.from_preset("local-smoke", parts="decoder")  # type: ignore[arg-type]


@pytest.mark.parametrize("hw", sorted(FT4_SHAPES))
def test_released_shapes_on_meta(ft4_meta: ReducioVAE, hw: tuple[int, int]) -> None:
    model = ft4_meta
    latent, feats, decoded = FT4_SHAPES[hw]
    x = torch.empty(1, 3, 16, *hw, device="meta")
    with torch.no_grad():
        z = model.encode(x).mean
        f = model.content_features(model.content_frame(x))
        y = model.decode(model.normalize_latent(z), f)
    assert tuple(z.shape[1:]) == latent == model.latent_shape(16, *hw)
    assert [tuple(t.shape[1:]) for t in f] == feats
    assert tuple(y.shape[1:]) == decoded


def test_official_module_names_for_hooks(ft4_meta: ReducioVAE) -> None:
    names = dict(ft4_meta.named_modules())
    for name in ["encoder_3d.down.2.downsample", "encoder_3d.mid.attn_1", "decoder.conv_in", "decoder.mid.fuse.0",
                 "decoder.mid.attn_1", "decoder.mid.block_2", "decoder.up.5.upsample", "decoder.up.3.fuse.0",
                 "decoder.up.2.fuse.0", "encoder_2d.mid.attn_1"]:
        assert name in names


# ---- behaviour on a tiny model ---------------------------------------------------------------------
def test_sinusoid_table_values() -> None:
    t = sinusoidal_table(4, 8).double()
    assert torch.equal(t[0], torch.tensor([0.0, 1.0] * 4, dtype=torch.float64))
    expected = torch.tensor([torch.sin(torch.tensor(3.0)), torch.cos(torch.tensor(3.0 / 100.0))], dtype=torch.float64)
    assert torch.allclose(t[3, [0, 5]], expected, atol=1e-7)  # j=5: 10000^(4/8) = 100


@pytest.mark.slow
def test_posterior_and_sampling(smoke: ReducioVAE, clip: torch.Tensor) -> None:
    with torch.no_grad():
        post = smoke.encode(clip)
    assert tuple(post.mean.shape) == (2, 16, 4, 1, 1) == (2, *smoke.latent_shape(16, 32, 32))
    assert torch.equal(post.mode(), post.mean) and torch.allclose(post.std, torch.exp(0.5 * post.logvar))
    a = post.sample(torch.Generator().manual_seed(5))
    b = post.sample(torch.Generator().manual_seed(5))
    c = post.sample(torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    noise = torch.randn(post.mean.shape, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(a, post.mean + post.std * noise)
    kl = post.kl()
    assert kl.shape == (2,) and bool((kl >= 0).all())
    with torch.no_grad():
        smoke.quant_conv.bias[16:] += 100.0  # push logvar above the clamp
        try:
            assert float(smoke.encode(clip).logvar.max()) == 20.0
        finally:
            smoke.quant_conv.bias[16:] -= 100.0


@pytest.mark.slow
def test_latent_norm_and_encode_latents(smoke: ReducioVAE, clip: torch.Tensor) -> None:
    z = normalize_latent(torch.randn(3, 16, 4, 2, 2) * 5 + 2)
    assert torch.allclose(z.mean(dim=(1, 2, 3, 4)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.var(dim=(1, 2, 3, 4), unbiased=False), torch.ones(3), atol=1e-3)
    lat = smoke.encode_latents(clip)
    assert lat.is_inference() and torch.allclose(lat, smoke.encode(clip).mean.detach())
    assert torch.allclose(smoke.encode_latents(clip, layer_norm=True), normalize_latent(lat))
    s = smoke.encode_latents(clip, sample=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(s, lat)


@pytest.mark.slow
def test_reconstruct_decode_and_errors(smoke: ReducioVAE, clip: torch.Tensor) -> None:
    with torch.no_grad():
        feats = smoke.content_features(smoke.content_frame(clip))
        assert [tuple(f.shape) for f in feats] == [(2, 64, 8, 8), (2, 64, 4, 4), (2, 64, 4, 4)]
        assert torch.equal(smoke.content_frame(clip), clip[:, :, 7])
        y = smoke.reconstruct(clip)
        z = smoke.normalize_latent(smoke.encode(clip).mean)
        assert torch.equal(y, smoke.decode(z, feats)) and y.shape == clip.shape
        with pytest.raises(ValueError, match="latent"):
            smoke.decode(torch.zeros(2, 16, 2, 1, 1), feats)  # wrong number of latent frames
        with pytest.raises(ValueError, match="content feature"):
            smoke.decode(z, feats[:2])
        with pytest.raises(ValueError):
            smoke.encode(clip[:, :, 0])


def _tiny_params(*, use_checkpoint: bool) -> dict:
    """A 3-level variant (spatial /4, temporal /2, 4 frames) for fast gradient tests; it also
    exercises the generic geometry (fusion at decoder level 1 from 2D feature 1)."""
    params = get_preset("local-smoke")
    params["ddconfig"].update(ch_mult=[1, 2, 2], ch_fuse=[-1, 1, -1], f_t=1, temp_res=4, use_checkpoint=use_checkpoint)
    params["ddconfig_2d"].update(ch_mult=[1, 2], use_checkpoint=use_checkpoint)
    return params


@pytest.mark.slow
def test_generic_geometry_and_training_step() -> None:
    x = torch.rand(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    grads = []
    for use_checkpoint in (False, True):
        torch.manual_seed(0)
        model = ReducioVAE.from_config(_tiny_params(use_checkpoint=use_checkpoint)).train()
        assert model.latent_shape(4, 16, 16) == (16, 2, 4, 4)
        assert model.config.content_feature_indices == (1, 2)
        xrec, post = model(x, sample=True, generator=torch.Generator().manual_seed(0))
        assert xrec.shape == x.shape and post.mean.shape == (2, 16, 2, 4, 4)
        ((xrec - x).abs().mean() + 1e-6 * post.kl().mean()).backward()
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        # Every trainable weight is used, except the two 2D-encoder modules whose output the
        # official model discards (their weights exist only for checkpoint compatibility).
        unused = {n for n, p in trainable if p.grad is None}
        assert unused and all(n.startswith(("encoder_2d.mid.block_2.", "encoder_2d.norm_out.")) for n in unused)
        grads.append(torch.cat([p.grad.flatten() for _, p in trainable if p.grad is not None]))
    assert torch.isfinite(grads[0]).all()
    # Gradient checkpointing (recompute in backward) gives the same gradients.
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_embed_dim_may_differ_from_z_channels() -> None:
    params = {**_tiny_params(use_checkpoint=False), "embed_dim": 8}
    model = ReducioVAE.from_config(params).eval()
    assert tuple(model.quant_conv.weight.shape) == (16, 32, 1, 1, 1)
    assert tuple(model.post_quant_conv.weight.shape) == (16, 8, 1, 1, 1)
    x = torch.zeros(1, 3, 4, 16, 16)
    with torch.no_grad():
        assert tuple(model.encode(x).mean.shape) == (1, *model.latent_shape(4, 16, 16)) == (1, 8, 2, 4, 4)
        assert model.reconstruct(x).shape == x.shape


@pytest.mark.slow
def test_bf16_autocast_close_to_float32(smoke: ReducioVAE, clip: torch.Tensor) -> None:
    with torch.no_grad():
        ref_post, ref = smoke.encode(clip), smoke.reconstruct(clip)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            post, out = smoke.encode(clip), smoke.reconstruct(clip)
    assert post.mean.dtype == torch.float32  # moments are promoted for exp / KL
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert _rel(post.mean, ref_post.mean) < BF16_REL_TOL_LATENT
    assert _rel(out, ref) < BF16_REL_TOL_XREC


# ---- the local residual-decoder extension ----------------------------------------------------------
def test_local_decoder_extensions_are_local_only() -> None:
    extensions = ("content_residual", "content_warp", "coarse_flow")
    for name in ("reducio-ft4", "reducio-ft2", "reference-small"):  # official configs: absent, not written
        dd = ReducioConfig.from_params(get_preset(name)).to_params()["ddconfig"]
        assert not set(extensions) & set(dd)
    for name in ("local-smoke", "local-default"):
        params = get_preset(name)
        assert all(params["ddconfig"][k] is True for k in extensions)
        assert all(ReducioConfig.from_params(params).to_params()["ddconfig"][k] is True for k in extensions)  # saved

        def without(*keys: str, params: dict = params) -> dict:
            return {**params, "ddconfig": {k: v for k, v in params["ddconfig"].items() if k not in keys}}

        shapes = {k: _shapes(ReducioVAE.from_config(without(*extensions[i:]), device="meta")) for i, k in
                  enumerate(("plain", "residual", "warp"))}
        full = _shapes(ReducioVAE.from_config(params, device="meta"))
        base = shapes["plain"]
        # the residual adds nothing; the warp only widens conv_out (3 frame channels in, 2 flow channels out)
        assert shapes["residual"] == base
        assert {k for k in shapes["warp"] if shapes["warp"][k] != base.get(k)} == {"decoder.conv_out.weight",
                                                                                   "decoder.conv_out.bias"}
        assert shapes["warp"]["decoder.conv_out.weight"][:2] == (base["decoder.conv_out.weight"][0] + 2,
                                                                 base["decoder.conv_out.weight"][1] + 3)
        # the coarse field adds its own head, nothing else: a GroupNorm and a 3x3x3 conv to 2 channels
        # over the features after the last temporal upsample (level 4's output width, ch x ch_mult[4])
        width = params["ddconfig"]["ch"] * params["ddconfig"]["ch_mult"][4]
        assert {k: v for k, v in full.items() if k not in shapes["warp"]} == {
            "decoder.flow_norm.weight": (width,), "decoder.flow_norm.bias": (width,),
            "decoder.flow_out.weight": (2, width, 3, 3, 3), "decoder.flow_out.bias": (2,)}
    with pytest.raises(ValueError, match="content_warp=True needs content_residual"):
        params = get_preset("local-smoke")
        del params["ddconfig"]["content_residual"]
        ReducioConfig.from_params(params)
    with pytest.raises(ValueError, match="coarse_flow=True needs content_warp"):
        params = get_preset("local-smoke")
        del params["ddconfig"]["content_warp"]
        ReducioConfig.from_params(params)


@pytest.mark.slow
def test_coarse_flow_moves_the_whole_output() -> None:
    """A bias on the coarse head alone shifts every output frame by COARSE_FLOW_SCALE x
    CONTENT_WARP_SCALE px per unit: the head is wired into the warp, upsampled everywhere."""
    from lib.vae.decoder import COARSE_FLOW_SCALE, CONTENT_WARP_SCALE

    torch.manual_seed(0)
    model = ReducioVAE.from_preset("local-smoke").eval()
    x = torch.rand(1, 3, 16, 32, 32) * 2 - 1
    with torch.no_grad():
        model.decoder.flow_out.bias[0] = 1.0 / (COARSE_FLOW_SCALE * CONTENT_WARP_SCALE)  # +1 px in x
        rec = model.reconstruct(x)
    frame = x[:, :, 7]
    assert torch.allclose(rec[:, :, :, :, :-1], frame[:, :, None, :, 1:].expand(-1, -1, 16, -1, -1), atol=1e-4)


def test_warp_frame_moves_pixels_by_the_field() -> None:
    from lib.vae.decoder import warp_frame

    frame = torch.rand(2, 3, 8, 12)
    assert torch.allclose(warp_frame(frame, torch.zeros(2, 2, 4, 8, 12)), frame.unsqueeze(2).expand(-1, -1, 4, -1, -1),
                          atol=1e-5)
    flow = torch.zeros(2, 2, 2, 8, 12)
    flow[:, 0, 0], flow[:, 1, 1] = 2.0, -1.0  # frame 0: sample 2 px to the right; frame 1: 1 px up
    out = warp_frame(frame, flow)
    assert torch.allclose(out[:, :, 0, :, :-2], frame[:, :, :, 2:], atol=1e-5)
    assert torch.allclose(out[:, :, 0, :, -2:], frame[:, :, :, -1:].expand(-1, -1, -1, 2), atol=1e-5)  # border repeated
    assert torch.allclose(out[:, :, 1, 1:], frame[:, :, :-1], atol=1e-5)
    half = torch.zeros(1, 2, 1, 8, 12)
    half[:, 0] = 0.5  # half a pixel: the mean of the two neighbours (bilinear)
    assert torch.allclose(warp_frame(frame[:1], half)[0, :, 0, :, :-1], (frame[0, :, :, :-1] + frame[0, :, :, 1:]) / 2,
                          atol=1e-5)


@pytest.mark.slow
def test_fresh_residual_decoder_starts_at_the_content_frame_baseline() -> None:
    torch.manual_seed(0)
    model = ReducioVAE.from_preset("local-smoke").eval()
    x = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    with torch.no_grad():
        rec = model.reconstruct(x)
        feats = model.content_features(model.content_frame(x))
    assert torch.equal(feats[-1], x[:, :, 7])  # the frame itself rides along, last
    # zero-initialised conv_out: no residual, zero displacement -> output == baseline (up to the
    # float rounding of the sampling grid)
    assert torch.allclose(rec, x[:, :, 7:8].expand_as(x), atol=1e-5)
    with pytest.raises(ValueError, match="content frame"):
        model.decode(normalize_latent(model.encode(x).mode()), feats[:-1])
    # After a training step the residual branch is live (not a hard-wired copy).
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    rec, _ = model(x, sample=False)
    (rec - x).square().mean().backward()
    opt.step()
    with torch.no_grad():
        assert not torch.equal(model.eval().reconstruct(x), x[:, :, 7:8].expand_as(x))


@pytest.mark.slow
def test_clip_metrics_score_the_whole_clip_not_a_mean_of_capped_frame_psnrs() -> None:
    """The baseline's exact content frame must not buy it ~5 dB (its 100 dB frame averaged in)."""
    from lib.recon import Reconstruction, clip_metrics, content_frame_baseline
    from lib.vae.losses import psnr

    g = torch.Generator().manual_seed(0)
    clips = torch.rand(2, 3, 16, 32, 32, generator=g) * 2 - 1
    noisy = (clips + 0.05 * torch.randn(clips.shape, generator=g)).clamp(-1, 1)
    rec = Reconstruction(clips, noisy, torch.zeros(2, 16, 4, 1, 1), 7)
    rows = {(r["clip"], r["method"]): r for r in clip_metrics(rec, ["a", "b"])}
    baseline = content_frame_baseline(clips)
    expected = 10 * torch.log10(4 / (baseline - clips).square().mean(dim=(1, 2, 3, 4)))
    assert rows[("a", "content-frame baseline")]["psnr"] == pytest.approx(float(expected[0]), abs=1e-3)
    assert rows[("b", "vae")]["psnr"] == pytest.approx(float(psnr(clips, noisy)[1]), abs=1e-4)
    assert rows[("a", "content-frame baseline")]["psnr"] < 50  # no 100 dB frame in it
