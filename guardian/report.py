"""`guardian report`: what happened over a period, host by host, and what comes next.

`build` is pure: (subjects, their history samples, the audit records of the period, settings,
since, now) -> Report. `run` is the thin shell that reads history.db and the audit log for it.
Rendering is guardian.render (terminal, JSON) and guardian.dashboard (HTML).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from guardian.adapters.audit import cleanup_runs, events, read_since, timestamp
from guardian.core.forecast import Forecast, forecast
from guardian.core.records import RESOLVING, CleanupRun, Sample
from guardian.history import History
from guardian.settings.model import Config
from guardian.settings.units import parse_duration

MAX_GAP = 600.0  # a longer gap between two checks is time nobody watched: counted at no level
SERIES_POINTS = 480  # a chart or sparkline needs no more; each keeps its bucket's highest usage
TIME_LEVELS = ("ok", "notice", "warning", "critical", "unknown")
ALERT_LEVELS = ("notice", "warning", "critical", "unreachable")


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


@dataclass
class SubjectReport:
    kind: str
    name: str
    limit: int
    samples: list[Sample]
    forecast: Forecast
    alerts: list[SentAlert] = field(default_factory=list)
    cleanups: list[CleanupRun] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def readings(self) -> list[Sample]:
        return [s for s in self.samples if s.usage is not None]

    @property
    def latest(self) -> Sample | None:
        return self.readings[-1] if self.readings else None

    @property
    def usage(self) -> dict:
        """min / mean / max over the period (the mean of the samples), and now (the latest reading)."""
        values = [s.usage for s in self.readings]
        if not values:
            return {"now": None, "min": None, "mean": None, "max": None}
        return {"now": values[-1], "min": min(values), "mean": sum(values) / len(values), "max": max(values)}

    @property
    def time_at_level(self) -> dict[str, float]:
        """Seconds at each level: each gap between two checks counts at the level of the first
        (`unknown` when it could not be read); a gap over MAX_GAP counts nowhere."""
        spent = dict.fromkeys(TIME_LEVELS, 0.0)
        for sample, following in zip(self.samples, self.samples[1:]):
            gap = following.time - sample.time
            if gap <= MAX_GAP:
                spent[sample.level if sample.reachable else "unknown"] += gap
        return spent

    @property
    def alerts_sent(self) -> dict[str, int]:
        counted = Counter(a.counted_as for a in self.alerts)
        return {level: counted[level] for level in ALERT_LEVELS}

    @property
    def sessions_closed(self) -> int:
        return sum(run.closed for run in self.cleanups)

    def series(self, points: int = SERIES_POINTS) -> list[tuple[float, float | None]]:
        """(time, usage) to draw, at most `points`: each time bucket's highest reading (None: unreachable)."""
        if len(self.samples) <= points:
            return [(s.time, s.usage) for s in self.samples]
        start, end = self.samples[0].time, self.samples[-1].time
        buckets: dict[int, list[Sample]] = {}
        for sample in self.samples:
            buckets.setdefault(min(points - 1, int((sample.time - start) / (end - start) * points)), []).append(sample)
        series = []
        for bucket in buckets.values():
            readings = [s for s in bucket if s.usage is not None]
            peak = max(readings, key=lambda s: s.usage) if readings else bucket[0]
            series.append((peak.time, peak.usage))
        return series


@dataclass
class Report:
    since: float
    now: float
    thresholds: dict
    subjects: list[SubjectReport]  # hosts, hottest first, then pools, hottest first
    alerts: list[SentAlert]
    cleanups: list[CleanupRun]

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


def run(config: Config, host_names: str | None, since: float, now: float) -> Report:
    """Read history.db and the audit log for the period, and build the report."""
    hosts = config.select(host_names)
    selected = {h.name for h in hosts}
    subjects = [("host", h.name, h.limit) for h in hosts]
    subjects += [("pool", p.name, p.limit) for p in config.pools.values() if set(p.hosts) <= selected]
    # the forecast looks back from now, whatever the period
    samples = History(config.state_dir).read([(kind, name) for kind, name, _ in subjects],
                                             min(since, now - config.history.forecast_window), now)
    records = [r for r in read_since(config.state_dir, since) if (timestamp(r) or math.inf) <= now]
    return build(subjects, samples, records, config, since, now)


def build(subjects: list[tuple[str, str, int]], samples: list[Sample], records: list[dict], config: Config,
          since: float, now: float) -> Report:
    ids = {f"{kind}:{name}" for kind, name, _ in subjects}
    alerts = [a for a in sent_alerts(records) if a.subject in ids]
    runs = [r for r in cleanup_runs(records) if f"host:{r.host}" in ids]
    critical = config.alerts.thresholds["critical"]
    reports = []
    for kind, name, limit in subjects:
        own = [s for s in samples if s.kind == kind and s.name == name]
        fit = forecast([(s.time, s.usage) for s in own], critical, now, config.history.forecast_window)
        reports.append(SubjectReport(kind, name, limit, [s for s in own if s.time >= since], fit,
                                     [a for a in alerts if a.subject == f"{kind}:{name}"],
                                     [r for r in runs if kind == "host" and r.host == name]))
    reports.sort(key=_heat)
    return Report(since, now, dict(config.alerts.thresholds), reports, alerts, runs)


def _heat(subject: SubjectReport) -> tuple:
    latest = subject.latest
    eta = subject.forecast.critical_in if subject.forecast.rising else math.inf
    return (subject.kind != "host", -(latest.usage if latest else -1), eta, subject.name)


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
