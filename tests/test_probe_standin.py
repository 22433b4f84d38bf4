"""Latent probe, the shipped stand-in VAE (checksum, provenance, loading) and the README verifier."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lib.paths import REPO_ROOT
from lib.vae import load_reducio
from lib.vae.loading import file_sha256
from lib.vae.local import input_policy, resolve_vae_source
from lib.vae.probe import linear_probe, quality_table
from lib.vae.standin import STANDIN_FILE, STANDIN_RECORD, StandinError, read_record, standin_path
from lib.verify import compare, parse_value, readme_table


# --- the probe ---------------------------------------------------------------------------------------
def _blobs(n: int, classes: int, dim: int, *, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.arange(n) % classes
    return centres[y] + spread * torch.randn(n, dim, generator=g), y


def test_linear_probe_separates_separable_features_and_not_noise() -> None:
    x, y = _blobs(300, 5, 20, spread=1.0, seed=0)
    xv, yv = _blobs(100, 5, 20, spread=1.0, seed=1)
    good = linear_probe(x.view(300, 4, 5), y, xv.view(100, 4, 5), yv)  # any trailing shape is flattened
    assert good.val_accuracy > 0.95 and good.features == 20
    noise = linear_probe(torch.randn(300, 20), y, torch.randn(100, 20), yv)
    assert noise.val_accuracy < 0.4 and noise.train_accuracy > noise.val_accuracy


def test_linear_probe_is_deterministic_and_ignores_feature_scale() -> None:
    x, y = _blobs(200, 4, 10, spread=2.0, seed=2)
    xv, yv = _blobs(80, 4, 10, spread=2.0, seed=3)
    a = linear_probe(x, y, xv, yv)
    b = linear_probe(x * 1000 + 5, y, xv * 1000 + 5, yv)  # standardisation with train statistics
    assert a == linear_probe(x, y, xv, yv)
    assert abs(a.val_accuracy - b.val_accuracy) < 1e-9


# --- the shipped stand-in ----------------------------------------------------------------------------
def test_standin_record_matches_the_shipped_file_and_holds_provenance() -> None:
    record = read_record()
    assert record["file"] == STANDIN_FILE.name and record["sha256"] == file_sha256(STANDIN_FILE)
    assert STANDIN_FILE.stat().st_size < 16 * 2**20  # a few MB of fp16
    for key in (
        "command",
        "commit",
        "train_preset",
        "seed",
        "data",
        "steps",
        "train_wall_time_s",
        "machine",
        "quality",
    ):
        assert key in record, key
    assert record["data"]["pool_generator"] == "lib.data.synth_pool"
    assert record["quality"]["latent_probe"]["val_accuracy"] > record["quality"]["pooled_pixels_probe"]["val_accuracy"]
    rows = quality_table(record["quality"])
    assert rows[0]["measure"].startswith("linear probe")


def test_standin_loads_with_its_geometry_and_provenance() -> None:
    vae = load_reducio("standin")
    meta = vae.checkpoint_info.metadata
    assert meta["dtype"] == "float16" and meta["standin"]["commit"]
    assert meta["standin"]["quality"] == read_record()["quality"]
    assert input_policy(vae).crop == (64, 96)
    assert vae.latent_shape(16, 64, 96) == (16, 4, 2, 3)
    assert resolve_vae_source("") == resolve_vae_source("standin") == str(STANDIN_FILE)


def test_a_damaged_standin_is_refused_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    weights, record = tmp_path / STANDIN_FILE.name, tmp_path / STANDIN_RECORD.name
    shutil.copy(STANDIN_FILE, weights)
    shutil.copy(STANDIN_RECORD, record)
    assert standin_path(weights=weights, record=record) == weights
    with open(weights, "r+b") as fh:
        fh.seek(-10, 2)
        byte = fh.read(1)
        fh.seek(-10, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(StandinError, match=r"sha256 .* differs.*Fix: restore it"):
        standin_path(weights=weights, record=record)
    with pytest.raises(StandinError, match="missing"):
        standin_path(weights=tmp_path / "absent.safetensors", record=record)


# --- the README verifier ------------------------------------------------------------------------------
def test_verify_parses_values_and_applies_the_tolerance() -> None:
    assert (
        parse_value("60.1 ± 1.4") == (60.1, 1.4) and parse_value("83.9") == (83.9, None) and parse_value("n/a") is None
    )
    readme = [
        {"model": "a", "input": "latent", "test (video)": "50.0 ± 1.0"},
        {"model": "b", "input": "latent", "test (video)": "70.0 ± 0.5"},
        {"model": "px", "input": "pixels", "test (video)": "80.0"},
    ]
    run = [
        {"model": "a", "input": "latent", "test (video)": "51.5 ± 0.8"},
        {"model": "b", "input": "latent", "test (video)": "72.0 ± 0.5"},
        {"model": "px", "input": "pixels", "test (video)": "77.5"},
        {"model": "new", "input": "latent", "test (video)": "10.0"},
    ]
    checks = {c.model: c for c in compare(readme, run)}
    assert checks["a"].agrees and checks["a"].tolerance == 2.0  # |1.5| <= 2 x max(1.0, 0.8)
    assert not checks["b"].agrees  # 2.0 > 2 x 0.5
    assert checks["px"].agrees and checks["px"].tolerance == 3.0  # single seed: 3 points
    assert not checks["new"].agrees and checks["new"].readme is None


def test_verify_reads_the_readme_table() -> None:
    rows = readme_table(REPO_ROOT / "README.md")
    assert rows and all("test (video)" in r and "model" in r for r in rows)
