"""`guardian cleanup`: close sessions idle for hours, never a live one, with an exact audit trail.

Which sessions to close is guardian.core.planner's (pure). This is the thin shell around it: purge what the
guardian archived `purge_after` ago, list every session, then close the chosen ones: archive them in place
(cleanup.mode archive, where the gateway can) right after re-reading them, since the archive patch has no guard
against a session that woke up since the listing; or delete them with the gateway's own guard. Intent and outcome
of each action go to the audit log before moving on; what was archived goes to the archive ledger.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

from guardian.adapters import gateway
from guardian.adapters.archive_ledger import ArchiveLedger
from guardian.adapters.audit import AuditLog
from guardian.adapters.files import LockBusy, hold_lock
from guardian.adapters.identity import IdentityStore
from guardian.adapters.state import StateError
from guardian.core.planner import (
    CLEANED,
    HELD,
    NOT_ATTEMPTED,
    NOT_IDLE,
    PARTLY_CLEANED,
    PLANNED,
    HostCleanup,
    Outcome,
    Verdict,
    agent_of,
    changed_since_plan,
    cleanup_mode,
    clock_skew_refusal,
    flagged,
    plan,
    purge_due,
    purge_hold,
)
from guardian.core.quiet import Quiet, cleanup_held
from guardian.core.records import Hold
from guardian.settings.model import ARCHIVE, Cleanup, Config, Host

PAGE = 1000  # rows per sessions.list page: large pages are far cheaper than many small ones
DELETE_WINDOW = 1  # deletes in flight at once; the gateway serialises them (see docs/benchmarks.md)
# targets of one sessions.patchMany (the gateway takes at most 100): 200 archives take ~0.5 s in batches of 50 or
# 100, ~0.85 s in batches of 10, ~2.4 s one patch at a time (docs/gateway-measurements.md section 4). Each batch is
# re-read right before it is sent, and the gateway applies it in order, so the live-session guard's window grows
# with the batch: 50 halves 100's at the same gateway cost, for one more re-read (~60 ms a 1,000-row page) per 100.
ARCHIVE_BATCH = 50


def list_sessions(connection) -> list[dict]:
    """Every non-archived session, all pages (one call on releases without paging)."""
    return listing(connection)[0]


def listing(connection, archived: bool = False) -> tuple[list[dict], int | None]:
    """Every non-archived session (or, with `archived`, every archived one: 2026.9 only) once, and the gateway's
    clock (`ts`, epoch ms) when it listed them.

    A key on two pages (the store moved between the calls) counts once, as the later page shows it.
    """
    by_key: dict[str, dict] = {}
    offset, clock = 0, None
    which = {"archived": True} if archived else {}
    while True:
        # the first page without `offset`: 2026.4 rejects the field (it has no paging at all)
        page = connection.call("sessions.list", {"limit": PAGE, **which, **({"offset": offset} if offset else {})})
        clock = page.get("ts") if clock is None else clock
        batch = _sessions_of(connection, page)
        if "hasMore" not in page and len(batch) >= PAGE:  # 2026.4: no paging, and `limit` may have cut the list
            batch, by_key = _sessions_of(connection, connection.call("sessions.list", {})), {}
        by_key.update((r["key"], r) for r in batch if isinstance(r, dict) and isinstance(r.get("key"), str))
        if not page.get("hasMore") or not batch:
            return [r for r in by_key.values() if flagged(r, "archived") == archived], clock
        next_offset = page.get("nextOffset") if type(page.get("nextOffset")) is int else offset + len(batch)
        if next_offset <= offset:
            raise gateway.GatewayError("PROTOCOL", f"{connection.host.name}: sessions.list paging did not advance "
                                                   f"(nextOffset {next_offset} after {offset}); nothing was closed")
        offset = next_offset


def _sessions_of(connection, page: dict) -> list:
    batch = page.get("sessions")
    if not isinstance(batch, list):
        message = f"{connection.host.name}: sessions.list answered without a sessions list"
        raise gateway.GatewayError("PROTOCOL", message)
    return batch


def count_sessions(connection) -> int | None:
    return gateway.total_count(connection.call("sessions.list", {"limit": 1}))


class Deleter:
    """Deletes with the expected* guard; on releases that reject those fields, re-reads the row first."""

    def __init__(self, connection):
        self.connection = connection
        self.guarded = True  # learnt once per connection

    def delete(self, decisions: list[Verdict], while_waiting=lambda: None) -> list[Outcome]:
        """One outcome per decision, in order; a session changed since the listing is never closed.

        `while_waiting` runs once, while the gateway works on the deletes (see Connection.call_many).
        """
        if not self.guarded:
            while_waiting()  # the re-read comes first: nothing to overlap with
            return self._delete_after_re_read(decisions)
        answers = self.connection.call_many([("sessions.delete", self._params(d)) for d in decisions], while_waiting)
        if any(_rejects_guard(a) for a in answers):  # an older release: nothing was deleted
            self.guarded = False
            return self._delete_after_re_read(decisions)
        return [_outcome(d, a) for d, a in zip(decisions, answers)]

    def _delete_after_re_read(self, decisions: list[Verdict]) -> list[Outcome]:
        current = {r["key"]: r for r in list_sessions(self.connection)}
        outcomes: dict[str, Outcome] = {}
        unchanged = []
        for d in decisions:
            row = current.get(d.key)
            if row is None:
                outcomes[d.key] = Outcome(d, "already gone")
            elif row.get("sessionId") != d.session_id or row.get("updatedAt") != d.updated_at:
                outcomes[d.key] = Outcome(d, "skipped: changed")
            else:
                unchanged.append(d)
        answers = (
            self.connection.call_many([("sessions.delete", {"key": d.key}) for d in unchanged]) if unchanged else []
        )
        outcomes.update({d.key: _outcome(d, a) for d, a in zip(unchanged, answers)})
        return [outcomes[d.key] for d in decisions]

    @staticmethod
    def _params(decision: Verdict) -> dict:
        params = {"key": decision.key}
        if decision.session_id:
            params["expectedSessionId"] = decision.session_id
        if isinstance(decision.updated_at, int):
            params["expectedSessionUpdatedAt"] = decision.updated_at
        return params


def _rejects_guard(answer) -> bool:
    return isinstance(answer, gateway.GatewayError) and "unexpected property 'expectedSession" in answer.message


def _outcome(decision: Verdict, answer) -> Outcome:
    if isinstance(answer, gateway.GatewayError):
        if answer.details.get("reason") == "session-changed" or "changed before deletion" in answer.message:
            return Outcome(decision, "skipped: changed")
        return Outcome(decision, "failed", f"{answer.code}: {answer.message}")
    return Outcome(decision, "closed" if answer.get("deleted") is True else "already gone")


def clean_host(host: Host, rules: Cleanup, now: float, dry_run: bool, identities: IdentityStore, audit: AuditLog,
               ledger: ArchiveLedger, clock=time.time) -> HostCleanup:
    result = HostCleanup(host)
    with gateway.connect(host, [gateway.READ, gateway.ADMIN], identities) as connection:
        can_archive = connection.hello.can_archive
        result.mode = cleanup_mode(rules.mode, can_archive)
        if rules.mode == ARCHIVE and not can_archive:
            result.fallback = f"{connection.hello.server_version} has no archive"
        if can_archive:  # purge needs archivedOnly, which came with archive
            result.purges, result.error = purge(connection, host, rules, now, dry_run, audit, ledger, clock)
            if result.error:
                return result
        rows, gateway_clock = listing(connection)
        result.before = len(rows)
        refusal = clock_skew_refusal(gateway_clock, now)
        if refusal:
            result.error = f"{host.name}: {refusal}"
            audit.write(clock(), "host refused", host=host.name, dry_run=dry_run, error=result.error)
            return result
        result.decisions = plan(rows, rules, now, connection.hello.main_session_key)
        chosen = [d for d in result.decisions if d.close]
        entry = functools.partial(_audit_entry, clock, host, dry_run, result.mode)
        # the kept records go out with the plan (dry run) or the first intents, in one write and one fsync
        kept = [entry("kept", d) for d in result.decisions if not d.close and d.reason != NOT_IDLE]
        if dry_run:
            result.outcomes = [Outcome(d, "planned") for d in chosen]
            audit.write_all(kept + [entry("planned", d) for d in chosen])
            result.after, result.status = result.before - len(chosen), PLANNED
            return result
        if result.mode == ARCHIVE:
            result.outcomes, result.error = archive_chosen(connection, chosen, kept, audit, entry, rules, ledger, clock)
        else:
            result.outcomes, result.error = delete_chosen(Deleter(connection), chosen, kept, audit, entry)
        result.status = CLEANED if all(o.settled for o in result.outcomes) else PARTLY_CLEANED
        if result.error:
            return result
        try:
            result.after = count_sessions(connection)
            if result.after is None:
                result.after = len(list_sessions(connection))
        except gateway.GatewayError as exc:  # every delete is done and on record; only the count is missing
            result.error = f"the sessions left could not be counted: {exc.message}"
    return result


def delete_chosen(
    deleter: Deleter, chosen: list[Verdict], kept: list, audit: AuditLog, entry
) -> tuple[list[Outcome], str | None]:
    """Delete the chosen sessions, DELETE_WINDOW at a time: one outcome for each (those after a stop: failed, not
    attempted), and the error that stopped them. Once a delete is sent, nothing raises: the caller reports the outcomes.

    Every intent is on disk (fsynced) before its request is sent: the first batch's with the kept
    records, each later batch's while the batch before it is in flight, so the fsync overlaps the
    gateway's work instead of adding to it. Each outcome is written before the next request is
    sent, so a crash of this process leaves an exact record, and reaches the disk with the next
    fsync: a crash of the machine can at most leave the intents of the last two batches saying
    "may or may not be gone".
    """
    batches = [chosen[start:start + DELETE_WINDOW] for start in range(0, len(chosen), DELETE_WINDOW)]
    audit.write_all(kept + [entry("intent", d) for d in (batches[0] if batches else [])])
    outcomes: list[Outcome] = []
    for index, batch in enumerate(batches):
        ahead = _IntentsAhead(audit, entry, batches[index + 1] if index + 1 < len(batches) else [])
        error = None
        try:
            answered = deleter.delete(batch, ahead.write)
        except gateway.GatewayError as exc:  # the connection is gone: these may or may not be closed
            answered, error = [Outcome(d, "unknown", exc.message) for d in batch], exc.message
        if ahead.failure:  # the next batch has no intent on disk: it is not sent
            error = error or str(ahead.failure)
        if error:
            answered += _not_attempted(chosen[len(outcomes) + len(answered):], error)
        outcomes += answered
        try:
            audit.write_all([entry("outcome", o.decision, result=o.result, error=o.error) for o in answered],
                            sync=error is not None or index + 1 == len(batches))
        except StateError as exc:  # nothing more is sent without a record; the report still has every outcome
            if error is None:
                error = str(exc)
                outcomes += _not_attempted(chosen[len(outcomes):], error)
        if error:
            return outcomes, error
    return outcomes, None


def purge(connection, host: Host, rules: Cleanup, now: float, dry_run: bool, audit: AuditLog, ledger: ArchiveLedger,
          clock) -> tuple[list[Outcome], str | None]:
    """Delete the sessions the guardian archived at least purge_after ago, if they are still archived under the same
    session id (`archivedOnly`, `expectedSessionId`: one restored or reused is refused and forgotten). Whoever else
    archived a session, it is not in the ledger and never purged. Nothing is purged from a ledger that was corrupt,
    nor a session the rules would keep were it not archived."""
    entries = ledger.host(host.name)
    if ledger.unusable:
        return [], None
    keys = purge_due(entries, now, rules.purge_after)
    # never delete what would be kept were it not archived: pinned or protected since, say (it stays in the ledger)
    rows = {row["key"]: row for row in listing(connection, archived=True)[0]} if keys else {}
    due = []
    for key in keys:
        hold = purge_hold(rows.get(key), rules, connection.hello.main_session_key)
        agent = agent_of(rows.get(key, {"key": key}))
        due.append(Verdict(key=key, session_id=entries[key]["session_id"], agent=agent, updated_at=None,
                           idle_seconds=now - entries[key]["archived_at"], close=hold is None,
                           reason=hold or "archived", priority=rules.priority_for(agent)))
    entry = functools.partial(_audit_entry, clock, host, dry_run, "purge")
    kept = [entry("kept", d) for d in due if not d.close]
    if dry_run:
        audit.write_all(kept)
        return [Outcome(d, "planned") for d in due if d.close], None
    outcomes, error = delete_chosen(Purger(connection), [d for d in due if d.close], kept, audit, entry)
    # a failed or unanswered purge stays in the ledger for the next run to try again
    ledger.drop(host.name, [o.decision.key for o in outcomes if o.settled and o.result != "failed"])
    return outcomes, error


class Purger:
    """Deletes archived sessions (the same interface as Deleter, for delete_chosen)."""

    def __init__(self, connection):
        self.connection = connection

    def delete(self, decisions: list[Verdict], while_waiting=lambda: None) -> list[Outcome]:
        # the transcript is kept, compressed, as a delete keeps it: a purge is the one step that cannot be undone
        calls = [("sessions.delete", {"key": d.key, "archivedOnly": True, "expectedSessionId": d.session_id})
                 for d in decisions]
        return [_purge_outcome(d, a) for d, a in zip(decisions, self.connection.call_many(calls, while_waiting))]


def _purge_outcome(decision: Verdict, answer) -> Outcome:
    if isinstance(answer, gateway.GatewayError) and "is not archived" in answer.message:
        return Outcome(decision, "kept: no longer archived")  # restored since (or never archived by this id)
    outcome = _outcome(decision, answer)
    return Outcome(decision, "purged", outcome.error) if outcome.result == "closed" else outcome


def archive_chosen(connection, chosen: list[Verdict], kept: list, audit: AuditLog, entry, rules: Cleanup,
                   ledger: ArchiveLedger, clock) -> tuple[list[Outcome], str | None]:
    """Archive the chosen sessions ARCHIVE_BATCH at a time, each batch right after re-reading every candidate: one
    whose row changed in any way since the plan is skipped (`skipped: changed`), never archived.

    Before a batch is sent, an intent for each of its keys (and the outcome of each skipped one) is on disk; after
    it, an outcome for each key, and what was archived is in the ledger (a crash between the two leaves a session
    archived and never purged: the safe side). Once a batch is sent nothing raises: the caller reports the outcomes.
    """
    main_key = connection.hello.main_session_key
    outcomes: list[Outcome] = []
    for start in range(0, len(chosen), ARCHIVE_BATCH):
        batch = chosen[start:start + ARCHIVE_BATCH]
        try:
            current = {row["key"]: row for row in list_sessions(connection)}
        except gateway.GatewayError as exc:
            error = f"the re-read before archiving failed: {exc.message}"
            left = _not_attempted(chosen[start:], error)
            audit.write_all(kept + _outcome_records(entry, left))
            return outcomes + left, error
        why_not = {d.key: changed_since_plan(d, current.get(d.key), rules, main_key) for d in batch}
        skipped = [Outcome(d, why_not[d.key]) for d in batch if why_not[d.key]]
        sending = [d for d in batch if not why_not[d.key]]
        try:
            audit.write_all(kept + [entry("intent", d) for d in batch] + _outcome_records(entry, skipped))
        except StateError as exc:  # no intent on disk: this batch is not sent
            if not outcomes:
                raise  # nothing done yet: the host fails with the audit log's sentence
            return outcomes + _not_attempted(chosen[start:], str(exc)), str(exc)
        kept = []
        error = None
        try:
            answered = _archive(connection, sending)
        except gateway.GatewayError as exc:  # the connection is gone: these may or may not be archived
            answered, error = [Outcome(d, "unknown", exc.message) for d in sending], exc.message
        outcomes += skipped + answered
        try:
            audit.write_all(_outcome_records(entry, answered))
            archived_at = clock()
            ledger.add(connection.host.name, {o.decision.key: {"session_id": o.decision.session_id,
                                                               "archived_at": archived_at, "run_id": audit.run_id}
                                              for o in answered if o.result == "archived"})
        except StateError as exc:  # nothing more is sent without a record
            error = error or str(exc)
        if error:
            return outcomes + _not_attempted(chosen[start + len(batch):], error), error
    audit.write_all(kept)  # nothing was chosen: the kept records alone
    return outcomes, None


def _outcome_records(entry, outcomes: list[Outcome]) -> list:
    return [entry("outcome", o.decision, result=o.result, error=o.error) for o in outcomes]


def _archive(connection, decisions: list[Verdict]) -> list[Outcome]:
    """One sessions.patchMany archiving `decisions`: one outcome each, in order (the gateway's are per target)."""
    if not decisions:
        return []
    targets = [{"key": d.key, "expectedSessionId": d.session_id} for d in decisions]
    answer = connection.call_many([("sessions.patchMany", {"targets": targets, "patch": {"archived": True}})])[0]
    if isinstance(answer, gateway.GatewayError):  # the batch was refused whole: nothing archived
        return [Outcome(d, "failed", f"{answer.code}: {answer.message}") for d in decisions]
    per_target = answer.get("outcomes")
    if not isinstance(per_target, list) or len(per_target) != len(decisions):
        message = "sessions.patchMany answered without one outcome per target"
        return [Outcome(d, "unknown", message) for d in decisions]
    return [_archive_outcome(d, target) for d, target in zip(decisions, per_target)]


def _archive_outcome(decision: Verdict, target) -> Outcome:
    if isinstance(target, dict) and target.get("ok") is True:
        return Outcome(decision, "archived")
    error = gateway.GatewayError.from_frame(target.get("error") if isinstance(target, dict) else None)
    if error.details.get("reason") == "session-changed":
        return Outcome(decision, "skipped: changed")
    return Outcome(decision, "failed", f"{error.code}: {error.message}")


def _not_attempted(decisions: list[Verdict], error: str) -> list[Outcome]:
    return [Outcome(d, "failed", NOT_ATTEMPTED + error) for d in decisions]


class _IntentsAhead:
    """The intents of the next batch, written while the current one is in flight (never raises there)."""

    def __init__(self, audit: AuditLog, entry, batch: list[Verdict]):
        self.audit, self.entry, self.batch = audit, entry, batch
        self.failure: StateError | None = None

    def write(self) -> None:
        if self.failure is None and self.batch:
            try:
                self.audit.write_all([self.entry("intent", d) for d in self.batch])
            except StateError as exc:
                self.failure = exc


def _audit_entry(clock, host: Host, dry_run: bool, action: str, event: str, decision: Verdict,
                 **outcome) -> tuple[float, str, dict]:
    """An audit record (time, event, fields) of one decision, timed now, written later by write_all.
    `action`: archive, delete or purge."""
    return clock(), event, {"host": host.name, "dry_run": dry_run, "action": action, **outcome, **_fields(decision)}


def _fields(decision: Verdict) -> dict:
    return {"key": decision.key, "session_id": decision.session_id, "agent": decision.agent,
            "idle_seconds": None if decision.idle_seconds is None else round(decision.idle_seconds),
            "decision": "close" if decision.close else "keep", "reason": decision.reason,
            "priority": decision.priority, "order": decision.order}  # why it went when it did


class CleanupBusy(Exception):
    """Another cleanup holds the lock."""


def lock(state_dir):
    """The cleanup lock, taken without waiting: a second cleanup exits at once. Released on close."""
    try:
        fd = hold_lock(Path(state_dir) / "cleanup.lock", wait=0)
    except OSError as exc:
        raise StateError(f"cannot use the state dir {state_dir} ({exc.strerror}); nothing was closed") from None
    except LockBusy:
        raise CleanupBusy(
            f"another guardian cleanup is running (lock {state_dir}/cleanup.lock); this one did nothing"
        ) from None
    return os.fdopen(fd)


def run(config: Config, hosts: list[Host], rules: Cleanup, now: float, dry_run: bool, audit: AuditLog,
        clock=time.time, warnings: list | None = None) -> list[HostCleanup]:
    """Clean every host at once; `clock` times each audit record (tests pass a moved one). What the archive ledger
    warns of (a corrupt file moved aside) is added to `warnings`."""
    identities = IdentityStore(config.state_dir)
    quiet = Quiet(windows=tuple(config.maintenance))

    def clean(host: Host) -> HostCleanup:
        hold = cleanup_held(quiet, host.name, now)
        if hold is not None:
            return held(host, hold, dry_run, audit, clock)
        return clean_host(host, rules, now, dry_run, identities, audit, ledger, clock)

    with lock(config.state_dir), audit.kept_open():
        ledger = ArchiveLedger(config.state_dir)
        if not dry_run:
            ledger.set_aside_corrupt()
        results = gateway.concurrently(clean, hosts, config.check.threads)
    if warnings is not None:
        warnings += ledger.warnings
    reports = []
    for host, result in zip(hosts, results):
        if isinstance(result, HostCleanup):
            reports.append(result)
            continue
        if isinstance(result, gateway.GatewayError):
            message = result.message
        elif isinstance(result, StateError):  # the audit log failed mid-run: what it stopped is recorded
            message = str(result)
        else:
            message = f"unexpected {type(result).__name__}: {result}"
        unreachable = isinstance(result, gateway.GatewayError)
        audit.write(clock(), "host failed", host=host.name, dry_run=dry_run, error=message)
        reports.append(HostCleanup(host, error=message, unreachable=unreachable))
    return reports


def held(host: Host, hold: Hold, dry_run: bool, audit: AuditLog, clock) -> HostCleanup:
    """A host a maintenance window keeps cleanup off: not even listed, and on record with the window."""
    audit.write(clock(), "host held", host=host.name, dry_run=dry_run, held_by=hold.kind, id=hold.id,
                until=hold.until, why=hold.text)
    return HostCleanup(host, status=HELD, held=hold)


def exit_code(reports: list[HostCleanup], reserve: int, dry_run: bool) -> int:
    """0 done (or dry run), 1 a delete failed or the reserve is not met, 3 a host unreachable/unauthorised."""
    if any(r.unreachable for r in reports):
        return 3
    if dry_run:
        return 0
    if any(r.failed or r.error for r in reports):
        return 1
    if any(r.after is not None and r.host.limit - r.after < reserve for r in reports):
        return 1
    return 0
