"""benchmarks/precision_spread.py end to end on the tiny study (smoke cache, one trained model)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from lib.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import precision_spread  # noqa: E402


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.mark.slow
def test_one_row_per_trained_model_with_finite_numbers(tiny_study: Path, study_vae: tuple[str, str],
                                                       tmp_path: Path) -> None:
    """The smoke cache's test split re-encoded in float32 and bf16, the tiny study's classifier
    scored on both: one row per trained model, every figure finite, the record written."""
    _, cache_name = study_vae
    out = tmp_path / "precision_spread.json"
    record = precision_spread.main(["--cache", cache_name, "--study-dir", str(tiny_study), "--threads", "1",
                                    "--out", str(out)])
    assert json.loads(out.read_text())["models"] == record["models"]

    trained = sorted({p.parent.parent.name for p in tiny_study.glob("0[345]_*/*/seed*/best.pt")})
    assert trained and [row["model"] for row in record["models"]] == trained
    for row in record["models"]:
        for key in ("stored_top1_mean", "float32_top1_mean", "bfloat16_top1_mean", "diff_mean", "table_top1_mean"):
            assert _finite(row[key]), (key, row)
        # the whole test split, the seed's own weights and standardisation: the table's number again
        assert row["stored_top1_mean"] == pytest.approx(row["table_top1_mean"])

    latent = next(r for r in record["latents"] if r["array"] == "latent")
    assert _finite(latent["rel_rms_bfloat16_vs_float32"]) and 0 < latent["rel_rms_bfloat16_vs_float32"] < 0.1
    build = record["build"]
    if build["dtype"] == "float32" and build["threads"] == 1:  # the build's dtype, batches and threads: its rows
        assert latent["float32_bit_identical"] and latent["matches"] == "float32 (bit-identical)"
    assert "| model " in record["markdown"] and "bf16 - fp32" in record["markdown"]
