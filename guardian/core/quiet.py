"""Quiet on purpose: silences, acknowledgements and maintenance windows, and what each holds (pure).

No I/O, no clock: `now` is an argument. The check's per-channel plan asks `held_by` for each
(subject, alert, channel) it would tell; a hold keeps the message from that channel without
advancing its memory, so when the quiet ends the channel is told what is still true.

- A silence holds its scope's alerts from its start to its end (or until removed).
- An acknowledgement holds one subject at the level it had when acknowledged: repeats of that
  level. A rise above it, a return to ok (or, for an unreachable one, the host answering again)
  ends it, as does its optional end time; `ending` says when, for the store to record.
- A maintenance window (config `maintenance:`) holds its scope while the local clock of its zone
  is in its range on one of its days. Its edges are instants: a time the clock reads twice (DST
  ends) counts at its first reading, a time the clock skips (DST starts) at the moment it jumps.

The commands' decisions are here too: what a new ack replaces, what a removal ends, which acks a
check ends, what `silence list` and the report list.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from guardian.core.records import Hold, subject_id
from guardian.settings.levels import RANK
from guardian.settings.load import scope_problem
from guardian.settings.model import Config, Maintenance, Scope
from guardian.settings.units import duration_text

UNREACHABLE = "unreachable"  # the "level" of a subject whose polls keep failing, for acks and holds


class QuietError(ValueError):
    """A silence or acknowledgement that cannot be made, phrased as one sentence."""


@dataclass(frozen=True)
class Silence:
    id: str
    scope: Scope
    starts: float
    ends: float
    reason: str
    by: str  # who made it (SUDO_USER or USER)
    removed: float | None = None
    removed_by: str | None = None

    def active(self, now: float) -> bool:
        return self.removed is None and self.starts <= now < self.ends

    @property
    def over(self) -> float:
        """When it stopped holding (removed or ended), for the store's week of keeping."""
        return self.ends if self.removed is None else min(self.removed, self.ends)


@dataclass(frozen=True)
class Ack:
    id: str
    subject: str  # host:t440, pool:shared, agent:t440/sales
    level: str  # notice | warning | critical | unreachable: what was acknowledged
    reason: str
    by: str
    made: float
    ends: float | None = None  # --for; None: until a rise or a return to ok
    ended: float | None = None  # when it ended (recorded by the store)
    ended_why: str | None = None

    @property
    def alert(self) -> str:
        return UNREACHABLE if self.level == UNREACHABLE else "usage"

    @property
    def over(self) -> float | None:
        return self.ended if self.ended is not None else self.ends


@dataclass(frozen=True)
class Quiet:
    """Everything that may hold an alert this run: the store's silences and acks, the config's windows."""

    silences: tuple[Silence, ...] = ()
    acks: tuple[Ack, ...] = ()
    windows: tuple[Maintenance, ...] = ()


def covers(scope: Scope, subject: str, alert: str, channel: str) -> bool:
    """Whether the scope holds this subject's alert of this kind on this channel; subjects by their ids
    (records.subject_id), an agent's (agent:HOST/AGENT) held by its own entry or its host's."""
    if (scope.alerts and alert not in scope.alerts) or (scope.channels and channel not in scope.channels):
        return False
    held = {*(subject_id("host", name) for name in scope.hosts), *(subject_id("pool", name) for name in scope.pools),
            *(subject_id("agent", name) for name in scope.agents)}
    kind, _, name = subject.partition(":")
    return subject in held or (kind == "agent" and subject_id("host", name.partition("/")[0]) in held)


def held_by(quiet: Quiet, subject: str, alert: str, channel: str, level: str, now: float) -> Hold | None:
    """The silence, window or acknowledgement that holds this alert on this channel now, or None.

    `alert` is the kind of the message: usage (escalated, repeat, resolved), unreachable (and
    reachable again), growth, rebound or peak. `level` is the subject's level now (ok .. critical),
    or "unreachable" while its polls fail. A silence outranks a window, a window an ack; among
    silences or windows, the one that holds longest is named.
    """
    silences = [s for s in quiet.silences if s.active(now) and covers(s.scope, subject, alert, channel)]
    if silences:
        s = max(silences, key=lambda s: s.ends)
        return Hold("silence", s.id, s.ends, s.by, s.reason, f"silenced by {s.id} until {utc_text(s.ends)}")
    windows = [(end, w) for w in quiet.windows if covers(w.scope, subject, alert, channel)
               for end in [window_end(w, now)] if end is not None]
    if windows:
        end, w = max(windows, key=lambda pair: pair[0])
        return Hold("maintenance", w.name, end, None, w.when, f"in maintenance ({w.name}) until {zone_text(end, w.tz)}")
    for ack in quiet.acks:
        if ack.subject == subject and ack.alert == alert and level == ack.level and ending(ack, level, now) is None:
            until = f" until {utc_text(ack.ends)}" if ack.ends is not None else ""
            return Hold("ack", ack.id, ack.ends, ack.by, ack.reason, f"acknowledged at {ack.level} by {ack.by}{until}")
    return None


def shown(quiet: Quiet, subject: str, alert: str, channels: list[str], level: str, now: float) -> Hold | None:
    """What holds this subject's alert on one of `channels` now, to show beside it (the first found), or None."""
    return next((hold for channel in channels if (hold := held_by(quiet, subject, alert, channel, level, now))), None)


def ending(ack: Ack, level: str, now: float) -> str | None:
    """Why this acknowledgement ends now that its subject is at `level`, or None while it holds on."""
    if ack.ended is not None:
        return ack.ended_why or "ended"
    if ack.ends is not None and now >= ack.ends:
        return "expired"
    if ack.level == UNREACHABLE:
        return None if level == UNREACHABLE else "reachable again"
    if level == "ok":
        return "resolved"
    if level != UNREACHABLE and RANK[level] > RANK[ack.level]:
        return f"rose to {level}"
    return None  # the same level, a lower one, or unreachable for a while: still acknowledged


def cleanup_held(quiet: Quiet, host: str, now: float) -> Hold | None:
    """The window with `cleanup: false` that keeps cleanup (and on_critical) off this host now, or None."""
    for window in quiet.windows:
        end = window_end(window, now) if not window.cleanup and host in window.scope.hosts else None
        if end is not None:
            return Hold("maintenance", window.name, end, None, window.when,
                        f"in maintenance ({window.name}) until {zone_text(end, window.tz)}, which keeps cleanup off")
    return None


def window_end(window: Maintenance, now: float) -> float | None:
    """When the window's occurrence that holds `now` ends, or None when it does not hold now."""
    return max((end for start, end in occurrences(window, now, now) if start <= now < end), default=None)


def occurrences(window: Maintenance, since: float, until: float) -> list[tuple[float, float]]:
    """The window's occurrences, (start, end) instants in order, that hold at some moment of [since, until]."""
    zone = ZoneInfo(window.tz)
    # a range lasts under a day; a day's 23 or 25 hours and a crossing need a margin either side
    day = datetime.fromtimestamp(since, zone).date() - timedelta(days=2)
    last = datetime.fromtimestamp(until, zone).date() + timedelta(days=1)
    found = []
    while day <= last:
        if day.weekday() in window.days:
            start = local_instant(day, window.start, zone)
            end = local_instant(day + timedelta(days=window.end <= window.start), window.end, zone)
            if start <= until and end > since:
                found.append((start, end))
        day += timedelta(days=1)
    return found


def local_instant(day: date, minutes: int, zone: ZoneInfo) -> float:
    """The first moment the local clock reads `minutes` after midnight of `day` (or later, when it skips them)."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minutes)
    first = wall.replace(tzinfo=zone).timestamp()  # the earlier reading of a time read twice
    if _reads(first, zone) == wall:
        return first
    # the clock skips it: find the jump, between this time read on the offset after it and the one before
    low, high = int(wall.replace(tzinfo=zone, fold=1).timestamp()), int(first)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _reads(middle, zone) >= wall else (middle, high)
    return float(high)


def _reads(t: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(t, zone).replace(tzinfo=None)


def utc_text(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def zone_text(t: float, tz: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


# --- making them ------------------------------------------------------------------------------


def end_time(duration: float | None, until: str | None, now: float) -> float:
    """A silence's end from --for (seconds) or --until (ISO, UTC unless it says otherwise)."""
    if duration is not None and until is not None:
        raise QuietError("give --for or --until, not both")
    if duration is not None:
        return now + duration
    if until is None:
        raise QuietError("a silence needs an end: give --for DURATION (2h) or --until TIME (2026-12-02T09:00)")
    try:
        when = datetime.fromisoformat(until)
    except ValueError:
        raise QuietError(f"--until {until!r} is not an ISO date and time (e.g. 2026-12-02T09:00)") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def new_silence(config: Config, scope: Scope, ends: float, reason: str, by: str, silence_id: str,
                now: float) -> Silence:
    """A silence from now to `ends`, refused when it ends already, lasts past alerts.max_silence, or
    names something the config does not have."""
    problem = scope_problem(scope, config.hosts, config.pools, config.alerts.channels)
    if problem:
        key, text = problem
        raise QuietError(f"--{key if key != 'alerts' else 'alert'} {text}")
    if ends <= now:
        raise QuietError(f"the silence would end at {utc_text(ends)}, which has passed")
    if ends - now > config.alerts.max_silence:
        raise QuietError(f"the silence would last longer than alerts.max_silence "
                         f"({duration_text(config.alerts.max_silence)}); end it sooner or raise alerts.max_silence")
    if not reason.strip():
        raise QuietError("--reason must say why (it is shown with every alert the silence holds)")
    return Silence(silence_id, scope, now, ends, reason.strip(), by)


def named_subject(name: str, config: Config) -> str:
    """'t440' (a host, else a pool), 'host:t440', 'pool:shared', 't440/sales' or 'agent:t440/sales' -> its id."""
    kind, colon, rest = name.partition(":")
    if not colon:
        kind, rest = ("agent" if "/" in name else "host" if name in config.hosts else "pool"), name
    scope = {"host": Scope(hosts=(rest,)), "pool": Scope(pools=(rest,)), "agent": Scope(agents=(rest,))}.get(kind)
    if scope is None or scope_problem(scope, config.hosts, config.pools, ()):
        raise QuietError(f"{name!r} is not a host, pool or HOST/AGENT of this config "
                         f"(hosts: {', '.join(config.hosts)}; pools: {', '.join(config.pools) or 'none'})")
    return subject_id(kind, rest)


def new_ack(subject: str, level: str, reason: str, by: str, ack_id: str, now: float,
            duration: float | None = None) -> Ack:
    """An acknowledgement of the level `subject` holds now; refused when there is nothing to acknowledge."""
    if level == "ok":
        raise QuietError(f"{subject} is ok: there is nothing to acknowledge")
    return Ack(ack_id, subject, level, reason.strip(), by, now, None if duration is None else now + duration)


def finish(ack: Ack, why: str, now: float) -> Ack:
    return replace(ack, ended=now, ended_why=why)


def quiet_level(level: str, failures: int, unreachable_after: int) -> str:
    """The level holds and acks compare with: the subject's, or "unreachable" while its polls keep failing."""
    return UNREACHABLE if failures >= unreachable_after else level


def acknowledged(acks: list[Ack], ack: Ack, now: float) -> list[Ack]:
    """The acks once `ack` is made: a running one of the same subject ends, replaced by it."""
    return [finish(a, f"replaced by {ack.id}", now) if a.subject == ack.subject and a.ended is None else a
            for a in acks] + [ack]


def removal(quiet: Quiet, entry_id: str, by: str, now: float) -> tuple[str, Quiet]:
    """("silence" or "ack", the quiet without it) when the active silence or ack `entry_id` is removed now."""
    if any(s.id == entry_id and s.active(now) for s in quiet.silences):
        return "silence", replace(quiet, silences=tuple(replace(s, removed=now, removed_by=by) if s.id == entry_id
                                                        else s for s in quiet.silences))
    if any(a.id == entry_id and ending(a, a.level, now) is None for a in quiet.acks):
        return "ack", replace(quiet, acks=tuple(finish(a, f"removed by {by}", now) if a.id == entry_id else a
                                                for a in quiet.acks))
    raise QuietError(f"no active silence or acknowledgement has the id {entry_id!r} (guardian silence list)")


def ended_acks(acks: list[Ack], levels: dict[str, str], now: float) -> tuple[list[Ack], list[Ack]]:
    """(every ack, those that end now): each ends as `ending` says, its subject at `levels[ack.subject]`."""
    after, ended = [], []
    for ack in acks:
        why = None if ack.ended is not None else ending(ack, levels[ack.subject], now)
        after.append(finish(ack, why, now) if why else ack)
        ended += [after[-1]] if why else []
    return after, ended


@dataclass(frozen=True)
class Listed:
    """One line of `silence list` and of the report: a silence, ack or window, its status and its end."""

    kind: str  # silence | ack | maintenance
    entry: Silence | Ack | Maintenance
    status: str  # active; removed or expired (a silence); why it ended (an ack); ended (a window, in a report)
    ends: float | None  # None: an ack until the level changes

    @property
    def id(self) -> str:
        return self.entry.name if self.kind == "maintenance" else self.entry.id


def listed(quiet: Quiet, now: float, include_ended: bool) -> list[Listed]:
    """The silences, acks and windows holding now (with `include_ended`, the silences and acks that ended too)."""
    rows = []
    for s in quiet.silences:
        status = "active" if s.active(now) else "removed" if s.removed is not None else "expired"
        rows += [Listed("silence", s, status, s.ends)] if include_ended or status == "active" else []
    for a in quiet.acks:
        why = ending(a, a.level, now)
        rows += [Listed("ack", a, why or "active", a.over)] if include_ended or why is None else []
    for w in quiet.windows:
        until = window_end(w, now)
        rows += [Listed("maintenance", w, "active", until)] if until is not None else []
    return rows


def of_period(quiet: Quiet, since: float, now: float) -> list[Listed]:
    """The silences, acks and windows that held at some moment of [since, now], as they stand at `now`; a window
    not holding now is "ended", at the end of its last occurrence in the period."""
    rows = [row for row in listed(replace(quiet, windows=()), now, include_ended=True)
            if (row.entry.starts if row.kind == "silence" else row.entry.made) <= now
            and (row.entry.over is None or row.entry.over > since)]
    for window in quiet.windows:
        found = occurrences(window, since, now)
        if found:
            until = window_end(window, now)
            rows.append(Listed("maintenance", window, "ended" if until is None else "active", until or found[-1][1]))
    return rows
