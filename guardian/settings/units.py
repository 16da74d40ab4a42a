"""Durations and time windows as the config writes them, read and written back; instants as ISO text; a value
described in an error."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value) -> float:
    """'90s', '30m', '2h', '1d', '1h30m' -> seconds, more than 0. ValueError if not.

    A bare number is refused, not read as seconds: `idle_after: 2` meant hours as often as seconds.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{kind_of(value)} is not a duration (e.g. 45s, 30m, 2h, 1d)")
    text = str(value).strip().lower()
    if isinstance(value, (int, float)) or re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", text):
        raise ValueError(f"{text} has no unit: write the unit after the number (e.g. 45s, 30m, 2h, 1d)")
    if not re.fullmatch(r"(\d+(\.\d+)?(ms|s|m|h|d|w))+", text):
        raise ValueError(f"{value!r} is not a duration (e.g. 45s, 30m, 2h, 1d)")
    seconds = sum(float(n) * DURATION_UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text))
    if seconds == 0:
        raise ValueError(f"{value!r} is zero: a duration must be more than 0")
    if math.isinf(seconds):
        raise ValueError(f"{value!r} is too long to be a duration")
    return seconds


def duration_text(seconds: float | None) -> str:
    """Seconds as the operator reads them: 45s, 12m, 2h05m, 1d03h (parse_duration reads them back)."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds % size // {"d": 3600, "h": 60, "m": 1}[unit]
            return (
                f"{seconds // size}{unit}{rest:02d}{ {'d': 'h', 'h': 'm', 'm': 's'}[unit] }"
                if rest
                else f"{seconds // size}{unit}"
            )
    return f"{seconds}s"


def eta_text(seconds: float) -> str:
    """An ETA to the minute ('20m', '1h44m'): a forecast is no more precise than that."""
    return duration_text(round(seconds / 60) * 60) if seconds >= 60 else duration_text(seconds)


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


WHEN_EXAMPLE = 'days and a time range, e.g. "sun 02:00-04:00", "mon-fri 22:00-06:00" or "sat,sun 00:00-24:00"'


def parse_when(text) -> tuple[frozenset, int, int]:
    """'mon-fri 22:00-06:00' -> (days 0..6, start and end in minutes after midnight). ValueError if not.

    Days are names, ranges (fri-mon wraps) and commas; without days, every day. A range may cross
    midnight (22:00-06:00 ends on the next day); 24:00 is the end of the day.
    """
    match = re.fullmatch(r"(?:([a-z,-]+)\s+)?(\d\d):(\d\d)-(\d\d):(\d\d)", str(text).strip().lower())
    if not isinstance(text, str) or not match:
        raise ValueError(f"{kind_of(text)} is not a window: write {WHEN_EXAMPLE}")
    day_text, *clock = match.groups()
    start, end = int(clock[0]) * 60 + int(clock[1]), int(clock[2]) * 60 + int(clock[3])
    if int(clock[1]) > 59 or int(clock[3]) > 59 or start >= 24 * 60 or end > 24 * 60:
        raise ValueError(f"{text!r} has a time that is not on a clock (00:00 to 23:59, 24:00 as an end)")
    if start == end:
        raise ValueError(f"{text!r} starts where it ends: give a range that lasts")
    days = set()
    for part in (day_text or "mon-sun").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{text!r} names a day that is not one of {', '.join(DAYS)}")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days), start, end


def kind_of(value) -> str:
    """What a value of the file is, for an error sentence: 'a number', "text 'x'", 'a mapping'."""
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    return {bool: "true/false", int: "a number", float: "a number", str: f"text {value!r}",
            list: "a list"}.get(type(value), type(value).__name__)


def iso_time(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
