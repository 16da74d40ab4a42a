"""The plain records the decisions take and give: readings, what a subject and a channel remember, samples,
cleanup runs, a check's subjects and report, alert lines and their deliveries. No I/O: the adapters store them,
guardian.output phrases them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from guardian.core.forecast import Forecast
from guardian.settings.model import Host

RESOLVING = ("resolved", "reachable")  # the reasons of a resolved line: usage back to ok, a host reachable again


def subject_id(kind: str, name: str) -> str:
    """A subject's id in the state, the history and the alerts: 'host:t440', 'pool:shared-key', 'agent:t440/sales'."""
    return f"{kind}:{name}"


@dataclass(frozen=True)
class Reading:
    """One successful poll of a subject."""

    count: int
    limit: int
    idle: int | None = None  # sessions idle past cleanup.idle_after, when known

    @property
    def usage(self) -> float:
        return 100.0 * self.count / self.limit


@dataclass(frozen=True)
class SubjectState:
    level: str = "ok"
    failures: int = 0  # failed polls in a row
    count: int | None = None  # at the last successful poll
    checked_at: float | None = None
    since: float | None = None  # when it came to its level: a lower level's cooldown starts there


@dataclass(frozen=True)
class ChannelMemory:
    """What one channel was told about one subject. It changes only with a message the channel
    accepted (a resolved the channel does not want counts as told), never on a silent drop."""

    level: str = "ok"  # the level last told ("ok": nothing, or its resolved was told)
    # when each kind was last told: notice, warning, critical, unreachable (growth or rebound for an anomaly's memory)
    told_at: dict = field(default_factory=dict)
    unreachable: bool = False  # an unreachable was told, and its "reachable again" not yet


class Sample(NamedTuple):
    time: float
    kind: str
    name: str
    sessions: int | None
    limit: int
    usage: float | None
    level: str
    idle: int | None
    reachable: bool

    @property
    def subject(self) -> str:
        return subject_id(self.kind, self.name)


@dataclass(frozen=True)
class CleanupRun:
    """What one run (a `cleanup`, or a check's on_critical cleanup) did to one host."""

    time: float  # its first action
    host: str
    run_id: str
    command: str
    # outcome result -> sessions: closed (deleted), archived, purged, restored, already active, skipped: changed,
    # already gone, not the guardian's, failed, unknown
    results: dict

    @property
    def closed(self) -> int:
        """Sessions that left the usage: deleted or archived (a purge only removes what already left it)."""
        return self.results.get("closed", 0) + self.results.get("archived", 0)


@dataclass(frozen=True)
class Share:
    """One agent's or one kind's sessions (guardian.core.attribution). idle and closable are None where rows were
    not read (cron runs)."""

    name: str
    sessions: int
    idle: int | None = None  # idle past that agent's idle_after (some may be kept: pinned, protected, main, running)
    closable: int | None = None  # what cleanup would close, before its per-run cap

    def as_json(self, key: str) -> dict:
        return {key: self.name, "sessions": self.sessions, "idle": self.idle, "closable": self.closable}


@dataclass(frozen=True)
class AgentPeriod:
    """One agent's sessions on one host over a report's period (guardian.core.attribution.agents_of_period)."""

    agent: str
    now: int  # at the host's latest check in the period
    max: int  # the most at any check (for `other`: the sum of each agent's most)
    growth: int  # now less the sessions at the host's first check in the period
    closed: int  # closed by cleanup (deleted or archived) in the period

    def as_json(self) -> dict:
        return {"agent": self.agent, "now": self.now, "max": self.max, "growth": self.growth, "closed": self.closed}


@dataclass(frozen=True)
class Split:
    """A host's sessions split by agent and by kind, as counted at `as_of` (epoch seconds)."""

    as_of: float | None  # None: no rows were read yet, only status's counts per agent are known
    agents: tuple[Share, ...]  # most sessions first
    kinds: tuple[Share, ...]  # in KINDS order, only those with sessions

    def as_json(self) -> dict:
        return {"as_of": self.as_of, "agents": [s.as_json("agent") for s in self.agents],
                "kinds": [s.as_json("kind") for s in self.kinds]}

    @classmethod
    def from_json(cls, data: dict) -> Split:
        """The cached split back (ValueError, KeyError or TypeError if it is not one)."""
        def shares(entries, key):
            return tuple(Share(str(e[key]), int(e["sessions"]), _share_count(e.get("idle")),
                               _share_count(e.get("closable"))) for e in entries)

        return cls(float(data["as_of"]), shares(data["agents"], "agent"), shares(data["kinds"], "kind"))


def _share_count(value) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Tally:
    """Listed rows counted toward a split (guardian.core.attribution.tally): per agent and per kind, (rows, idle,
    closable). Each row's verdict is its own (cleanup's rules without the per-run cap), so the tallies of two
    pages add up to the tally of both."""

    agents: dict  # agent -> (rows, idle, closable)
    kinds: dict  # kind -> (rows, idle, closable)

    def __add__(self, other: Tally) -> Tally:
        def added(mine: dict, theirs: dict) -> dict:
            return {name: tuple(a + b for a, b in zip(mine.get(name, (0, 0, 0)), theirs.get(name, (0, 0, 0))))
                    for name in {**mine, **theirs}}

        return Tally(added(self.agents, other.agents), added(self.kinds, other.kinds))

    def as_json(self) -> dict:
        return {"agents": {a: list(c) for a, c in self.agents.items()},
                "kinds": {k: list(c) for k, c in self.kinds.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Tally:
        def counts(entries: dict) -> dict:
            rows_idle_closable = {}
            for name, triple in entries.items():
                rows, idle, closable = (int(n) for n in triple)  # ValueError unless three
                rows_idle_closable[str(name)] = (rows, idle, closable)
            return rows_idle_closable

        return cls(counts(data["agents"]), counts(data["kinds"]))


@dataclass(frozen=True)
class SplitPass:
    """A split under way on a store larger than one page: `check` reads one page each run, the next after the one
    the run before read, and adds its rows to `tally`; the last page makes the host's split, as of `started`."""

    listing: str  # which listing it pages through (guardian.commands.check.LISTINGS): a pass never mixes two
    offset: int  # the next page's
    total: int  # the rows the pass's first page said the listing holds
    started: float  # when the first page was read: the split's as_of
    tally: Tally  # the pages read so far

    def as_json(self) -> dict:
        return {"listing": self.listing, "offset": self.offset, "total": self.total, "started": self.started,
                "tally": self.tally.as_json()}

    @classmethod
    def from_json(cls, data: dict) -> SplitPass:
        """The pass back (ValueError, KeyError or TypeError if it is not one)."""
        return cls(str(data["listing"]), int(data["offset"]), int(data["total"]), float(data["started"]),
                   Tally.from_json(data["tally"]))


@dataclass
class Poll:
    """What one host's poll found: a reading, or the error that stopped it."""

    host: Host
    reading: Reading | None = None
    classes: dict | None = None  # the cheap counts by what usage may count (settings.model.COUNTABLE), as far as read
    split: Split | None = None  # by agent and kind, when this poll completed one (attribution.due)
    split_pass: SplitPass | None = None  # the host's split under way after this poll (None: none)
    error: str | None = None
    server_version: str | None = None
    elapsed: float = 0.0
    agents: dict | None = None  # sessions per agent id (status's sessions.byAgent); None: not read


@dataclass(frozen=True)
class Hold:
    """What holds an alert back from a channel, and until when (None: until the subject changes)."""

    kind: str  # silence | ack | maintenance
    id: str  # the silence's or ack's id, the window's name
    until: float | None
    by: str | None
    reason: str
    text: str  # "silenced by 3f9a1c2e until 2026-12-02 09:00 UTC", shown beside the subject


@dataclass
class Subject:
    """A host, a pool or an agent on a host (cleanup.agents.<id>.limit) as this run saw and judged it."""

    kind: str  # host | pool | agent
    name: str
    limit: int
    reading: Reading | None
    error: str | None
    level: str
    previous_count: int | None
    members: tuple[str, ...] = ()  # a pool's hosts; an agent's host
    unreachable_members: tuple[str, ...] = ()  # a pool's members not read: its reading is a lower bound
    closed_now: int | None = None  # sessions the on_critical cleanup closed on this run
    server_version: str | None = None
    elapsed: float | None = None
    url: str | None = None
    last_success: float | None = None  # time of the last successful poll, this one or an earlier one
    forecast: Forecast | None = None  # None: history.db could not be used
    anomalies: dict = field(default_factory=dict)  # growth / rebound -> what was found
    peak: dict | None = None  # the next daily peak (PeakForecast.as_json), from the hourly cache; None: no history
    quiet: Hold | None = None  # the silence, acknowledgement or window holding its alerts now, shown beside it
    holders: Split | None = None  # a host's sessions by agent (this check's counts) and kind, idle/closable as_of
    classes: dict | None = None  # a host's cheap counts by what usage may count (Poll.classes)
    counted: tuple[str, ...] = ()  # what a host's usage counts (hosts.<name>.count)
    growth: list | None = None  # [(agent, rise)] over growth_span, largest first; None: no earlier counts
    growth_span: float = 0.0  # seconds from the counts growth is measured from (the forecast window, or less) to now
    waiting_for_purge: int | None = None  # a host's sessions the guardian archived, not purged yet (None: unknown)

    @property
    def id(self) -> str:
        return subject_id(self.kind, self.name)

    @property
    def full_reading(self) -> Reading | None:
        """The reading when it counts every session, not a pool's lower bound: what changes, history and
        trends are made of."""
        return None if self.unreachable_members else self.reading

    @property
    def change(self) -> int | None:
        if self.full_reading is None or self.previous_count is None:
            return None
        return self.full_reading.count - self.previous_count


@dataclass(frozen=True)
class AlertLine:
    """One subject in an alert message, with its identity (subject, alert kind, dedup_key, status); what the
    line says is guardian.output.message's."""

    subject: str  # "host:t440" / "pool:shared-key"
    kind: str  # host | pool
    name: str
    # escalated | repeat | resolved | unreachable | reachable | growth | rebound | test | lowered (Alertmanager's)
    reason: str
    level: str
    previous: str
    count: int | None
    limit: int
    idle: int | None  # sessions idle past cleanup.idle_after (some may be kept: pinned, protected, main, running)
    error: str | None
    action: str
    closed_now: int | None = None  # closed by the on_critical cleanup in this run
    detail: str | None = None  # what a growth or rebound anomaly found
    unreachable_members: tuple[str, ...] = ()  # a pool's members not read: count and usage are a lower bound
    held: str | None = None  # on the log line: what holds it from the other channels ("silenced by 3f9a1c2e ...")
    holders: Split | None = None  # a host's sessions by agent and kind (Subject.holders)

    @property
    def usage(self) -> float | None:
        return None if self.count is None else round(100.0 * self.count / self.limit, 1)

    @property
    def status(self) -> str:
        return "resolved" if self.reason in RESOLVING else "firing"

    @property
    def alert(self) -> str:
        """The alert kind, each with its own dedup_key: usage, unreachable, growth, rebound, or a notify-test sample.
        A resolved line resolves what it names: "reachable again" the unreachable alert, "resolved" the usage one."""
        if self.reason == "reachable":
            return "unreachable"
        return self.reason if self.reason in ("unreachable", "growth", "rebound", "test") else "usage"

    @property
    def dedup_key(self) -> str:
        return f"guardian/{self.kind}/{self.name}/{self.alert}"


@dataclass
class Delivery:
    channel: str
    lines: list[AlertLine]
    error: str | None = None  # None: accepted
    sent: bool = True  # False with --no-notify


@dataclass
class CheckReport:
    time: float
    subjects: list[Subject]
    deliveries: list[Delivery] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # the state dir could not be used: this run's alerts reached only stderr
    duration: float | None = None  # seconds from the first poll to the state saved

    @property
    def exit_code(self) -> int:
        reachable = [s.level for s in self.subjects if s.reading is not None]
        unknown = self.error is not None or any(s.kind == "host" and s.reading is None for s in self.subjects)
        return exit_code(reachable, unknown=unknown)


def exit_code(levels: list[str], unknown: bool) -> int:
    """Nagios: 0 ok or notice, 1 warning, 2 critical, 3 unknown; critical outranks unknown."""
    if "critical" in levels:
        return 2
    if unknown:
        return 3
    if "warning" in levels:
        return 1
    return 0
