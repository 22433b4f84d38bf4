"""Reproducibility check: a study run's table against the README's (``python -m lib.study verify``).

The README's results table is what a fresh ``make study`` should reproduce. This reads the table
between the README's study-results markers, rebuilds the same table from a run's directories
(:func:`lib.classify.tables.study_frame`) and compares each row's test video top-1: a row agrees
when the two means differ by at most ``tolerance`` times the larger of the two seed standard
deviations (a single-seed row, which has none, by at most ``single_seed_points``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VALUE = re.compile(r"^\s*(-?[0-9.]+)(?:\s*±\s*([0-9.]+))?\s*$")
COLUMN = "test (video)"


@dataclass(frozen=True)
class RowCheck:
    model: str
    input: str
    readme: tuple[float, float | None] | None  # (mean, std) in %
    run: tuple[float, float | None] | None
    tolerance: float | None  # points

    @property
    def difference(self) -> float | None:
        if self.readme is None or self.run is None:
            return None
        return self.run[0] - self.readme[0]

    @property
    def agrees(self) -> bool:
        return self.difference is not None and self.tolerance is not None and abs(self.difference) <= self.tolerance


def parse_value(text: str) -> tuple[float, float | None] | None:
    """``"60.1 ± 1.4"`` -> (60.1, 1.4); ``"83.9"`` -> (83.9, None); anything else -> None."""
    match = VALUE.match(str(text))
    if not match:
        return None
    return float(match.group(1)), (float(match.group(2)) if match.group(2) else None)


def readme_table(readme: Path) -> list[dict[str, str]]:
    """The rows of the markdown table between the README's study-results markers."""
    from lib.publish import README_BEGIN, README_END

    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme}: no study-results markers; nothing to compare against")
    block = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    lines = [line.strip() for line in block.splitlines() if line.strip().startswith("|")]
    if len(lines) < 3:
        raise ValueError(f"{readme}: the study-results section holds no table")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def compare(readme_rows: list[dict[str, str]], run_rows: list[dict[str, Any]], *, tolerance: float = 2.0,
            single_seed_points: float = 3.0) -> list[RowCheck]:
    """One :class:`RowCheck` per (model, input) found in either table."""
    def index(rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, float | None] | None]:
        return {(str(r["model"]), str(r["input"])): parse_value(str(r[COLUMN])) for r in rows}

    theirs, ours = index(readme_rows), index(run_rows)
    checks = []
    for key in list(theirs) + [k for k in ours if k not in theirs]:
        a, b = theirs.get(key), ours.get(key)
        stds = [v[1] for v in (a, b) if v is not None and v[1] is not None]
        tol = tolerance * max(stds) if stds else single_seed_points
        checks.append(RowCheck(model=key[0], input=key[1], readme=a, run=b, tolerance=round(tol, 2)))
    return checks


def format_checks(checks: list[RowCheck]) -> str:
    def fmt(v: tuple[float, float | None] | None) -> str:
        return "missing" if v is None else f"{v[0]:.1f}" + (f" ± {v[1]:.1f}" if v[1] is not None else "")

    lines = [f"{'model':18s} {'input':15s} {'README':>12s} {'this run':>12s} {'diff':>6s} {'allowed':>7s}  verdict"]
    for c in checks:
        diff = "" if c.difference is None else f"{c.difference:+.1f}"
        lines.append(f"{c.model:18s} {c.input:15s} {fmt(c.readme):>12s} {fmt(c.run):>12s} {diff:>6s} "
                     f"{'' if c.tolerance is None else c.tolerance:>7}  {'ok' if c.agrees else 'DIFFERS'}")
    n_ok = sum(c.agrees for c in checks)
    lines.append(f"{n_ok}/{len(checks)} rows within tolerance")
    return "\n".join(lines)


def verify_study(study_dir: Path, readme: Path, *, tolerance: float = 2.0) -> list[RowCheck]:
    """Compare the run under ``study_dir`` with the table in ``readme``."""
    from lib.classify.tables import headline_table, study_frame

    frame = study_frame(study_dir)
    if frame.empty:
        raise ValueError(f"{study_dir}: no finished model runs to compare (run the study first)")
    return compare(readme_table(readme), headline_table(frame).to_dict("records"), tolerance=tolerance)
