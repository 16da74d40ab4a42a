"""What each channel is told this run: the per-channel plan, pure (state, subjects, channels, settings, now).

For every channel but Alertmanager the alert policy (guardian.core.policy) decides each subject's notices
from what that channel was told; the plan gathers them into one message per channel, with the memory the
channel keeps once it accepted it (`remember`). The log line on stderr is a channel too, hearing everything.

Alertmanager's clients post the current state on every run and leave grouping, deduplication and
repeats to it (prometheus.io/docs/alerting/clients: "Clients are expected to continuously re-send
alerts as long as they are still active"). So an Alertmanager channel has no cooldowns: its memory
is only what it last accepted, so that the audit log and guardian_alerts_sent_total count what
changed there (a new level, an outage, a resolve), not every post.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from guardian.core import policy
from guardian.core.quiet import UNREACHABLE, Hold, Quiet, covers, ending, held_by
from guardian.core.records import RESOLVING, AlertLine, Subject, SubjectState, subject_id
from guardian.settings.levels import LEVELS, RANK
from guardian.settings.model import Channel, Config
from guardian.settings.units import iso_time

LOG_CHANNEL = "log"
NO_QUIET = Quiet()


def log_channel(config: Config) -> Channel:
    """The alert line on stderr: always there, and it hears about everything."""
    return Channel(name=LOG_CHANNEL, type=LOG_CHANNEL, resolved=config.alerts.resolved)


def suggested_action(reason: str, level: str, hosts: str) -> str:
    if reason == "unreachable":
        return f"Check the gateway is running and reachable: guardian doctor --hosts {hosts}"
    if reason in RESOLVING:
        return ""
    if reason == "growth":
        return (
            f"Usage keeps growing toward the limit: see which agent opens sessions (guardian report --hosts {hosts}); "
            f"close idle ones meanwhile: guardian cleanup --hosts {hosts}"
        )
    if reason == "rebound":
        return (f"Cleanup alone will not hold: find the agent or client leaking sessions "
                f"(guardian report --hosts {hosts})")
    return {
        "notice": f"Nothing urgent; see what could go: guardian cleanup --dry-run --hosts {hosts}",
        "warning": f"Close idle sessions now: guardian cleanup --hosts {hosts}; "
                   "if usage keeps climbing, look for an agent leaking sessions",
        "critical": f"Act now, new sessions will soon be refused: guardian cleanup --hosts {hosts}",
    }[level]


def hears(channel: Channel, subject: Subject) -> bool:
    """The channel's `hosts` filter: a host it names, a pool with one of them, or an agent on one."""
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
    held: list[tuple[AlertLine, Hold]] = field(default_factory=list)  # decided, then held back (audit: suppressed)


def plan(state, subjects: list[Subject], channels, config: Config, now: float,
         quiet: Quiet = NO_QUIET) -> list[ChannelPlan]:
    """Decide per channel, from what each channel was told (the state) and what this run saw. Changes nothing.

    An alert a silence, acknowledgement or maintenance window holds (`quiet`) is decided as usual, then held:
    not sent, and its memory is not advanced, so when the quiet ends the channel hears what is still true
    (once), never the repeats it missed. The log line is never held, only marked as held."""
    plans = []
    for channel in channels:
        if channel.type == "alertmanager":
            plans.append(ChannelPlan(channel, *_alertmanager_plan(state, subjects, channel, config)))
            continue
        alerts = replace(config.alerts, resolved=channel.resolved)
        lines, memories, held = [], {}, []
        for subject in subjects:
            if (subject.kind != "host" and subject.reading is None) or not hears(channel, subject):
                continue
            current = state.subject(subject.id)
            level = UNREACHABLE if current.failures >= config.alerts.unreachable_after else current.level
            decisions = [(subject.id, policy.decide(state.memory(subject.id, channel.name), current, alerts, now,
                                                    channel.min_level))]
            if RANK[channel.min_level] <= RANK["notice"]:  # anomalies are notices
                for reason in subject.anomalies:  # each with a memory of its own: "host:t440/growth"
                    key = f"{subject.id}/{reason}"
                    decisions.append((key, policy.decide_anomaly(state.memory(key, channel.name), reason, alerts, now)))
            for key, decision in decisions:
                told = [_line(subject, notice, current.failures) for notice in decision.notices]
                holds_now = [held_by(quiet, subject.id, alert_kind(line.reason), channel.name, level, now)
                             for line in told]
                if channel.type == LOG_CHANNEL:  # always there: shown with what holds it elsewhere
                    told = [replace(line, held=hold.text) if hold else line for line, hold in zip(told, holds_now)]
                    holds_now = [None] * len(told)
                # a held notice keeps its part of the memory where it was: decided again next run
                memories[key] = policy.held_back(state.memory(key, channel.name), decision.memory,
                                                 [notice for notice, hold in zip(decision.notices, holds_now) if hold])
                lines += [line for line, hold in zip(told, holds_now) if hold is None]
                held += [(line, hold) for line, hold in zip(told, holds_now) if hold is not None]
        kept = {(key, channel.name): memory for key, memory in memories.items()}
        plans.append(ChannelPlan(channel, lines, lines, kept, state.memories, held))
    return plans


def alert_kind(reason: str) -> str:
    """The kind of alert a line is, as silences name them: usage, unreachable, growth, rebound or peak."""
    if reason in ("unreachable", "reachable"):
        return "unreachable"
    return "usage" if reason in ("escalated", "repeat", "resolved", "lowered") else reason


def remember(plans: list[ChannelPlan], errors: list[str | None]) -> None:
    """A channel's memory moves on only when it accepted its message (or had none): a failed one is decided again."""
    for channel_plan, error in zip(plans, errors):
        if error is None:
            channel_plan.store.update(channel_plan.memories)


# --- Alertmanager: the current state, posted on every run ---------------------------------------


@dataclass(frozen=True)
class Posted:
    """What one Alertmanager channel last accepted about one subject."""

    level: str = "ok"  # the usage level firing there ("ok": none)
    unreachable: bool = False  # the unreachable alert is firing there


NOTHING = Posted()


def holds(subject: SubjectState, min_level: str, unreachable_after: int) -> Posted:
    """What the channel must hold now: the subject's level as the channel sees it (held while the
    host is dark: its last reading is the best knowledge), and whether it is unreachable. A level below
    the channel's min_level is nothing firing there."""
    level = subject.level if RANK[subject.level] >= RANK[min_level] else "ok"
    return Posted(level, subject.failures >= unreachable_after)


def change(before: Posted, after: Posted) -> str | None:
    """The reason this post is worth a record, or None when it restates what the channel holds."""
    if after.unreachable and not before.unreachable:
        return "unreachable"
    if after.level != before.level:
        if after.level == "ok":
            return "resolved"
        return "escalated" if RANK[after.level] > RANK[before.level] else "lowered"
    if before.unreachable and not after.unreachable:
        return "reachable"  # reachable again, at the level the channel holds: the unreachable alert resolved
    return None


def _alertmanager_plan(state, subjects: list[Subject], channel: Channel, config: Config):
    """(message, told, memories, store) for an Alertmanager channel: the message is every subject it
    hears with something firing or left to resolve, posted on every run; told is what changed since
    the channel last accepted a post (what the audit log and the metrics count)."""
    message, told, memories = [], [], {}
    for subject in subjects:
        if not hears(channel, subject):
            continue
        held = state.subject(subject.id)
        before = state.posted.get((subject.id, channel.name), NOTHING)
        after = holds(held, channel.min_level, config.alerts.unreachable_after)
        if before == after == NOTHING:
            continue
        reason = change(before, after)
        line = _subject_line(subject, "unreachable" if after.unreachable else reason or "repeat", after.level,
                             before.level, held.failures, last_count=held.count)
        message.append(line)
        if reason:
            told.append(line)
        memories[(subject.id, channel.name)] = after
    return message, told, memories, state.posted


# --- Alertmanager: each guardian silence or acknowledgement is a silence there too -----------------

SEVERITIES = LEVELS[1:]  # the levels that fire a usage alert
UNREACHABLE_ALERTNAME = "SessionHostUnreachable"


def usage_alertname(level: str) -> str:
    """The alert a subject at this level fires, posted by the Alertmanager channel and fired by the Prometheus
    rules alike (contrib/prometheus, checked against this): SessionUsageNotice, SessionUsageWarning,
    SessionUsageCritical. One a level, so a route or a silence can name a level; `severity` says it too."""
    return f"SessionUsage{level.capitalize()}"


AM_ALERTNAMES = {"usage": [usage_alertname(level) for level in SEVERITIES], "unreachable": [UNREACHABLE_ALERTNAME]}


def alertmanager_silences(quiet: Quiet, subjects: list[Subject], channel: Channel, created_by: str,
                          max_end: float, now: float) -> list[dict]:
    """The silences an Alertmanager channel must hold now: one per guardian silence or ack and subject it holds
    there (matchers on alertname and host or pool), ending when it ends (a sticky ack at `max_end`, expired
    there when it ends), with the reason as comment. Windows are left out: they recur, and are the config's."""
    wanted = []
    for subject in subjects:
        if not hears(channel, subject):
            continue
        holds_here = {}  # (kind, id) -> (hold, alert names it holds)
        for alert, alertnames in AM_ALERTNAMES.items():
            for silence in quiet.silences:
                if silence.active(now) and covers(silence.scope, subject.id, alert, channel.name):
                    holds_here.setdefault(("s", silence.id), (silence.ends, silence.reason, []))[2].extend(alertnames)
            for ack in quiet.acks:
                if ack.subject == subject.id and ack.alert == alert and ending(ack, ack.level, now) is None:
                    reason = ack.reason or f"acknowledged at {ack.level}"
                    # an ack holds its own level only (quiet.held_by): a rise pages at once
                    acked = usage_alertname(ack.level) if alert == "usage" else UNREACHABLE_ALERTNAME
                    holds_here.setdefault(("a", ack.id), (ack.ends or max_end, reason, []))[2].append(acked)
        for ends, reason, alertnames in holds_here.values():
            wanted.append({"matchers": [_matcher("alertname", alertnames), _matcher(subject.kind, [subject.name])],
                           "startsAt": iso_time(now), "endsAt": iso_time(ends), "createdBy": created_by,
                           "comment": reason})
    return wanted


def _matcher(name: str, values: list[str]) -> dict:
    regex = len(values) > 1
    return {"name": name, "value": "|".join(re.escape(v) for v in values) if regex else values[0], "isRegex": regex,
            "isEqual": True}


def same_silence(ours: dict, theirs: dict) -> bool:
    """Whether Alertmanager's silence is this one: matchers, author (`guardian@HOSTNAME`), comment. An HA twin on
    another machine is another author, so it keeps its own copy, which it alone expires: harmless duplicates."""
    def matchers(silence):
        return sorted((m["name"], m["value"], m.get("isRegex", False), m.get("isEqual", True))
                      for m in silence.get("matchers", []))

    return (matchers(ours) == matchers(theirs) and ours["createdBy"] == theirs.get("createdBy")
            and ours["comment"] == theirs.get("comment"))


def _line(subject: Subject, notice: policy.Notice, failures: int) -> AlertLine:
    return _subject_line(subject, notice.reason, notice.level, notice.previous, failures,
                         detail=subject.anomalies.get(notice.reason))


def _subject_line(subject: Subject, reason: str, level: str, previous: str, failures: int,
                  last_count: int | None = None, detail: str | None = None) -> AlertLine:
    """One subject's line; `last_count` stands in for the reading a subject that is dark has not."""
    hosts = ",".join(subject.members) if subject.kind != "host" else subject.name
    reading = subject.reading
    error = f"{subject.error} ({failures} failed polls in a row)" if reason == "unreachable" else None
    return AlertLine(subject=subject.id, kind=subject.kind, name=subject.name, reason=reason, level=level,
                     previous=previous, count=reading.count if reading else last_count, limit=subject.limit,
                     idle=reading.idle if reading else None, error=error,
                     action=suggested_action(reason, level, hosts), closed_now=subject.closed_now, detail=detail,
                     unreachable_members=subject.unreachable_members, holders=subject.holders)


def sample_line(config: Config) -> AlertLine:
    """What `guardian notify-test` sends: plainly a test, about the first configured host."""
    host = next(iter(config.hosts.values()))
    return AlertLine(subject=subject_id("host", host.name), kind="host", name=host.name, reason="test", level="notice",
                     previous="ok", count=None, limit=host.limit, idle=None, error=None,
                     action="a sample alert from guardian notify-test; if you can read this, the channel works")
