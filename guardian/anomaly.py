"""Anomalies that need a person, because cleanup alone will not fix them (design.md "The problem"):

- growth: usage keeps climbing: the forecast says critical within `alerts.predict`, at this check
  and at the one before (one noisy check is not a trend);
- rebound: within `alerts.rebound` of a cleanup that closed sessions on a host, its sessions are
  back to where they were before it, and at or above notice: they leak faster than cleanup reclaims them.

Pure functions of (samples, cleanups, settings, now). Whom to tell, and when again, is the
policy's (`policy.decide_anomaly`), through the same per-channel memory as the usage alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

from guardian.audit import CleanupRun
from guardian.config import Alerts, duration_text
from guardian.forecast import Forecast, eta_text, forecast
from guardian.history import Sample

GROWTH, REBOUND = "growth", "rebound"


@dataclass(frozen=True)
class Rebound:
    cleanup: CleanupRun
    before: int  # sessions at the last check before the cleanup
    now: int


def growth(samples: list[Sample], current: Forecast, alerts: Alerts, window: float, now: float) -> bool:
    """`current` (the forecast at `now`) and the one at the check before both reach critical within predict.

    Not while already at critical: the usage alert says that.
    """
    if not alerts.predict or not (current.rising and 0 < current.critical_in <= alerts.predict):
        return False
    previous = max((s.time for s in samples if s.time < now), default=None)
    if previous is None:
        return False
    before = forecast([(s.time, s.usage) for s in samples], alerts.thresholds["critical"], previous, window)
    return before.rising and before.critical_in <= alerts.predict


def rebound(samples: list[Sample], cleanups: list[CleanupRun], alerts: Alerts, now: float) -> Rebound | None:
    """The latest cleanup within `alerts.rebound` before `now` that closed sessions and that usage has undone,
    back at or above notice: below it, sessions coming back are the normal churn of a host with room to spare."""
    readings = [s for s in samples if s.sessions is not None and s.time <= now]
    if not alerts.rebound or not readings or readings[-1].usage < alerts.thresholds["notice"]:
        return None
    latest = readings[-1]
    for cleanup in sorted(cleanups, key=lambda c: -c.time):
        if cleanup.closed <= 0 or not now - alerts.rebound <= cleanup.time < latest.time:
            continue
        before = [s for s in readings if s.time <= cleanup.time]
        if before and latest.sessions >= before[-1].sessions:
            return Rebound(cleanup, before[-1].sessions, latest.sessions)
    return None


def find(samples: list[Sample], current: Forecast, cleanups: list[CleanupRun], alerts: Alerts, window: float,
         now: float) -> dict[str, str]:
    """This subject's anomalies at `now`: {reason: what the alert line says about it}."""
    found = {}
    if growth(samples, current, alerts, window, now):
        found[GROWTH] = f"forecast to reach critical in {eta_text(current.critical_in)}{fit_text(current, samples)}"
    back = rebound(samples, cleanups, alerts, now)
    if back:
        found[REBOUND] = (f"{back.now} sessions, {back.before} before a cleanup closed {back.cleanup.closed} of them "
                          f"{duration_text(now - back.cleanup.time)} ago: sessions leak faster than cleanup reclaims them")
    return found


def fit_text(fit: Forecast, samples: list[Sample]) -> str:
    """' at +6.0 sessions/h (fit r² 0.97)', in sessions of the latest limit."""
    limit = samples[-1].limit if samples else None
    rate = f" at {fit.slope * 36 * limit:+.1f} sessions/h" if limit else ""
    quality = "" if fit.r2 is None else f" (fit r² {fit.r2:.2f})"
    return rate + quality
