"""Errors of the latent cache: each names the cache folder (or file), what was wrong and the fix."""

from __future__ import annotations

import os
from typing import Any

from lib.errors import ActionableError


class CacheError(ActionableError):
    """A cache folder that cannot be built into or read (base class; a ``ValueError``)."""


class StaleCacheError(CacheError):
    """The cache was built with another key (VAE weights, preprocessing, clips, dataset...).

    ``differences`` lists ``(dotted.field, value in the cache, value asked for)``.
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, fix: str = "", *,
                 differences: list[tuple[str, Any, Any]] | None = None) -> None:
        super().__init__(path, reason, fix)
        self.differences = differences or []


class IncompleteCacheError(CacheError):
    """The build has not finished (videos left to encode, or the merge step not run)."""


class DamagedCacheError(CacheError):
    """A finished cache whose files are missing, cut short or unreadable (``repair`` fixes them)."""
