"""Anomalies that need a person, because cleanup alone will not fix them (design.md "The problem"):

- growth: usage keeps climbing: a real trend, not one step, says critical within `alerts.predict`,
  at this check and at the one before (one noisy check is not a trend);
- rebound: within `alerts.rebound` of a cleanup that closed sessions on a host, its sessions are
  back to where they were before it, and at or above notice: they leak faster than cleanup reclaims them;
- peak: within `alerts.peak_notice` before the next daily peak (core/peaks.py, as check caches it), its
  expected usage reaches critical: time to make room before the agents get busy.

Pure functions of (samples, cleanups, settings, now). Whom to tell, and when again, is the
policy's (`policy.decide_anomaly`), through the same per-channel memory as the usage alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from guardian.core.forecast import Forecast, forecast
from guardian.core.records import CleanupRun, Sample
from guardian.settings.model import Alerts
from guardian.settings.units import duration_text, eta_text

GROWTH, REBOUND, PEAK = "growth", "rebound", "peak"


@dataclass(frozen=True)
class Rebound:
    cleanup: CleanupRun
    before: int  # sessions at the last check before the cleanup
    now: int


def reads_samples(alerts: Alerts, cleanups: list[CleanupRun]) -> bool:
    """Whether growth or rebound look at any subject's samples at all, with these cleanups in question: most checks'
    do not (growth is off by default, and rebound needs a cleanup that closed sessions), so their history read
    leaves out all but the times and usages the forecast fits (50 hosts' hour is 6,000 rows)."""
    return _growth_on(alerts) or _rebound_on(alerts, cleanups)


def _growth_on(alerts: Alerts) -> bool:
    return bool(alerts.predict)


def _rebound_on(alerts: Alerts, cleanups: list[CleanupRun]) -> bool:
    return bool(alerts.rebound) and any(c.closed > 0 for c in cleanups)


def growth(samples: list[Sample], alerts: Alerts, window: float, now: float) -> Forecast | None:
    """The trend's fit when usage is growing toward critical at `now`, else None.

    Growing: the `trend` reaches critical within `alerts.predict`, at this check and at the one before (one
    noisy check is not a trend). Not while the subject is at critical, even held there by the margin: the
    usage alert says that.
    """
    if not _growth_on(alerts):  # before looking at the samples (see reads_samples)
        return None
    latest = max((s for s in samples if s.time <= now), key=lambda s: s.time, default=None)
    if latest is None or latest.sessions is None or latest.level == "critical":
        return None
    previous = max((s.time for s in samples if s.time < now), default=None)
    critical = alerts.thresholds["critical"]
    fits = [trend(samples, critical, at, window) for at in (now, previous) if at is not None]
    if len(fits) == 2 and all(fit.rising and fit.critical_in <= alerts.predict for fit in fits):
        return fits[0]
    return None


def trend(samples: list[Sample], critical: float, now: float, window: float) -> Forecast:
    """The forecast of the sessions in the window before `now`, with a step taken out, so that a single step
    is never a trend.

    Two flat stretches (50 % for half an hour, then 80 %) give the robust line a slope, since most pairs of
    samples straddle the step. The step is what the largest rise between two checks has over the next largest:
    the checks before it are lifted by that much. Two flat stretches then become one; a steady climb, whose
    rises are all alike, keeps its slope. The sessions count against the latest limit, so a change of the
    limit in the config is no step either.
    """
    readings = sorted((s for s in samples if s.sessions is not None and now - window <= s.time <= now),
                      key=lambda s: s.time)
    rises = [later.sessions - earlier.sessions for earlier, later in zip(readings, readings[1:])]
    largest, next_largest = ([*sorted((rise for rise in rises if rise > 0), reverse=True), 0, 0])[:2]
    step = largest - next_largest
    lift_before = rises.index(largest) + 1 if step else 0
    limit = readings[-1].limit if readings else 1
    points = [(s.time, 100.0 * (s.sessions + (step if index < lift_before else 0)) / limit)
              for index, s in enumerate(readings)]
    return forecast(points, critical, now, window)


def rebound(samples: list[Sample], cleanups: list[CleanupRun], alerts: Alerts, now: float) -> Rebound | None:
    """The latest cleanup within `alerts.rebound` before `now` that closed sessions and that usage has undone,
    back at or above notice: below it, sessions coming back are the normal churn of a host with room to spare."""
    if not _rebound_on(alerts, cleanups):  # before looking at the samples (see reads_samples)
        return None
    readings = [s for s in samples if s.sessions is not None and s.time <= now]
    if not readings or readings[-1].usage < alerts.thresholds["notice"]:
        return None
    latest = readings[-1]
    for cleanup in sorted(cleanups, key=lambda c: -c.time):
        if cleanup.closed <= 0 or not now - alerts.rebound <= cleanup.time < latest.time:
            continue
        before = [s for s in readings if s.time <= cleanup.time]
        if before and latest.sessions >= before[-1].sessions:
            return Rebound(cleanup, before[-1].sessions, latest.sessions)
    return None


def peak_ahead(peak: dict | None, alerts: Alerts, now: float) -> str | None:
    """What the peak notice says when the next daily peak (a PeakForecast.as_json) is due within
    `alerts.peak_notice` of `now` and expected at or above critical; None otherwise."""
    if not alerts.peak_notice or not peak or peak.get("next_at") is None or peak.get("next_expected_usage") is None:
        return None
    at = datetime.fromisoformat(peak["next_at"])
    ahead = at.timestamp() - now
    if not 0 < ahead <= alerts.peak_notice or peak["next_expected_usage"] < alerts.thresholds["critical"]:
        return None
    return (f"daily peak expected at {at:%H:%M} (in {eta_text(ahead)}) at {peak['next_expected_usage']:.0f}%, "
            f"critical is {alerts.thresholds['critical']:.0f}% (usual peak {peak['typical_usage']:.0f}%, "
            f"p90 {peak['p90_usage']:.0f}%)")


def find(samples: list[Sample], cleanups: list[CleanupRun], alerts: Alerts, window: float,
         now: float, peak: dict | None = None) -> dict[str, str]:
    """This subject's anomalies at `now`: {reason: what the alert line says about it}."""
    found = {}
    coming = peak_ahead(peak, alerts, now)
    if coming:
        found[PEAK] = coming
    growing = growth(samples, alerts, window, now)
    if growing:
        found[GROWTH] = f"forecast to reach critical in {eta_text(growing.critical_in)}{fit_text(growing, samples)}"
    back = rebound(samples, cleanups, alerts, now)
    if back:
        found[REBOUND] = (
            f"{back.now} sessions, {back.before} before a cleanup closed {back.cleanup.closed} of them "
            f"{duration_text(now - back.cleanup.time)} ago: sessions leak faster than cleanup reclaims them"
        )
    return found


def fit_text(fit: Forecast, samples: list[Sample]) -> str:
    """' at +6.0 sessions/h (fit r² 0.97)', in sessions of the latest limit."""
    limit = samples[-1].limit if samples else None
    rate = f" at {fit.slope * 36 * limit:+.1f} sessions/h" if limit else ""
    quality = "" if fit.r2 is None else f" (fit r² {fit.r2:.2f})"
    return rate + quality
