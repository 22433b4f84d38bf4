"""Tables and short notes as the notebooks show them: styled DataFrames with a caption saying
what the numbers are, key/value records instead of long reprs, Markdown instead of printed source.

Every function returns an object that renders in JupyterLab, in an executed notebook opened
without a kernel and in nbconvert (HTML with a plain-text fallback).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CAPTION_STYLE = [
    {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: bold; padding-bottom: 0.4em;"}
]
METADATA_KEY = "latent_video_study"  # display metadata naming the run directory (see lib.lab)


def styled(frame: Any, caption: str, *, precision: int = 2, hide_index: bool = False) -> Any:
    """``frame`` as a pandas Styler with ``caption`` above it and floats at ``precision`` digits."""
    style = frame.style.set_caption(caption).set_table_styles(CAPTION_STYLE).format(precision=precision, na_rep="")
    return style.hide(axis="index") if hide_index else style


def _short(value: Any, limit: int = 120) -> str:
    if isinstance(value, Path):
        value = _display_path(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        text = " x ".join(str(v) for v in value)
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k}: {_short(v, 40)}" for k, v in value.items())
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _display_path(path: Path) -> str:
    from lib.paths import REPO_ROOT

    try:
        return os.path.relpath(path, REPO_ROOT) if Path(path).resolve().is_relative_to(REPO_ROOT) else str(path)
    except (OSError, ValueError):
        return str(path)


def record_table(record: Any, caption: str, *, skip: tuple[str, ...] = ()) -> Any:
    """A mapping or dataclass as a two-column table (field, value), long values shortened."""
    import pandas as pd

    items = dataclasses.asdict(record) if dataclasses.is_dataclass(record) else dict(record)
    rows = [
        {"field": str(k), "value": _short(v)} for k, v in items.items() if k not in skip and v not in (None, (), [], {})
    ]
    return styled(pd.DataFrame(rows), caption, hide_index=True).set_properties(**{"text-align": "left"})


class Note:
    """A short Markdown note (with a plain-text form and optional display metadata)."""

    def __init__(self, markdown: str, metadata: Mapping[str, Any] | None = None) -> None:
        self.markdown = markdown
        self.metadata = dict(metadata or {})

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, str], dict[str, Any]]:
        return {"text/markdown": self.markdown, "text/plain": self.markdown}, self.metadata

    def __repr__(self) -> str:
        return self.markdown


def run_note(run: Any) -> Note:
    """Where a notebook's results go, as one line (its metadata lets a saved notebook find it)."""
    path = Path(run.path)
    return Note(
        f"Results of this run go to `{_display_path(path)}` (config.json, metrics.json, figures/).",
        {METADATA_KEY: {"run_dir": str(path)}},
    )


def markdown(text: str) -> Note:
    """Markdown text shown rendered (e.g. a table written in Markdown)."""
    return Note(text)


def frame_to_markdown(frame: Any) -> str:
    """A DataFrame as a GitHub markdown table (no tabulate dependency)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)
