"""The alert policy (design.md "Alert policy"), as pure functions of (state, reading, config, now).

Two layers:
- a *subject* (a host or a pool) has a level, held with a margin so 89-91-89 % does not flap,
  the time it came to that level, and a count of failed polls in a row;
- each *channel* remembers what it was last told about each subject: the level, when each kind
  was told, and an outage told. A notice is decided per channel from that memory, never from the
  subject's previous level, and the memory moves on only when the channel accepted the message: a
  failed delivery is simply decided again on the next run, never swallowed by a cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from guardian.core.records import ChannelMemory, Reading, SubjectState
from guardian.settings.levels import LEVELS, RANK
from guardian.settings.model import Alerts


@dataclass(frozen=True)
class Notice:
    """One line of an alert: what to tell about one subject, and why."""

    reason: str  # escalated | repeat | resolved | unreachable | reachable | growth | rebound
    level: str
    previous: str  # the level the channel was last told


@dataclass(frozen=True)
class Decision:
    notices: tuple[Notice, ...]
    memory: ChannelMemory  # store this once the notices are delivered (at once when there are none)


def level_for(usage: float, alerts: Alerts, previous: str = "ok") -> str:
    """The highest threshold reached; a level already held is kept until usage falls `margin` below it."""
    for level in reversed(LEVELS[1:]):
        threshold = alerts.thresholds[level]
        if usage >= threshold or (RANK[level] <= RANK[previous] and usage > threshold - alerts.margin):
            return level
    return "ok"


def observe(previous: SubjectState, reading: Reading | None, alerts: Alerts, now: float) -> SubjectState:
    """The subject after this run's poll; `reading` None means the poll failed (the level is held)."""
    if reading is None:
        return replace(previous, failures=previous.failures + 1)
    level = level_for(reading.usage, alerts, previous.level)
    since = now if level != previous.level or previous.since is None else min(previous.since, now)
    return SubjectState(level=level, failures=0, count=reading.count, checked_at=now, since=since)


def decide(memory: ChannelMemory, subject: SubjectState, alerts: Alerts, now: float,
           min_level: str = "notice") -> Decision:
    """Whether this channel must be told about this subject now, and what it will then remember.

    Reachability first (unreachable, reachable again), then usage; a channel with `min_level`
    hears usage levels from min_level up, and a resolved only when the subject is back to ok.
    """
    memory = _clock_moved_back(memory, now)
    reachability, memory = _reachability(memory, subject, alerts, now)
    usage, memory = _usage(memory, subject, alerts, now, min_level) if subject.failures == 0 else (None, memory)
    return Decision(tuple(notice for notice in (reachability, usage) if notice), memory)


def _reachability(memory: ChannelMemory, subject: SubjectState, alerts: Alerts, now: float):
    """At most one unreachable per its cooldown, however often the host comes and goes; one
    "reachable again" per outage that was told."""
    cooldown = alerts.cooldown["unreachable"]
    if subject.failures >= alerts.unreachable_after:
        if not _over(memory, "unreachable", cooldown, now):
            return None, memory
        told = replace(memory, unreachable=True, told_at={**memory.told_at, "unreachable": now})
        return Notice("unreachable", subject.level, subject.level), told
    if subject.failures == 0 and memory.unreachable:
        return Notice("reachable", subject.level, subject.level), replace(memory, unreachable=False)
    return None, memory  # one failed poll is not yet worth a message


def _usage(memory: ChannelMemory, subject: SubjectState, alerts: Alerts, now: float, min_level: str):
    level, told = subject.level, memory.level
    if level == "ok":
        if told == "ok":
            return None, memory
        return (Notice("resolved", "ok", told) if alerts.resolved else None), replace(memory, level="ok")
    if RANK[level] < RANK[min_level]:
        return None, memory  # not for this channel, and not a resolved either
    if RANK[level] > RANK[told]:
        return _tell("escalated", level, memory, now)
    if level == told:
        due = _over(memory, level, alerts.cooldown[level], now)
        return _tell("repeat", level, memory, now) if due else (None, memory)
    # Lower than told: quiet until this level has held for its own cooldown (each drop starts it
    # again, so a flapping host never hears the lower level) and the level told has cooled down
    # (so the reminder never lets the next rise tell the higher level again within its cooldown).
    held = subject.since is not None and now - subject.since >= alerts.cooldown[level]
    if held and _over(memory, told, alerts.cooldown[told], now):
        return _tell("repeat", level, memory, now)
    return None, memory


def decide_anomaly(memory: ChannelMemory, reason: str, alerts: Alerts, now: float) -> Decision:
    """An anomaly found this run (growth, rebound): a notice of its own, told again only after its cooldown.

    Its memory is kept apart from the subject's usage memory, under its own key, so the two
    cooldowns never reset each other.
    """
    memory = _clock_moved_back(memory, now)
    if not _over(memory, reason, alerts.cooldown[reason], now):
        return Decision((), memory)
    notice = Notice(reason, "notice", memory.level)
    return Decision((notice,), replace(memory, level="notice", told_at={**memory.told_at, reason: now}))


def held_back(before: ChannelMemory, after: ChannelMemory, held: list[Notice]) -> ChannelMemory:
    """`after` (the memory once all of a decision's notices are told) with the part of each `held` notice as
    it was `before`: a notice a silence holds is decided again next run, and one told beside it is not."""
    memory = after
    for notice in held:
        if notice.reason in ("unreachable", "reachable"):
            kind, fields = "unreachable", {"unreachable": before.unreachable}
        else:  # usage is told under its level, an anomaly under its reason
            kind = notice.level if notice.reason in ("escalated", "repeat", "resolved") else notice.reason
            fields = {"level": before.level}
        told_at = {k: at for k, at in memory.told_at.items() if k != kind}
        if kind in before.told_at:
            told_at[kind] = before.told_at[kind]
        memory = replace(memory, told_at=told_at, **fields)
    return memory


def _over(memory: ChannelMemory, kind: str, cooldown: float, now: float) -> bool:
    """`kind`'s cooldown since it was last told to this channel has passed (or it never was told)."""
    told = memory.told_at.get(kind)
    return told is None or now >= told + cooldown


def _clock_moved_back(memory: ChannelMemory, now: float) -> ChannelMemory:
    """Nothing was told later than now: a cooldown never ends further ahead than one full cooldown.

    After the clock went back by hours, a time told "in the future" would otherwise hold a
    critical reminder back for those hours too; a jump forward needs nothing: each kind repeats once.
    """
    if all(told <= now for told in memory.told_at.values()):
        return memory
    return replace(memory, told_at={kind: min(told, now) for kind, told in memory.told_at.items()})


def _tell(reason: str, level: str, memory: ChannelMemory, now: float):
    return Notice(reason, level, memory.level), replace(memory, level=level, told_at={**memory.told_at, level: now})


