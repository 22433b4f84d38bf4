"""The rehearsal of the UCF101 path: params faithful to the real file, checkpoint in the official
Lightning format, and (slow) a tiny rehearsal through the study runner."""

from __future__ import annotations

import json
import os
import pickletools
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

import lib.paths
from lib import rehearsal
from lib.data import ucf101
from lib.data.spatial import CropPolicy
from lib.data.synth_ucf101 import official_relpaths
from lib.paths import REPO_ROOT
from lib.vae import ReducioVAE, load_reducio
from lib.vae.lightning_ckpt import LOSS_KEYS, save_lightning_checkpoint
from lib.vae.local import input_policy

# Keys that decide what the study computes: the rehearsal must never change them.
CODE_PATH_KEYS = {"fold", "val_fraction", "val_seed", "folds", "clip_mode", "device", "dtype", "content_features",
                  "pooled_pixels", "replace_stale", "standardize", "models", "pixel_models", "pooled_models",
                  "pixel_batch_size", "pixel_flip", "pixel_in_memory", "pixel_short_side", "pixel_crop", "threads",
                  "probe", "real_clip", "update_readme", "train_config", "model_overrides", "layer_norm"}


def test_rehearsal_params_differ_from_the_real_ones_only_in_allowed_keys() -> None:
    bad = rehearsal.disallowed_differences()
    assert not bad, "\n".join(map(str, bad))
    notebooks = [set(yaml.safe_load(p.read_text())) - {"runner"} for p in (rehearsal.REAL_PARAMS,
                                                                         rehearsal.REHEARSAL_PARAMS)]
    assert notebooks[0] == notebooks[1]


def test_allowed_differences_are_roots_checkpoints_and_sizes_only() -> None:
    allowed = set().union(*rehearsal.ALLOWED_DIFFERENCES.values())
    assert not allowed & CODE_PATH_KEYS
    assert allowed <= {"dataset_root", "reducio_checkpoint", "vae_source", "cache_name", "params_file",
                       "classes_in_grid", "videos_per_class", "num_videos", "batch_size", "num_workers",
                       "projection_points", "seeds", "pixel_seeds", "epochs", "pixel_epochs"}


def test_a_changed_setting_is_reported(tmp_path: Path) -> None:
    content = yaml.safe_load(rehearsal.REHEARSAL_PARAMS.read_text())
    content["02_latent_cache"]["dtype"] = "float32"
    del content["06_pixel_baseline"]["pixel_flip"]
    content["05_conv3d"]["epochs"] = 1  # a size: allowed
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(content))
    content["runner"] = {"cell_timeout_s": 900}  # time limits are sizes of the machine: allowed
    path.write_text(yaml.safe_dump(content))
    bad = {(d.notebook, d.key) for d in rehearsal.disallowed_differences(rehearsal.REAL_PARAMS, path)}
    assert bad == {("02_latent_cache", "dtype"), ("06_pixel_baseline", "pixel_flip")}


def test_rehearsal_selection_gives_every_class_train_val_and_test_videos() -> None:
    relpaths = official_relpaths(rehearsal.REHEARSAL_SELECTION)
    classes = rehearsal.REHEARSAL_SELECTION.classes
    assert "HandstandPushups" in classes and {"HammerThrow", "Hammering"} <= set(classes)
    groups = {int(r.split("_g")[1][:2]) for r in relpaths}
    for fold in (1, 2, 3):  # notebook 02 records folds 1-3: each needs a test group and >= 2 train groups
        assert any(ucf101.testing_fold_of_group(g) == fold for g in groups)
        assert sum(ucf101.testing_fold_of_group(g) != fold for g in groups) >= 2


def test_checkpoint_is_an_official_lightning_file_found_like_ft4(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lib.paths, "CHECKPOINTS_DIR", tmp_path)
    path = rehearsal.ensure_checkpoint(rehearsal.checkpoint_path("reducio-rehearsal"))
    assert path == tmp_path / "reducio-rehearsal-fs32-attn23.ckpt"
    assert ("omegaconf.dictconfig.DictConfig" in _pickle_globals(path)) == rehearsal.OMEGACONF_HPARAMS
    plain = rehearsal.ensure_checkpoint(tmp_path / "plain" / path.name, omegaconf_hparams=False)
    ckpt = torch.load(plain, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"state_dict", "epoch", "global_step", "pytorch-lightning_version", "hyper_parameters"}
    assert isinstance(ckpt["epoch"], int) and isinstance(ckpt["pytorch-lightning_version"], str)
    hparams = ckpt["hyper_parameters"]
    assert hparams["ddconfig"]["ch_fuse"] == [-1, -1, 2, 3, -1, -1] and hparams["embed_dim"] == 16
    assert hparams["lossconfig"]["target"].endswith("LPIPSWithDiscriminator")
    state = ckpt["state_dict"]
    model_keys = {k for k in state if not k.startswith("loss.")}
    ft4_keys = set(ReducioVAE.from_preset("reducio-ft4", device="meta").state_dict())
    # the released naming scheme: one res block per level instead of two, and the 1x1 shortcuts
    # where this narrower config changes width (levels 2 and 1 instead of 1 and 3)
    assert len(model_keys - ft4_keys) == 4 and all(".nin_shortcut." in k for k in model_keys - ft4_keys)
    assert {re.sub(r"\.\d+\.", ".#.", k) for k in model_keys} <= {re.sub(r"\.\d+\.", ".#.", k) for k in ft4_keys}
    assert set(LOSS_KEYS) <= set(state) and state["loss.discriminator.main.3.num_batches_tracked"].dtype == torch.int64
    vae = load_reducio("reducio-rehearsal")  # by preset name, as vae_source: ft4 finds the released file
    assert vae.checkpoint_info.path == path and vae.checkpoint_info.skipped_loss_keys == len(LOSS_KEYS)
    assert vae.latent_shape(16, 224, 288) == (16, 4, 7, 9) and input_policy(vae) == CropPolicy()
    assert rehearsal.ensure_checkpoint(path).stat().st_mtime_ns == path.stat().st_mtime_ns  # kept, not rewritten


def test_loss_keys_have_the_official_names_and_shapes(shared_reference: Path) -> None:
    listing = json.loads((shared_reference / "reducio" / "official_config_state_dict.json").read_text())["keys"]
    for key, (shape, dtype) in LOSS_KEYS.items():
        assert tuple(listing[key]["shape"]) == shape and listing[key]["dtype"] == str(dtype).removeprefix("torch."), key


def _pickle_globals(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    names: set[str] = set()
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.add(str(arg).replace(" ", "."))
        elif isinstance(arg, str):
            strings.append(arg)
        if op.name == "STACK_GLOBAL":
            names.add(".".join(strings[-2:]))
    return names


def test_omegaconf_hyper_parameters_behind_the_flag(tmp_path: Path) -> None:
    vae = ReducioVAE.from_preset("reducio-rehearsal")
    plain = save_lightning_checkpoint(vae, tmp_path / "plain.ckpt")
    omega = save_lightning_checkpoint(vae, tmp_path / "omega.ckpt", omegaconf_hparams=True)
    assert not any(n.startswith("omegaconf.") for n in _pickle_globals(plain))
    assert "omegaconf.dictconfig.DictConfig" in _pickle_globals(omega)
    assert "omegaconf" not in sys.modules or hasattr(sys.modules["omegaconf"], "OmegaConf")  # no look-alike left
    with pytest.raises(Exception, match="omegaconf"):
        torch.load(omega, map_location="cpu", weights_only=True)
    loaded = load_reducio(omega)  # the non-tensor entries are skipped, never imported or run
    assert "omegaconf" not in sys.modules or hasattr(sys.modules["omegaconf"], "OmegaConf")
    expected = vae.state_dict()
    assert all(torch.equal(expected[k], v) for k, v in loaded.state_dict().items())


@pytest.mark.slow
def test_tiny_rehearsal_through_the_study_runner(tmp_path: Path) -> None:
    """00 -> 02 -> 05 -> 07 of the rehearsal params on 2 classes x 3 groups x 1 clip (CI: < 3 min); groups
    22-23 leave every fold two train groups (folds 2 and 3 without a test group)."""
    content = yaml.safe_load(rehearsal.REHEARSAL_PARAMS.read_text())
    keep = ("00_environment_check", "02_latent_cache", "05_conv3d", "07_compare")
    params = {name: content[name] for name in keep}
    for values in params.values():
        if "dataset_root" in values:
            values["dataset_root"] = str(tmp_path / "ucf101_tiny")
    params["00_environment_check"]["reducio_checkpoint"] = str(tmp_path / "ckpt" / rehearsal.CHECKPOINT_FILE)
    params["05_conv3d"].update(models=["conv3d_paper"], epochs=1)
    params_file = tmp_path / "ucf101_rehearsal_tiny.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "LVS_DATA_DIR": str(tmp_path / "data"), "LVS_OUTPUTS_DIR": str(tmp_path / "outputs"),
           "LVS_CHECKPOINTS_DIR": str(tmp_path / "ckpt")}
    start = time.perf_counter()
    prepare = ["-m", "lib.rehearsal", "prepare", "--params", str(params_file), "--classes", "HandstandPushups,YoYo",
               "--groups", "1,22-23", "--clips-per-group", "1"]
    for command in (prepare,
                    ["-m", "lib.study", "run", str(params_file)]):
        proc = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = tmp_path / "outputs" / "runs" / params_file.stem
    assert all((runs / name / "DONE.json").is_file() for name in keep)
    env_metrics = json.loads((runs / "00_environment_check" / "metrics.json").read_text())
    assert env_metrics["dataset"]["ok"] and len(env_metrics["dataset"]["classes"]) == 101
    cache = json.loads((runs / "02_latent_cache" / "metrics.json").read_text())
    assert cache["latent_shape"] == [16, 4, 7, 9] and cache["clip_shape"] == [3, 16, 224, 288]
    assert cache["num_videos"] == 6 and not cache["failures"]
    assert (runs / "05_conv3d" / "conv3d_paper" / "summary.json").is_file()
    print(f"tiny rehearsal: {time.perf_counter() - start:.0f} s")
