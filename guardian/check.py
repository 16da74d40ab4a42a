"""`guardian check`: poll every host at once, decide each subject's alerts, deliver, record.

load (the caller) -> observe (poll_hosts) -> decide + act + record (run, under the state lock)
-> render (guardian.render). The decisions themselves are in guardian.policy.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from guardian import alertmanager_state, anomaly, gateway, policy
from guardian.audit import AuditError, AuditLog, cleanup_runs, new_run_id
from guardian.config import Channel, Config, Host, Pool
from guardian.forecast import Forecast, forecast
from guardian.history import History, HistoryError, Sample
from guardian.identity import IdentityStore
from guardian.notify import AlertLine, Delivery, deliver_all, log_channel, record, suggested_action
from guardian.policy import Reading
from guardian.state import State, StateBusy, StateError, StateFile

if TYPE_CHECKING:
    from guardian.channels import Backoff


REBOUND_LOOKBACK = 600.0  # seconds before a cleanup in which to find the check that saw it coming


@dataclass
class Poll:
    """What one host's poll found: a reading, or the error that stopped it."""

    host: Host
    reading: Reading | None = None
    error: str | None = None
    server_version: str | None = None
    elapsed: float = 0.0


@dataclass
class Subject:
    """A host or a pool as this run saw and judged it."""

    kind: str  # host | pool
    name: str
    limit: int
    reading: Reading | None
    error: str | None
    level: str
    previous_count: int | None
    members: tuple[str, ...] = ()
    unreachable_members: tuple[str, ...] = ()  # a pool's members not read: its reading is a lower bound
    closed_now: int | None = None  # sessions the on_critical cleanup closed on this run
    server_version: str | None = None
    elapsed: float | None = None
    url: str | None = None
    last_success: float | None = None  # time of the last successful poll, this one or an earlier one
    forecast: Forecast | None = None  # None: history.db could not be used
    anomalies: dict = field(default_factory=dict)  # growth / rebound -> what was found

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

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
        return policy.exit_code(reachable, unknown=unknown)


def read_host(host: Host, idle_after: float, identities: IdentityStore) -> Poll:
    """Count a host's non-archived sessions and those active within idle_after, in one round trip."""
    started = time.monotonic()
    minutes = max(1, math.ceil(idle_after / 60))
    with gateway.connect(host, [gateway.READ], identities) as connection:
        total, active = _counts(connection, [("sessions.list", {"limit": 1}),
                                             ("sessions.list", {"limit": 1, "activeMinutes": minutes})])
        if total is None:  # releases without totalCount (2026.4) return every row when no limit is given
            total, active = _counts(connection, [("sessions.list", {}), ("sessions.list", {"activeMinutes": minutes})])
        version = connection.hello.server_version
    reading = Reading(count=total, limit=host.limit, idle=max(0, total - active) if active is not None else None)
    return Poll(host, reading, server_version=version, elapsed=time.monotonic() - started)


def _counts(connection, calls) -> tuple[int | None, int | None]:
    counts = []
    for answer in connection.call_many(calls):
        if isinstance(answer, gateway.GatewayError):
            raise answer
        counts.append(_session_count(answer, bool(calls[0][1])))
    return counts[0], counts[1]


def _session_count(payload: dict, paged: bool) -> int | None:
    total = payload.get("totalCount")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    if paged:
        return None
    rows = payload.get("sessions")
    if not isinstance(rows, list):
        raise gateway.GatewayError("PROTOCOL", "sessions.list answered without totalCount or a sessions list")
    return len(rows)


def poll_hosts(hosts: list[Host], idle_after: float, identities: IdentityStore,
               concurrency: int = gateway.DEFAULT_CONCURRENCY) -> list[Poll]:
    def poll(host):
        return read_host(host, idle_after, identities)

    polls = []
    for host, result in zip(hosts, gateway.concurrently(poll, hosts, concurrency)):
        if isinstance(result, Poll):
            polls.append(result)
        else:
            polls.append(Poll(host, error=_sentence(host, result)))
    return polls


def _sentence(host: Host, exc: Exception) -> str:
    if isinstance(exc, gateway.GatewayError):
        return str(exc.message)
    return f"{host.name}: unexpected {type(exc).__name__} while polling ({exc}); run with --debug for details"


def pool_reading(pool: Pool, polls: dict[str, Poll]) -> Reading | None:
    """A pool's reading is the sum of its reachable hosts': a lower bound while a member is unreachable
    (the others alone may reach a level); unknown when none is reachable."""
    members = [polls[name].reading for name in pool.hosts if polls[name].reading is not None]
    if not members:
        return None
    idle = None if any(m.idle is None for m in members) else sum(m.idle for m in members)
    return Reading(count=sum(m.count for m in members), limit=pool.limit, idle=idle)


def run(config: Config, host_names: str | None, now: float, notify: bool = True,
        backoff: Backoff | None = None) -> CheckReport:
    started, hosts = time.monotonic(), config.select(host_names)
    selected = {h.name for h in hosts}
    pools = [p for p in config.pools.values() if set(p.hosts) <= selected]
    identities = IdentityStore(config.state_dir)
    polls = {p.host.name: p for p in poll_hosts(hosts, config.cleanup.idle_after, identities,
                                                              config.check.concurrency)}
    audit = AuditLog(config.state_dir, new_run_id(), "check")
    closed_now, cleanup_warnings = _cleanup_critical(config, hosts, polls, now, audit) if notify else ({}, [])

    store = StateFile(config.state_dir, cooldown=config.alerts.cooldown)
    subjects, deliveries, history_warnings, error = None, [], [], None
    try:
        # --no-notify changes nothing: it judges against the state as it is and writes none of it back
        with store.locked() if notify else contextlib.nullcontext(store.look()) as state:
            configured = {*(f"host:{name}" for name in config.hosts), *(f"pool:{name}" for name in config.pools)}
            state.forget_departed(configured, {log_channel(config).name, *(c.name for c in config.alerts.channels)},
                                  now)
            subjects = _judge_all(state, hosts, pools, polls, closed_now, config, now)
            history_warnings = _trends(config, subjects, now, audit)
            deliveries = _notify(state, subjects, config.alerts.channels, config, now, notify, backoff)
            with contextlib.suppress(AuditError):  # delivered is remembered all the same; said once below
                record(audit, deliveries, now)
    except StateError as exc:
        error = str(exc)
        if subjects is None:  # nothing was decided: judged afresh, to show what this run saw
            state = State()
            subjects = _judge_all(state, hosts, pools, polls, closed_now, config, now)
            if not isinstance(exc, StateBusy):  # busy: the runs holding the lock are telling
                # Without the memory the channels would hear every alert again on every run, so
                # only the stderr line (cron mails it) says what this run saw.
                deliveries = _notify(state, subjects, (), config, now, notify, backoff)
    warnings = [*config.warnings, *identities.warnings, *store.warnings, *cleanup_warnings, *history_warnings,
                *_audit_warning(audit.failures)]
    return CheckReport(time=now, subjects=subjects, deliveries=deliveries, warnings=warnings, error=error,
                       duration=time.monotonic() - started)


def _judge_all(state, hosts: list[Host], pools: list[Pool], polls: dict[str, Poll], closed_now: dict,
               config: Config, now: float) -> list[Subject]:
    subjects = []
    for host in hosts:
        poll = polls[host.name]
        subjects.append(_judge(state, "host", host.name, host.limit, poll.reading, poll.error, config, now,
                               server_version=poll.server_version, elapsed=poll.elapsed, url=host.url,
                               closed_now=closed_now.get(host.name)))
    for pool in pools:
        unread = tuple(name for name in pool.hosts if polls[name].reading is None)
        subjects.append(_judge(state, "pool", pool.name, pool.limit, pool_reading(pool, polls), None, config,
                               now, members=pool.hosts, unreachable_members=unread))
    return subjects


def _cleanup_critical(config: Config, hosts: list[Host], polls: dict[str, Poll], now: float, audit: AuditLog):
    """cleanup.on_critical: clean a host at critical now instead of waiting for cron (same rules, same lock)."""
    if not config.cleanup.on_critical:
        return {}, []
    critical = config.alerts.thresholds["critical"]
    targets = [h for h in hosts if polls[h.name].reading and polls[h.name].reading.usage >= critical]
    if not targets:
        return {}, []
    from guardian import cleanup

    try:
        reports = cleanup.run(config, targets, cleanup.Rules.from_config(config.cleanup), now, False, audit)
    except cleanup.CleanupBusy:
        return {}, ["a host is critical but a cleanup is already running; it was left to that cleanup"]
    except AuditError:  # nothing was closed without its record; the run's one audit warning says why
        return {}, []
    except StateError as exc:  # no audit record, no delete: the alert still goes out
        return {}, [f"a host is critical but it could not be cleaned: {exc}"]
    warnings = [f"{r.host.name}: the critical cleanup failed: {r.error}" for r in reports if r.error]
    return {r.host.name: r.closed for r in reports if r.before is not None}, warnings


def _audit_warning(failures: list[AuditError]) -> list[str]:
    """What an audit log this run could not use cost it, in one sentence however often it failed."""
    if not failures:
        return []
    cost = ("this run's alerts were still sent and remembered but are not recorded there, and no cleanup closes "
            "a session until it can be written" if any(f.writing for f in failures)
            else "rebound notices wait until it can be read")
    return [f"cannot use the audit log {failures[0].path} ({failures[0].reason}): {cost}"]


def _trends(config: Config, subjects: list[Subject], now: float, audit: AuditLog) -> list[str]:
    """Record this check in history.db, then give each subject its forecast and anomalies.

    A history that cannot be used costs the forecast and the anomalies, never the check: warnings.
    """
    history = History(config.state_dir)
    # back far enough for the forecast window, and for the check before the oldest cleanup in question
    since = now - max(config.history.forecast_window, config.alerts.rebound + REBOUND_LOOKBACK)
    try:
        recent = history.record([_sample(s, now) for s in subjects], since, config.history)
    except HistoryError as exc:
        return [*history.warnings, f"{exc}; this check has no forecast"]
    cleanups = cleanup_runs(audit.records_since(now - config.alerts.rebound)) if config.alerts.rebound else []
    window = config.history.forecast_window
    by_subject: dict[str, list[Sample]] = {}  # grouped once: filtering per subject grows with hosts squared
    for sample in recent:
        by_subject.setdefault(sample.subject, []).append(sample)
    for subject in subjects:
        samples = by_subject.get(subject.id, [])
        subject.forecast = forecast([(s.time, s.usage) for s in samples], config.alerts.thresholds["critical"],
                                    now, window)
        if subject.full_reading is not None:
            ran_here = [c for c in cleanups if subject.kind == "host" and c.host == subject.name]
            subject.anomalies = anomaly.find(samples, ran_here, config.alerts, window, now)
    return history.warnings


def _sample(subject: Subject, now: float) -> Sample:
    r = subject.full_reading
    return Sample(now, subject.kind, subject.name, r.count if r else None, subject.limit, r.usage if r else None,
                  subject.level, r.idle if r else None, r is not None)


def _judge(state, kind, name, limit, reading, error, config, now, **extra) -> Subject:
    subject_id = f"{kind}:{name}"
    previous = state.subject(subject_id)
    if reading is None and kind == "pool":
        current = previous  # every member is down: those hosts alert; the pool keeps what it knew
    elif extra.get("unreachable_members"):
        # A lower bound can raise the pool's level, never lower it: a member going dark is no resolve.
        seen = policy.observe(previous, reading, config.alerts, now)
        level = max(seen.level, previous.level, key=policy.RANK.get)
        current = replace(previous, level=level, since=previous.since if level == previous.level else now)
    else:
        current = policy.observe(previous, reading, config.alerts, now)
    state.subjects[subject_id] = current
    return Subject(kind=kind, name=name, limit=limit, reading=reading, error=error, level=current.level,
                   previous_count=previous.count, last_success=current.checked_at, **extra)


def hears(channel: Channel, subject: Subject) -> bool:
    """The channel's `hosts` filter: a host it names, or a pool with one of them."""
    if not channel.hosts:
        return True
    return bool(set(channel.hosts) & ({subject.name} if subject.kind == "host" else set(subject.members)))


@dataclass
class ChannelPlan:
    """What one channel is sent this run, and what it remembers once it accepted that."""

    channel: Channel
    message: list[AlertLine]  # the lines sent
    told: list[AlertLine]  # what the audit log and the metrics count (for Alertmanager: what changed there)
    memories: dict  # (memory key, channel name) -> what the channel then remembers
    store: dict  # where those are kept: state.memories, or state.posted for Alertmanager


def plan(state, subjects: list[Subject], channels, config: Config, now: float) -> list[ChannelPlan]:
    """Decide per channel, from what each channel was told (the state) and what this run saw. Changes nothing."""
    plans = []
    for channel in channels:
        if channel.type == "alertmanager":
            plans.append(ChannelPlan(channel, *_alertmanager_plan(state, subjects, channel, config)))
            continue
        alerts = replace(config.alerts, resolved=channel.resolved)
        lines, memories = [], {}
        for subject in subjects:
            if (subject.kind == "pool" and subject.reading is None) or not hears(channel, subject):
                continue
            current = state.subject(subject.id)
            decisions = [(subject.id, policy.decide(state.memory(subject.id, channel.name), current, alerts, now,
                                                    channel.min_level))]
            if policy.RANK[channel.min_level] <= policy.RANK["notice"]:  # anomalies are notices
                for reason in subject.anomalies:  # each with a memory of its own: "host:t440/growth"
                    key = f"{subject.id}/{reason}"
                    decisions.append((key, policy.decide_anomaly(state.memory(key, channel.name), reason, alerts, now)))
            for key, decision in decisions:
                memories[key] = decision.memory
                lines += [_line(subject, notice, current.failures) for notice in decision.notices]
        kept = {(key, channel.name): memory for key, memory in memories.items()}
        plans.append(ChannelPlan(channel, lines, lines, kept, state.memories))
    return plans


def remember(plans: list[ChannelPlan], errors: list[str | None]) -> None:
    """A channel's memory moves on only when it accepted its message (or had none): a failed one is decided again."""
    for channel_plan, error in zip(plans, errors):
        if error is None:
            channel_plan.store.update(channel_plan.memories)


def _notify(state, subjects: list[Subject], channels, config: Config, now: float, send: bool,
            backoff: Backoff | None) -> list[Delivery]:
    """Plan for the log line and `channels`, send one message per channel (all at once), remember what was accepted."""
    plans = plan(state, subjects, [log_channel(config), *channels], config, now)
    if send:
        errors = deliver_all([(p.channel, p.message) for p in plans], now, backoff)
        remember(plans, errors)
    else:
        errors = [None] * len(plans)
    return [Delivery(p.channel.name, p.told, error, sent=send) for p, error in zip(plans, errors) if p.told or error]


def _alertmanager_plan(state, subjects: list[Subject], channel: Channel, config: Config):
    """(message, told, memories, store) for an Alertmanager channel: the message is every subject it
    hears with something firing or left to resolve, posted on every run; told is what changed since
    the channel last accepted a post (what the audit log and the metrics count)."""
    message, told, memories = [], [], {}
    for subject in subjects:
        if not hears(channel, subject):
            continue
        held = state.subject(subject.id)
        before = state.posted.get((subject.id, channel.name), alertmanager_state.NOTHING)
        after = alertmanager_state.holds(held, channel.min_level, config.alerts.unreachable_after)
        if before == after == alertmanager_state.NOTHING:
            continue
        reason = alertmanager_state.change(before, after)
        line = _subject_line(subject, "unreachable" if after.unreachable else reason or "repeat", after.level,
                             before.level, held.failures, last_count=held.count)
        message.append(line)
        if reason:
            told.append(line)
        memories[(subject.id, channel.name)] = after
    return message, told, memories, state.posted


def _line(subject: Subject, notice: policy.Notice, failures: int) -> AlertLine:
    return _subject_line(subject, notice.reason, notice.level, notice.previous, failures,
                         detail=subject.anomalies.get(notice.reason))


def _subject_line(subject: Subject, reason: str, level: str, previous: str, failures: int,
                  last_count: int | None = None, detail: str | None = None) -> AlertLine:
    """One subject's line; `last_count` stands in for the reading a subject that is dark has not."""
    hosts = ",".join(subject.members) if subject.kind == "pool" else subject.name
    reading = subject.reading
    error = f"{subject.error} ({failures} failed polls in a row)" if reason == "unreachable" else None
    return AlertLine(subject=subject.id, kind=subject.kind, name=subject.name, reason=reason, level=level,
                     previous=previous, count=reading.count if reading else last_count, limit=subject.limit,
                     idle=reading.idle if reading else None, error=error,
                     action=suggested_action(reason, level, hosts), closed_now=subject.closed_now, detail=detail,
                     unreachable_members=subject.unreachable_members)
