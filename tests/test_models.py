"""The classifier zoo (lib/models): every registered model trains a step on a tiny batch of its
input kind, the registry's errors are loud and helpful, the published structures hold, the cost
counters count, and latent augmentation behaves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from lib.models import (
    FAMILIES,
    INPUT_KINDS,
    MODEL_NAMES,
    ModelConfigError,
    build_model,
    count_parameters,
    forward_flops,
    list_models,
    model_info,
)
from lib.models.augment import LatentAugment, LatentAugmentConfig, channel_dropout, flip_w, get_augment, time_shift

UCF_LATENT = (16, 4, 7, 9)  # 224x288 clip through the /32, T/4 Reducio encoder
SMALL_LATENT = (16, 4, 2, 3)  # the embedded default: 64x96 input
POOLED_PIXELS = (3, 4, 4, 8)  # the equal-size pooled-pixel control
TINY_PIXELS = (3, 8, 32, 32)  # keeps R(2+1)D-18 fast
NUM_CLASSES = 5


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors on a shared 2-core machine: one thread avoids OpenMP spin contention
    (milliseconds instead of seconds per step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shapes_for(name: str) -> list[tuple[int, int, int, int]]:
    if model_info(name).input_kind == "pixels":
        return [TINY_PIXELS]
    return [UCF_LATENT, SMALL_LATENT, POOLED_PIXELS]


CASES = [(name, shape) for name in MODEL_NAMES for shape in shapes_for(name)]


@pytest.mark.parametrize(("name", "input_shape"), CASES, ids=[f"{n}-{'x'.join(map(str, s))}" for n, s in CASES])
@pytest.mark.slow
def test_forward_backward_every_model(name: str, input_shape: tuple[int, int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, input_shape=input_shape).train()
    batch = 1 if name == "pixel_r2plus1d18" else 3
    inputs = [torch.randn(batch, *shape) for shape in model.input_shapes]
    if model_info(name).input_kind == "pixels":
        inputs = [x.clamp(-1, 1) for x in inputs]
    labels = torch.arange(batch) % NUM_CLASSES
    logits = model(*inputs)
    assert logits.shape == (batch, NUM_CLASSES)
    loss = F.cross_entropy(logits, labels)
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters outside the graph: {no_grad}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert len(zero) <= len(list(model.parameters())) // 10, f"dead parameters: {zero}"
    model.eval()
    with torch.no_grad():
        first, second = model(*inputs), model(*inputs)
        alone = torch.cat([model(*(x[i:i + 1] for x in inputs)) for i in range(batch)])
    assert torch.equal(first, second), "eval mode must be deterministic (dropout / augmentation off)"
    # a reshape that mixed clips of a batch (e.g. batch and time axes swapped) would break this
    assert torch.allclose(alone, first, atol=1e-5), "each clip's logits must depend on that clip only"


def test_registry_metadata() -> None:
    assert set(MODEL_NAMES) == set(list_models())
    for name in MODEL_NAMES:
        info = model_info(name)
        assert info.family in FAMILIES and info.input_kind in INPUT_KINDS
        assert info.origin in ("paper", "ours", "reference") and info.summary
    for family in ("lstm", "transformer", "conv3d"):
        origins = {model_info(n).origin for n in list_models(family=family)}
        assert {"paper", "ours"} <= origins, f"{family} needs a published and an own model"
    assert list_models(input_kind="latent+content") == ["fusion_ours"]
    assert set(list_models(family="pixel")) == {"pixel_r2plus1d18", "pixel_c3d_small"}


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ModelConfigError, match="unknown model name 'lstm_papr'") as exc:
        build_model("lstm_papr", num_classes=10, input_shape=UCF_LATENT, origin="params/x.yaml")
    message = str(exc.value)
    assert message.startswith("params/x.yaml: ")
    assert all(name in message for name in MODEL_NAMES)


def test_bad_overrides_name_the_valid_fields() -> None:
    with pytest.raises(ModelConfigError, match=r"no config field\(s\) \['hiden'\]") as exc:
        build_model("lstm_paper", num_classes=10, input_shape=UCF_LATENT, hiden=64)
    assert "'hidden'" in str(exc.value) and "'pooled'" in str(exc.value)
    with pytest.raises(ModelConfigError, match="'depth'.*expected an integer"):
        build_model("transformer_ours", num_classes=10, input_shape=UCF_LATENT, depth="4")
    with pytest.raises(ModelConfigError, match="token.*expected one of"):
        build_model("transformer_paper", num_classes=10, input_shape=UCF_LATENT, token="patch")
    with pytest.raises(ModelConfigError, match="dropout must be in"):
        build_model("conv3d_paper", num_classes=10, input_shape=UCF_LATENT, dropout=1.5)
    with pytest.raises(ModelConfigError, match="not divisible by heads"):
        build_model("transformer_ours", num_classes=10, input_shape=UCF_LATENT, dim=100, heads=3)
    with pytest.raises(ModelConfigError, match="input_shape must be 4 positive ints"):
        build_model("conv3d_ours", num_classes=10, input_shape=(16, 4, 7))
    with pytest.raises(ModelConfigError, match="RGB frames"):
        build_model("pixel_c3d_small", num_classes=10, input_shape=UCF_LATENT)
    with pytest.raises(ModelConfigError, match="num_classes"):
        build_model("conv3d_ours", num_classes=1, input_shape=UCF_LATENT)


def test_overrides_apply_with_yaml_types() -> None:
    # YAML gives lists for tuples and ints for floats
    model = build_model("conv3d_ours", num_classes=10, input_shape=SMALL_LATENT, stages=[32, 64], dropout=0)
    assert model.config.stages == (32, 64) and model.config.dropout == 0.0
    assert model.trunk.feature_size == 64
    model = build_model("transformer_ours", num_classes=10, input_shape=SMALL_LATENT, depth=2, pool="cls")
    assert len(model.blocks) == 2 and model.cls_token is not None


def test_wrong_input_is_a_clear_error() -> None:
    model = build_model("conv3d_paper", num_classes=10, input_shape=UCF_LATENT)
    with pytest.raises(ValueError, match=r"must have shape \(B, 16, 4, 7, 9\), got \(2, 16, 4, 2, 3\)"):
        model(torch.zeros(2, *SMALL_LATENT))
    fusion = build_model("fusion_ours", num_classes=10, input_shape=UCF_LATENT, content_dim=64)
    with pytest.raises(ValueError, match="content_dim"):
        fusion(torch.zeros(2, *UCF_LATENT), torch.zeros(2, 512))


def test_lstm_paper_structure() -> None:
    model = build_model("lstm_paper", num_classes=101, input_shape=UCF_LATENT)
    assert (model.lstm.num_layers, model.lstm.hidden_size, model.lstm.input_size) == (2, 128, 8)
    x = torch.randn(2, *UCF_LATENT)
    sequence = model.sequence(x)
    assert sequence.shape == (2, 16, 8)  # the 16 channels as items of 2x2x2 = 8 pooled values
    # item 3 holds channel 3's adaptive 2x2x2 bins; the first bin is t in [0, 2), h in [0, 4), w in [0, 5)
    assert torch.allclose(sequence[0, 3, 0], x[0, 3, 0:2, 0:4, 0:5].mean(), atol=1e-6)
    # LSTM (4*128*(8+128) + 8*128) + (4*128*256 + 8*128) + head 128*101 + 101
    assert count_parameters(model) == 70_656 + 132_096 + 12_928 + 101


def test_transformer_paper_keeps_only_the_class_token() -> None:
    torch.manual_seed(0)
    for token, n_tokens in (("channel", 16), ("position", 4 * 7 * 9)):
        model = build_model("transformer_paper", num_classes=10, input_shape=UCF_LATENT, token=token).eval()
        assert model.pos_embed.shape[1] == n_tokens + 1
        seen: list[torch.Tensor] = []
        model.head_drop.register_forward_hook(lambda _m, inp, _out, seen=seen: seen.append(inp[0]))
        x = torch.randn(2, *UCF_LATENT)
        with torch.no_grad():
            model(x)
        assert seen[0].shape == (2, model.config.hidden)  # one vector per clip: the class token


def test_conv3d_paper_reduces_to_128x1x1x1() -> None:
    for shape in (UCF_LATENT, SMALL_LATENT, POOLED_PIXELS, (16, 1, 1, 1)):
        model = build_model("conv3d_paper", num_classes=10, input_shape=shape).eval()
        with torch.no_grad():
            features = model.features(torch.randn(2, *shape))
        assert features.shape == (2, 128, 1, 1, 1)
        assert len(model.mlp) == 2 and all(block.drop.p == 0.5 for block in model.mlp)
        assert not isinstance(list(model.modules())[-1], torch.nn.Softmax)


def test_pixel_c3d_small_sees_frame_differences() -> None:
    """With frame_diff the stem's input is the 3 colour channels plus their scaled temporal
    differences: the frame-difference half of the stem responds to motion and nothing else."""
    model = build_model("pixel_c3d_small", num_classes=4, input_shape=(3, 8, 32, 32))
    assert model.stem.in_channels == 3 and model.stem_diff is not None
    plain = build_model("pixel_c3d_small", num_classes=4, input_shape=(3, 8, 32, 32), frame_diff=False)
    assert plain.stem_diff is None
    seen: dict[str, torch.Tensor] = {}
    model.stem_diff.register_forward_hook(lambda m, i, o: seen.__setitem__("input", i[0].clone()))
    still = (torch.rand(2, 3, 1, 32, 32) * 2 - 1).expand(-1, -1, 8, -1, -1).contiguous()
    model.eval()(still)
    assert torch.equal(seen["input"], torch.zeros_like(still))  # nothing moves: the difference stream is 0
    moving = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    model(moving)
    diff = seen["input"]
    assert torch.allclose(diff[:, :, 1:], 8.0 * (moving[:, :, 1:] - moving[:, :, :-1])) and not diff[:, :, 0].any()
    # the two streams together are one conv over the 6 stacked channels
    with torch.no_grad():
        stacked = torch.cat([moving, diff], dim=1)
        weight = torch.cat([model.stem.weight, model.stem_diff.weight], dim=1)
        one_conv = torch.nn.functional.conv3d(stacked, weight, stride=(2, 4, 4), padding=(1, 3, 3))
        assert torch.allclose(model.stem(moving) + model.stem_diff(diff), one_conv, atol=1e-4)


def test_parameter_counts_and_flops_are_sane() -> None:
    for name in MODEL_NAMES:
        if model_info(name).input_kind == "pixels":
            continue
        model = build_model(name, num_classes=101, input_shape=UCF_LATENT)
        params = count_parameters(model)
        assert 10_000 < params < 10_000_000, (name, params)
        flops = forward_flops(model)
        assert 1e6 < flops < 2e9, (name, flops)
    lstm = build_model("lstm_paper", num_classes=101, input_shape=UCF_LATENT)
    # the LSTM's matmuls are counted (FlopCounterMode alone counts 0 for mkldnn LSTM layers)
    lstm_flops = 2 * 16 * (4 * 128 * (8 + 128)) + 2 * 16 * (4 * 128 * 256) + 2 * 128 * 101
    assert forward_flops(lstm) == lstm_flops
    c3d = build_model("pixel_c3d_small", num_classes=10, input_shape=(3, 16, 64, 96))
    assert forward_flops(c3d) < 0.2e9 and count_parameters(c3d) < 1_000_000


def test_augment_only_in_training_and_shape_preserving() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, *SMALL_LATENT)
    augment = LatentAugment(LatentAugmentConfig(flip_w_p=0.5))
    assert torch.equal(augment.eval()(x, g), x)
    y = augment.train()(x, g)
    assert y.shape == x.shape and not torch.equal(y, x)
    # reproducible from the generator's state
    assert torch.equal(get_augment("latent")(x, torch.Generator().manual_seed(1)),
                       get_augment("latent")(x, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="latent_flip"):
        get_augment("flips")


def test_augment_functions() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, *SMALL_LATENT)
    assert torch.equal(flip_w(x, 1.0, g), x.flip(-1))
    shifted = time_shift(x, 1, 1.0, g)
    for b in range(x.shape[0]):  # each sample is a shift of itself by -1, 0 or +1 with the edge repeated
        options = [x[b], torch.cat([x[b][:, :1], x[b][:, :-1]], 1), torch.cat([x[b][:, 1:], x[b][:, -1:]], 1)]
        assert any(torch.equal(shifted[b], o) for o in options)
    dropped = channel_dropout(x, 1.0, g)
    assert torch.allclose(dropped, x.mean(dim=(2, 3, 4), keepdim=True).expand_as(x))


def test_post_norm_block_equals_torch_encoder_layer() -> None:
    """transformer_paper's encoder layer is nn.TransformerEncoderLayer written out (so FLOP
    counting sees its matmuls): same weights, same outputs."""
    from lib.models.layers import TransformerBlock

    torch.manual_seed(0)
    ours = TransformerBlock(32, 4, 64, dropout=0.1, attn_dropout=0.1, norm_first=False).eval()
    ref = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(ours.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(ours.attn.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(ours.attn.proj.weight)
        ref.self_attn.out_proj.bias.copy_(ours.attn.proj.bias)
        for mine, theirs in ((ours.ff[0], ref.linear1), (ours.ff[3], ref.linear2), (ours.norm1, ref.norm1),
                             (ours.norm2, ref.norm2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
        x = torch.randn(3, 17, 32)
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_transformer_flops_include_attention() -> None:
    """Every matmul of transformer_paper is counted, CPU flash attention included."""
    model = build_model("transformer_paper", num_classes=101, input_shape=UCF_LATENT)
    n, d, ff = 16 + 1, 128, 512  # 16 channel tokens + class token
    per_layer = 2 * n * d * 3 * d + 2 * n * d * d + 2 * 2 * n * n * d + 2 * 2 * n * d * ff
    expected = 2 * 16 * 252 * d + 4 * per_layer + 2 * d * 101
    assert forward_flops(model) == expected
    fusion = build_model("fusion_ours", num_classes=10, input_shape=SMALL_LATENT, content_dim=64)
    assert forward_flops(fusion, [SMALL_LATENT, (64,)]) == forward_flops(fusion) > 0


def test_recipes_are_valid_training_settings() -> None:
    """Each registry recipe is accepted by the engine's TrainConfig and names a real augmentation."""
    classify_config = pytest.importorskip("lib.classify.config")
    for name in MODEL_NAMES:
        recipe = dict(model_info(name).recipe)
        classify_config.TrainConfig.from_mapping(recipe)
        if recipe.get("augment") is not None:
            assert isinstance(get_augment(recipe["augment"]), LatentAugment)
