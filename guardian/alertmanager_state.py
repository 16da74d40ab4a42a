"""What an Alertmanager channel holds about each subject, and what this run's post changes there.

Alertmanager's clients post the current state on every run and leave grouping, deduplication and
repeats to it (prometheus.io/docs/alerting/clients: "Clients are expected to continuously re-send
alerts as long as they are still active"). So an Alertmanager channel has no cooldowns: its memory
is only what it last accepted, so that the audit log and guardian_alerts_sent_total count what
changed there (a new level, an outage, a resolve), not every post.
"""

from __future__ import annotations

from dataclasses import dataclass

from guardian.policy import RANK, SubjectState


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
