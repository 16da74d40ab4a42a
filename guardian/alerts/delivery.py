"""Who is told, and how reliably: one message per channel, all at once, retried, and the audit record of each.

`deliver` returns None when the channel accepted the message, else the error as one sentence with the
channel's secrets redacted. The transports themselves (HTTP services, SMTP, a command, apprise) are in
guardian.alerts.transports, imported only when a message is actually sent.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from guardian.core.plan import LOG_CHANNEL, sample_line
from guardian.core.records import AlertLine, Delivery
from guardian.output.message import line_text
from guardian.settings.model import Channel, Config
from guardian.settings.secrets import Secret

if TYPE_CHECKING:
    from guardian.alerts.transports import Backoff


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


def deliver(channel: Channel, lines: list[AlertLine], now: float, backoff: Backoff | None = None) -> str | None:
    """Send one message; None when accepted, else why not (with the channel's secrets redacted)."""
    if channel.type == LOG_CHANNEL:
        for line in lines:
            held = f" [held: {line.held}]" if line.held else ""
            print(f"guardian alert: {line_text(line)}{held}", file=sys.stderr)
        return None
    from guardian.alerts import transports  # only when a message goes out: requests and smtplib cost start-up

    try:
        error = transports.sender(channel.type)(channel, lines, now, backoff or transports.DEFAULT_BACKOFF)
    except Exception as exc:  # one broken channel never stops the others; it is reported as its error
        error = f"unexpected {type(exc).__name__}: {exc}"
    return redact(error, channel.secrets) if error else None


def deliver_all(messages: list[tuple[Channel, list[AlertLine]]], now: float,
                backoff: Backoff | None = None) -> list[str | None]:
    """Each (channel, lines) delivered at once, one thread each; the error of each (None: accepted)."""
    from guardian.adapters.gateway import concurrently

    def send(message):
        channel, lines = message
        return deliver(channel, lines, now, backoff) if lines else None

    return [f"unexpected {type(result).__name__}: {result}" if isinstance(result, Exception) else result
            for result in concurrently(send, messages)]


def record_deliveries(audit, deliveries: list[Delivery], now: float) -> None:
    """One `alert` record per message sent, delivered or failed (never a secret: errors are redacted)."""
    for delivery in deliveries:
        if not delivery.sent:
            continue
        audit.write(now, "alert", channel=delivery.channel, result="failed" if delivery.error else "delivered",
                    error=delivery.error, alerts=[{"subject": line.subject, "reason": line.reason, "level": line.level,
                                                   "count": line.count, "limit": line.limit, "usage": line.usage,
                                                   "detail": line.detail}
                                                  for line in delivery.lines])


def record_suppressed(audit, plans, now: float) -> None:
    """One `suppressed` record per alert a silence, acknowledgement or window held from a channel, naming it."""
    for channel_plan in plans:
        for line, hold in channel_plan.held:
            audit.write(now, "suppressed", channel=channel_plan.channel.name, subject=line.subject, reason=line.reason,
                        level=line.level, held_by=hold.kind, id=hold.id, until=hold.until, why=hold.reason)


def send_samples(channels: list[Channel], config: Config, now: float, backoff: Backoff | None = None) -> list[Delivery]:
    """`guardian notify-test`: the sample alert to each channel, whatever its filters."""
    lines = [sample_line(config)]
    errors = deliver_all([(channel, lines) for channel in channels], now, backoff)
    return [Delivery(channel.name, lines, error) for channel, error in zip(channels, errors)]
