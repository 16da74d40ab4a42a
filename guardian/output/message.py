"""What an alert message says: each line's title and body, the message's text, the webhook envelope."""

from __future__ import annotations

import socket

from guardian import __version__
from guardian.core.records import RESOLVING, AlertLine
from guardian.output.text import safe
from guardian.settings.levels import RANK
from guardian.settings.units import iso_time

ENVELOPE_VERSION = "1"
PRODUCT = "Session Limit Guardian"


def title(line: AlertLine) -> str:
    """The first word of the line, the one a chat service shows in bold."""
    if line.reason in RESOLVING:
        return "RESOLVED"
    if line.reason in ("unreachable", "test"):
        return line.reason.upper()
    return line.level.upper()


def body(line: AlertLine) -> str:
    """The rest of the line, after the title; printable, at most 500 characters."""
    label = f"{line.kind} {line.name}" if line.kind != "host" else line.name
    if line.reason == "test":
        return f"{label}: {line.action}"
    if line.reason == "unreachable":
        return safe(f"{label}: {line.error}. {line.action}")
    usage = f"{line.usage:.0f}% ({line.count}/{line.limit})"
    if line.unreachable_members:
        usage = f"at least {usage}, {', '.join(line.unreachable_members)} unreachable"
    if line.alert in ("growth", "rebound"):
        return safe(
            f"{label} {usage}, {'growing' if line.alert == 'growth' else 'rebounding'}: {line.detail}. {line.action}"
        )
    if line.reason == "reachable":  # the unreachable alert resolved; the usage alert stands as it was told
        level = f"still at {line.level}" if line.level != "ok" else "below notice"
        return f"{label} reachable again, {level}, {usage}"
    if line.reason == "resolved":
        return f"{label} {usage}, back below notice (was {line.previous})"
    why = {"escalated": f"up from {line.previous}",
           "lowered": f"down from {line.previous}"}.get(line.reason, "still")
    if line.reason == "repeat" and RANK[line.previous] > RANK[line.level]:  # a lower level held
        why = f"down from {line.previous}"
    # The cheap count cannot see pinned, protected, main or running sessions, which cleanup keeps:
    # "idle", never "cleanup could close" (a dry run knows that number).
    idle = f"; {line.idle} idle session{'s' if line.idle != 1 else ''}" if line.idle else ""
    if line.closed_now is not None:
        idle = f"; the guardian closed {line.closed_now} idle session{'s' if line.closed_now != 1 else ''} at once"
    return f"{label} {usage}, {why}{idle}. {line.action}"


def line_text(line: AlertLine) -> str:
    return f"{title(line)} {body(line)}"


def line_json(line: AlertLine, time: str) -> dict:
    return {"status": line.status, "dedup_key": line.dedup_key, "subject": line.subject, "kind": line.kind,
            "name": line.name, "alert": line.alert, "level": line.level, "previous_level": line.previous,
            "reason": line.reason, "usage": line.usage, "count": line.count, "limit": line.limit,
            "idle": line.idle, "error": line.error, "action": line.action, "closed_now": line.closed_now,
            "detail": line.detail, "unreachable_hosts": list(line.unreachable_members), "time": time}


def tally(lines: list[AlertLine]) -> str:
    return f"{len(lines)} {'subject needs' if len(lines) == 1 else 'subjects need'} telling"


def heading(lines: list[AlertLine]) -> str:
    return f"{PRODUCT}: {tally(lines)}"


def message_text(lines: list[AlertLine]) -> str:
    return "\n".join([heading(lines)] + [f"- {line_text(line)}" for line in lines])


def envelope(lines: list[AlertLine], now: float) -> dict:
    """The webhook (and command) body: versioned, one entry per subject with a stable dedup_key (see README)."""
    time = iso_time(now)
    return {
        "version": ENVELOPE_VERSION,
        "source": "session-limit-guardian",
        "guardian": {"version": __version__, "hostname": socket.gethostname()},
        "status": "firing" if any(line.status == "firing" for line in lines) else "resolved",
        "time": time,
        "text": message_text(lines),
        "alerts": [line_json(line, time) for line in lines],
    }
