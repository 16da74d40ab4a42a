"""The peak forecasts as check and report use them: computed from history.db about once a day, kept in files.

A check runs every 30 s; a peak forecast reads four weeks of 5-minute rollups (50 hosts: 400,000 rows, ~0.8 s of
CPU). So check and report read this small file, and compute the forecasts again only when it is absent or
unreadable, made on another local day (a day has completed since) or for another zone or critical threshold or
without one of the subjects asked for, or when a peak it announces has passed; `history import` removes it. While
fresh, its forecasts are those history.db would give now: they look at complete days only, and `now` only picks
the next peak. (An hour's age made them again 24 times a day: ~12 ms of every 30-second check, on average.)
Check reads each forecast's `peak` object (PeakForecast.as_json) from peaks.json; report, which draws the profiles
and the heatmap too, the whole forecasts (PeakForecast.stored) from peak_forecasts.json, written beside it: 190 KB
for 50 hosts, which would cost every check ~5 ms to parse against 0.2 ms.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from pathlib import Path

from guardian.adapters.files import write_private
from guardian.adapters.history import History

PEAKS, FORECASTS = "peaks.json", "peak_forecasts.json"


def cached_peaks(history: History, state_dir: Path, subject_ids: dict[str, tuple[str, str]], zone: tzinfo,
                 critical: float, now: float) -> dict[str, dict]:
    """Each subject's `peak` object (PeakForecast.as_json), by subject id: from peaks.json while it is fresh."""
    cache = _read(Path(state_dir) / PEAKS)
    if _fresh(cache, set(subject_ids), zone, critical, now):
        return {sid: cache["subjects"][sid] for sid in subject_ids}
    forecasts = _computed(history, subject_ids, zone, critical, now)
    _write(Path(state_dir), forecasts, zone, critical, now)
    return {sid: forecast.as_json() for sid, forecast in forecasts.items()}


def cached_forecasts(history: History, state_dir: Path, subject_ids: dict[str, tuple[str, str]], zone: tzinfo,
                     critical: float, now: float) -> dict:
    """Each subject's PeakForecast, by subject id: from peak_forecasts.json while it is fresh, else computed and kept
    (a state directory the report may not write to only costs the next report the computing)."""
    from guardian.core.peaks import PeakForecast  # not at import: a check never needs it

    cache = _read(Path(state_dir) / FORECASTS)
    if _fresh(cache, set(subject_ids), zone, critical, now):
        try:
            return {sid: PeakForecast.restored(cache["forecasts"][sid], zone) for sid in subject_ids}
        except (KeyError, TypeError, ValueError, AttributeError):  # not a file this wrote
            pass
    forecasts = _computed(history, subject_ids, zone, critical, now)
    try:
        _write(Path(state_dir), forecasts, zone, critical, now)
    except OSError:
        pass
    return forecasts


def forget(state_dir: Path) -> None:
    """Drop both files: history.db now holds other samples of the days they were computed from (an import)."""
    for name in (PEAKS, FORECASTS):
        (Path(state_dir) / name).unlink(missing_ok=True)


def _computed(history: History, subject_ids: dict[str, tuple[str, str]], zone: tzinfo, critical: float,
              now: float) -> dict:
    from guardian.core.peaks import LOOKBACK_DAYS, peak_forecast  # only when computed again: about once a day

    sids = {key: sid for sid, key in subject_ids.items()}
    return {sids[key]: peak_forecast(points, now, zone, critical)  # a subject's points at a time: flat memory
            for key, points in history.usage_points(list(subject_ids.values()), now - (LOOKBACK_DAYS + 1) * 86400,
                                                    now)}


def _write(state_dir: Path, forecasts: dict, zone: tzinfo, critical: float, now: float) -> None:
    cache = {"computed_at": now, "zone": str(zone), "critical": critical,
             "subjects": {sid: forecast.as_json() for sid, forecast in forecasts.items()}}
    write_private(state_dir / PEAKS, json.dumps(cache))
    write_private(state_dir / FORECASTS,
                  json.dumps({**cache, "forecasts": {sid: forecast.stored() for sid, forecast in forecasts.items()}}))


def _read(path: Path) -> dict | None:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cache if isinstance(cache, dict) and isinstance(cache.get("subjects"), dict) else None


def _fresh(cache: dict | None, ids: set[str], zone: tzinfo, critical: float, now: float) -> bool:
    if cache is None or (cache.get("zone"), cache.get("critical")) != (str(zone), critical) or \
            not ids <= set(cache["subjects"]):
        return False
    computed_at = cache.get("computed_at")
    if not isinstance(computed_at, (int, float)) or not computed_at <= now:
        return False
    if datetime.fromtimestamp(computed_at, zone).date() != datetime.fromtimestamp(now, zone).date():
        return False  # yesterday has completed since: it is one of the days now
    try:
        upcoming = [datetime.fromisoformat(p["next_at"]).timestamp() for p in cache["subjects"].values()
                    if isinstance(p, dict) and p.get("next_at")]
    except (TypeError, ValueError):
        return False
    return all(when > now for when in upcoming)
