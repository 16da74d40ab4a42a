"""Load and validate the YAML config into the frozen settings (guardian.settings.model).

Every problem is a ConfigError naming the file, the line and the key; the CLI prints it as one
sentence and exits 2 before anything else is done. Tokens are resolved here (env var or file,
never argv) so a missing secret is caught before any gateway is contacted.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from guardian.settings.levels import LEVELS
from guardian.settings.model import (
    ALERT_KINDS,
    CLEANUP_MODES,
    COUNTABLE,
    DEFAULT_CONFIG_PATH,
    DEFAULT_COUNT,
    DEFAULT_STATE_DIR,
    DEFAULT_URL,
    MIN_SPAN,
    PRIORITIES,
    PROTECTED,
    Alerts,
    Attribution,
    Channel,
    Check,
    Cleanup,
    Config,
    ConfigError,
    HistorySettings,
    Host,
    Maintenance,
    Pool,
    Protect,
    Scope,
    Serve,
    is_loopback,
    listen_address,
    split_url,
)
from guardian.settings.reader import Section, list_items, readable_file, secret, yaml_load
from guardian.settings.secrets import Secret
from guardian.settings.units import duration_text, kind_of, parse_when

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _host(name: str, section: Section, warnings: list, token_files: dict[str, str]) -> Host:
    if not NAME_RE.match(name):
        section.fail(None, "host names may use letters, digits, '.', '_' and '-' (at most 64)")
    url = section.text("url", required=True)
    parts = split_url(url, ("ws", "wss"))
    if parts is None:
        section.fail("url", f"must be a ws:// or wss:// address with a host, got {url!r}")
    insecure = section.boolean("insecure", False)
    loopback = is_loopback(parts.hostname)
    if parts.scheme == "ws" and not loopback and not insecure:
        section.fail("url", "plain ws:// to a non-loopback address would send the token unencrypted: "
                            "use wss://, or set insecure: true on this host if the network is trusted")
    limit = section.integer("limit", required=True)
    if limit <= 0:
        section.fail("limit", f"must be a positive number of sessions, got {limit}")
    device = section.get("device", None)
    if device is not None and not isinstance(device, bool):
        section.fail("device", f"must be true or false, got {kind_of(device)}")
    ca_file = readable_file(section, "ca_file")
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
        name=name,
        url=url.rstrip("/"),
        limit=limit,
        token=secret(section, "token", "tokens", warnings, files=token_files),
        insecure=insecure,
        device=(not loopback) if device is None else device,
        ca_file=ca_file,
        fingerprint=fingerprint,
        timeout=timeout,
        count=_count(section),
    )
    section.done()
    return host


def _count(section: Section) -> tuple[str, ...]:
    """hosts.<name>.count: which sessions the host's usage counts (README "What usage counts")."""
    if not section.has("count"):
        return DEFAULT_COUNT
    count = section.names("count")
    unknown = [name for name in count if name not in COUNTABLE]
    if unknown:
        section.fail("count", f"names {', '.join(map(repr, unknown))}; it may name {', '.join(COUNTABLE)}")
    if "listed" not in count:
        section.fail("count", "must name listed: the sessions cleanup can see and close are always counted")
    return tuple(name for name in COUNTABLE if name in count)


def _alerts(section: Section, warnings: list, host_names) -> Alerts:
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
        peak_notice=section.duration("peak_notice", None, can_be_off=True),
    )
    if alerts.peak_notice and alerts.peak_notice > alerts.cooldown["peak"]:
        section.fail("peak_notice", f"must be at most cooldown.peak ({duration_text(alerts.cooldown['peak'])}), "
                                    "else one peak would be told twice")
    section.done()
    return alerts


def _margin(section: Section, thresholds: dict, default: float) -> float:
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


def _channels(section: Section, warnings: list, host_names, resolved: bool) -> tuple[Channel, ...]:
    items = list(list_items(section, "channels"))
    if not items:
        return ()
    from guardian.settings.channels import CHANNEL_TYPES, READERS  # only with channels: their classes cost start-up

    channels = []
    for index, ch in enumerate(items):
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
        channels.append(READERS[kind](ch, common, warnings))
        ch.done()
    return tuple(channels)


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


def _maintenance(root: Section, hosts: dict, pools: dict, channels) -> tuple[Maintenance, ...]:
    from zoneinfo import ZoneInfo  # only with windows: zone data costs start-up

    windows = []
    for index, entry in enumerate(list_items(root, "maintenance")):
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


def _cleanup(section: Section) -> Cleanup:
    defaults = Cleanup()
    protect = section.section("protect")
    protected_agents = protect.names("agents")
    keys, labels = protect.names("keys"), protect.names("labels")
    protect.done()
    agents = section.section("agents")
    # only the agents that set their own: the others follow cleanup.idle_after (and --idle-after), normal priority
    agent_idle, agent_priority, agent_limit = {}, {}, {}
    for agent_id in list(agents.mapping):
        per_agent = agents.section(agent_id)
        own = per_agent.duration("idle_after", None)
        if own is not None:
            agent_idle[agent_id] = own
        priority = per_agent.text("priority", "normal")
        if priority not in PRIORITIES:
            per_agent.fail("priority", f"must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        listed = agent_id.casefold() in map(str.casefold, protected_agents)
        if listed and priority != PROTECTED and per_agent.has("priority"):
            per_agent.fail("priority", f"is {priority}, but protect.agents lists {agent_id!r}: "
                                       "say it once (priority: protected is the same as protect.agents)")
        if priority == PROTECTED and not listed:
            protected_agents += (agent_id,)  # one rule: the planner reads protect.agents only
        elif priority in ("low", "high"):
            agent_priority[agent_id.casefold()] = priority
        if per_agent.has("limit"):
            agent_limit[agent_id] = per_agent.integer("limit", minimum=1)
        per_agent.done()
    cleanup = Cleanup(
        idle_after=section.duration("idle_after", defaults.idle_after),
        max_per_run=section.integer("max_per_run", defaults.max_per_run, minimum=1),
        reserve=section.integer("reserve", defaults.reserve, minimum=0),
        on_critical=section.boolean("on_critical", False),
        protect=Protect(agents=protected_agents, keys=keys, labels=labels),
        agent_idle_after=agent_idle,
        mode=section.text("mode", defaults.mode),
        purge_after=section.duration("purge_after", defaults.purge_after),
        agent_priority=agent_priority,
        agent_limit=agent_limit,
    )
    if cleanup.mode not in CLEANUP_MODES:
        section.fail("mode", f"must be one of {', '.join(CLEANUP_MODES)}, got {cleanup.mode!r}")
    section.done()
    return cleanup


def _history(section: Section) -> HistorySettings:
    defaults = HistorySettings()
    history = HistorySettings(retention=section.duration("retention", defaults.retention),
                              five_minute=section.duration("five_minute", defaults.five_minute),
                              hourly=section.duration("hourly", defaults.hourly),
                              forecast_window=section.duration("forecast_window", defaults.forecast_window),
                              tz=section.text("tz"))
    if history.forecast_window < MIN_SPAN:
        section.fail(
            "forecast_window", f"must be at least {MIN_SPAN:.0f}s: a forecast needs samples spanning that long"
        )
    if history.tz is not None and not _is_zone(history.tz):
        section.fail("tz", f"{history.tz!r} is not an IANA time zone (e.g. Europe/Paris, UTC)")
    section.done()
    return history


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, or no zone name at all ("../x")
        return False
    return True


def _check(section: Section) -> Check:
    check = Check(concurrency=section.integer("concurrency", Check().concurrency, minimum=1))
    section.done()
    return check


def _attribution(section: Section) -> Attribution:
    defaults = Attribution()
    attribution = Attribution(every=section.duration("every", defaults.every),
                              top=section.integer("top", defaults.top, minimum=1))
    section.done()
    return attribution


def _serve(section: Section, warnings: list) -> Serve:
    defaults = Serve()
    listen = section.text("listen", defaults.listen)
    try:
        host, _ = listen_address(listen)
    except ValueError as exc:
        section.fail("listen", str(exc))
    serve = Serve(listen=listen, check_every=section.duration("check_every", defaults.check_every),
                  cleanup_every=section.duration("cleanup_every", defaults.cleanup_every),
                  token=secret(section, "token", "tokens", warnings), insecure=section.boolean("insecure", False))
    if not is_loopback(host) and serve.token is None and not serve.insecure:
        section.fail("listen", f"{listen} is not loopback: anyone who can reach it would read the fleet's state; "
                               "set token_env or token_file, or insecure: true if the network is trusted")
    section.done()
    return serve


def parse(text: str, path: str, env_state_dir: str | None = None) -> Config:
    """Validate the text of a config file. Raises ConfigError."""
    data = yaml_load(text)
    root = Section(path, "", data, 1)
    warnings: list[str] = []
    hosts_section = root.section("hosts")
    if not hosts_section.mapping:
        root.fail("hosts", "is required: name at least one gateway (see the README)")
    hosts, token_files = {}, {}  # a fleet's hosts often share one token file: read once
    for name in list(hosts_section.mapping):
        hosts[name] = _host(name, hosts_section.section(name), warnings, token_files)
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
    attribution = _attribution(root.section("attribution"))
    state_dir = root.text("state_dir") or env_state_dir or DEFAULT_STATE_DIR
    root.done()
    return Config(hosts=hosts, pools=pools, alerts=alerts, cleanup=cleanup, history=history, maintenance=maintenance,
                  check=check, attribution=attribution, serve=serve, state_dir=Path(state_dir).expanduser(), path=path,
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
