"""`guardian doctor`: for each host, is it fully usable, and if not, the command that fixes it."""

from __future__ import annotations

from guardian.adapters import gateway
from guardian.adapters.identity import IdentityStore
from guardian.core.diagnosis import Diagnosis
from guardian.settings.model import ARCHIVE, Config, Host

NEEDED = {"check": gateway.READ, "cleanup": gateway.ADMIN}


def tls_description(host: Host) -> str:
    if host.url.startswith("ws://"):
        return "none: plain ws:// on loopback" if host.loopback else "none: plain ws:// (insecure: true)"
    if host.ca_file:
        return f"verified against {host.ca_file}" + (" and pinned fingerprint" if host.fingerprint else "")
    if host.fingerprint:
        return "pinned sha256 fingerprint"
    return "verified against the system's CAs"


def diagnose(host: Host, identities: IdentityStore, mode: str) -> Diagnosis:
    result = Diagnosis(host=host.name, url=host.url, tls=tls_description(host),
                       token=host.token.source if host.token else "none (device token only)")
    if host.device:
        identity = identities.identity()
        stored = identities.device_token(host.name, identity.device_id)
        result.device = (
            f"{identity.device_id[:16]}... ({'paired, device token stored' if stored else 'no device token yet'})"
        )
    try:
        with gateway.connect(host, [gateway.READ, gateway.ADMIN], identities) as connection:
            hello = connection.hello
            _what_it_counts(result, connection, host)
    except gateway.GatewayError as exc:
        hello = exc.details.get("hello") if exc.code == "MISSING_SCOPE" else None
        if hello is None:
            result.problems.append(exc.message)
            return result
    result.reachable = True
    result.server_version, result.protocol, result.scopes = hello.server_version, hello.protocol, hello.scopes
    result.cleanup_mode = _cleanup_mode(mode, hello)
    for command, scope in NEEDED.items():
        if scope not in hello.scopes and gateway.ADMIN not in hello.scopes:
            result.problems.append(_scope_fix(host, command, scope, hello.scopes))
    return result


def _cleanup_mode(configured: str, hello: gateway.Hello) -> str:
    if configured != ARCHIVE:
        return f"{configured} (cleanup.mode)"
    return ARCHIVE if hello.can_archive else f"delete ({hello.server_version} has no archive)"
def _what_it_counts(result: Diagnosis, connection, host: Host) -> None:
    """The agents the gateway has, what the host's usage counts, and what of that cleanup cannot reach."""
    from guardian.commands.check import count_steps  # one way to count, check's

    try:
        counts = gateway.drive(count_steps(connection, host, 7200.0))
    except gateway.GatewayError as exc:
        result.problems.append(f"cannot count its sessions: {exc.message}")
        return
    result.agents, result.counted, result.counts = counts.agents or {}, list(host.count), counts.classes
    unreachable = {"cron-run": "cron runs are never listed, so cleanup cannot close them (OpenClaw prunes them "
                               "itself after cron.sessionRetention, 24h by default)",
                   "system": "the global and unknown rows are the gateway's own; cleanup does not list or close them",
                   "archived": "archived sessions wait for their purge; cleanup does not close them again"}
    result.notes += [f"counted: {note}" for kind, note in unreachable.items() if kind in host.count]
    if counts.agents is None:
        result.notes.append("status gives no sessions per agent here: holders are counted from the rows alone")


def _scope_fix(host: Host, command: str, scope: str, granted: list[str]) -> str:
    if host.device:
        fix = (f"approve the guardian's scope request on {host.name}: openclaw devices list, "
               "then openclaw devices approve <id>")
    elif not granted:
        fix = (f"a gateway clears the scopes of clients without a paired device unless they connect over loopback: "
               f"set `device: true` for {host.name} and run `guardian doctor --hosts {host.name}` to request pairing")
    else:
        fix = f"use the gateway's own token (gateway.auth.token on {host.name}), which carries every operator scope"
    return f"{scope} is missing, so `guardian {command}` cannot work; {fix}"


def run(config: Config, host_names: str | None) -> tuple[list[Diagnosis], list[str]]:
    hosts = config.select(host_names)
    identities = IdentityStore(config.state_dir)
    results = []
    diagnoses = gateway.concurrently(lambda h: diagnose(h, identities, config.cleanup.mode), hosts)
    for host, result in zip(hosts, diagnoses):
        if isinstance(result, Exception):
            result = Diagnosis(host=host.name, url=host.url, problems=[f"unexpected {type(result).__name__}: {result}"])
        results.append(result)
    return results, identities.warnings


