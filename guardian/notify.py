"""Alert messages and their delivery: what a message says, and how each channel gets it reliably.

Each run sends at most one message per channel, listing every subject that channel must be told
about. `deliver` returns None when the channel accepted the message, else the error as one
sentence with the channel's secrets redacted. The transports themselves (HTTP services, SMTP,
a command, apprise) are in guardian.channels, imported only when a message is actually sent.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from guardian import __version__
from guardian.settings.levels import LEVELS
from guardian.settings.model import Channel, Config
from guardian.settings.secrets import Secret

if TYPE_CHECKING:
    from guardian.channels import Backoff

ENVELOPE_VERSION = "1"
LOG_CHANNEL = "log"
PRODUCT = "Session Limit Guardian"
RESOLVING = ("resolved", "reachable")  # the reasons of a resolved line: usage back to ok, a host reachable again


def safe(text: str, limit: int = 500) -> str:
    """Printable text only, so a session key or error from a gateway cannot move the cursor or forge lines."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


@dataclass(frozen=True)
class AlertLine:
    """One subject in an alert message."""

    subject: str  # "host:t440" / "pool:shared-key"
    kind: str  # host | pool
    name: str
    reason: str  # escalated | repeat | resolved | unreachable | reachable | growth | rebound | test | lowered (Alertmanager's)
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

    @property
    def title(self) -> str:
        """The first word of the line, the one a chat service shows in bold."""
        if self.reason in RESOLVING:
            return "RESOLVED"
        if self.reason in ("unreachable", "test"):
            return self.reason.upper()
        return self.level.upper()

    def body(self) -> str:
        """The rest of the line, after the title; printable, at most 500 characters."""
        label = f"{self.kind} {self.name}" if self.kind == "pool" else self.name
        if self.reason == "test":
            return f"{label}: {self.action}"
        if self.reason == "unreachable":
            return safe(f"{label}: {self.error}. {self.action}")
        usage = f"{self.usage:.0f}% ({self.count}/{self.limit})"
        if self.unreachable_members:
            usage = f"at least {usage}, {', '.join(self.unreachable_members)} unreachable"
        if self.alert in ("growth", "rebound"):
            return safe(f"{label} {usage}, {'growing' if self.alert == 'growth' else 'rebounding'}: {self.detail}. {self.action}")
        if self.reason == "reachable":  # the unreachable alert resolved; the usage alert stands as it was told
            level = f"still at {self.level}" if self.level != "ok" else "below notice"
            return f"{label} reachable again, {level}, {usage}"
        if self.reason == "resolved":
            return f"{label} {usage}, back below notice (was {self.previous})"
        why = {"escalated": f"up from {self.previous}",
               "lowered": f"down from {self.previous}"}.get(self.reason, "still")
        if self.reason == "repeat" and LEVELS.index(self.previous) > LEVELS.index(self.level):  # a lower level held
            why = f"down from {self.previous}"
        # The cheap count cannot see pinned, protected, main or running sessions, which cleanup keeps:
        # "idle", never "cleanup could close" (a dry run knows that number).
        idle = f"; {self.idle} idle session{'s' if self.idle != 1 else ''}" if self.idle else ""
        if self.closed_now is not None:
            idle = f"; the guardian closed {self.closed_now} idle session{'s' if self.closed_now != 1 else ''} at once"
        return f"{label} {usage}, {why}{idle}. {self.action}"

    def text(self) -> str:
        return f"{self.title} {self.body()}"

    def to_json(self, time: str) -> dict:
        return {"status": self.status, "dedup_key": self.dedup_key, "subject": self.subject, "kind": self.kind,
                "name": self.name, "alert": self.alert, "level": self.level, "previous_level": self.previous,
                "reason": self.reason, "usage": self.usage, "count": self.count, "limit": self.limit,
                "idle": self.idle, "error": self.error, "action": self.action, "closed_now": self.closed_now,
                "detail": self.detail, "unreachable_hosts": list(self.unreachable_members), "time": time}


def suggested_action(reason: str, level: str, hosts: str) -> str:
    if reason == "unreachable":
        return f"Check the gateway is running and reachable: guardian doctor --hosts {hosts}"
    if reason in RESOLVING:
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


def sample_line(config: Config) -> AlertLine:
    """What `guardian notify-test` sends: plainly a test, about the first configured host."""
    host = next(iter(config.hosts.values()))
    return AlertLine(subject=f"host:{host.name}", kind="host", name=host.name, reason="test", level="notice",
                     previous="ok", count=None, limit=host.limit, idle=None, error=None,
                     action="a sample alert from guardian notify-test; if you can read this, the channel works")


def tally(lines: list[AlertLine]) -> str:
    return f"{len(lines)} {'subject needs' if len(lines) == 1 else 'subjects need'} telling"


def headline(lines: list[AlertLine]) -> str:
    return f"{PRODUCT}: {tally(lines)}"


def message_text(lines: list[AlertLine]) -> str:
    return "\n".join([headline(lines)] + [f"- {line.text()}" for line in lines])


def iso_time(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")


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
        "alerts": [line.to_json(time) for line in lines],
    }


# --- delivery --------------------------------------------------------------------------------


def redact(text: str, secrets: tuple[Secret, ...]) -> str:
    """`text` with every secret (and the path of a secret URL, which carries its token) cut out."""
    for secret in secrets:
        value = secret.reveal()
        parts = urlsplit(value)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        text = text.replace(value, "<redacted>")
        if len(tail) >= 8:  # not "/" or "/hook": those say nothing and would garble the sentence
            text = text.replace(tail, "<redacted>")
    return text


@dataclass
class Delivery:
    channel: str
    lines: list[AlertLine]
    error: str | None = None  # None: accepted
    sent: bool = True  # False with --no-notify


def log_channel(config: Config) -> Channel:
    """The alert line on stderr: always there, and it hears about everything."""
    return Channel(name=LOG_CHANNEL, type=LOG_CHANNEL, resolved=config.alerts.resolved)


def deliver(channel: Channel, lines: list[AlertLine], now: float, backoff: Backoff | None = None) -> str | None:
    """Send one message; None when accepted, else why not (with the channel's secrets redacted)."""
    if channel.type == LOG_CHANNEL:
        for line in lines:
            print(f"guardian alert: {line.text()}", file=sys.stderr)
        return None
    from guardian import channels

    try:
        error = channels.SENDERS[channel.type](channel, lines, now, backoff or channels.DEFAULT_BACKOFF)
    except Exception as exc:  # one broken channel never stops the others; it is reported as its error
        error = f"unexpected {type(exc).__name__}: {exc}"
    return redact(error, channel.secrets) if error else None


def deliver_all(messages: list[tuple[Channel, list[AlertLine]]], now: float,
                backoff: Backoff | None = None) -> list[str | None]:
    """Each (channel, lines) delivered at once, one thread each; the error of each (None: accepted)."""
    from guardian.gateway import concurrently

    def send(message):
        channel, lines = message
        return deliver(channel, lines, now, backoff) if lines else None

    return [f"unexpected {type(result).__name__}: {result}" if isinstance(result, Exception) else result
            for result in concurrently(send, messages)]


def record(audit, deliveries: list[Delivery], now: float) -> None:
    """One `alert` record per message sent, delivered or failed (never a secret: errors are redacted)."""
    for delivery in deliveries:
        if not delivery.sent:
            continue
        audit.write(now, "alert", channel=delivery.channel, result="failed" if delivery.error else "delivered",
                    error=delivery.error, alerts=[{"subject": line.subject, "reason": line.reason, "level": line.level,
                                                   "count": line.count, "limit": line.limit, "usage": line.usage,
                                                   "detail": line.detail}
                                                  for line in delivery.lines])


def send_samples(channels: list[Channel], config: Config, now: float, backoff: Backoff | None = None) -> list[Delivery]:
    """`guardian notify-test`: the sample alert to each channel, whatever its filters."""
    lines = [sample_line(config)]
    errors = deliver_all([(channel, lines) for channel in channels], now, backoff)
    return [Delivery(channel.name, lines, error) for channel, error in zip(channels, errors)]
