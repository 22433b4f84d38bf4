"""benchmarks/gpu_pretrain.py: the GPU pretraining script, run whole at smoke size on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lib.paths import REPO_ROOT


@pytest.mark.slow
def test_quick_cpu_run_trains_exports_and_probes_a_candidate(tmp_path: Path) -> None:
    """``--device cpu --quick`` (about a minute on the 2-core CPU: slow-marked)."""
    from lib.vae.loading import file_sha256, load_reducio

    out = tmp_path / "gpu_pretrain"
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_pretrain.py"), "--device", "cpu", "--quick",
           "--minutes", "5", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "gpu_pretrain.json").read_text())
    assert result["device"].startswith("cpu: ") and result["preset"] == "pretrain_smoke"
    assert result["steps"] == 6 and result["batch_size"] == 2  # the smoke preset ran to its end
    assert 0.0 <= result["latent_probe_val_accuracy"] <= 1.0 and result["reconstruction"]["clips"] > 0
    assert "| linear probe (val) |" in proc.stdout
    candidate = Path(result["candidate"])
    assert file_sha256(candidate) == result["sha256"]
    record = json.loads(candidate.with_suffix(".json").read_text())
    assert record["sha256"] == result["sha256"] and record["train_devices"] == [result["device"]]
    assert record["command"].startswith("python benchmarks/gpu_pretrain.py --device cpu --quick")
    vae = load_reducio(str(candidate))
    standin = vae.checkpoint_info.metadata["standin"]
    assert standin["train_devices"] == [result["device"]] and standin["data"]["pool_preset"] == "pretrain_smoke"
