"""`guardian cleanup`: close sessions idle for hours, never a live one, with an exact audit trail.

Which sessions to close is guardian.core.planner's (pure). This is the thin shell around it: list
every session, delete the chosen ones with the gateway's own guard against a session that woke up
since the listing, and record intent and outcome of each delete in the audit log before moving on.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

from guardian.adapters import gateway
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
    clock_skew_refusal,
    flagged,
    plan,
)
from guardian.core.quiet import Quiet, cleanup_held
from guardian.core.records import Hold
from guardian.settings.model import Cleanup, Config, Host

PAGE = 1000  # rows per sessions.list page: large pages are far cheaper than many small ones
DELETE_WINDOW = 1  # deletes in flight at once; the gateway serialises them (see docs/benchmarks.md)



def list_sessions(connection) -> list[dict]:
    """Every non-archived session, all pages (one call on releases without paging)."""
    return listing(connection)[0]


def listing(connection) -> tuple[list[dict], int | None]:
    """Every non-archived session once, and the gateway's clock (`ts`, epoch ms) when it listed them.

    A key on two pages (the store moved between the calls) counts once, as the later page shows it.
    """
    by_key: dict[str, dict] = {}
    offset, clock = 0, None
    while True:
        # the first page without `offset`: 2026.4 rejects the field (it has no paging at all)
        page = connection.call("sessions.list", {"limit": PAGE, **({"offset": offset} if offset else {})})
        clock = page.get("ts") if clock is None else clock
        batch = _sessions_of(connection, page)
        if "hasMore" not in page and len(batch) >= PAGE:  # 2026.4: no paging, and `limit` may have cut the list
            batch, by_key = _sessions_of(connection, connection.call("sessions.list", {})), {}
        by_key.update((r["key"], r) for r in batch if isinstance(r, dict) and isinstance(r.get("key"), str))
        if not page.get("hasMore") or not batch:
            return [r for r in by_key.values() if not flagged(r, "archived")], clock
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
               clock=time.time) -> HostCleanup:
    result = HostCleanup(host)
    with gateway.connect(host, [gateway.READ, gateway.ADMIN], identities) as connection:
        rows, gateway_clock = listing(connection)
        result.before = len(rows)
        refusal = clock_skew_refusal(gateway_clock, now)
        if refusal:
            result.error = f"{host.name}: {refusal}"
            audit.write(clock(), "host refused", host=host.name, dry_run=dry_run, error=result.error)
            return result
        result.decisions = plan(rows, rules, now, connection.hello.main_session_key)
        chosen = [d for d in result.decisions if d.close]
        entry = functools.partial(_audit_entry, clock, host, dry_run)
        # the kept records go out with the plan (dry run) or the first intents, in one write and one fsync
        kept = [entry("kept", d) for d in result.decisions if not d.close and d.reason != NOT_IDLE]
        if dry_run:
            result.outcomes = [Outcome(d, "planned") for d in chosen]
            audit.write_all(kept + [entry("planned", d) for d in chosen])
            result.after, result.status = result.before - len(chosen), PLANNED
            return result
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


def _audit_entry(clock, host: Host, dry_run: bool, event: str, decision: Verdict, **outcome) -> tuple[float, str, dict]:
    """An audit record (time, event, fields) of one decision, timed now, written later by write_all."""
    return clock(), event, {"host": host.name, "dry_run": dry_run, **outcome, **_fields(decision)}


def _fields(decision: Verdict) -> dict:
    return {"key": decision.key, "session_id": decision.session_id, "agent": decision.agent,
            "idle_seconds": None if decision.idle_seconds is None else round(decision.idle_seconds),
            "decision": "close" if decision.close else "keep", "reason": decision.reason}


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
        clock=time.time) -> list[HostCleanup]:
    """Clean every host at once; `clock` times each audit record (tests pass a moved one)."""
    identities = IdentityStore(config.state_dir)
    quiet = Quiet(windows=tuple(config.maintenance))

    def clean(host: Host) -> HostCleanup:
        hold = cleanup_held(quiet, host.name, now)
        if hold is not None:
            return held(host, hold, dry_run, audit, clock)
        return clean_host(host, rules, now, dry_run, identities, audit, clock)

    with lock(config.state_dir), audit.kept_open():
        results = gateway.concurrently(clean, hosts, config.check.concurrency)
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
