"""Load and validate the YAML config into frozen dataclasses.

Every problem is a ConfigError naming the file, the line and the key; the CLI prints it as one
sentence and exits 2 before anything else is done. Tokens are resolved here (env var or file,
never argv) so a missing secret is caught before any gateway is contacted.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

LEVELS = ("ok", "notice", "warning", "critical")
ALERT_KINDS = ("usage", "unreachable", "growth", "rebound", "peak")  # what a silence or a window can hold
DEFAULT_URL = "ws://127.0.0.1:18789"
DEFAULT_CONFIG_PATH = "~/.config/guardian/guardian.yaml"
DEFAULT_STATE_DIR = "~/.local/state/guardian"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ConfigError(Exception):
    """A config problem, already phrased as one sentence for the operator."""


class Secret:
    """A token or URL that must never be printed: its repr and str are redacted."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str):
        self._value = value
        self.source = source  # where it came from, safe to show ("env T440_TOKEN", "file /etc/...")

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<redacted>, from {self.source})"

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self):
        return hash(self._value)


@dataclass(frozen=True)
class Host:
    name: str
    url: str
    limit: int
    token: Secret | None = None
    insecure: bool = False
    device: bool = False  # send the Ed25519 device identity (default: when the host is not loopback)
    ca_file: str | None = None
    fingerprint: str | None = None  # pinned sha256 of the certificate, lowercase hex without colons
    timeout: float = 10.0

    @property
    def loopback(self) -> bool:
        return is_loopback(urlsplit(self.url).hostname or "")


@dataclass(frozen=True)
class Pool:
    name: str
    hosts: tuple[str, ...]
    limit: int


@dataclass(frozen=True, kw_only=True)
class Channel:
    """Where alerts go, with the filters that choose what it hears about. Each type's own settings
    are in a subclass (guardian.channel_settings)."""

    name: str
    type: str
    timeout: float = 5.0  # each attempt (connect, request, SMTP session, command run)
    min_level: str = "notice"  # levels below this are not sent to this channel (nor is a drop below it a resolved)
    hosts: tuple[str, ...] = ()  # only these hosts and the pools they belong to; empty: all
    resolved: bool = True  # send a resolved message (default: alerts.resolved)

    @property
    def secrets(self) -> tuple[Secret, ...]:
        """What must never be shown: every error this channel reports is redacted of these."""
        return ()


@dataclass(frozen=True)
class Alerts:
    thresholds: dict = field(default_factory=lambda: {"notice": 65.0, "warning": 80.0, "critical": 90.0})
    cooldown: dict = field(
        default_factory=lambda: {"notice": 1800.0, "warning": 900.0, "critical": 300.0, "unreachable": 900.0,
                                 "growth": 1800.0, "rebound": 1800.0}
    )
    margin: float = 5.0
    resolved: bool = True
    unreachable_after: int = 2
    channels: tuple[Channel, ...] = ()
    predict: float | None = None  # growth notice when critical is forecast within this, two checks in a row
    rebound: float = 1800.0  # rebound notice when usage is back within this after a cleanup (0: off)
    max_silence: float = 7 * 86400.0  # `guardian silence add` refuses a longer one


@dataclass(frozen=True)
class Protect:
    agents: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cleanup:
    idle_after: float = 7200.0
    max_per_run: int = 50
    reserve: int = 5
    on_critical: bool = False
    protect: Protect = Protect()
    agent_idle_after: dict = field(default_factory=dict)  # agentId -> seconds


@dataclass(frozen=True)
class History:
    retention: float = 2 * 86400.0  # raw check samples older than this are pruned (their rollups stay)
    five_minute: float = 90 * 86400.0  # 5-minute rollups older than this are pruned
    hourly: float = 400 * 86400.0  # hourly rollups older than this are pruned
    forecast_window: float = 3600.0  # the forecast fits the samples of this last stretch


@dataclass(frozen=True)
class Check:
    concurrency: int = 64  # polls at once (gateway.concurrently's cap)


DEFAULT_LISTEN = "127.0.0.1:9877"


@dataclass(frozen=True)
class Serve:
    """`guardian serve`: its schedule, and who may read its HTTP endpoints."""

    listen: str = DEFAULT_LISTEN
    check_every: float = 30.0
    cleanup_every: float = 900.0
    token: Secret | None = None  # a bearer token every request but /healthz must carry
    insecure: bool = False  # a non-loopback address without a token: the network is trusted


@dataclass(frozen=True)
class Scope:
    """What a silence or a maintenance window holds: these subjects' alerts of these kinds on these channels.

    A host covers its agents too; a pool is covered only when named. Empty alerts or channels: all of them.
    """

    hosts: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()  # "HOST/AGENT"
    alerts: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Maintenance:
    """A recurring window (`maintenance:`): from `start` to `end` (minutes after local midnight, an end
    before the start is on the next day) on each of `days` (0 Monday .. 6 Sunday), in zone `tz`."""

    name: str
    scope: Scope
    when: str  # as written, for the operator
    days: frozenset
    start: int
    end: int
    tz: str = "UTC"
    cleanup: bool = True  # false: cleanup and on_critical leave its hosts alone too


@dataclass(frozen=True)
class Config:
    hosts: dict  # name -> Host, in file order
    pools: dict = field(default_factory=dict)
    alerts: Alerts = Alerts()
    cleanup: Cleanup = Cleanup()
    history: History = History()
    maintenance: tuple[Maintenance, ...] = ()
    check: Check = Check()
    serve: Serve = Serve()
    shard: tuple[int, int] | None = None  # --shard K/N: only the hosts whose name hashes to K of N
    state_dir: Path = Path(DEFAULT_STATE_DIR).expanduser()
    path: str | None = None  # the file it came from; None for the no-file default
    warnings: tuple[str, ...] = ()

    def select(self, names: str | None) -> list[Host]:
        """The hosts named in a comma-separated --hosts value, or all of them; of those, the shard's."""
        hosts = _named("--hosts", names, self.hosts)
        return [h for h in hosts if in_shard(h.name, *self.shard)] if self.shard else hosts

    def select_channels(self, names: str | None) -> list[Channel]:
        """The alert channels named in a comma-separated --channels value, or all of them."""
        return _named("--channels", names, {channel.name: channel for channel in self.alerts.channels})


def _named(option: str, names: str | None, known: dict) -> list:
    if not names:
        return list(known.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(f"{option} names {', '.join(unknown)}, which the config does not define "
                          f"(known: {', '.join(known) or 'none'})")
    return [known[n] for n in wanted]


def in_shard(name: str, k: int, n: int) -> bool:
    """Whether host `name` is in shard K of N (1-based): a stable hash, the same on every machine and run,
    so N guardians split the hosts with no coordination (Python's hash() is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % n == k - 1


def parse_shard(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3). ValueError naming the problem if not K/N with 1 <= K <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a shard: write K/N, e.g. 1/3 for the first of three guardians")
    k, n = int(match[1]), int(match[2])
    if not 1 <= k <= n:
        raise ValueError(f"{text!r}: K must be from 1 to N")
    return k, n


def is_loopback(hostname: str) -> bool:
    import ipaddress

    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def split_url(value: str, schemes: tuple[str, ...]):
    """urlsplit's parts when `value` is a URL of one of `schemes` with a host and a valid port, else None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number up to 65535
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    return parts if parts.scheme in schemes and parts.hostname else None


DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value) -> float:
    """'90s', '30m', '2h', '1d', '1h30m' -> seconds, more than 0. ValueError if not.

    A bare number is refused, not read as seconds: `idle_after: 2` meant hours as often as seconds.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{_kind(value)} is not a duration (e.g. 45s, 30m, 2h, 1d)")
    text = str(value).strip().lower()
    if isinstance(value, (int, float)) or re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", text):
        raise ValueError(f"{text} has no unit: write the unit after the number (e.g. 45s, 30m, 2h, 1d)")
    if not re.fullmatch(r"(\d+(\.\d+)?(ms|s|m|h|d|w))+", text):
        raise ValueError(f"{value!r} is not a duration (e.g. 45s, 30m, 2h, 1d)")
    seconds = sum(float(n) * DURATION_UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text))
    if seconds == 0:
        raise ValueError(f"{value!r} is zero: a duration must be more than 0")
    if math.isinf(seconds):
        raise ValueError(f"{value!r} is too long to be a duration")
    return seconds


def duration_text(seconds: float | None) -> str:
    """Seconds as the operator reads them: 45s, 12m, 2h05m, 1d03h (parse_duration reads them back)."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds % size // {"d": 3600, "h": 60, "m": 1}[unit]
            return f"{seconds // size}{unit}{rest:02d}{ {'d': 'h', 'h': 'm', 'm': 's'}[unit]}" if rest else f"{seconds // size}{unit}"
    return f"{seconds}s"


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WHEN_EXAMPLE = 'days and a time range, e.g. "sun 02:00-04:00", "mon-fri 22:00-06:00" or "sat,sun 00:00-24:00"'


def parse_when(text) -> tuple[frozenset, int, int]:
    """'mon-fri 22:00-06:00' -> (days 0..6, start and end in minutes after midnight). ValueError if not.

    Days are names, ranges (fri-mon wraps) and commas; without days, every day. A range may cross
    midnight (22:00-06:00 ends on the next day); 24:00 is the end of the day.
    """
    match = re.fullmatch(r"(?:([a-z,-]+)\s+)?(\d\d):(\d\d)-(\d\d):(\d\d)", str(text).strip().lower())
    if not isinstance(text, str) or not match:
        raise ValueError(f"{_kind(text)} is not a window: write {WHEN_EXAMPLE}")
    day_text, *clock = match.groups()
    start, end = int(clock[0]) * 60 + int(clock[1]), int(clock[2]) * 60 + int(clock[3])
    if int(clock[1]) > 59 or int(clock[3]) > 59 or start >= 24 * 60 or end > 24 * 60:
        raise ValueError(f"{text!r} has a time that is not on a clock (00:00 to 23:59, 24:00 as an end)")
    if start == end:
        raise ValueError(f"{text!r} starts where it ends: give a range that lasts")
    days = set()
    for part in (day_text or "mon-sun").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{text!r} names a day that is not one of {', '.join(DAYS)}")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days), start, end


# --- YAML with line numbers ------------------------------------------------------------------


class _LineMap(dict):
    """A dict that remembers the line of each key (and its own), for error messages."""

    line = 0

    def __init__(self):
        super().__init__()
        self.lines = {}


def _yaml_load(text: str):
    import yaml

    # libyaml's parser when PyYAML has it: a 50-host config in 1 ms instead of 8.5
    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    def construct_mapping(loader, node):
        mapping = _LineMap()
        mapping.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConfigError(f"line {key_node.start_mark.line + 1}: keys must be text, got {key!r}")
            if key in mapping:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
            mapping[key] = loader.construct_object(value_node, deep=True)
            mapping.lines[key] = key_node.start_mark.line + 1
        return mapping

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}not valid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply to be a guardian config") from None


class _Section:
    """Reads one mapping of the file, checking keys and types, with file:line in every error."""

    def __init__(self, path: str, key_path: str, mapping, line: int):
        self.path, self.key_path, self.line = path, key_path, line
        if mapping is None:
            mapping = _LineMap()
        if not isinstance(mapping, dict):
            self.fail(None, f"must be a mapping, got {_kind(mapping)}")
        self.mapping = mapping
        self.used: set[str] = set()

    def where(self, key: str | None) -> str:
        line = self.mapping.lines.get(key, self.line) if key and hasattr(self.mapping, "lines") else self.line
        name = f"{self.key_path}.{key}" if key and self.key_path else (key or self.key_path)
        return f"{self.path}:{line}: {name}"

    def fail(self, key: str | None, problem: str):
        raise ConfigError(f"{self.where(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.mapping

    def get(self, key: str, default=None):
        self.used.add(key)
        return self.mapping.get(key, default)

    def section(self, key: str) -> "_Section":
        value = self.get(key)
        line = self.mapping.lines.get(key, self.line) if hasattr(self.mapping, "lines") else self.line
        sub_path = f"{self.key_path}.{key}" if self.key_path else key
        return _Section(self.path, sub_path, value, line)

    def text(self, key: str, default=None, required=False):
        value = self.get(key, default)
        if value is None and required:
            self.fail(key, "is required")
        if value is not None and not isinstance(value, str):
            self.fail(key, f"must be text, got {_kind(value)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {_kind(value)}")
        return value

    def integer(self, key: str, default=None, minimum=None, required=False):
        value = self.get(key, default)
        if value is None and required:
            self.fail(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be a whole number, got {_kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {_kind(value)}")
        return float(value)

    def duration(self, key: str, default: float | None, can_be_off: bool = False) -> float | None:
        """A duration with a unit, or `default` (seconds) when the key is absent; None for `off` if it `can_be_off`."""
        if not self.has(key):
            self.used.add(key)
            return default
        value = self.get(key)
        if can_be_off and (value is None or value is False):  # YAML reads `off` and `false` as false, `null` as nothing
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(key, f"{exc}{'; write off to switch it off' if can_be_off else ''}")

    def names(self, key: str) -> tuple[str, ...]:
        value = self.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"must be a list of text, got {_kind(value)}")
        return tuple(value)

    def done(self):
        """Unknown keys are errors: a typo must not silently fall back to a default."""
        for key in self.mapping:
            if key not in self.used:
                self.fail(key, "is not a known setting (check the spelling; see the README's configuration reference)")


def _kind(value) -> str:
    if value is None:
        return "nothing"
    return {bool: "true/false", int: "a number", float: "a number", str: f"text {value!r}",
            list: "a list", _LineMap: "a mapping", dict: "a mapping"}.get(type(value), type(value).__name__)


# --- the sections ----------------------------------------------------------------------------


def _secret(section: _Section, base: str, what: str, warnings: list, required: bool = False) -> Secret | None:
    """A secret from `<base>_env` (an environment variable) or `<base>_file`; never from the file itself."""
    if section.has(base):
        section.fail(base, f"{what} are secrets and do not go in the config file: use {base}_env "
                           f"(an environment variable) or {base}_file (a file readable only by you)")
    env_name, file_name = section.text(f"{base}_env"), section.text(f"{base}_file")
    if env_name and file_name:
        section.fail(f"{base}_file", f"give {base}_env or {base}_file, not both")
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if not value:
            section.fail(f"{base}_env", f"the environment variable {env_name} is not set")
        return Secret(value, f"env {env_name}")
    if file_name:
        return Secret(_read_secret_file(section, f"{base}_file", file_name, warnings), f"file {file_name}")
    if required:
        section.fail(None, f"needs {base}_env or {base}_file")
    return None


def _read_secret_file(section: _Section, key: str, file_name: str, warnings: list) -> str:
    path = Path(file_name).expanduser()
    try:
        mode = path.stat().st_mode
        value = path.read_text().strip()
    except OSError as exc:
        section.fail(key, f"cannot read {path} ({exc.strerror})")
    if not value:
        section.fail(key, f"{path} is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"{section.where(key)}: {path} is readable by other users; run: chmod 600 {path}")
    return value


def _readable_file(section: _Section, key: str) -> str | None:
    """A path setting (a CA file): expanded, and readable now rather than at the first alert."""
    value = section.text(key)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not os.access(path, os.R_OK):
        section.fail(key, f"cannot read {value}")
    return str(path)


def _host(name: str, section: _Section, warnings: list) -> Host:
    if not NAME_RE.match(name):
        section.fail(None, "host names may use letters, digits, '.', '_' and '-' (at most 64)")
    url = section.text("url", required=True)
    parts = split_url(url, ("ws", "wss"))
    if parts is None:
        section.fail("url", f"must be a ws:// or wss:// address with a host, got {url!r}")
    insecure = section.boolean("insecure", False)
    if parts.scheme == "ws" and not is_loopback(parts.hostname) and not insecure:
        section.fail("url", "plain ws:// to a non-loopback address would send the token unencrypted: "
                            "use wss://, or set insecure: true on this host if the network is trusted")
    limit = section.integer("limit", required=True)
    if limit <= 0:
        section.fail("limit", f"must be a positive number of sessions, got {limit}")
    device = section.get("device", None)
    if device is not None and not isinstance(device, bool):
        section.fail("device", f"must be true or false, got {_kind(device)}")
    ca_file = _readable_file(section, "ca_file")
    fingerprint = section.text("fingerprint")
    if fingerprint is not None:
        digits = fingerprint.lower().removeprefix("sha256:").replace(":", "")
        if not re.fullmatch(r"[0-9a-f]{64}", digits):
            section.fail("fingerprint", "must be the certificate's sha256 fingerprint (64 hex digits, colons allowed)")
        fingerprint = digits
    if (ca_file or fingerprint) and parts.scheme != "wss":
        section.fail("url", "ca_file and fingerprint need a wss:// address")
    timeout = section.duration("timeout", 10.0)
    host = Host(
        name=name, url=url.rstrip("/"), limit=limit, token=_secret(section, "token", "tokens", warnings), insecure=insecure,
        device=(not is_loopback(parts.hostname)) if device is None else device,
        ca_file=ca_file, fingerprint=fingerprint, timeout=timeout,
    )
    section.done()
    return host


def _alerts(section: _Section, warnings: list, host_names) -> Alerts:
    defaults = Alerts()
    th = section.section("thresholds")
    thresholds = {level: th.number(level, defaults.thresholds[level]) for level in LEVELS[1:]}
    th.done()
    values = list(thresholds.values())
    if not all(0 < v <= 100 for v in values):
        th.fail(None, f"each threshold must be a percentage above 0 and at most 100, got {values}")
    if not values[0] < values[1] < values[2]:
        th.fail(None, f"must increase: notice < warning < critical, got {values}")
    cd = section.section("cooldown")
    cooldown = {kind: cd.duration(kind, defaults.cooldown[kind]) for kind in defaults.cooldown}
    cd.done()
    margin = _margin(section, thresholds, defaults.margin)
    resolved = section.boolean("resolved", True)
    alerts = Alerts(
        thresholds=thresholds, cooldown=cooldown, margin=margin, resolved=resolved,
        unreachable_after=section.integer("unreachable_after", 2, minimum=1),
        channels=_channels(section, warnings, host_names, resolved),
        predict=section.duration("predict", None, can_be_off=True),
        rebound=section.duration("rebound", defaults.rebound, can_be_off=True) or 0.0,
        max_silence=section.duration("max_silence", defaults.max_silence),
    )
    section.done()
    return alerts


def _margin(section: _Section, thresholds: dict, default: float) -> float:
    """Points below a threshold before its level is left: less than notice (else ok is never reached again),
    and no more than the gap between two thresholds (else a level is held past the one below it)."""
    margin = section.number("margin", default)
    said = f"{margin:g}" if section.has("margin") else f"{margin:g} (the default)"
    if margin < 0:
        section.fail("margin", f"must be 0 or more percentage points, got {margin:g}")
    if margin >= thresholds["notice"]:
        section.fail("margin", f"must be below the notice threshold ({thresholds['notice']:g}), got {said}")
    for lower, upper in zip(LEVELS[1:], LEVELS[2:]):
        gap = thresholds[upper] - thresholds[lower]
        if margin > gap:
            section.fail("margin", f"{said} is more than the {gap:g} points between {lower} ({thresholds[lower]:g}) "
                                   f"and {upper} ({thresholds[upper]:g})")
    return margin


CHANNEL_TYPES = ("webhook", "slack", "discord", "telegram", "email", "alertmanager", "command", "apprise")


def _channels(section: _Section, warnings: list, host_names, resolved: bool) -> tuple[Channel, ...]:
    channels = []
    for index, ch in enumerate(_list_items(section, "channels")):
        kind = ch.text("type", required=True)
        if kind not in CHANNEL_TYPES:
            ch.fail("type", f"must be one of {', '.join(CHANNEL_TYPES)}, got {kind!r}")
        name = ch.text("name", f"{kind}-{index + 1}")
        if name == "log" or any(c.name == name for c in channels):
            ch.fail("name", f"channel name {name!r} is already taken")
        min_level = ch.text("min_level", "notice")
        if min_level not in LEVELS[1:]:
            ch.fail("min_level", f"must be one of {', '.join(LEVELS[1:])}, got {min_level!r}")
        hosts = ch.names("hosts")
        for host in hosts:
            if host not in host_names:
                ch.fail("hosts", f"names {host!r}, which is not a host in this file")
        timeout = ch.duration("timeout", 5.0)
        common = dict(name=name, type=kind, timeout=timeout, min_level=min_level, hosts=hosts,
                      resolved=ch.boolean("resolved", resolved))
        from guardian.channel_settings import READERS  # only with channels: their classes cost start-up

        channels.append(READERS[kind](ch, common, warnings))
        ch.done()
    return tuple(channels)


def _list_items(section: _Section, key: str):
    """A _Section for each mapping of the list at `key`, each named `key[i]` with its own line."""
    items = section.get(key, [])
    if not isinstance(items, list):
        section.fail(key, f"must be a list, got {_kind(items)}")
    name = f"{section.key_path}.{key}" if section.key_path else key
    for index, item in enumerate(items):
        line = getattr(item, "line", section.mapping.lines.get(key, section.line))
        yield _Section(section.path, f"{name}[{index}]", item, line)


def scope_problem(scope: Scope, hosts, pools, channels) -> tuple[str, str] | None:
    """(key, problem) for a scope that names nothing, or a name the config does not define."""
    if not (scope.hosts or scope.pools or scope.agents):
        return "hosts", "names no hosts, pools or agents, so it would hold nothing"
    known = {"hosts": hosts, "pools": pools, "alerts": ALERT_KINDS,
             "channels": [channel.name for channel in channels]}
    for key, names in (("hosts", scope.hosts), ("pools", scope.pools), ("alerts", scope.alerts),
                       ("channels", scope.channels), ("agents", scope.agents)):
        for name in names:
            host, slash, agent = name.partition("/")
            if key == "agents" and not (slash and agent and host in hosts):
                return key, f"names {name!r}: write HOST/AGENT with a host of this config"
            if key != "agents" and name not in known[key]:
                return key, f"names {name!r}, which is not one of the {key} here ({', '.join(known[key]) or 'none'})"
    return None


def _maintenance(root: _Section, hosts: dict, pools: dict, channels) -> tuple[Maintenance, ...]:
    from zoneinfo import ZoneInfo  # only with windows: zone data costs start-up

    windows = []
    for index, entry in enumerate(_list_items(root, "maintenance")):
        scope = Scope(hosts=entry.names("hosts"), pools=entry.names("pools"), agents=entry.names("agents"),
                      alerts=entry.names("alerts"), channels=entry.names("channels"))
        problem = scope_problem(scope, hosts, pools, channels)
        if problem:
            entry.fail(*problem)
        when = entry.text("when", required=True)
        try:
            days, start, end = parse_when(when)
        except ValueError as exc:
            entry.fail("when", str(exc))
        tz = entry.text("tz", "UTC")
        try:
            ZoneInfo(tz)
        except (ValueError, KeyError, OSError):  # not found is a KeyError, a path-like key a ValueError
            entry.fail("tz", f"{tz!r} is not an IANA time zone (e.g. Europe/Berlin, Asia/Tokyo, UTC)")
        name = entry.text("name", f"maintenance-{index + 1}")
        if any(window.name == name for window in windows):
            entry.fail("name", f"window name {name!r} is already taken")
        windows.append(Maintenance(name=name, scope=scope, when=when, days=days, start=start, end=end, tz=tz,
                                   cleanup=entry.boolean("cleanup", True)))
        entry.done()
    return tuple(windows)


def _cleanup(section: _Section) -> Cleanup:
    defaults = Cleanup()
    protect = section.section("protect")
    protected = Protect(agents=protect.names("agents"), keys=protect.names("keys"), labels=protect.names("labels"))
    protect.done()
    agents = section.section("agents")
    agent_idle = {}  # only the agents that set their own: the others follow cleanup.idle_after and --idle-after
    for agent_id in list(agents.mapping):
        per_agent = agents.section(agent_id)
        own = per_agent.duration("idle_after", None)
        if own is not None:
            agent_idle[agent_id] = own
        per_agent.done()
    cleanup = Cleanup(
        idle_after=section.duration("idle_after", defaults.idle_after),
        max_per_run=section.integer("max_per_run", defaults.max_per_run, minimum=1),
        reserve=section.integer("reserve", defaults.reserve, minimum=0),
        on_critical=section.boolean("on_critical", False),
        protect=protected,
        agent_idle_after=agent_idle,
    )
    section.done()
    return cleanup


def _history(section: _Section) -> History:
    from guardian.forecast import MIN_SPAN

    defaults = History()
    history = History(retention=section.duration("retention", defaults.retention),
                      five_minute=section.duration("five_minute", defaults.five_minute),
                      hourly=section.duration("hourly", defaults.hourly),
                      forecast_window=section.duration("forecast_window", defaults.forecast_window))
    if history.forecast_window < MIN_SPAN:
        section.fail("forecast_window", f"must be at least {MIN_SPAN:.0f}s: a forecast needs samples spanning that long")
    section.done()
    return history


def _check(section: _Section) -> Check:
    check = Check(concurrency=section.integer("concurrency", Check().concurrency, minimum=1))
    section.done()
    return check


def listen_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:9877' or '[::1]:9877' -> (host, port). ValueError if not."""
    parts = split_url(f"http://{text}", ("http",))
    if parts is None or parts.port is None or parts.path or parts.query or parts.username:
        raise ValueError(f"{text!r} is not an address to listen on: write HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return parts.hostname, parts.port


def _serve(section: _Section, warnings: list) -> Serve:
    defaults = Serve()
    listen = section.text("listen", defaults.listen)
    try:
        host, _ = listen_address(listen)
    except ValueError as exc:
        section.fail("listen", str(exc))
    serve = Serve(listen=listen, check_every=section.duration("check_every", defaults.check_every),
                  cleanup_every=section.duration("cleanup_every", defaults.cleanup_every),
                  token=_secret(section, "token", "tokens", warnings), insecure=section.boolean("insecure", False))
    if not is_loopback(host) and serve.token is None and not serve.insecure:
        section.fail("listen", f"{listen} is not loopback: anyone who can reach it would read the fleet's state; "
                               "set token_env or token_file, or insecure: true if the network is trusted")
    section.done()
    return serve


def parse(text: str, path: str, env_state_dir: str | None = None) -> Config:
    """Validate the text of a config file. Raises ConfigError."""
    data = _yaml_load(text)
    root = _Section(path, "", data, 1)
    warnings: list[str] = []
    hosts_section = root.section("hosts")
    if not hosts_section.mapping:
        root.fail("hosts", "is required: name at least one gateway (see the README)")
    hosts = {}
    for name in list(hosts_section.mapping):
        hosts[name] = _host(name, hosts_section.section(name), warnings)
        hosts_section.used.add(name)
    pools = {}
    pools_section = root.section("pools")
    for name in list(pools_section.mapping):
        pool = pools_section.section(name)
        members = pool.names("hosts")
        if not members:
            pool.fail("hosts", "must name at least one host")
        for index, member in enumerate(members):
            if member not in hosts:
                pool.fail("hosts", f"names {member!r}, which is not a host in this file")
            if member in members[:index]:
                pool.fail("hosts", f"names {member!r} twice: each host counts once towards the pool")
        if name in hosts:
            pool.fail(None, "a pool may not have the same name as a host")
        limit = pool.integer("limit", required=True)
        if limit <= 0:
            pool.fail("limit", f"must be a positive number of sessions, got {limit}")
        pools[name] = Pool(name=name, hosts=members, limit=limit)
        pool.done()
    alerts = _alerts(root.section("alerts"), warnings, hosts)
    maintenance = _maintenance(root, hosts, pools, alerts.channels) if root.has("maintenance") else ()
    cleanup = _cleanup(root.section("cleanup"))
    history = _history(root.section("history"))
    check, serve = _check(root.section("check")), _serve(root.section("serve"), warnings)
    state_dir = root.text("state_dir") or env_state_dir or DEFAULT_STATE_DIR
    root.done()
    return Config(hosts=hosts, pools=pools, alerts=alerts, cleanup=cleanup, history=history, maintenance=maintenance,
                  check=check, serve=serve, state_dir=Path(state_dir).expanduser(), path=path,
                  warnings=tuple(warnings))


def load(path: str | None = None, limit: int | None = None) -> Config:
    """The config from --config, else $GUARDIAN_CONFIG, else the default file, else the local gateway."""
    env_state_dir = os.environ.get("GUARDIAN_STATE_DIR")
    explicit = path or os.environ.get("GUARDIAN_CONFIG")
    file = Path(explicit or DEFAULT_CONFIG_PATH).expanduser()
    if explicit or file.exists():
        try:
            text = file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {file} ({exc.strerror})") from None
        return parse(text, str(file), env_state_dir)
    return _local_default(limit, env_state_dir)


def _local_default(limit: int | None, env_state_dir: str | None) -> Config:
    """No config file: watch the local gateway, so a newcomer's first `guardian check` works."""
    if limit is None:
        raw = os.environ.get("GUARDIAN_LIMIT", "").strip()
        if not raw:
            raise ConfigError(
                f"no config file at {DEFAULT_CONFIG_PATH} and no session limit: pass --limit N or set GUARDIAN_LIMIT "
                "to the number of sessions your service can bear, or write a config file (see the README)"
            )
        if not raw.isdigit() or int(raw) <= 0:
            raise ConfigError(f"GUARDIAN_LIMIT must be a positive whole number, got {raw!r}")
        limit = int(raw)
    if limit <= 0:
        raise ConfigError(f"--limit must be a positive whole number, got {limit}")
    url = os.environ.get("OPENCLAW_GATEWAY_URL", DEFAULT_URL)
    parts = split_url(url, ("ws", "wss"))
    if parts is None:
        raise ConfigError(f"OPENCLAW_GATEWAY_URL must be a ws:// or wss:// address, got {url!r}")
    if parts.scheme == "ws" and not is_loopback(parts.hostname):
        raise ConfigError("OPENCLAW_GATEWAY_URL is plain ws:// to a non-loopback address; write a config file "
                          "with wss:// (or insecure: true) for that host")
    host = Host(name="local", url=url.rstrip("/"), limit=limit, token=_local_token(),
                device=not is_loopback(parts.hostname))
    return Config(hosts={"local": host}, state_dir=Path(env_state_dir or DEFAULT_STATE_DIR).expanduser())


def _local_token() -> Secret | None:
    value = os.environ.get("OPENCLAW_GATEWAY_TOKEN", "").strip()
    if value:
        return Secret(value, "env OPENCLAW_GATEWAY_TOKEN")
    state_dir = os.environ.get("OPENCLAW_STATE_DIR") or "~/.openclaw"
    path = Path(os.environ.get("OPENCLAW_CONFIG_PATH") or Path(state_dir) / "openclaw.json").expanduser()
    try:
        data = json.loads(path.read_text())
        token = data["gateway"]["auth"]["token"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the connect will then say plainly that the gateway wants a token
    return Secret(token, f"file {path}") if isinstance(token, str) and token else None
