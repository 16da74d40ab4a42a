"""The alert policy (design.md "Alert policy"), as pure functions of (state, reading, config, now).

Two layers:
- a *subject* (a host or a pool) has a level, held with a margin so 89-91-89 % does not flap,
  and a count of failed polls in a row;
- each *channel* remembers what it was last told about each subject. A notice is decided per
  channel, and the channel's memory moves on only when it accepted the message: a failed
  delivery is simply decided again on the next run, never swallowed by a cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from guardian.config import LEVELS, Alerts

RANK = {level: rank for rank, level in enumerate(LEVELS)}


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


@dataclass(frozen=True)
class ChannelMemory:
    """What one channel was last told about one subject."""

    level: str = "ok"  # the level it knows of ("ok": nothing outstanding)
    repeat_after: float = 0.0  # the same level is not sent again before this time
    unreachable: bool = False  # it was told the subject is unreachable
    unreachable_repeat_after: float = 0.0


@dataclass(frozen=True)
class Notice:
    """One line of an alert: what to tell about one subject, and why."""

    reason: str  # escalated | repeat | resolved | unreachable | growth | rebound
    level: str
    previous: str  # the level the channel knew before


@dataclass(frozen=True)
class Decision:
    notice: Notice | None
    memory: ChannelMemory  # store this once the notice is delivered (at once when there is none)


def level_for(usage: float, alerts: Alerts, previous: str = "ok") -> str:
    """The highest threshold reached; a level already held is kept until usage falls `margin` below it."""
    for level in reversed(LEVELS[1:]):
        threshold = alerts.thresholds[level]
        if usage >= threshold or (RANK[level] <= RANK[previous] and usage > threshold - alerts.margin):
            return level
    return "ok"


def observe(previous: SubjectState, reading: Reading | None, alerts: Alerts, now: float) -> SubjectState:
    """The subject after this run's poll; `reading` None means the poll failed."""
    if reading is None:
        return replace(previous, failures=previous.failures + 1)
    return SubjectState(level=level_for(reading.usage, alerts, previous.level), failures=0,
                        count=reading.count, checked_at=now)


def as_seen(subject: SubjectState, min_level: str) -> SubjectState:
    """The subject as a channel with `min_level` sees it: a lower level counts as ok there, so the
    channel hears an escalation when the subject reaches min_level and a resolved when it drops below.
    Unreachable alerts are not a level and reach it regardless."""
    return replace(subject, level="ok") if RANK[subject.level] < RANK[min_level] else subject


def decide(memory: ChannelMemory, subject: SubjectState, alerts: Alerts, now: float) -> Decision:
    """Whether this channel must be told about this subject now, and what it will then remember."""
    memory = _clock_moved_back(memory, alerts, now)
    if subject.failures >= alerts.unreachable_after:
        if memory.unreachable and now < memory.unreachable_repeat_after:
            return Decision(None, memory)
        told = replace(memory, unreachable=True, unreachable_repeat_after=now + alerts.cooldown["unreachable"])
        return Decision(Notice("unreachable", subject.level, memory.level), told)
    if subject.failures:
        return Decision(None, memory)  # one failed poll is not yet worth a message

    level, known = subject.level, memory.level
    if RANK[level] > RANK[known]:
        return Decision(Notice("escalated", level, known), _told(level, alerts, now))
    if level == "ok" and (known != "ok" or memory.unreachable):
        notice = Notice("resolved", "ok", known) if alerts.resolved else None
        return Decision(notice, ChannelMemory())
    if level == known != "ok" and now >= memory.repeat_after:
        return Decision(Notice("repeat", level, known), _told(level, alerts, now))
    if RANK[level] < RANK[known]:
        # A lower level is not sent; its cooldown starts now, so the calm does not end in a repeat.
        return Decision(None, _told(level, alerts, now, unreachable=memory.unreachable))
    if memory.unreachable:
        notice = Notice("resolved", level, known) if alerts.resolved else None
        return Decision(notice, replace(memory, unreachable=False))
    return Decision(None, memory)


def decide_anomaly(memory: ChannelMemory, reason: str, alerts: Alerts, now: float) -> Decision:
    """An anomaly found this run (growth, rebound): a notice of its own, told again only after its cooldown.

    Its memory is kept apart from the subject's usage memory, under its own key, so the two
    cooldowns never reset each other.
    """
    if now < memory.repeat_after:
        return Decision(None, replace(memory, repeat_after=min(memory.repeat_after, now + alerts.cooldown[reason])))
    return Decision(Notice(reason, "notice", memory.level),
                    ChannelMemory(level="notice", repeat_after=now + alerts.cooldown[reason]))


def _clock_moved_back(memory: ChannelMemory, alerts: Alerts, now: float) -> ChannelMemory:
    """A cooldown never ends further ahead than one full cooldown from now.

    After the clock went back by hours, a stored repeat time would otherwise hold a critical
    reminder back for those hours too; a jump forward needs nothing: each level repeats once.
    """
    if memory.level == "ok" and not memory.unreachable:
        return memory
    return replace(memory, repeat_after=min(memory.repeat_after, now + alerts.cooldown.get(memory.level, 0.0)),
                   unreachable_repeat_after=min(memory.unreachable_repeat_after, now + alerts.cooldown["unreachable"]))


def _told(level: str, alerts: Alerts, now: float, unreachable: bool = False) -> ChannelMemory:
    return ChannelMemory(level=level, repeat_after=now + alerts.cooldown[level], unreachable=unreachable)


def exit_code(levels: list[str], unknown: bool) -> int:
    """Nagios: 0 ok or notice, 1 warning, 2 critical, 3 unknown; critical outranks unknown."""
    if "critical" in levels:
        return 2
    if unknown:
        return 3
    if "warning" in levels:
        return 1
    return 0
