"""`guardian restore`: un-archive what a cleanup archived and has not purged, key by key, each an audit record.

load (the audit log's archives, the ledger) -> observe (each host's archived and active sessions) -> decide
(guardian.core.planner.restore_verdict) -> act (sessions.patchMany {archived: false, expectedSessionId}: a key
whose session id changed is refused by the gateway too) -> record (intent before, outcome after, the ledger).
It holds the cleanup lock: a restore and a cleanup's purge never cross.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from guardian.adapters import audit as audit_log
from guardian.adapters import gateway
from guardian.adapters.archive_ledger import ArchiveLedger
from guardian.adapters.audit import AuditLog
from guardian.adapters.identity import IdentityStore
from guardian.commands.cleanup import ARCHIVE_BATCH, listing, lock
from guardian.core.planner import (
    REFUSED_CHANGED,
    RESTORED,
    Closing,
    RestoreResult,
    restore_selection,
    restore_verdict,
)
from guardian.settings.model import Config, Host


@dataclass
class HostRestore:
    host: Host
    results: list[RestoreResult] = field(default_factory=list)
    error: str | None = None
    unreachable: bool = False
    fallback: str | None = None  # why nothing could be archived there ("2026.4.29 has no archive")

    def count(self, result: str) -> int:
        return sum(1 for r in self.results if r.result == result)


@dataclass(frozen=True)
class Selection:
    """What to restore: exactly one of these is set (the CLI sees to it)."""

    last: bool = False
    run_id: str | None = None
    keys: tuple[str, ...] = ()
    since: float | None = None  # epoch seconds


def closings_and_removals(records: list[dict]) -> tuple[list[Closing], dict]:
    """From the audit records: every session a cleanup closed (archived or deleted), and (host, key) -> "purge" |
    "delete" for those a cleanup removed for good after they were last archived (a record from before archive mode,
    without `action`, is a delete)."""
    closings, removed = [], {}
    for when, record in audit_log.events(records, "outcome"):
        if record.get("dry_run") or record.get("command") == "restore":
            continue
        where = (str(record.get("host")), str(record.get("key")))
        action, result = record.get("action", "delete"), record.get("result")
        if (action, result) in (("archive", "archived"), ("delete", "closed")):
            closings.append(Closing(when, str(record.get("run_id")), *where, record.get("session_id")))
        if (action, result) == ("archive", "archived"):
            removed.pop(where, None)
        elif (action, result) in (("purge", "purged"), ("delete", "closed")):
            removed[where] = action
    return closings, removed


def run(config: Config, hosts: list[Host], selection: Selection, dry_run: bool, audit: AuditLog,
        clock=time.time) -> list[HostRestore]:
    with lock(config.state_dir), audit.kept_open():
        closings, removed = closings_and_removals(audit_log.read(config.state_dir))
        wanted = restore_selection(closings, [h.name for h in hosts], last=selection.last, run_id=selection.run_id,
                                   keys=selection.keys, since=selection.since)
        ours = {(c.host, c.key) for c in closings}
        ledger = ArchiveLedger(config.state_dir)
        identities = IdentityStore(config.state_dir)
        asked = [h for h in hosts if any(host == h.name for host, _ in wanted)]

        def restore(host: Host) -> HostRestore:
            keys = [key for name, key in wanted if name == host.name]
            return restore_host(host, keys, dry_run, identities, audit, ledger, removed, ours, clock)

        results = gateway.concurrently(restore, asked, config.check.threads)
    reports = []
    for host, result in zip(asked, results):
        if not isinstance(result, HostRestore):
            message = result.message if isinstance(result, gateway.GatewayError) else str(result)
            audit.write(clock(), "host failed", host=host.name, dry_run=dry_run, error=message)
            result = HostRestore(host, error=message, unreachable=isinstance(result, gateway.GatewayError))
        reports.append(result)
    return reports


def restore_host(host: Host, keys: list[str], dry_run: bool, identities: IdentityStore, audit: AuditLog,
                 ledger: ArchiveLedger, removed: dict, ours: set, clock) -> HostRestore:
    report = HostRestore(host)
    entries = ledger.host(host.name)
    with gateway.connect(host, [gateway.READ, gateway.ADMIN], identities) as connection:
        can_archive = connection.hello.can_archive
        report.fallback = None if can_archive else f"{connection.hello.server_version} has no archive"
        active = {row["key"]: row for row in listing(connection)[0]}
        archived = {row["key"]: row for row in listing(connection, archived=True)[0]} if can_archive else {}
        sending: list[RestoreResult] = []
        for key in keys:
            entry = entries.get(key)
            result, why = restore_verdict(entry, archived.get(key), active.get(key), removed.get((host.name, key)),
                                          (host.name, key) in ours)
            session_id = entry["session_id"] if entry else (archived.get(key) or active.get(key) or {}).get("sessionId")
            item = RestoreResult(host.name, key, session_id, result or "planned", why)
            (sending if result is None else report.results).append(item)
        record = _records(clock, host, dry_run)
        if dry_run:
            audit.write_all(record("planned", [*report.results, *sending]))
            report.results += sending
            return report
        audit.write_all(record("outcome", report.results) + record("intent", sending))
        for start in range(0, len(sending), ARCHIVE_BATCH):
            batch = sending[start:start + ARCHIVE_BATCH]
            try:
                _restore(connection, batch)
            except gateway.GatewayError as exc:  # the connection is gone: these may or may not be restored
                for item in sending[start:]:
                    item.result, item.error = "unknown", exc.message
                report.error = exc.message
            audit.write_all(record("outcome", batch if report.error is None else sending[start:]))
            if report.error:
                break
        report.results += sending
    # what is settled is no longer the guardian's to purge: restored, active, gone, or another session now
    settled = [r.key for r in report.results if r.key in entries and r.result not in ("failed", "unknown")]
    ledger.drop(host.name, settled)
    return report


def _restore(connection, batch: list[RestoreResult]) -> None:
    """One sessions.patchMany restoring `batch`; each item's result set from its own outcome."""
    targets = [{"key": item.key, "expectedSessionId": item.session_id} for item in batch]
    answer = connection.call_many([("sessions.patchMany", {"targets": targets, "patch": {"archived": False}})])[0]
    per_target = answer.get("outcomes") if isinstance(answer, dict) else None
    for index, item in enumerate(batch):
        if isinstance(answer, gateway.GatewayError):
            item.result, item.error = "failed", f"{answer.code}: {answer.message}"
        elif not isinstance(per_target, list) or len(per_target) != len(batch):
            item.result, item.error = "unknown", "sessions.patchMany answered without one outcome per target"
        elif isinstance(per_target[index], dict) and per_target[index].get("ok") is True:
            item.result, item.error = RESTORED, None
        else:
            target = per_target[index]
            error = gateway.GatewayError.from_frame(target.get("error") if isinstance(target, dict) else None)
            if error.details.get("reason") == "session-changed":
                item.result, item.error = REFUSED_CHANGED, None
            else:
                item.result, item.error = "failed", f"{error.code}: {error.message}"


def _records(clock, host: Host, dry_run: bool):
    def records(event: str, items: list[RestoreResult]) -> list:
        return [(clock(), event, {"host": host.name, "dry_run": dry_run, "action": "restore", "key": item.key,
                                  "session_id": item.session_id,
                                  **({} if event == "intent" else {"result": item.result, "error": item.error})})
                for item in items]

    return records


def exit_code(reports: list[HostRestore], dry_run: bool) -> int:
    """0 done (or dry run), 1 a restore failed or was refused, 3 a host unreachable/unauthorised."""
    if any(r.unreachable for r in reports):
        return 3
    if dry_run:
        return 0
    if any(r.error or r.count("failed") or r.count("unknown") or r.count(REFUSED_CHANGED) for r in reports):
        return 1
    return 0
