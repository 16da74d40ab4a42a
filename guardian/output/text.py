"""The phrases every output shares: printable text, times, durations, percents, labels."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from guardian.core.attribution import CRON_RUN
from guardian.core.forecast import Forecast
from guardian.core.records import Split, Subject
from guardian.settings.units import eta_text, iso_time

if TYPE_CHECKING:  # a check never needs the peak forecast's code (nor its `statistics`, 3 ms)
    from guardian.core.peaks import PeakForecast


def safe(text: str, limit: int = 500) -> str:
    """Printable text only, so a session key or error from a gateway cannot move the cursor or forge lines."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def percent(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}%"



def subject_label(subject: Subject) -> str:
    return f"{subject.kind} {subject.name}" if subject.kind != "host" else subject.name



def holders_text(holders: Split | None, top: int = 3) -> str:
    """'sales 35 (26 closable), support 12 (9 of them cron runs)': the agents holding most sessions, with what cleanup
    would close of theirs (as of the latest split), then how many of the host's sessions are cron runs, which no
    cleanup lists (an agent's count includes its own); '' when nothing is known."""
    if holders is None:
        return ""
    parts = ", ".join(f"{safe(s.name, 40)} {s.sessions}" + (f" ({s.closable} closable)" if s.closable else "")
                      for s in holders.agents[:top] if s.sessions)
    cron_runs = next((s.sessions for s in holders.kinds if s.name == CRON_RUN), 0)
    if cron_runs and parts:
        parts += f" ({cron_runs} of them {'a cron run' if cron_runs == 1 else 'cron runs'})"
    return parts


def forecast_text(fit: Forecast | None) -> str:
    """'critical in 20m, full in 40m (r² 0.97)', 'no upward trend', or '' without enough history."""
    if fit is None or not fit.enough:
        return ""
    if not fit.rising:
        return "no upward trend"
    critical = "critical now" if fit.critical_in == 0 else f"critical in {eta_text(fit.critical_in)}"
    quality = "" if fit.r2 is None else f" (r² {fit.r2:.2f})"
    return ("full now" if fit.full_in == 0 else f"{critical}, full in {eta_text(fit.full_in)}") + quality



def peak_text(peak: PeakForecast, now: float) -> str:
    """'usual peak 10:00-11:00 at 84% (p90 91%); next tomorrow 10:20, expected 88%; peaks +2.1 points a week,
    critical peak expected on 2026-12-14', in the forecast's zone; or why there is none."""
    if not peak.enough:
        return peak.reason
    typical, next_at = peak.typical, peak.next_at
    # the hour around the usual peak, to 5 minutes: 09:58 reads 09:30-10:30, not 09:00-10:00
    minute = typical.typical_time.hour * 60 + typical.typical_time.minute
    start, end = ((minute + shift) % 1440 for shift in (-30, 30))
    start, end = (f"{m // 5 * 5 // 60:02}:{m // 5 * 5 % 60:02}" for m in (start + 2, end + 2))
    today = datetime.fromtimestamp(now, next_at.tzinfo).date()
    day = {today: "today", today + timedelta(days=1): "tomorrow"}.get(next_at.date(), next_at.strftime("%a %Y-%m-%d"))
    critical = (f"critical peak expected on {peak.critical_peak_on.isoformat()}" if peak.critical_peak_on
                else "no critical peak expected")
    return (f"usual peak {start}-{end} at {percent(typical.typical_usage)} "
            f"(p90 {percent(typical.p90_usage)}); next {day} {next_at:%H:%M}, expected "
            f"{percent(peak.next_expected_usage)}; peaks {peak.growth_points_per_week:+.1f} points a week, {critical}")


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


UNDO = ("archived", "purged", "restored")  # the outcomes of archive mode and restore, each shown apart
# a cleanup run's outcomes that have their own column or phrase: closed (archived or deleted), and archive mode's
SHOWN_APART = ("closed", *UNDO)


def other_outcomes(run) -> str:
    """A cleanup or restore run's other outcomes: '2 skipped: changed, 1 failed'."""
    return ", ".join(f"{n} {result}" for result, n in run.results.items() if result not in SHOWN_APART)


def undo_text(runs) -> str:
    """What archive mode did beside closing: ' (10 archived), 4 purged, 2 restored'; '' for none of it."""
    archived, purged, restored = (sum(run.results.get(result, 0) for run in runs) for result in UNDO)
    return (f" ({archived} archived)" if archived else "") + (f", {purged} purged" if purged else "") + (
        f", {restored} restored" if restored else "")


def report_headline(report) -> str:
    """The answer at a glance: the hottest host, when it fills, what was done about it."""
    sent = sum(1 for a in report.alerts if a.counted_as)
    closed = sum(run.closed for run in report.cleanups)
    held = sum(len(q.held) for q in report.quiet)
    cleanups = sum(1 for run in report.cleanups if run.command != "restore")  # a restore is no cleanup
    done = (f"{plural(sent, 'alert')} sent{f', {held} held' if held else ''}, {plural(closed, 'session')} closed "
            f"by {plural(cleanups, 'cleanup')}" + undo_text(report.cleanups))
    hottest = report.hottest
    if hottest is None:
        return f"No history for these hosts since {iso_time(report.since)}; {done}."
    latest = hottest.latest
    outlook = forecast_text(hottest.forecast) or "not enough recent history for a forecast"
    return (f"Hottest: {hottest.name} at {latest.usage:.0f}% ({latest.sessions}/{latest.limit}, {latest.level}); "
            f"{outlook}. In the period: {done}.")
