"""`guardian report`: what happened over a period, host by host, and what comes next.

`build` is pure: (subjects, their summaries over the period, their recent samples, their peak forecasts, the
audit records of the period, settings, since, now) -> Report. `run` is the thin shell that reads history.db
(aggregated there, so memory stays flat however long the period), the peak forecasts the checks keep in
peaks.json (guardian.adapters.peak_cache) and the audit log for it.
Rendering is guardian.output.render (terminal, JSON) and guardian.output.dashboard (HTML).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from guardian.adapters.audit import cleanup_runs, closed_by_agent, events, read_since, timestamp
from guardian.adapters.history import History, Summary
from guardian.adapters.peak_cache import cached_forecasts
from guardian.adapters.silences import SilenceFile
from guardian.adapters.state import StateError, StateFile
from guardian.core.attribution import agents_of_period
from guardian.core.forecast import Forecast, forecast
from guardian.core.peaks import PeakForecast
from guardian.core.quiet import Listed, Quiet, of_period
from guardian.core.records import RESOLVING, AgentPeriod, CleanupRun, Sample, subject_id
from guardian.settings.levels import LEVELS
from guardian.settings.model import Config
from guardian.settings.units import parse_duration

SERIES_POINTS = 480  # a chart or sparkline needs no more; each keeps its bucket's highest usage
ALERT_LEVELS = (*LEVELS[1:], "unreachable")


@dataclass(frozen=True)
class SentAlert:
    """One alert line of one check, with the channels that accepted it and those that failed."""

    time: float
    subject: str
    reason: str
    level: str
    count: int | None
    limit: int | None
    usage: float | None
    detail: str | None
    channels: tuple[str, ...]
    failed: tuple[str, ...]

    @property
    def counted_as(self) -> str | None:
        """Its column in "alerts sent by level": none when no channel took it, or for a resolved one."""
        if not self.channels or self.reason in RESOLVING:
            return None
        return "unreachable" if self.reason == "unreachable" else self.level


@dataclass(frozen=True)
class HeldAlert:
    """One alert line of one check that a silence, ack or window held, with the channels it was held from."""

    time: float
    subject: str
    reason: str
    level: str
    held_by: str  # silence | ack | maintenance
    id: str
    channels: tuple[str, ...]


@dataclass
class QuietReport:
    """A silence, ack or window of the period and what it held; `entry` None: only the audit log still knows it
    (silences.json drops what ended over a week ago)."""

    kind: str
    id: str
    entry: Listed | None
    held: list[HeldAlert]


@dataclass
class SubjectReport:
    kind: str
    name: str
    limit: int
    summary: Summary  # the period, aggregated in history.db
    forecast: Forecast
    peak: PeakForecast
    alerts: list[SentAlert] = field(default_factory=list)
    cleanups: list[CleanupRun] = field(default_factory=list)
    agents: list[AgentPeriod] = field(default_factory=list)  # a host's, top N by sessions now, then `other`

    @property
    def id(self) -> str:
        return subject_id(self.kind, self.name)

    @property
    def samples(self) -> int:
        return self.summary.samples

    @property
    def latest(self) -> Sample | None:
        return self.summary.latest

    @property
    def usage(self) -> dict:
        return self.summary.usage

    @property
    def time_at_level(self) -> dict[str, float]:
        return self.summary.time_at_level

    @property
    def series(self) -> list[tuple[float, float | None]]:
        return self.summary.series

    @property
    def alerts_sent(self) -> dict[str, int]:
        counted = Counter(a.counted_as for a in self.alerts)
        return {level: counted[level] for level in ALERT_LEVELS}

    @property
    def sessions_closed(self) -> int:
        """Sessions that left the usage: archived or deleted."""
        return sum(run.closed for run in self.cleanups)

    def outcomes(self, result: str) -> int:
        """Sessions of this result in the period's cleanup and restore runs (archived, purged, restored, ...)."""
        return sum(run.results.get(result, 0) for run in self.cleanups)


@dataclass
class Report:
    since: float
    now: float
    thresholds: dict
    subjects: list[SubjectReport]  # hosts, hottest first, then pools, then agents (cleanup.agents.<id>.limit)
    alerts: list[SentAlert]
    cleanups: list[CleanupRun]
    quiet: list[QuietReport] = field(default_factory=list)  # the silences, acks and windows of the period
    warnings: list[str] = field(default_factory=list)

    @property
    def hottest(self) -> SubjectReport | None:
        """The host with the highest usage now (the soonest to fill among equals)."""
        hosts = [s for s in self.subjects if s.kind == "host" and s.latest]
        return hosts[0] if hosts else None


def parse_since(text: str, now: float) -> float:
    """'24h', '7d' (back from now) or an ISO date/time (UTC unless it says otherwise). ValueError if neither."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (24h, 7d) nor an ISO date (2026-11-21T08:00)") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def reported(config: Config, hosts: list) -> list[tuple[str, str, int]]:
    """The subjects a report over these hosts shows: (kind, name, limit) of each host, pool and agent limit."""
    return [*(("host", h.name, h.limit) for h in hosts),
            *(("pool", p.name, p.limit) for p in config.pools_within(hosts)),
            *(("agent", f"{h.name}/{agent}", limit) for h in hosts
              for agent, limit in config.cleanup.agent_limit.items())]


def peak_forecasts(history: History, config: Config, ids: list[tuple[str, str]], now: float) -> dict:
    """The peak forecasts of these (kind, name) subjects, by subject id: kept ones while fresh, else computed and kept.
    They look back their own weeks from now, whatever the report's period, as the checks keep them."""
    return cached_forecasts(history, config.state_dir, {subject_id(kind, name): (kind, name) for kind, name in ids},
                            config.history.zone, config.alerts.thresholds["critical"], now)


def keep_peak_forecasts(config: Config, now: float) -> None:
    """Compute and keep every reported subject's peak forecast now (after `history import` dropped the kept ones), so
    the next report reads them instead of computing them (~0.8 s of CPU for 50 hosts)."""
    peak_forecasts(History(config.state_dir), config, [(kind, name) for kind, name, _ in
                                                       reported(config, config.select(None))], now)


def run(config: Config, host_names: str | None, since: float, now: float) -> Report:
    """Aggregate history.db over the period, read the audit log for it, and build the report."""
    hosts = config.select(host_names)
    subjects = reported(config, hosts)
    history = History(config.state_dir)
    ids = [(kind, name) for kind, name, _ in subjects]
    summaries = history.summaries(ids, since, now, config.history, SERIES_POINTS)
    recent = history.read(ids, now - config.history.forecast_window, now)  # the forecast looks back from now
    peaks = peak_forecasts(history, config, ids, now)
    records = [r for r in read_since(config.state_dir, since) if (timestamp(r) or math.inf) <= now]
    quiet, warnings = read_quiet(config)
    report = build(subjects, summaries, recent, peaks, records, config, since, now, quiet)
    add_agents(report, history.agents_over([h.name for h in hosts], since, now), records, config.attribution.top)
    report.warnings = warnings
    return report


def read_quiet(config: Config) -> tuple[Quiet, list[str]]:
    """silences.json (under the state lock, as the commands that change it) and the config's windows; a file
    that cannot be read costs the report its silences and acks only: a warning."""
    store = SilenceFile(config.state_dir)
    try:
        with StateFile(config.state_dir).lock():
            book = store.read()
    except StateError as exc:
        return Quiet(windows=tuple(config.maintenance)), [f"{exc}; the report has no silences or acks"]
    return Quiet(tuple(book.silences), tuple(book.acks), tuple(config.maintenance)), store.warnings


def build(subjects: list[tuple[str, str, int]], summaries: dict[tuple[str, str], Summary], recent: list[Sample],
          peaks: dict[str, PeakForecast], records: list[dict], config: Config, since: float, now: float,
          quiet: Quiet) -> Report:
    ids = {subject_id(kind, name) for kind, name, _ in subjects}
    alerts = [a for a in sent_alerts(records) if a.subject in ids]
    runs = [r for r in cleanup_runs(records) if subject_id("host", r.host) in ids]
    critical = config.alerts.thresholds["critical"]
    reports = []
    for kind, name, limit in subjects:
        own = [(s.time, s.usage) for s in recent if s.kind == kind and s.name == name]
        fit = forecast(own, critical, now, config.history.forecast_window)
        reports.append(SubjectReport(kind, name, limit, summaries[kind, name], fit, peaks[subject_id(kind, name)],
                                     [a for a in alerts if a.subject == subject_id(kind, name)],
                                     [r for r in runs if kind == "host" and r.host == name]))
    reports.sort(key=_heat)
    return Report(since, now, dict(config.alerts.thresholds), reports, alerts, runs,
                  quiet_of_period(of_period(quiet, since, now), [h for h in held_alerts(records) if h.subject in ids]))


def add_agents(report: Report, counts: dict[str, list[tuple[str, int, int, int]]], records: list[dict],
               top: int) -> None:
    """Each host's agents over the period (History.agents_over's counts, the audit's outcomes by agent)."""
    closed = closed_by_agent(records)
    for subject in report.subjects:
        if subject.kind == "host":
            own = {agent: n for (host, agent), n in closed.items() if host == subject.name}
            subject.agents = agents_of_period(counts.get(subject.name, []), own, top)


def quiet_of_period(entries: list[Listed], held: list[HeldAlert]) -> list[QuietReport]:
    """Each silence, ack and window of the period with what it held; then those only the audit log names."""
    known = [QuietReport(e.kind, e.id, e, [h for h in held if (h.held_by, h.id) == (e.kind, e.id)]) for e in entries]
    named = {(q.kind, q.id) for q in known}
    gone: dict[tuple[str, str], list[HeldAlert]] = {}
    for h in held:
        if (h.held_by, h.id) not in named:
            gone.setdefault((h.held_by, h.id), []).append(h)
    return known + [QuietReport(kind, entry_id, None, lines) for (kind, entry_id), lines in gone.items()]


KINDS = ("host", "pool", "agent")  # the order the report shows them in


def _heat(subject: SubjectReport) -> tuple:
    latest = subject.latest
    eta = subject.forecast.critical_in if subject.forecast.rising else math.inf
    return (KINDS.index(subject.kind), -(latest.usage if latest else -1), eta, subject.name)


def held_alerts(records: list[dict]) -> list[HeldAlert]:
    """The `suppressed` records, one HeldAlert per check, alert line and what held it, whatever the channels."""
    lines: dict[tuple, dict] = {}
    for when, record in events(records, "suppressed"):
        key = tuple(str(record.get(k)) for k in ("run_id", "subject", "reason", "level", "held_by", "id"))
        lines.setdefault(key, {"time": when, "channels": []})["channels"].append(str(record.get("channel")))
    return [HeldAlert(e["time"], subject, reason, level, held_by, entry_id, tuple(e["channels"]))
            for (_, subject, reason, level, held_by, entry_id), e in sorted(lines.items(), key=lambda i: i[1]["time"])]


def sent_alerts(records: list[dict]) -> list[SentAlert]:
    """The `alert` records, one SentAlert per check and alert line, whatever the channels it went to."""
    lines: dict[tuple, dict] = {}
    for when, record in events(records, "alert"):
        delivered = record.get("result") == "delivered"
        for line in record.get("alerts") or []:
            key = (record.get("run_id"), line.get("subject"), line.get("reason"), line.get("level"))
            entry = lines.setdefault(key, {"time": when, "line": line, "channels": [], "failed": []})
            entry["channels" if delivered else "failed"].append(str(record.get("channel")))
    return [SentAlert(time=e["time"], subject=str(e["line"].get("subject")), reason=str(e["line"].get("reason")),
                      level=str(e["line"].get("level")), count=e["line"].get("count"), limit=e["line"].get("limit"),
                      usage=e["line"].get("usage"), detail=e["line"].get("detail"), channels=tuple(e["channels"]),
                      failed=tuple(e["failed"]))
            for e in sorted(lines.values(), key=lambda e: e["time"])]
