"""The toolkit's error base: every error names what is at fault, what was wrong and the fix."""

from __future__ import annotations

import os


class ActionableError(ValueError):
    """``path`` at fault (a file, folder or source text; may be None), ``reason`` and ``fix``.

    Subclasses keep ``path`` in the type they need (``DataError`` a Path, ``CheckpointError`` the
    source text, which may be an ``hf://`` reference) and choose how the fix is appended.
    """

    fix_separator = ". Fix: "

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, fix: str = "") -> None:
        self.reason = reason
        self.fix = fix
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}{reason}" + (f"{self.fix_separator}{fix}" if fix else ""))


class UnwritableLocationError(ActionableError):
    """A folder that cannot be written into (read-only filesystem, no permission, disk full)."""
