"""benchmarks/gpu_check.py: the device-peak table, and the whole script at toy sizes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_device_peaks_are_dense_bf16_figures_with_a_source() -> None:
    assert gpu_check.device_peak("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert gpu_check.device_peak("NVIDIA H100 PCIe")[0] == 756.0
    assert gpu_check.device_peak("NVIDIA H200")[0] == 989.0
    assert gpu_check.device_peak("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert gpu_check.device_peak("NVIDIA H100 NVL")[0] is None  # not guessed
    peak, source = gpu_check.device_peak("Some Future GPU")
    assert peak is None and "not tabulated" in source
    assert all(source for _, peak, source in gpu_check.PEAK_TFLOPS if peak)


@pytest.mark.slow
def test_quick_cpu_run_writes_every_section(tmp_path: Path) -> None:
    """``--device cpu --quick`` (25-30 s on the shared 2-core CPU, more under load: slow-marked)."""
    out = tmp_path / "gpu_check.json"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"gpu_check --device cpu --quick: {time.perf_counter() - start:.0f} s")
    result = json.loads(out.read_text())
    assert result["quick"] and result["machine"]["device"] == "cpu"
    sections = result["sections"]
    assert set(sections) == set(gpu_check.SECTIONS)
    assert [(r["dtype"], r["batch"]) for r in sections["encoder"]["rows"]] == [
        ("bfloat16", 1), ("bfloat16", 2), ("float16", 1), ("float16", 2)]
    assert sections["encoder"]["rows"][0]["clips_per_s"] > 0 and sections["encoder"]["latent_shape"] == [16, 4, 1, 1]
    assert sections["precision"]["rows"][0]["finite"] and sections["precision"]["rows"][0]["rel_rms_error"] < 0.1
    assert sections["pipeline"]["clips"] > 0
    assert {r["model"] for r in sections["classifiers"]["rows"]} >= {"conv3d_paper", "lstm_paper", "transformer_paper"}
    assert sections["classifiers"]["conv3d_paper_full_training"]["epochs"] == 60
    assert sections["pixel"]["train_clips_per_s"] > 0
    assert "| model |" in proc.stdout and "CPU:" in proc.stdout.splitlines()[0]
