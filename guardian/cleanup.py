"""`guardian cleanup`: close sessions idle for hours, never a live one, with an exact audit trail.

plan() is pure: (sessions, rules, now) -> one decision per session with its reason. The rest is
the thin shell around it: list every session, delete the chosen ones with the gateway's own
guard against a session that woke up since the listing, and record intent and outcome of each
delete in the audit log before moving on.
"""

from __future__ import annotations

import fcntl
import fnmatch
import functools
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from guardian import gateway
from guardian.audit import AuditLog
from guardian.config import Cleanup, Config, Host, duration_text
from guardian.identity import IdentityStore
from guardian.state import StateError

PAGE = 1000  # rows per sessions.list page: large pages are far cheaper than many small ones
DELETE_WINDOW = 1  # deletes in flight at once; the gateway serialises them (see docs/benchmarks.md)

# keep reasons, in the order they are checked
ARCHIVED = "archived"  # never listed for cleanup; the planner keeps them too, whoever hands it the rows
ACTIVE_RUN, RUNNING, MAIN, PINNED = "active run", "running status", "main session", "pinned"
PROTECTED_AGENT, PROTECTED_KEY, PROTECTED_LABEL = "protected agent", "protected key pattern", "protected label"
NOT_IDLE, OVER_CAP, NO_TIME = "not idle long enough", "over the per-run cap", "no activity time"
BAD_TIME = "unreadable activity time"
ACTIVITY_FIELDS = ("updatedAt", "lastInteractionAt", "endedAt")
# Earlier than this (2001-09-09) is no OpenClaw time in epoch ms: zero, negative, or seconds sent as milliseconds;
# later than the year 9999, a number too large to be a time (or to subtract from now without overflowing).
EARLIEST_MS, LATEST_MS = 1_000_000_000_000, 253_402_300_800_000
# Idle times are the gateway's timestamps read against our clock: past this difference between the
# two clocks a session may only look idle, so nothing is closed.
MAX_CLOCK_SKEW = 300.0


@dataclass(frozen=True)
class Rules:
    """What cleanup.* says, after the command-line overrides."""

    idle_after: float
    max_per_run: int
    protect_agents: tuple[str, ...] = ()
    protect_keys: tuple[str, ...] = ()
    protect_labels: tuple[str, ...] = ()
    agent_idle_after: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, cleanup: Cleanup, idle_after: float | None = None, max_per_run: int | None = None):
        return cls(idle_after=cleanup.idle_after if idle_after is None else idle_after,
                   max_per_run=cleanup.max_per_run if max_per_run is None else max_per_run,
                   protect_agents=cleanup.protect.agents, protect_keys=cleanup.protect.keys,
                   protect_labels=cleanup.protect.labels, agent_idle_after=cleanup.agent_idle_after)

    def threshold(self, agent: str | None) -> float:
        return self.agent_idle_after.get(agent, self.idle_after)


@dataclass(frozen=True)
class Decision:
    key: str
    session_id: str | None
    agent: str | None
    updated_at: int | None  # as listed: the gateway refuses the delete if it changed since
    idle_seconds: float | None
    close: bool
    reason: str


def readable_time(value) -> bool:
    """Whether a listed time is a plausible epoch-ms time: not text, a bool, NaN, infinite, before 2001 or past 9999."""
    return type(value) in (int, float) and EARLIEST_MS <= value <= LATEST_MS  # NaN compares false


def last_activity(row: dict) -> int | None:
    """The latest of updatedAt, lastInteractionAt and endedAt (epoch ms), of those the row has and that are readable."""
    times = [row[k] for k in ACTIVITY_FIELDS if readable_time(row.get(k))]
    return int(max(times)) if times else None


def unreadable_time(row: dict) -> bool:
    """A time is there but unreadable: the session's idle time is unknown, whatever its other times say."""
    return any(row.get(k) is not None and not readable_time(row[k]) for k in ACTIVITY_FIELDS)


def agent_of(row: dict) -> str | None:
    agent = row.get("agentId")
    if isinstance(agent, str):
        return agent
    key = str(row.get("key", ""))
    return key.split(":")[1] if key.startswith("agent:") and key.count(":") >= 2 else None


def flagged(row: dict, name: str) -> bool:
    """A flag that keeps a session: anything but false or absent (a 1 or "yes" is no reason to close it)."""
    return row.get(name) not in (None, False)


def is_agent_main(key) -> bool:
    """`agent:<id>:main` is an agent's main session, whatever the row or hello-ok say (2026.4 rows have no isMain)."""
    parts = key.casefold().split(":") if isinstance(key, str) else []
    return len(parts) == 3 and parts[0] == "agent" and parts[1] != "" and parts[2] == "main"


def keep_reason(row: dict, rules: Rules, main_key: str | None) -> str | None:
    """Why this session must never be closed whatever its idle time, or None."""
    if flagged(row, "archived"):
        return ARCHIVED
    if flagged(row, "hasActiveRun"):
        return ACTIVE_RUN
    if row.get("status") == "running":
        return RUNNING
    if flagged(row, "isMain") or (main_key and row.get("key") == main_key) or is_agent_main(row.get("key")):
        return MAIN
    if flagged(row, "pinned"):
        return PINNED
    if _folded(agent_of(row)) in map(str.casefold, rules.protect_agents):
        return PROTECTED_AGENT
    key = str(row.get("key", "")).casefold()
    if any(key == pattern or fnmatch.fnmatchcase(key, pattern) for pattern in map(str.casefold, rules.protect_keys)):
        return PROTECTED_KEY
    if _folded(row.get("label")) in map(str.casefold, rules.protect_labels):
        return PROTECTED_LABEL
    return None


def _folded(name) -> str | None:
    """Protect entries match whatever their case: OpenClaw folds agent ids and keys to lower case (`[C123]` is
    listed as `[c123]`), and a protection that misses by a capital letter closes what was meant to be kept."""
    return name.casefold() if isinstance(name, str) else None


def clock_skew_refusal(gateway_ms, now: float) -> str | None:
    """Why idle times read against `now` cannot be trusted (the gateway's clock is far from ours), or None.

    `gateway_ms` is sessions.list's `ts`; a gateway that sends none is taken at its word.
    """
    if type(gateway_ms) is not int:
        return None
    skew = gateway_ms / 1000 - now
    if abs(skew) <= MAX_CLOCK_SKEW:
        return None
    return (f"the gateway's clock is {duration_text(abs(skew))} {'ahead of' if skew > 0 else 'behind'} this machine's "
            f"(more than {duration_text(MAX_CLOCK_SKEW)}), so idle times cannot be trusted; nothing was closed: "
            f"fix the clock on one side (NTP)")


def plan(rows: list[dict], rules: Rules, now: float, main_key: str | None = None) -> list[Decision]:
    """One decision per session, most idle first; at most max_per_run are closed."""
    now_ms = now * 1000
    judged = []  # (idle seconds, row, agent, keep reason): the cap needs the order before any decision is final
    for row in rows:
        last = last_activity(row)
        idle = None if last is None else max(0.0, (now_ms - last) / 1000)
        agent = agent_of(row)
        reason = keep_reason(row, rules, main_key)
        if reason is None:
            if unreadable_time(row):
                reason, idle = BAD_TIME, None
            elif idle is None:
                reason = NO_TIME
            elif idle <= rules.threshold(agent):
                reason = NOT_IDLE
        judged.append((idle, row, agent, reason))
    judged.sort(key=lambda j: -(j[0] or 0))
    decisions, closing = [], 0
    for idle, row, agent, reason in judged:
        if reason is None:
            closing += 1
            if closing > rules.max_per_run:
                reason = OVER_CAP
        decisions.append(Decision(key=str(row.get("key")), session_id=row.get("sessionId"), agent=agent,
                                  updated_at=row.get("updatedAt"), idle_seconds=idle, close=reason is None,
                                  reason=reason or "idle"))
    return decisions


# --- the shell around the plan ---------------------------------------------------------------


NOT_ATTEMPTED = "not attempted: "  # the error of a "failed" outcome whose delete was never sent
# how far a host's run got
CLEANED, PARTLY_CLEANED, NOT_CLEANED, PLANNED = "cleaned", "partly cleaned", "not cleaned", "planned"


@dataclass
class Outcome:
    decision: Decision
    result: str  # closed | already gone | skipped: changed | failed | unknown | planned (dry run)
    error: str | None = None

    @property
    def settled(self) -> bool:
        """The gateway answered this delete (an unknown one was sent and never answered)."""
        return self.result != "unknown" and not (self.error or "").startswith(NOT_ATTEMPTED)


@dataclass
class HostCleanup:
    host: Host
    before: int | None = None
    after: int | None = None
    decisions: list[Decision] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None  # what stopped the run on this host, or went wrong after it
    unreachable: bool = False  # the host could not be cleaned at all (unreachable, unauthorised)
    status: str = NOT_CLEANED

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    @property
    def closed(self) -> int:
        return self.count("closed")

    @property
    def failed(self) -> int:
        return self.count("failed") + self.count("unknown")

    @property
    def kept(self) -> Counter:
        return Counter(d.reason for d in self.decisions if not d.close)


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
    total = connection.call("sessions.list", {"limit": 1}).get("totalCount")
    return total if isinstance(total, int) else None


class Deleter:
    """Deletes with the expected* guard; on releases that reject those fields, re-reads the row first."""

    def __init__(self, connection):
        self.connection = connection
        self.guarded = True  # learnt once per connection

    def delete(self, decisions: list[Decision], while_waiting=lambda: None) -> list[Outcome]:
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

    def _delete_after_re_read(self, decisions: list[Decision]) -> list[Outcome]:
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
        answers = self.connection.call_many([("sessions.delete", {"key": d.key}) for d in unchanged]) if unchanged else []
        outcomes.update({d.key: _outcome(d, a) for d, a in zip(unchanged, answers)})
        return [outcomes[d.key] for d in decisions]

    @staticmethod
    def _params(decision: Decision) -> dict:
        params = {"key": decision.key}
        if decision.session_id:
            params["expectedSessionId"] = decision.session_id
        if isinstance(decision.updated_at, int):
            params["expectedSessionUpdatedAt"] = decision.updated_at
        return params


def _rejects_guard(answer) -> bool:
    return isinstance(answer, gateway.GatewayError) and "unexpected property 'expectedSession" in answer.message


def _outcome(decision: Decision, answer) -> Outcome:
    if isinstance(answer, gateway.GatewayError):
        if answer.details.get("reason") == "session-changed" or "changed before deletion" in answer.message:
            return Outcome(decision, "skipped: changed")
        return Outcome(decision, "failed", f"{answer.code}: {answer.message}")
    return Outcome(decision, "closed" if answer.get("deleted") is True else "already gone")


def clean_host(host: Host, rules: Rules, now: float, dry_run: bool, identities: IdentityStore, audit: AuditLog,
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
        record = functools.partial(_record, clock, host, dry_run)
        # the kept records go out with the plan (dry run) or the first intents, in one write and one fsync
        kept = [record("kept", d) for d in result.decisions if not d.close and d.reason != NOT_IDLE]
        if dry_run:
            result.outcomes = [Outcome(d, "planned") for d in chosen]
            audit.write_all(kept + [record("planned", d) for d in chosen])
            result.after, result.status = result.before - len(chosen), PLANNED
            return result
        result.outcomes, result.error = delete_chosen(Deleter(connection), chosen, kept, audit, record)
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


def delete_chosen(deleter: Deleter, chosen: list[Decision], kept: list, audit: AuditLog, record) -> tuple[list[Outcome], str | None]:
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
    audit.write_all(kept + [record("intent", d) for d in (batches[0] if batches else [])])
    outcomes: list[Outcome] = []
    for index, batch in enumerate(batches):
        ahead = _IntentsAhead(audit, record, batches[index + 1] if index + 1 < len(batches) else [])
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
            audit.write_all([record("outcome", o.decision, result=o.result, error=o.error) for o in answered],
                            sync=error is not None or index + 1 == len(batches))
        except StateError as exc:  # nothing more is sent without a record; the report still has every outcome
            if error is None:
                error = str(exc)
                outcomes += _not_attempted(chosen[len(outcomes):], error)
        if error:
            return outcomes, error
    return outcomes, None


def _not_attempted(decisions: list[Decision], error: str) -> list[Outcome]:
    return [Outcome(d, "failed", NOT_ATTEMPTED + error) for d in decisions]


class _IntentsAhead:
    """The intents of the next batch, written while the current one is in flight (never raises there)."""

    def __init__(self, audit: AuditLog, record, batch: list[Decision]):
        self.audit, self.record, self.batch = audit, record, batch
        self.failure: StateError | None = None

    def write(self) -> None:
        if self.failure is None and self.batch:
            try:
                self.audit.write_all([self.record("intent", d) for d in self.batch])
            except StateError as exc:
                self.failure = exc


def _record(clock, host: Host, dry_run: bool, event: str, decision: Decision, **outcome) -> tuple[float, str, dict]:
    """An audit record (time, event, fields) of one decision, timed now, written later by write_all."""
    return clock(), event, {"host": host.name, "dry_run": dry_run, **outcome, **_fields(decision)}


def _fields(decision: Decision) -> dict:
    return {"key": decision.key, "session_id": decision.session_id, "agent": decision.agent,
            "idle_seconds": None if decision.idle_seconds is None else round(decision.idle_seconds),
            "decision": "close" if decision.close else "keep", "reason": decision.reason}


class CleanupBusy(Exception):
    """Another cleanup holds the lock."""


def lock(state_dir):
    """The cleanup lock, taken without waiting: a second cleanup exits at once. Released on close."""
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(state_dir, "cleanup.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"cannot use the state dir {state_dir} ({exc.strerror}); nothing was closed") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CleanupBusy(f"another guardian cleanup is running (lock {state_dir}/cleanup.lock); this one did nothing") from None
    return os.fdopen(fd)


def run(config: Config, hosts: list[Host], rules: Rules, now: float, dry_run: bool, audit: AuditLog,
        clock=time.time) -> list[HostCleanup]:
    """Clean every host at once; `clock` times each audit record (tests pass a moved one)."""
    identities = IdentityStore(config.state_dir)
    with lock(config.state_dir), audit.kept_open():
        results = gateway.concurrently(lambda h: clean_host(h, rules, now, dry_run, identities, audit, clock), hosts,
                                       config.check.concurrency)
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
