"""The settings as frozen dataclasses: what a host, a pool, a channel, the alerts and the cleanup are.

Built by guardian.settings.load from the file (or the local default); nothing here reads a file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timezone, tzinfo
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from guardian.settings.secrets import Secret

ALERT_KINDS = ("usage", "unreachable", "growth", "rebound", "peak")  # what a silence or a window can hold


DEFAULT_URL = "ws://127.0.0.1:18789"


DEFAULT_CONFIG_PATH = "~/.config/guardian/guardian.yaml"


DEFAULT_STATE_DIR = "~/.local/state/guardian"


# What a host's usage may count (`hosts.<name>.count`), by what the gateway's cheap counts tell apart (see
# guardian.core.attribution): listed sessions (direct, group, sub-agent, cron job), cron runs (never listed, counted by
# `status`), the `global` and `unknown` rows, archived sessions waiting for their purge.
COUNTABLE = ("listed", "cron-run", "system", "archived")
DEFAULT_COUNT = ("listed", "cron-run", "system")  # every session the service carries work for; archived ones carry none


MIN_SPAN = 300.0  # seconds a forecast's samples must span: history.forecast_window may not be shorter


class ConfigError(Exception):
    """A config problem, already phrased as one sentence for the operator."""


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
    count: tuple[str, ...] = DEFAULT_COUNT  # what its usage counts, of COUNTABLE

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
    are in a subclass (guardian.settings.channels)."""

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
                                 "growth": 1800.0, "rebound": 1800.0, "peak": 72000.0}
    )
    margin: float = 5.0
    resolved: bool = True
    unreachable_after: int = 2
    channels: tuple[Channel, ...] = ()
    predict: float | None = None  # growth notice when critical is forecast within this, two checks in a row
    rebound: float = 1800.0  # rebound notice when usage is back within this after a cleanup (0: off)
    # peak notice this long before a daily peak whose expected usage reaches critical (None: off); once a peak,
    # as cooldown.peak (20h: less than a day, more than peak_notice) keeps the next check of its window quiet
    peak_notice: float | None = None
    max_silence: float = 7 * 86400.0  # `guardian silence add` refuses a longer one


@dataclass(frozen=True)
class Protect:
    agents: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


ARCHIVE, DELETE = "archive", "delete"
CLEANUP_MODES = (ARCHIVE, DELETE)
# cleanup.agents.<id>.priority, in the order a cleanup closes their idle sessions (protected: never)
PRIORITIES = ("low", "normal", "high", "protected")
PROTECTED = "protected"


@dataclass(frozen=True)
class Cleanup:
    idle_after: float = 7200.0
    max_per_run: int = 50
    reserve: int = 5
    on_critical: bool = False
    protect: Protect = Protect()  # protect.agents holds every protected agent, `priority: protected` ones too
    agent_idle_after: dict = field(default_factory=dict)  # agentId -> seconds
    # archive: close by archiving in place (undoable with `guardian restore`), purge purge_after later; where the
    # gateway cannot archive (2026.4) it deletes. delete: delete at once, as before archive existed.
    mode: str = ARCHIVE
    purge_after: float = 86400.0
    agent_priority: dict = field(default_factory=dict)  # folded agentId -> low | high (normal: not listed)
    agent_limit: dict = field(default_factory=dict)  # agentId as written -> sessions it may hold on a host

    def idle_after_for(self, agent: str | None) -> float:
        """How long an agent's sessions must be idle before they may close: the agent's own, else idle_after."""
        return self.agent_idle_after.get(agent, self.idle_after)

    def priority_for(self, agent: str | None) -> str:
        """The agent's cleanup priority; agent ids match whatever their case (OpenClaw folds them to lower case)."""
        folded = agent.casefold() if isinstance(agent, str) else None
        if folded in self._protected_agents:
            return PROTECTED
        return self.agent_priority.get(folded, "normal")

    @cached_property
    def _protected_agents(self) -> frozenset:
        """protect.agents, folded once (the planner asks for every session)."""
        return frozenset(map(str.casefold, self.protect.agents))


@dataclass(frozen=True)
class HistorySettings:
    """`history:`, how long history.db keeps samples and how many the forecast fits (the store is
    guardian.adapters.history.History)."""

    retention: float = 2 * 86400.0  # raw check samples older than this are pruned (their rollups stay)
    five_minute: float = 90 * 86400.0  # 5-minute rollups older than this are pruned
    hourly: float = 400 * 86400.0  # hourly rollups older than this are pruned
    forecast_window: float = 3600.0  # the forecast fits the samples of this last stretch
    tz: str | None = None  # the IANA zone whose days the peak forecast counts in; None: the machine's

    @property
    def zone(self) -> tzinfo:
        """`tz`, else the machine's zone ($TZ, then /etc/localtime), else UTC."""
        name = self.tz or os.environ.get("TZ", "").lstrip(":")
        if name:
            try:
                return ZoneInfo(name)
            except (KeyError, ValueError, OSError):  # a $TZ that is no IANA name (e.g. "UTC0"): the machine's file
                pass
        try:
            with open("/etc/localtime", "rb") as handle:
                return ZoneInfo.from_file(handle)
        except (OSError, ValueError):
            return timezone.utc


@dataclass(frozen=True)
class Check:
    """`check:`. concurrency: the gateways talked to at once. A check reads them on one thread (adapters/poller.py),
    so hundreds at once cost sockets, not threads; cleanup and restore give each host under way a thread, so they
    take at most THREADS of them at once."""

    concurrency: int = 512

    THREADS = 64  # a cleanup's few writes a host need no more: a thread each costs its stack

    @property
    def threads(self) -> int:
        return min(self.concurrency, self.THREADS)


@dataclass(frozen=True)
class Attribution:
    """`attribution:`, how often a check lists rows to split a host's sessions by agent and kind (at warning and
    above: every check), and how many agents per host the metrics and the report name (the rest are `other`)."""

    every: float = 300.0
    top: int = 5


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
    history: HistorySettings = HistorySettings()
    maintenance: tuple[Maintenance, ...] = ()
    check: Check = Check()
    attribution: Attribution = Attribution()
    serve: Serve = Serve()
    shard: tuple[int, int] | None = None  # --shard K/N: only the hosts whose name hashes to K of N
    state_dir: Path = Path(DEFAULT_STATE_DIR).expanduser()
    path: str | None = None  # the file it came from; None for the no-file default
    warnings: tuple[str, ...] = ()

    def select(self, names: str | None) -> list[Host]:
        """The hosts named in a comma-separated --hosts value, or all of them; of those, the shard's."""
        hosts = _named("--hosts", names, self.hosts)
        return [h for h in hosts if in_shard(h.name, *self.shard)] if self.shard else hosts

    def pools_within(self, hosts) -> list[Pool]:
        """The pools whose hosts are all among `hosts`: a pool is judged only when all of it was asked for."""
        names = {host.name for host in hosts}
        return [pool for pool in self.pools.values() if set(pool.hosts) <= names]

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


def listen_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:9877' or '[::1]:9877' -> (host, port). ValueError if not."""
    parts = split_url(f"http://{text}", ("http",))
    if parts is None or parts.port is None or parts.path or parts.query or parts.username:
        raise ValueError(f"{text!r} is not an address to listen on: write HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return parts.hostname, parts.port


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
