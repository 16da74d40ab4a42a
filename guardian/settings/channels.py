"""The settings of each alert channel type, and how they are read from `alerts.channels`: the one registry
of channel types (READERS; CHANNEL_TYPES are its keys, and the transports have a sender for each).

Imported only when channels are configured: each frozen dataclass costs start-up, and `guardian check` runs
twice a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from guardian.settings.model import Channel, Secret, is_loopback, split_url
from guardian.settings.reader import Section, readable_file, secret
from guardian.settings.units import kind_of


@dataclass(frozen=True, kw_only=True)
class UrlChannel(Channel):
    """webhook, slack, discord and apprise: everything is in one secret URL."""

    url: Secret

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return (self.url,)


@dataclass(frozen=True, kw_only=True)
class TelegramChannel(Channel):
    token: Secret
    chat_id: str
    api_url: str = "https://api.telegram.org"

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return (self.token,)


@dataclass(frozen=True, kw_only=True)
class EmailChannel(Channel):
    smtp_host: str
    smtp_port: int
    security: str  # starttls | tls | none
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: Secret | None = None
    ca_file: str | None = None

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return (self.password,) if self.password else ()


@dataclass(frozen=True, kw_only=True)
class AlertmanagerChannel(Channel):
    urls: tuple[str, ...]  # base URLs; alerts go to <url>/api/v2/alerts of each
    check_interval: float = 30.0  # how often `guardian check` runs: firing alerts end a few of these ahead


@dataclass(frozen=True, kw_only=True)
class CommandChannel(Channel):
    argv: tuple[str, ...]


def _http_url(ch: Section, key: str, value: str) -> str:
    if split_url(value, ("http", "https")) is None:
        ch.fail(key, "must give an http:// or https:// URL")
    return value


def _url_channel(ch: Section, common: dict, warnings: list) -> Channel:
    url = secret(ch, "url", "webhook URLs", warnings, required=True)
    _http_url(ch, "url_env" if url.source.startswith("env ") else "url_file", url.reveal())
    return UrlChannel(**common, url=url)


def _apprise_channel(ch: Section, common: dict, warnings: list) -> Channel:
    import importlib.util

    if importlib.util.find_spec("apprise") is None:
        ch.fail("type", "apprise is not installed: pip install 'session-limit-guardian[apprise]'")
    return UrlChannel(**common, url=secret(ch, "url", "apprise URLs", warnings, required=True))


def _telegram_channel(ch: Section, common: dict, warnings: list) -> Channel:
    chat_id = ch.get("chat_id")
    if isinstance(chat_id, bool) or not isinstance(chat_id, (int, str)) or chat_id == "":
        ch.fail("chat_id", f"is required: the chat's id (a number) or @channelname, got {kind_of(chat_id)}")
    api_url = _http_url(ch, "api_url", ch.text("api_url", TelegramChannel.api_url))
    return TelegramChannel(**common, token=secret(ch, "token", "bot tokens", warnings, required=True),
                           chat_id=str(chat_id), api_url=api_url.rstrip("/"))


SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def _email_channel(ch: Section, common: dict, warnings: list) -> Channel:
    smtp_host = ch.text("smtp_host", required=True)
    security = ch.text("security", "starttls")
    if security not in SMTP_PORTS:
        ch.fail("security", f"must be one of {', '.join(SMTP_PORTS)}, got {security!r}")
    port = ch.integer("smtp_port", SMTP_PORTS[security], minimum=1)
    username = ch.text("username")
    password = secret(ch, "password", "passwords", warnings)
    if username and not password:
        ch.fail("username", "needs a password too: password_env or password_file")
    if password and not username:
        ch.fail("username", "is required with a password")
    if password and security == "none" and not is_loopback(smtp_host):
        ch.fail("security", "the password would cross the network in clear: use starttls or tls")
    sender = ch.text("from", required=True)
    recipients = ch.get("to")
    if isinstance(recipients, str):
        recipients = [recipients]
    if not recipients or not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        ch.fail("to", f"must be an address or a list of addresses, got {kind_of(recipients)}")
    for address in [sender, *recipients]:
        if "@" not in address or any(c.isspace() or not c.isprintable() for c in address):
            ch.fail("to" if address in recipients else "from", f"{address!r} is not an email address")
    return EmailChannel(**common, smtp_host=smtp_host, smtp_port=port, security=security, sender=sender,
                        recipients=tuple(recipients), username=username, password=password,
                        ca_file=readable_file(ch, "ca_file"))


def _alertmanager_channel(ch: Section, common: dict, warnings: list) -> Channel:
    urls = ch.names("urls")
    if not urls:
        ch.fail("urls", "must list at least one Alertmanager URL (e.g. http://alertmanager:9093)")
    for url in urls:
        _http_url(ch, "urls", url)
        if urlsplit(url).username or urlsplit(url).password:
            ch.fail("urls", "credentials do not go in the config file; put the Alertmanager behind a "
                            "proxy that needs none from the guardian, or use a webhook channel")
    check_interval = ch.duration("check_interval", AlertmanagerChannel.check_interval)
    return AlertmanagerChannel(**common, urls=tuple(url.rstrip("/") for url in urls), check_interval=check_interval)


def _command_channel(ch: Section, common: dict, warnings: list) -> Channel:
    import shlex
    import shutil

    command = ch.get("command")
    argv = shlex.split(command) if isinstance(command, str) else command
    if not argv or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        ch.fail("command", f"is required: a program and its arguments (a list, or text split like a shell "
                           f"would, without running one), got {kind_of(command)}")
    if shutil.which(argv[0]) is None:
        ch.fail("command", f"{argv[0]!r} is not an executable program (give its full path)")
    return CommandChannel(**common, argv=tuple(argv))


READERS = {
    "webhook": _url_channel, "slack": _url_channel, "discord": _url_channel, "telegram": _telegram_channel,
    "email": _email_channel, "alertmanager": _alertmanager_channel, "command": _command_channel,
    "apprise": _apprise_channel,
}


CHANNEL_TYPES = tuple(READERS)
