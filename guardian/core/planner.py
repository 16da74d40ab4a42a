"""Which sessions a cleanup closes: plan() is pure, (sessions, rules, now) -> one verdict per session with
its reason. The keep reasons are checked in the order they are listed; a session kept for one is never closed.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass, field, replace

from guardian.core.records import Hold
from guardian.settings.model import ARCHIVE, DELETE, PRIORITIES, PROTECTED, Cleanup, Host
from guardian.settings.units import duration_text

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


def this_run(cleanup: Cleanup, idle_after: float | None = None, max_per_run: int | None = None) -> Cleanup:
    """The rules of one run: cleanup.* with the command line's --idle-after and --max-per-run, when given."""
    return replace(cleanup, idle_after=cleanup.idle_after if idle_after is None else idle_after,
                   max_per_run=cleanup.max_per_run if max_per_run is None else max_per_run)


@dataclass(frozen=True)
class Verdict:
    """One session: close it or keep it, and why."""

    key: str
    session_id: str | None
    agent: str | None
    updated_at: int | None  # as listed: the gateway refuses the delete if it changed since
    idle_seconds: float | None
    close: bool
    reason: str
    status: str | None = None  # as listed: a session whose status changed since is not archived
    priority: str = "normal"  # the agent's cleanup priority
    order: int | None = None  # its place among the sessions that may close (1: the first to go); None: kept


def cleanup_mode(configured: str, can_archive: bool) -> str:
    """How this host's sessions are closed: archived when configured and the gateway can, else deleted."""
    return ARCHIVE if configured == ARCHIVE and can_archive else DELETE


def changed_since_plan(decision: Verdict, row: dict | None, rules: Cleanup, main_key: str | None) -> str | None:
    """Why a session chosen from the listing must not be archived now, seen in a re-read row right before acting.

    The archive patch takes no expectedSessionUpdatedAt and cancels a session's work: this is the guard. Any change
    to its id, activity time or status, or a reason to keep it now (an active run, pinned, protected), skips it.
    """
    if row is None:
        return "already gone"
    if (row.get("sessionId"), row.get("updatedAt"), row.get("status")) != \
            (decision.session_id, decision.updated_at, decision.status) or keep_reason(row, rules, main_key):
        return "skipped: changed"
    return None


def purge_hold(row: dict | None, rules: Cleanup, main_key: str | None) -> str | None:
    """Why an archived session due for purge must stay: what would keep it were it not archived (pinned or protected
    since, a main session, a run); None: purge it (a row no longer archived is the gateway's to refuse)."""
    return None if row is None else keep_reason({**row, "archived": False}, rules, main_key)


def purge_due(entries: dict, now: float, purge_after: float) -> list[str]:
    """The keys of archive ledger entries archived at least `purge_after` before `now`, longest archived first."""
    due = [(entry["archived_at"], key) for key, entry in entries.items() if now - entry["archived_at"] >= purge_after]
    return [key for _, key in sorted(due)]


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


def keep_reason(row: dict, rules: Cleanup, main_key: str | None) -> str | None:
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
    if rules.priority_for(agent_of(row)) == PROTECTED:
        return PROTECTED_AGENT
    key = str(row.get("key", "")).casefold()
    if any(key == pattern or fnmatch.fnmatchcase(key, pattern) for pattern in map(str.casefold, rules.protect.keys)):
        return PROTECTED_KEY
    if _folded(row.get("label")) in map(str.casefold, rules.protect.labels):
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


def on_critical(subjects, critical: float) -> list[str]:
    """The hosts `cleanup.on_critical` cleans at once: those whose reading is at or above critical (the reading,
    not a level the margin holds: a host on its way down needs no cleanup now)."""
    return [s.name for s in subjects if s.kind == "host" and s.reading is not None and s.reading.usage >= critical]


def plan(rows: list[dict], rules: Cleanup, now: float, main_key: str | None = None) -> list[Verdict]:
    """One decision per session, in the order they go: low-priority agents' first, then normal, then high, each
    most idle first; at most max_per_run are closed, so when the cap holds some back, they are the high ones."""
    now_ms = now * 1000
    judged = []  # (idle seconds, row, agent, priority, keep reason): the cap needs the order before any is final
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
            elif idle <= rules.idle_after_for(agent):
                reason = NOT_IDLE
        judged.append((idle, row, agent, rules.priority_for(agent), reason))
    judged.sort(key=lambda j: (PRIORITIES.index(j[3]), -(j[0] or 0)))
    decisions, closing = [], 0
    for idle, row, agent, priority, reason in judged:
        order = None
        if reason is None:
            closing += 1
            order = closing
            if closing > rules.max_per_run:
                reason = OVER_CAP
        decisions.append(Verdict(key=str(row.get("key")), session_id=row.get("sessionId"), agent=agent,
                                  updated_at=row.get("updatedAt"), idle_seconds=idle, close=reason is None,
                                  reason=reason or "idle", status=row.get("status"), priority=priority, order=order))
    return decisions


# --- what became of the plan: a cleanup's records (guardian.commands.cleanup fills them in) -----------

NOT_ATTEMPTED = "not attempted: "  # the error of a "failed" outcome whose delete was never sent
# how far a host's run got
CLEANED, PARTLY_CLEANED, NOT_CLEANED, PLANNED = "cleaned", "partly cleaned", "not cleaned", "planned"
HELD = "held"  # a maintenance window with `cleanup: false` keeps cleanup off the host: nothing listed


@dataclass
class Outcome:
    decision: Verdict
    # closed (deleted) | archived | purged | already gone | skipped: changed | kept: no longer archived | failed
    # | unknown | planned (dry run)
    result: str
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
    decisions: list[Verdict] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None  # what stopped the run on this host, or went wrong after it
    unreachable: bool = False  # the host could not be cleaned at all (unreachable, unauthorised)
    status: str = NOT_CLEANED
    held: Hold | None = None  # the window that kept cleanup off it (status HELD)
    mode: str = DELETE  # how this run closed sessions here: archive, or delete (configured, or no archive here)
    fallback: str | None = None  # why archive mode deletes here ("2026.4.29 has no archive")
    purges: list[Outcome] = field(default_factory=list)  # the guardian's archived sessions purged first

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    @property
    def closed(self) -> int:
        """Sessions that left the usage: deleted or archived."""
        return self.count("closed") + self.count("archived")

    @property
    def purged(self) -> int:
        return sum(1 for o in self.purges if o.result == "purged")

    @property
    def failed(self) -> int:
        return sum(1 for o in [*self.outcomes, *self.purges] if o.result in ("failed", "unknown"))

    @property
    def kept(self) -> Counter:
        return Counter(d.reason for d in self.decisions if not d.close)


# --- restore: which sessions the guardian archived a `guardian restore` brings back, and what each gets --------

RESTORED, ALREADY_ACTIVE, PURGED, NOT_GUARDIANS = "restored", "already active", "purged", "not the guardian's"
REFUSED_CHANGED = "refused: session id changed"


@dataclass(frozen=True)
class Closing:
    """One session a cleanup closed (archived, or deleted where it could not archive), as its audit outcome says."""

    time: float
    run_id: str
    host: str
    key: str
    session_id: str | None


@dataclass
class RestoreResult:
    host: str
    key: str
    session_id: str | None
    result: str  # restored | already active | purged | not the guardian's | refused: session id changed
    #              | already gone | failed | unknown | planned (dry run)
    error: str | None = None  # why, in a few words, when it is not restored


def restore_selection(closings: list[Closing], hosts: list[str], *, last: bool = False, run_id: str | None = None,
                      keys: tuple[str, ...] = (), since: float | None = None) -> list[tuple[str, str]]:
    """The (host, key) pairs a restore asks for, in the order closed: those of the last cleanup run that closed any
    (`last`), of one run, closed since a time, or keys (on every host where a cleanup closed them, else on every
    host, where they will be "not the guardian's")."""
    closings = [c for c in closings if c.host in hosts]
    if last:
        if not closings:
            return []
        run_id = max(closings, key=lambda c: c.time).run_id
    if keys:
        closed = {(c.host, c.key) for c in closings}
        known = [(host, key) for key in keys for host in hosts if (host, key) in closed]
        return known + [(host, key) for key in keys if not any(k == key for _, k in known) for host in hosts]
    chosen = [c for c in closings if (since is None or c.time >= since) and (run_id is None or c.run_id == run_id)]
    return list(dict.fromkeys((c.host, c.key) for c in sorted(chosen, key=lambda c: c.time)))


def restore_verdict(entry: dict | None, archived_row: dict | None, active_row: dict | None, gone_by: str | None,
                    ours: bool) -> tuple[str | None, str | None]:
    """(result, why) of one key before anything is sent; (None, None): restore it.

    `entry`: the archive ledger's; `archived_row` / `active_row`: the key as the gateway lists it, archived or not;
    `gone_by`: "purge" or "delete" when a cleanup removed it for good; `ours`: a cleanup ever closed it.
    """
    if entry is not None:
        if archived_row is not None:
            if archived_row.get("sessionId") == entry["session_id"]:
                return None, None
            return REFUSED_CHANGED, "the key now holds another archived session"
        if active_row is not None:
            return ALREADY_ACTIVE, None
        return "already gone", "no longer on the gateway"
    if gone_by == "purge":
        return PURGED, "purged by a cleanup after purge_after: it cannot be restored"
    if gone_by == "delete":
        return PURGED, ("deleted by a cleanup (delete mode, or a release without archive such as 2026.4.29): "
                        "it cannot be restored")
    if ours and active_row is not None:
        return ALREADY_ACTIVE, None
    if ours and archived_row is None:
        return "already gone", "no longer on the gateway"
    return NOT_GUARDIANS, "not archived by the guardian (or archived again by someone else since)"
