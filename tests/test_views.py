"""lib.classify.views: the README section writer and the study table's provenance labels."""

from __future__ import annotations

import json
from pathlib import Path

from lib.classify import views


def test_update_readme_replaces_only_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{views.README_BEGIN}\nold table\n{views.README_END}\noutro\n")
    figure = tmp_path / "outputs" / "figures" / "x.png"
    assert views.update_readme(readme, "| a |\n|---|\n| 1 |", figure, note="note")
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert "old table" not in text and "| 1 |" in text and "](outputs/figures/x.png)" in text
    again = readme.read_text()
    assert views.update_readme(readme, "| a |\n|---|\n| 1 |", figure, note="note") and readme.read_text() == again
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not views.update_readme(plain, "t", figure) and plain.read_text() == "no markers\n"


def _summary(path: Path, model: str, family: str, origin: str, test: float) -> None:
    path.mkdir(parents=True)
    agg = {
        f"{s}.{lvl}_top1": {"mean": test, "std": 0.01} for s in ("train", "val", "test") for lvl in ("video", "clip")
    }
    (path / "summary.json").write_text(
        json.dumps(
            {
                "model": model,
                "family": family,
                "input_kind": "latent",
                "origin": origin,
                "seeds": [0, 1],
                "aggregate": agg,
                "cost": {"params": 10, "flops_per_clip": 2e6, "train_seconds": 3.0},
            }
        )
    )


def test_study_frame_labels_pooled_pixel_runs_and_published_numbers(tmp_path: Path) -> None:
    _summary(tmp_path / "05_conv3d" / "conv3d_paper", "conv3d_paper", "conv3d", "paper", 0.5)
    _summary(tmp_path / "06_pixel_baseline" / "pooled_pixels" / "conv3d_paper", "conv3d_paper", "conv3d", "paper", 0.25)
    frame = views.study_frame(tmp_path)
    assert sorted(zip(frame["notebook"], frame["input_kind"])) == [
        ("05_conv3d", "latent"),
        ("06_pixel_baseline/pooled_pixels", "pooled pixels"),
    ]
    table = views.headline_table(frame).set_index("input")
    assert table.loc["latent", "published test"] == "72.47"  # the paper's number only next to latent runs
    assert table.loc["pooled pixels", "published test"] == ""
    assert table.loc["latent", "test (video)"] == "50.0 ± 1.0"
    assert "| model |" in views.frame_to_markdown(views.headline_table(frame))


def test_study_sets_aside_run_dirs_of_other_settings(tmp_path: Path, monkeypatch) -> None:
    from lib import study

    monkeypatch.setattr(study, "RUNS_DIR", tmp_path)
    run_dir = tmp_path / "default" / "06_pixel_baseline"
    (run_dir / "model" / "seed0").mkdir(parents=True)
    (run_dir / "model" / "seed0" / "metrics.json").write_text("{}")
    (run_dir / study.STARTED_FILE).write_text(json.dumps({"fingerprint": "old"}))
    assert study.set_aside_stale(run_dir, "old") is None and run_dir.is_dir()  # same settings: resume in place
    moved = study.set_aside_stale(run_dir, "new")
    assert moved is not None and not run_dir.exists()
    assert (moved / "model" / "seed0" / "metrics.json").is_file()  # kept, not deleted
    assert moved.parent == tmp_path / study.STALE_DIR / "default"
