"""The video-VAE zoo without downloads: every adapter from its tiny config, through the cache.

Each diffusers class is instantiated from the adapter's tiny config (the released structure at
narrow widths, random init) and saved as a diffusers folder, the ``diffusers:DIR`` source a
downloaded model would be. Checked per adapter: the latent shape and the frame rule, the
normalisation, a cache build that resumes and reads back, refusal of a stale cache when the
weights change, and a classifier forward on the cached latents. Then: every registered latent
model on every adapter's UCF101-bucket latent (it runs, or says clearly why it cannot), source
parsing and offline errors, and the core install without diffusers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lib.cache import BuildOptions, CacheSpec, StaleCacheError, build_cache, load_split, open_cache
from lib.data.spatial import CropPolicy
from lib.data.synth import ensure_synthetic
from lib.models import ModelConfigError, build_model, list_models, model_info
from lib.paths import REPO_ROOT
from lib.zoo import ADAPTERS, VaeGeometry, ZooSourceError
from lib.zoo.geometry import causal_input, causal_padding, drop_padding_steps

diffusers = pytest.importorskip("diffusers", reason="the zoo's optional dependency (pip install -e '.[zoo]')")

from lib.zoo.cost import model_encode_cost, released_encode_cost  # noqa: E402
from lib.zoo.encoder import DiffusersClipEncoder  # noqa: E402
from lib.zoo.sources import parse_source  # noqa: E402
from lib.zoo.tiny import build_tiny_vae, tiny_record, write_tiny_vae  # noqa: E402

NAMES = list(ADAPTERS)
SPATIAL = CropPolicy(short_side=72, crop=(64, 96))  # a multiple of 32: every adapter's grid
OPTIONS = BuildOptions(batch_size=2, threads=1, num_workers=0, progress=False)
UCF101_CLIP = (16, 224, 288)
# (channels, T', H', W') of a 16 x 224 x 288 clip, as the released models' papers give their factors
RELEASED_LATENT = {"wan2.1": (16, 4, 28, 36), "hunyuanvideo": (16, 4, 28, 36), "ltx-video": (128, 2, 7, 9),
                   "cogvideox": (16, 4, 28, 36), "cosmos": (16, 2, 28, 36), "sd-vae": (4, 16, 28, 36)}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoo")
    return {name: write_tiny_vae(name, root / name) for name in NAMES}


@pytest.fixture(scope="module")
def smoke_root() -> Path:
    return ensure_synthetic(preset="smoke")


def clip(t: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, t, 64, 96, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- geometry ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("frames", "factor", "pad", "steps"), [(16, 4, 1, 4), (16, 8, 1, 2), (12, 4, 1, 3),
                                                                (8, 8, 1, 1), (32, 8, 1, 4)])
def test_causal_padding_keeps_exactly_the_real_frames_steps(frames: int, factor: int, pad: int, steps: int) -> None:
    assert causal_padding(frames, factor) == pad
    x = torch.arange(frames, dtype=torch.float32).view(1, 1, frames, 1, 1)
    padded = causal_input(x, factor)
    assert padded.shape[2] == frames + pad and (padded[0, 0, : pad + 1, 0, 0] == 0).all()
    assert (padded[0, 0, pad:, 0, 0] == x[0, 0, :, 0, 0]).all()
    latent_steps = 1 + (frames + pad - 1) // factor  # what a causal n*k+1 encoder returns
    kept = drop_padding_steps(torch.arange(latent_steps).view(1, 1, -1, 1, 1), frames, factor)
    assert kept.shape[2] == steps == frames // factor
    assert kept[0, 0, 0, 0, 0] == 1  # step 0 (the padding copies alone) is the one dropped


def test_geometry_refuses_clips_that_break_its_rules() -> None:
    g = VaeGeometry("causal", 8, 32, 128, 32)
    assert g.latent_shape(16, 224, 288) == (128, 2, 7, 9)
    with pytest.raises(ValueError, match="multiples of 32"):
        g.latent_shape(16, 240, 320)
    with pytest.raises(ValueError, match="multiple of 8"):
        g.latent_shape(12, 224, 288)
    assert VaeGeometry("per_frame", 1, 8, 4, 8).latent_shape(16, 64, 96) == (4, 16, 8, 12)
    with pytest.raises(ValueError, match="frame_rule"):
        VaeGeometry("sliding", 4, 8, 16, 8)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_tiny_config_keeps_the_released_geometry(name: str) -> None:
    tiny = ADAPTERS[name].geometry(build_tiny_vae(name))
    released = released_encode_cost(name, (3, *UCF101_CLIP))
    assert tiny.latent_shape(*UCF101_CLIP) == tuple(released["latent_shape"]) == RELEASED_LATENT[name]
    assert released["encode_flops"] > 1e11 and released["params"] > 5e7  # full-size architectures, counted on meta


# --- one adapter at a time --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_encoder_shapes_normalisation_and_frame_rule(name: str, tiny_dirs: dict[str, Path]) -> None:
    torch.set_num_threads(1)
    enc = DiffusersClipEncoder(f"diffusers:{tiny_dirs[name]}")
    g = enc.geometry
    x = clip()
    out = enc.encode(x, seeds=[0])["latent"]
    assert tuple(out.shape[1:]) == g.latent_shape(16, 64, 96) == enc.latent_shape((3, 16, 64, 96))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # the same latent by hand: the adapter's input rule, posterior mode, pipeline normalisation
    model = enc.model
    if g.frame_rule == "per_frame":
        raw = model.encode(x[0].transpose(0, 1)).latent_dist.mode().transpose(0, 1)[None]
    else:
        raw = model.encode(torch.cat([x[:, :, :1], x], dim=2)).latent_dist.mode()[:, :, 1:]
    c = model.config
    if name == "wan2.1":
        by_hand = (raw - torch.tensor(c.latents_mean).view(1, -1, 1, 1, 1)) / torch.tensor(c.latents_std).view(
            1, -1, 1, 1, 1)
    elif name == "cosmos":  # statistics per (channel, causal step); the dropped first step is step 0
        mean = torch.tensor(c.latents_mean).view(1, 16, -1, 1, 1)[:, :, 1 : 1 + raw.shape[2]]
        std = torch.tensor(c.latents_std).view(1, 16, -1, 1, 1)[:, :, 1 : 1 + raw.shape[2]]
        by_hand = (raw - mean) / std
    elif name == "ltx-video":
        by_hand = (raw - model.latents_mean.view(1, -1, 1, 1, 1)) * c.scaling_factor / model.latents_std.view(
            1, -1, 1, 1, 1)
    else:
        by_hand = (raw - (getattr(c, "shift_factor", None) or 0.0)) * c.scaling_factor
    torch.testing.assert_close(out, by_hand, rtol=1e-5, atol=1e-5)
    # the first kept step encodes real frames: changing the clip's first frames changes it
    changed = x.clone()
    changed[:, :, : g.temporal_factor] = -changed[:, :, : g.temporal_factor]
    assert not torch.allclose(enc.encode(changed, seeds=[0])["latent"][:, :, 0], out[:, :, 0])


def test_causal_steps_cover_their_own_frames(tiny_dirs: dict[str, Path]) -> None:
    """Wan's encoder is causal (RMS norms, causal convolutions): changing the clip's last frames
    leaves every earlier kept step as it was, so step k holds frames 4k..4k+3."""
    torch.set_num_threads(1)
    enc = DiffusersClipEncoder(f"diffusers:{tiny_dirs['wan2.1']}")
    x = clip()
    changed = x.clone()
    changed[:, :, 12:] = 0.0
    a, b = enc.encode(x, seeds=[0])["latent"], enc.encode(changed, seeds=[0])["latent"]
    torch.testing.assert_close(a[:, :, :3], b[:, :, :3])
    assert not torch.allclose(a[:, :, 3], b[:, :, 3])


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_cache_builds_resumes_reads_back_and_refuses_other_weights(name: str, tiny_dirs: dict[str, Path],
                                                                  smoke_root: Path, tmp_path: Path) -> None:
    source = f"diffusers:{tiny_dirs[name]}"
    spec = CacheSpec(data_root=smoke_root, vae_source=source, splits=("val",), spatial=SPATIAL)
    whole = tmp_path / "whole"
    assert build_cache(spec, whole, OPTIONS).complete
    # resumed: half the videos first (one of two shards, not merged), then the rest
    resumed = tmp_path / "resumed"
    first = build_cache(spec, resumed, replace(OPTIONS, num_shards=2, shard_index=0, merge=False))
    assert not first.complete and 0 < first.videos_this_run < first.num_videos
    second = build_cache(spec, resumed, OPTIONS)
    assert second.complete and second.videos_this_run == first.num_videos - first.videos_this_run
    a, b = load_split(whole, "val"), load_split(resumed, "val")
    assert torch.equal(a.latents, b.latents) and torch.equal(a.labels, b.labels)
    cache = open_cache(whole)
    geometry = ADAPTERS[name].geometry(build_tiny_vae(name))
    assert cache.latent_shape == geometry.latent_shape(16, 64, 96)
    # read back = a direct encode of the same clips (fp16 storage)
    enc = DiffusersClipEncoder(source)
    video = cache.videos("val")[0]
    from lib.data.video import iter_clips

    pixels = torch.stack([c for _, c in iter_clips(video.path, spatial=SPATIAL)])
    direct = torch.cat([enc.encode(pixels[i : i + 2], seeds=[0] * len(pixels[i : i + 2]))["latent"]
                        for i in range(0, len(pixels), 2)]).half()
    torch.testing.assert_close(a.latents[a.video_index == 0].float(), direct.float(), rtol=2e-3, atol=2e-3)
    # a classifier trains on it: one forward of the registry's conv3d head
    model = build_model("conv3d_ours", num_classes=cache.num_classes, input_shape=cache.latent_shape)
    assert model(a.latents[:2].float()).shape == (2, cache.num_classes)
    # other weights (another seed), then another compute dtype: refused, naming what differs
    other = write_tiny_vae(name, tmp_path / "other", seed=1)
    with pytest.raises(StaleCacheError, match="weights_sha256"):
        build_cache(replace(spec, vae_source=f"diffusers:{other}"), whole, OPTIONS)
    with pytest.raises(StaleCacheError, match="compute_dtype"):
        build_cache(replace(spec, dtype="bfloat16"), whole, OPTIONS)


@pytest.mark.slow
def test_cli_builds_a_cache_from_a_relative_tiny_folder(tiny_dirs: dict[str, Path], smoke_root: Path,
                                                        tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(tiny_dirs["cosmos"], work / "tiny-cosmos")
    command = [sys.executable, "-m", "lib.cache", "build", "--data", str(smoke_root), "--vae",
               "diffusers:tiny-cosmos", "--out", "cache", "--splits", "val", "--crop", "64", "96",
               "--short-side", "72", "--threads", "1", "--num-workers", "0", "--no-progress"]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    cache = open_cache(work / "cache")
    assert cache.latent_shape == (16, 2, 8, 12)
    manifest = json.loads((work / "cache" / "index.json").read_text())
    assert manifest["key"]["encoder"]["class_name"] == "AutoencoderKLCosmos"
    assert manifest["key"]["encoder"]["model"] == {"origin": "local", "folder_name": "tiny-cosmos", "subfolder": ""}


# --- the registry on every adapter's latent ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_registry_models_fit_each_released_latent_or_say_why(name: str) -> None:
    shape = RELEASED_LATENT[name]
    for model_name in list_models(input_kind="latent"):
        try:
            model = build_model(model_name, num_classes=101, input_shape=shape)
        except ModelConfigError as err:  # must name the model, the shape and a fix
            assert model_name in str(err) and str(shape) in str(err) and "Fix:" in str(err)
            continue
        with torch.no_grad():
            assert model.eval()(torch.zeros(1, *shape)).shape == (1, 101), (model_name, shape)
    assert model_info("attentive_probe").family == "probe"


# --- sources ----------------------------------------------------------------------------------------
def test_sources_parse_hub_ids_and_local_folders(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    hub = parse_source("diffusers:Wan-AI/Wan2.1-T2V-1.3B-Diffusers@abc123")
    assert (hub.repo, hub.revision, hub.subfolder, hub.is_local) == ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "abc123",
                                                                     "vae", False)
    assert parse_source("diffusers:stabilityai/sd-vae-ft-mse").subfolder == ""
    local = parse_source(f"diffusers:{tiny_dirs['wan2.1']}")
    assert local.is_local and local.identity() == {"origin": "local", "folder_name": "wan2.1", "subfolder": ""}
    pipeline = tmp_path / "pipeline"
    (pipeline / "vae").mkdir(parents=True)
    (pipeline / "vae" / "config.json").write_text("{}")
    assert parse_source(f"diffusers:{pipeline}").subfolder == "vae"
    with pytest.raises(ZooSourceError, match="neither an existing folder nor a hub repo"):
        parse_source("diffusers:./no/such/folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZooSourceError, match="holds no diffusers VAE"):
        parse_source(f"diffusers:{empty}")


def test_offline_hub_source_says_where_to_put_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ZooSourceError, match="huggingface-cli download Lightricks/LTX-Video --include 'vae/\\*'"):
        DiffusersClipEncoder("diffusers:Lightricks/LTX-Video")


def test_bad_folders_are_clear_errors(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ZooSourceError, match="UNet2DModel.*has no adapter.*AutoencoderKLWan"):
        DiffusersClipEncoder(f"diffusers:{foreign}")
    nan = write_tiny_vae("sd-vae", tmp_path / "nan")
    model = diffusers.AutoencoderKL.from_pretrained(nan)
    with torch.no_grad():
        model.encoder.conv_in.weight[0, 0, 0, 0] = float("nan")
    model.save_pretrained(nan)
    with pytest.raises(ZooSourceError, match="NaN or infinite.*encoder.conv_in.weight"):
        DiffusersClipEncoder(f"diffusers:{nan}")
    with pytest.raises(ValueError, match="no sample or logvar"):
        DiffusersClipEncoder(f"diffusers:{tiny_dirs['cosmos']}", sample=True)
    with pytest.raises(ValueError, match="content_features"):
        DiffusersClipEncoder(f"diffusers:{tiny_dirs['wan2.1']}", content_features=True)
    from lib.cache.encoders import resolve_vae_folder
    from lib.cache.errors import CacheError

    with pytest.raises(CacheError, match="diffusers model folder.*--vae diffusers:"):
        resolve_vae_folder(str(tiny_dirs["wan2.1"]))


def test_tiny_folders_are_marked_and_rewritten_only_when_asked(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    record = tiny_record(tiny_dirs["ltx-video"])
    assert record is not None and record["random_init"] and record["use"] == "plumbing check, not a result"
    assert tiny_record(tmp_path) is None
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a tiny zoo VAE"):
        write_tiny_vae("wan2.1", mine)
    assert (mine / "notes.txt").read_text() == "mine"


def test_cost_of_a_tiny_instance_matches_its_geometry() -> None:
    model = build_tiny_vae("ltx-video")
    cost = model_encode_cost(model, ADAPTERS["ltx-video"].geometry(model), (3, 16, 64, 96))
    assert cost["latent_shape"] == [128, 2, 2, 3] and cost["latent_bytes"] == 128 * 2 * 2 * 3 * 2
    assert 0 < cost["encoder_params"] < cost["params"] and cost["encode_flops"] > 0


# --- the core install ----------------------------------------------------------------------------------
def test_core_toolkit_runs_without_diffusers(tmp_path: Path) -> None:
    """With diffusers unimportable, the toolkit imports and builds its encoders; a diffusers:
    source is an error saying how to install the extra."""
    script = (
        "import sys; sys.modules['diffusers'] = None\n"
        "import lib.cache, lib.classify, lib.models, lib.study, lib.vae, lib.zoo, lib.zoo.cost\n"
        "from lib.cache.encoders import make_encoder\n"
        "make_encoder('pooled-pixels'); make_encoder('random:local-smoke')\n"
        "from lib.zoo.sources import ZooSourceError\n"
        "try:\n    make_encoder('diffusers:Wan-AI/Wan2.1-T2V-1.3B-Diffusers')\n"
        "except ZooSourceError as err:\n    print(err)\n"
        "assert 'diffusers' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pip install -e '.[zoo]'" in done.stdout


def test_counting_on_meta_leaves_later_models_on_the_cpu() -> None:
    """diffusers imports a class's module on first use; counting a released architecture on the
    meta device must not create that module's constants there (Cosmos' wavelet filters)."""
    script = ("from lib.zoo.cost import released_encode_cost\nfrom lib.zoo.tiny import build_tiny_vae\n"
              "released_encode_cost('cosmos', (3, 16, 32, 32))\n"
              "devices = {b.device.type for b in build_tiny_vae('cosmos').buffers()}\n"
              "assert devices == {'cpu'}, devices\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_zoo_members_label_sources_and_mark_random_inits(tmp_path: Path) -> None:
    from lib.zoo.study import PIXEL_CONTROL, PRETRAINED, RANDOM_INIT, zoo_members

    members = zoo_members(["", "diffusers:Lightricks/LTX-Video@v0.9.1", "ft4"], ["cosmos"], tiny_root=tmp_path)
    assert [(m.name, m.kind) for m in members] == [
        ("reducio-standin", PRETRAINED), ("ltx-video", PRETRAINED), ("ft4", PRETRAINED),
        ("cosmos-random", RANDOM_INIT), ("pooled-pixels", PIXEL_CONTROL)]
    assert members[3].vae_source == f"diffusers:{tmp_path / 'cosmos'}" and tiny_record(tmp_path / "cosmos")
    with pytest.raises(ValueError, match="distinct names"):
        zoo_members(["", "standin"], [], tiny_root=tmp_path)


@pytest.mark.slow
def test_a_damaged_zoo_cache_is_re_encoded_bit_for_bit(tiny_dirs: dict[str, Path], smoke_root: Path,
                                                       tmp_path: Path) -> None:
    """repair rebuilds the encoder from the cache's record (the diffusers: source and its key)."""
    import numpy as np

    from lib.cache.repair import repair_cache, verify_cache

    out = tmp_path / "cache"
    spec = CacheSpec(data_root=smoke_root, vae_source=f"diffusers:{tiny_dirs['hunyuanvideo']}", splits=("val",),
                     spatial=SPATIAL)
    assert build_cache(spec, out, OPTIONS).complete
    good = (out / "latent.npy").read_bytes()
    shutil.rmtree(out / "entries")  # no entry to copy from: the damaged video must be encoded again
    data = bytearray(good)
    data[-3] ^= 0xFF  # inside the last video's rows
    (out / "latent.npy").write_bytes(bytes(data))
    assert not verify_cache(out).ok
    repaired = repair_cache(out)
    assert repaired.re_encoded and (out / "latent.npy").read_bytes() == good and verify_cache(out).ok
    assert np.isfinite(np.load(out / "latent.npy")).all()
