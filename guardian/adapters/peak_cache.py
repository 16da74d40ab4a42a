"""The peak forecast as check carries it: computed from history.db at most once an hour, kept in peaks.json.

A check runs every 30 s; a peak forecast reads four weeks of 5-minute rollups. So check reads this small
file, and computes the forecasts again only when it is absent or unreadable, an hour old, made for another
zone or critical threshold or other subjects, or when a peak it announces has passed.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from pathlib import Path

from guardian.adapters.files import write_private
from guardian.adapters.history import History

MAX_AGE = 3600.0


def cached_peaks(history: History, state_dir: Path, subject_ids: dict[str, tuple[str, str]], zone: tzinfo,
                 critical: float, now: float) -> dict[str, dict]:
    """Each subject's `peak` object (PeakForecast.as_json), by subject id: from peaks.json while it is fresh."""
    path = Path(state_dir) / "peaks.json"
    cache = _read(path)
    if _fresh(cache, set(subject_ids), str(zone), critical, now):
        return cache["subjects"]
    from guardian.core.peaks import LOOKBACK_DAYS, peak_forecast  # only when computed again: hourly at most

    points = history.usage_points(list(subject_ids.values()), now - (LOOKBACK_DAYS + 1) * 86400, now)
    peaks = {sid: peak_forecast(points[key], now, zone, critical).as_json() for sid, key in subject_ids.items()}
    write_private(path, json.dumps({"computed_at": now, "zone": str(zone), "critical": critical, "subjects": peaks}))
    return peaks


def _read(path: Path) -> dict | None:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cache if isinstance(cache, dict) and isinstance(cache.get("subjects"), dict) else None


def _fresh(cache: dict | None, ids: set[str], zone: str, critical: float, now: float) -> bool:
    if cache is None or (cache.get("zone"), cache.get("critical")) != (zone, critical) or set(cache["subjects"]) != ids:
        return False
    computed_at = cache.get("computed_at")
    if not isinstance(computed_at, (int, float)) or not computed_at <= now < computed_at + MAX_AGE:
        return False
    try:
        upcoming = [datetime.fromisoformat(p["next_at"]).timestamp() for p in cache["subjects"].values()
                    if isinstance(p, dict) and p.get("next_at")]
    except (TypeError, ValueError):
        return False
    return all(when > now for when in upcoming)
