"""The phrases every output shares: printable text, times, durations, percents, labels."""

from __future__ import annotations


def safe(text: str, limit: int = 500) -> str:
    """Printable text only, so a session key or error from a gateway cannot move the cursor or forge lines."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


