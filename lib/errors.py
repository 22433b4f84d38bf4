"""The toolkit's error base: every error names what is at fault, what was wrong and the fix."""

from __future__ import annotations

import os
import re

# How a message already carrying a fix ends: "<reason>. Fix: <fix>" or "<reason>\nFix: <fix>" (the
# separators of ActionableError and its subclasses).
_TRAILING_FIX = r"(?:\.|\n)\s*Fix: "


class ActionableError(ValueError):
    """``path`` at fault (a file, folder or source text; may be None), ``reason`` and ``fix``.

    Subclasses keep ``path`` in the type they need (``DataError`` a Path, ``CheckpointError`` the
    source text, which may be an ``hf://`` reference) and choose how the fix is appended.

    A wrapper often quotes the error it wraps in ``reason`` and passes that error's ``fix`` on;
    the quoted fix is then dropped from ``reason`` so the message says "Fix:" once.
    """

    fix_separator = ". Fix: "

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, fix: str = "") -> None:
        reason = _without_quoted_fix(reason, fix)
        self.reason = reason
        self.fix = fix
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}{reason}" + (f"{self.fix_separator}{fix}" if fix else ""))


class UnwritableLocationError(ActionableError):
    """A folder that cannot be written into (read-only filesystem, no permission, disk full)."""


def _without_quoted_fix(reason: str, fix: str) -> str:
    """``reason`` without a trailing "Fix: ``fix``" (the same fix, quoted from a wrapped error)."""
    if not fix:
        return reason
    match = re.search(_TRAILING_FIX + re.escape(fix) + r"\Z", reason)
    return reason[: match.start()] if match else reason


def unsafe_load_cause(err: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in words that never repeat
    torch's advice (to retry with ``weights_only=False``, i.e. to run the file's pickled code).

    Any message naming ``weights_only`` becomes "it holds objects beyond tensors and plain
    containers"; any other failure (a truncated or foreign file) keeps its type and first line.
    """
    text = str(err)
    if "weights only" in text.lower() or "weights_only" in text.lower():
        return "it holds objects beyond tensors and plain containers, refused because unpickling them could run code"
    first = (text.splitlines() or [""])[0]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
