"""The phrases every output shares: printable text, times, durations, percents, labels."""

from __future__ import annotations

from guardian.core.forecast import Forecast
from guardian.core.records import Subject
from guardian.settings.units import eta_text, iso_time


def safe(text: str, limit: int = 500) -> str:
    """Printable text only, so a session key or error from a gateway cannot move the cursor or forge lines."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def percent(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}%"



def subject_label(subject: Subject) -> str:
    return f"pool {subject.name}" if subject.kind == "pool" else subject.name



def forecast_text(fit: Forecast | None) -> str:
    """'critical in 20m, full in 40m (r² 0.97)', 'no upward trend', or '' without enough history."""
    if fit is None or not fit.enough:
        return ""
    if not fit.rising:
        return "no upward trend"
    critical = "critical now" if fit.critical_in == 0 else f"critical in {eta_text(fit.critical_in)}"
    quality = "" if fit.r2 is None else f" (r² {fit.r2:.2f})"
    return ("full now" if fit.full_in == 0 else f"{critical}, full in {eta_text(fit.full_in)}") + quality



def report_headline(report) -> str:
    """The answer at a glance: the hottest host, when it fills, what was done about it."""
    sent = sum(1 for a in report.alerts if a.counted_as)
    closed = sum(run.closed for run in report.cleanups)
    done = (f"{sent} alert{'s' if sent != 1 else ''} sent, {closed} session{'s' if closed != 1 else ''} closed "
            f"by {len(report.cleanups)} cleanup{'s' if len(report.cleanups) != 1 else ''}")
    hottest = report.hottest
    if hottest is None:
        return f"No history for these hosts since {iso_time(report.since)}; {done}."
    latest = hottest.latest
    outlook = forecast_text(hottest.forecast) or "not enough recent history for a forecast"
    return (f"Hottest: {hottest.name} at {latest.usage:.0f}% ({latest.sessions}/{latest.limit}, {latest.level}); "
            f"{outlook}. In the period: {done}.")
