"""The alert levels in their order: the one definition the guardian has of which level is worse."""

from __future__ import annotations

LEVELS = ("ok", "notice", "warning", "critical")
RANK = {level: rank for rank, level in enumerate(LEVELS)}


def worst(*levels: str) -> str:
    """The highest of these levels."""
    return max(levels, key=RANK.__getitem__)
