"""Alert channels: the stderr log line (always there) and a generic JSON webhook.

Each run sends at most one message per channel, listing every subject that channel must be told
about. `deliver` returns None when the channel accepted the message, else the error as a sentence.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from datetime import datetime, timezone

from guardian import __version__
from guardian.config import Channel

ENVELOPE_VERSION = "1"
LOG_CHANNEL = "log"


@dataclass(frozen=True)
class AlertLine:
    """One subject in an alert message."""

    subject: str  # "host:t440" / "pool:shared-key"
    kind: str  # host | pool
    name: str
    reason: str  # escalated | repeat | resolved | unreachable | growth | rebound
    level: str
    previous: str
    count: int | None
    limit: int
    idle: int | None
    error: str | None
    action: str
    closed_now: int | None = None  # closed by the on_critical cleanup in this run
    detail: str | None = None  # what a growth or rebound anomaly found

    @property
    def alert(self) -> str:
        """The kind of alert, each with its own dedup_key: usage | unreachable | growth | rebound."""
        return self.reason if self.reason in ("unreachable", "growth", "rebound") else "usage"

    @property
    def usage(self) -> float | None:
        return None if self.count is None else round(100.0 * self.count / self.limit, 1)

    @property
    def status(self) -> str:
        return "resolved" if self.reason == "resolved" else "firing"

    @property
    def dedup_key(self) -> str:
        return f"guardian/{self.kind}/{self.name}/{self.alert}"

    def text(self) -> str:
        label = f"{self.kind} {self.name}" if self.kind == "pool" else self.name
        if self.reason == "unreachable":
            return f"UNREACHABLE {label}: {self.error}. {self.action}"
        usage = f"{self.usage:.0f}% ({self.count}/{self.limit})"
        if self.alert in ("growth", "rebound"):
            return f"NOTICE {label} {usage}, {'growing' if self.alert == 'growth' else 'rebounding'}: {self.detail}. {self.action}"
        if self.reason == "resolved":
            return f"RESOLVED {label} {usage}, back below {'notice' if self.level == 'ok' else self.level} (was {self.previous})"
        why = f"up from {self.previous}" if self.reason == "escalated" else "still"
        idle = f"; {self.idle} idle session{'s' if self.idle != 1 else ''} cleanup could close" if self.idle else ""
        if self.closed_now is not None:
            idle = f"; the guardian closed {self.closed_now} idle session{'s' if self.closed_now != 1 else ''} at once"
        return f"{self.level.upper()} {label} {usage}, {why}{idle}. {self.action}"

    def to_json(self, time: str) -> dict:
        return {"status": self.status, "dedup_key": self.dedup_key, "subject": self.subject, "kind": self.kind,
                "name": self.name, "alert": self.alert,
                "level": self.level, "previous_level": self.previous, "reason": self.reason, "usage": self.usage,
                "count": self.count, "limit": self.limit, "idle": self.idle, "error": self.error,
                "action": self.action, "closed_now": self.closed_now, "detail": self.detail, "time": time}


def suggested_action(reason: str, level: str, hosts: str) -> str:
    if reason == "unreachable":
        return f"Check the gateway is running and reachable: guardian doctor --hosts {hosts}"
    if reason == "resolved":
        return ""
    if reason == "growth":
        return (f"Usage keeps growing toward the limit: see which agent opens sessions (guardian report --hosts {hosts}); "
                f"close idle ones meanwhile: guardian cleanup --hosts {hosts}")
    if reason == "rebound":
        return (f"Cleanup alone will not hold: find the agent or client leaking sessions "
                f"(guardian report --hosts {hosts})")
    return {
        "notice": f"Nothing urgent; see what could go: guardian cleanup --dry-run --hosts {hosts}",
        "warning": f"Close idle sessions now: guardian cleanup --hosts {hosts}; if usage keeps climbing, look for an agent leaking sessions",
        "critical": f"Act now, new sessions will soon be refused: guardian cleanup --hosts {hosts}",
    }[level]


def message_text(lines: list[AlertLine]) -> str:
    head = f"Session Limit Guardian: {len(lines)} {'subject needs' if len(lines) == 1 else 'subjects need'} telling"
    return "\n".join([head] + [f"- {line.text()}" for line in lines])


def envelope(lines: list[AlertLine], now: float) -> dict:
    """The webhook body: versioned, one entry per subject with a stable dedup_key (see README)."""
    time = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
    return {
        "version": ENVELOPE_VERSION,
        "source": "session-limit-guardian",
        "guardian": {"version": __version__, "hostname": socket.gethostname()},
        "status": "firing" if any(line.status == "firing" for line in lines) else "resolved",
        "time": time,
        "text": message_text(lines),
        "alerts": [line.to_json(time) for line in lines],
    }


def deliver(channel: Channel | None, lines: list[AlertLine], now: float) -> str | None:
    """Send one message; None when accepted, else why not. `channel` None is the stderr log."""
    if channel is None:
        for line in lines:
            print(f"guardian alert: {line.text()}", file=sys.stderr)
        return None
    import requests

    try:
        response = requests.post(channel.url.reveal(), json=envelope(lines, now), timeout=channel.timeout,
                                 headers={"User-Agent": f"session-limit-guardian/{__version__}"})
    except requests.RequestException as exc:
        return f"{type(exc).__name__} sending to the webhook ({channel.url.source})"
    if 200 <= response.status_code < 300:
        return None
    return f"the webhook ({channel.url.source}) answered HTTP {response.status_code}"
