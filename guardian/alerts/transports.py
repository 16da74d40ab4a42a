"""The transports behind each alert channel type: payloads built by pure functions, then sent.

Every sender is `send(channel, lines, now, backoff) -> error | None`. The HTTP services share one
POST helper: a short timeout, any 2xx accepted, 408/429/5xx and connection trouble retried with
the backoff (a Retry-After or Telegram's retry_after honoured). Text from a gateway or a config
(host names, errors) is escaped for each service, so it can neither mention anyone nor add markup,
and every message is cut to the service's limit with a closing "... and N more".

Heavy modules (requests, smtplib, subprocess, apprise) are imported inside the sender that needs
them: `guardian check` loads this module only when it has something to send.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable

from guardian import __version__
from guardian.core.plan import SEVERITIES, UNREACHABLE_ALERTNAME, same_silence, usage_alertname
from guardian.core.records import AlertLine
from guardian.output.message import PRODUCT, body, envelope, heading, line_text, message_text, tally, title
from guardian.output.text import safe
from guardian.settings.channels import AlertmanagerChannel, CommandChannel, EmailChannel, TelegramChannel, UrlChannel
from guardian.settings.model import Channel
from guardian.settings.units import iso_time

USER_AGENT = f"session-limit-guardian/{__version__}"
SYMBOLS = {"notice": "🟡", "warning": "🟠", "critical": "🔴", "resolved": "✅", "unreachable": "❓", "test": "🧪"}
SLACK_TEXT, SLACK_SECTION, DISCORD_CONTENT, TELEGRAM_TEXT = 40_000, 3_000, 2_000, 4_096
EX_TEMPFAIL = 75  # sysexits.h: a command's way of saying "try again soon"


# --- retries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Retries within one run: a few attempts, waits doubling from `first`, a server's Retry-After
    honoured, and at most `max_wait` seconds of waiting per channel, so a run stays bounded (cron
    starts the next one 30 s later, and the next run retries anyway). Tests pass their own `sleep`.
    """

    attempts: int = 3
    first: float = 1.0
    max_wait: float = 10.0
    sleep: Callable[[float], None] = time.sleep


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True)
class Attempt:
    """How one try at delivering went: accepted (no error), or why not and whether trying again may help."""

    error: str | None = None
    retry: bool = False
    retry_after: float | None = None  # what the service asked for (HTTP 429 Retry-After, Telegram retry_after)


ACCEPTED = Attempt()


def with_retries(attempt: Callable[[], Attempt], backoff: Backoff) -> str | None:
    """Run `attempt` until it is accepted, fails for good, or the attempts or the wait budget run out."""
    waited = 0.0
    for number in range(1, backoff.attempts + 1):
        outcome = attempt()
        if outcome.error is None or not outcome.retry:
            return outcome.error
        if number == backoff.attempts:
            break
        wait = outcome.retry_after if outcome.retry_after is not None else backoff.first * 2 ** (number - 1)
        if waited + wait > backoff.max_wait:
            return (f"{outcome.error}; a retry would wait {wait:g}s, past the {backoff.max_wait:g}s "
                    f"a run allows a channel")
        backoff.sleep(wait)
        waited += wait
    return f"{outcome.error} ({backoff.attempts} attempts)"


# --- text for chat services ------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length as the services count it (UTF-16 code units: an emoji is two); never less than they do."""
    return len(text.encode("utf-16-le")) // 2


def fit(head: str, lines: list[str], limit: int) -> str:
    """head and as many lines as fit in `limit`; the lines left out become one "... and N more"."""
    kept: list[str] = []
    for index, line in enumerate(lines):
        left = len(lines) - index - 1
        candidate = "\n".join([head, *kept, line]) + (f"\n... and {left} more" if left else "")
        if utf16_len(candidate) > limit:
            break
        kept.append(line)
    dropped = len(lines) - len(kept)
    return "\n".join([head, *kept]) + (f"\n... and {dropped} more" if dropped else "")


def defuse_mentions(text: str) -> str:
    """A zero-width space after every @: no @everyone, @here or @user a service would act on."""
    return text.replace("@", "@\u200b")


def escape_angle_brackets(text: str) -> str:
    """&, < and > as entities: Slack's three control characters (without < no <!channel>, <@U123>
    or <url|link> can form) and all that Telegram's HTML mode needs escaped outside tags."""
    return defuse_mentions(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


DISCORD_MARKUP = re.compile(r"([\\*_~`|<>\[\]():#@-])")


def discord_escape(text: str) -> str:
    """A backslash before every markdown or mention character (Discord then shows it as is)."""
    return DISCORD_MARKUP.sub(r"\\\1", defuse_mentions(text))


def symbol(line: AlertLine) -> str:
    return SYMBOLS.get(line.reason, SYMBOLS.get(line.level, ""))


def chat_text(lines: list[AlertLine], escape, bold, limit: int) -> str:
    """One line per subject: its symbol, its title in bold, the rest; escaped, within `limit`."""
    rendered = [f"{symbol(line)} {bold(escape(title(line)))} {escape(body(line))}" for line in lines]
    return fit(f"{bold(escape(PRODUCT))}: {escape(tally(lines))}", rendered, limit)


def slack_payload(lines: list[AlertLine]) -> dict:
    # `text` is what notifications and old clients show; the section is what Slack renders.
    plain = [escape_angle_brackets(line_text(line)) for line in lines]
    return {"text": fit(escape_angle_brackets(heading(lines)), plain, SLACK_TEXT),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": chat_text(
                lines, escape_angle_brackets, lambda text: f"*{text}*", SLACK_SECTION)}}]}


def discord_payload(lines: list[AlertLine]) -> dict:
    return {"content": chat_text(lines, discord_escape, lambda text: f"**{text}**", DISCORD_CONTENT),
            "allowed_mentions": {"parse": []}}


def telegram_payload(channel: TelegramChannel, lines: list[AlertLine]) -> dict:
    return {"chat_id": channel.chat_id, "parse_mode": "HTML", "link_preview_options": {"is_disabled": True},
            "text": chat_text(lines, escape_angle_brackets, lambda text: f"<b>{text}</b>", TELEGRAM_TEXT)}


# --- HTTP ------------------------------------------------------------------------------------


def post_json(url: str, body, timeout: float, what: str) -> Attempt:
    """One POST. Errors name `what` (never the URL, which may carry a token)."""
    import requests

    try:
        response = requests.post(url, json=body, timeout=timeout, headers={"User-Agent": USER_AGENT})
    except requests.Timeout:
        return Attempt(f"{what} did not answer within {timeout:g}s", retry=True)
    except requests.ConnectionError:
        return Attempt(f"could not connect to {what}", retry=True)
    except requests.RequestException as exc:  # its text would show the URL
        return Attempt(f"{type(exc).__name__} sending to {what}")
    status = response.status_code
    if 200 <= status < 300:
        return ACCEPTED
    said = _what_it_said(response)
    return Attempt(f"{what} answered HTTP {status}{f': {said}' if said else ''}",
                   retry=status in (408, 429) or status >= 500, retry_after=_retry_after(response))


def _json(response):
    try:
        return response.json()
    except ValueError:
        return None


def _what_it_said(response) -> str:
    """The service's own short reason: Telegram's description, Discord's message, Slack's text."""
    data = _json(response)
    if isinstance(data, dict):
        reason = data.get("description") or data.get("message") or data.get("error")
        return safe(reason, 200) if isinstance(reason, str) else ""
    text = response.text.strip()
    return safe(text, 200) if text and "\n" not in text else ""


def _retry_after(response) -> float | None:
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    data = _json(response)
    if isinstance(data, dict):  # Discord: retry_after; Telegram: parameters.retry_after
        seconds = data.get("retry_after", (data.get("parameters") or {}).get("retry_after"))
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            return max(0.0, float(seconds))
    return None


def _post(url: str, body, channel: Channel, what: str, backoff: Backoff) -> str | None:
    return with_retries(lambda: post_json(url, body, channel.timeout, what), backoff)


def send_webhook(channel: UrlChannel, lines, now, backoff) -> str | None:
    return _post(channel.url.reveal(), envelope(lines, now), channel, f"the webhook ({channel.url.source})", backoff)


def send_slack(channel: UrlChannel, lines, now, backoff) -> str | None:
    return _post(channel.url.reveal(), slack_payload(lines), channel, f"Slack ({channel.url.source})", backoff)


def send_discord(channel: UrlChannel, lines, now, backoff) -> str | None:
    return _post(channel.url.reveal(), discord_payload(lines), channel, f"Discord ({channel.url.source})", backoff)


def send_telegram(channel: TelegramChannel, lines, now, backoff) -> str | None:
    url = f"{channel.api_url}/bot{channel.token.reveal()}/sendMessage"
    return _post(url, telegram_payload(channel, lines), channel, f"Telegram (bot token from {channel.token.source})",
                 backoff)


# --- Alertmanager ----------------------------------------------------------------------------

# A firing alert ends (endsAt) this many check intervals after it was posted, as Prometheus's rules
# do (4 x its evaluation interval, "allow for two Eval or Alertmanager send failures"): three runs
# in a row may be skipped or fail before a firing alert ends by itself.
INTERVALS_AHEAD = 4


def alertmanager_alerts(lines: list[AlertLine], now: float, valid_for: float) -> list[dict]:
    """Alertmanager v2 postable alerts: each line states everything about its subject.

    Labels identify an alert (alertname, host, pool or agent, severity), so a fleet of guardians sending
    the same facts is deduplicated by Alertmanager. A line fires its level's usage alert until
    `valid_for` from now and resolves the other levels (an Alertmanager ignores a resolved alert it
    never had), so nothing stale is left behind however levels moved in between. An unreachable
    line also fires the unreachable alert and keeps the last level known firing: a host that went
    dark is not resolved. Any other line of a host resolves the unreachable alert.
    """
    alerts = []
    for line in lines:
        # an agent's alert carries its host too, so a route or silence on the host holds its agents as well
        subject = {"host": line.name.partition("/")[0], "agent": line.name} if line.kind == "agent" else {
            line.kind: line.name}
        annotations = {"summary": line_text(line), "description": line.action, "dedup_key": line.dedup_key}
        annotations.update({key: str(value) for key, value in (("usage", line.usage), ("count", line.count),
                                                                ("limit", line.limit), ("idle", line.idle))
                            if value is not None})

        def alert(name: str, severity: str, firing: bool, ends: float | None = now + valid_for) -> dict:
            entry = {"labels": {"alertname": name, **subject, "severity": severity}, "annotations": annotations}
            if not firing:
                return {**entry, "endsAt": iso_time(now)}  # startsAt left to Alertmanager: the same instant
            entry["startsAt"] = iso_time(now)  # Alertmanager keeps the earliest of a firing alert's posts
            return {**entry, "endsAt": iso_time(ends)} if ends else entry

        if line.reason == "test":
            alerts.append(alert("SessionGuardianTest", "notice", True, ends=None))  # Alertmanager's resolve_timeout
            continue
        alerts += [alert(usage_alertname(severity), severity, severity == line.level) for severity in SEVERITIES]
        if line.kind == "host":
            alerts.append(alert(UNREACHABLE_ALERTNAME, "warning", line.reason == "unreachable"))
    return alerts


def send_alertmanager(channel: AlertmanagerChannel, lines, now, backoff) -> str | None:
    """To every Alertmanager of the cluster (they do not share alerts); accepted when all took it."""
    from guardian.adapters.gateway import concurrently

    body = alertmanager_alerts(lines, now, INTERVALS_AHEAD * channel.check_interval)
    errors = concurrently(lambda url: _post(f"{url}/api/v2/alerts", body, channel, f"Alertmanager {url}", backoff),
                          list(channel.urls))
    return "; ".join(error for error in errors if error) or None


def sync_alertmanager_silences(channel: AlertmanagerChannel, wanted: list[dict], created_by: str) -> str | None:
    """Make each Alertmanager of the cluster hold exactly the `wanted` silences of this guardian: post the
    missing ones (one already there, from an HA twin, is not duplicated), expire the active ones by
    `created_by` no longer wanted. None when all went well, else what did not."""
    import requests

    errors = []
    for url in channel.urls:
        what = f"Alertmanager {url}"  # the config refuses credentials in these URLs
        try:
            response = requests.get(f"{url}/api/v2/silences", timeout=channel.timeout,
                                    headers={"User-Agent": USER_AGENT})
            response.raise_for_status()
            there = [s for s in response.json() if s.get("status", {}).get("state") in ("active", "pending")]
            for silence in wanted:
                if not any(same_silence(silence, other) for other in there):
                    requests.post(f"{url}/api/v2/silences", json=silence, timeout=channel.timeout,
                                  headers={"User-Agent": USER_AGENT}).raise_for_status()
            for other in there:
                if other.get("createdBy") == created_by and not any(same_silence(s, other) for s in wanted):
                    requests.delete(f"{url}/api/v2/silence/{other['id']}", timeout=channel.timeout,
                                    headers={"User-Agent": USER_AGENT}).raise_for_status()
        except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as exc:
            errors.append(f"{what} silences not kept in step ({type(exc).__name__})")
    return "; ".join(errors) or None


# --- email -----------------------------------------------------------------------------------


def email_subject(lines: list[AlertLine]) -> str:
    parts = []
    for line in lines:
        usage = f" {line.usage:.0f}%" if line.usage is not None else ""
        what = " reachable again" if line.reason == "reachable" else ""  # not a usage resolved: the level stands
        parts.append(f"{title(line)} {'' if line.kind == 'host' else line.kind + ' '}{line.name}{what}{usage}")
    return safe(f"[guardian] {', '.join(parts)}", 150)


def email_message(channel: EmailChannel, lines: list[AlertLine], now: float):
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["Subject"] = email_subject(lines)
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.recipients)
    message["Date"] = formatdate(now, usegmt=True)
    # the sender's domain, not socket.getfqdn(): that can wait seconds on DNS
    message["Message-ID"] = make_msgid("guardian", domain=channel.sender.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the guardian
    message.set_content(message_text(lines) + "\n")
    return message


def smtp_send(channel: EmailChannel, message) -> Attempt:
    import smtplib
    import ssl

    where = f"the mail server {channel.smtp_host}:{channel.smtp_port}"
    try:
        context = ssl.create_default_context(cafile=channel.ca_file)
        if channel.security == "tls":
            client = smtplib.SMTP_SSL(channel.smtp_host, channel.smtp_port, timeout=channel.timeout, context=context)
        else:
            client = smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=channel.timeout)
        with client:
            if channel.security == "starttls":
                client.starttls(context=context)
            if channel.username:
                client.login(channel.username, channel.password.reveal())
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        return Attempt(f"{where} refused every recipient (SMTP {', '.join(map(str, codes))})",
                       retry=all(400 <= code < 500 for code in codes))
    except smtplib.SMTPResponseException as exc:  # 4xx is "try later", 5xx is "no"
        said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return Attempt(f"{where} answered {exc.smtp_code} {safe(said, 200)}", retry=400 <= exc.smtp_code < 500)
    except ssl.SSLCertVerificationError as exc:
        return Attempt(f"{where} has a certificate this machine does not trust ({exc.verify_message}); "
                       f"give its CA with ca_file")
    except smtplib.SMTPNotSupportedError:
        return Attempt(f"{where} does not offer STARTTLS; use security: tls, or none on a trusted network")
    except (smtplib.SMTPException, OSError) as exc:
        return Attempt(f"could not talk to {where} ({type(exc).__name__}: {safe(exc, 200)})", retry=True)
    return ACCEPTED


def send_email(channel: EmailChannel, lines, now, backoff) -> str | None:
    message = email_message(channel, lines, now)
    return with_retries(lambda: smtp_send(channel, message), backoff)


# --- command ---------------------------------------------------------------------------------


def run_command(channel: CommandChannel, data: bytes) -> Attempt:
    """The program with the envelope on stdin; exit 0 accepted, 75 (EX_TEMPFAIL) worth a retry."""
    import os
    import signal
    import subprocess

    program = channel.argv[0]
    try:
        # its own session, so a timeout kills whatever it started too, and nothing outlives the run
        process = subprocess.Popen(channel.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return Attempt(f"cannot run {program} ({exc.strerror})")
    with process:
        try:
            _, stderr = process.communicate(data, timeout=channel.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return Attempt(f"the command {program} did not finish within {channel.timeout:g}s and was killed")
    if process.returncode == 0:
        return ACCEPTED
    said = stderr.decode(errors="replace").strip().splitlines()
    tail = f": {safe(said[-1], 200)}" if said else ""
    return Attempt(f"the command {program} exited with code {process.returncode}{tail}",
                   retry=process.returncode == EX_TEMPFAIL)


def send_command(channel: CommandChannel, lines, now, backoff) -> str | None:
    import json

    data = json.dumps(envelope(lines, now)).encode()
    return with_retries(lambda: run_command(channel, data), backoff)


# --- apprise ---------------------------------------------------------------------------------


def apprise_type(lines: list[AlertLine]) -> str:
    """Apprise's notification type (its services colour by it): the worst line decides."""
    if any(line.status == "firing" and line.level == "critical" for line in lines):
        return "failure"
    if any(line.reason == "unreachable" or (line.status == "firing" and line.level == "warning") for line in lines):
        return "warning"
    return "success" if all(line.status == "resolved" for line in lines) else "info"


def send_apprise(channel: UrlChannel, lines, now, backoff) -> str | None:
    import logging

    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(channel.url.reveal()):
        return f"apprise does not understand the URL from {channel.url.source}"
    for service in notifier:  # apprise's timeouts are per service: the channel's applies to each
        service.socket_connect_timeout = service.socket_read_timeout = channel.timeout
    body = "\n".join(line_text(line) for line in lines)

    def attempt() -> Attempt:
        # apprise logs its failures; they become the error, and nothing reaches stderr on its own
        with apprise.LogCapture(level=logging.WARNING) as log:
            delivered = notifier.notify(body=body, title=heading(lines), notify_type=apprise_type(lines),
                                        body_format=apprise.NotifyFormat.TEXT)
        if delivered:
            return ACCEPTED
        said = [text for text in log.getvalue().splitlines() if text.strip()]
        return Attempt(f"apprise could not deliver to the URL from {channel.url.source}"
                       f"{f': {safe(said[-1], 200)}' if said else ''}", retry=True)

    return with_retries(attempt, backoff)


def sender(kind: str) -> Callable:
    """The transport of a channel type: `send_<type>` here, for each type of guardian.settings.channels.READERS
    (the one registry of channel types)."""
    return globals()[f"send_{kind}"]
