"""`guardian check`: poll every host at once, judge each subject, act, decide and deliver its alerts, record.

load (the caller) -> observe (poll_hosts) -> decide the levels -> act (the on_critical cleanup) -> record history
and forecast -> decide what each channel is told and deliver it -> save (run, under the state lock) -> render
(guardian.output). The decisions themselves are in guardian.core: policy, plan, planner, forecast, anomaly.
"""

from __future__ import annotations

import contextlib
import math
import socket
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from guardian.adapters import gateway, poller
from guardian.adapters.archive_ledger import ArchiveLedger
from guardian.adapters.audit import AuditError, AuditLog, cleanup_runs, new_run_id
from guardian.adapters.history import History, HistoryError
from guardian.adapters.identity import IdentityStore
from guardian.adapters.peak_cache import cached_peaks
from guardian.adapters.silences import SilenceFile
from guardian.adapters.splits import SplitCache
from guardian.adapters.state import State, StateBusy, StateError, StateFile
from guardian.alerts.delivery import deliver_all, record_deliveries, record_suppressed
from guardian.commands.silence import end_acks
from guardian.core import anomaly, attribution, policy
from guardian.core.forecast import forecast
from guardian.core.plan import alertmanager_silences, log_channel, plan, remember
from guardian.core.quiet import UNREACHABLE, Quiet, cleanup_held, quiet_level, shown
from guardian.core.records import CheckReport, Delivery, Poll, Reading, Sample, SplitPass, Subject, subject_id
from guardian.settings.model import COUNTABLE, Check, Cleanup, Config, Host, Pool

if TYPE_CHECKING:
    from guardian.alerts.transports import Backoff


REBOUND_LOOKBACK = 600.0  # seconds before a cleanup in which to find the check that saw it coming


SYSTEM_ROWS = {"includeGlobal": True, "includeUnknown": True}  # the listed rows with `global` and `unknown`
ALL_ROWS = {"archived": "all", **SYSTEM_ROWS}  # every row a listing can show (2026.9; 2026.4 has no archive)
LISTINGS = {"all": ALL_ROWS, "system": SYSTEM_ROWS}  # what a split pages through, by the name its pass keeps
# rows per page when listing for the split, and a check's most: large pages are far cheaper than many small ones,
# and a store of more pages is split over consecutive checks (attribution.advance)
SPLIT_PAGE = 1000


@dataclass(frozen=True)
class Splitting:
    """What a check needs to split hosts' sessions by agent and kind: cleanup's rules (what is idle and closable),
    when the latest split of each host was counted, and attribution.every and the warning threshold (when to list)."""

    rules: Cleanup
    now: float
    warning: float
    every: float
    last_as_of: dict  # host name -> the cached split's as_of
    passes: dict = field(default_factory=dict)  # host name -> its split under way (SplitPass)


def read_host_steps(host: Host, idle_after: float, identities: IdentityStore, splitting: Splitting | None = None):
    """Steps to count a host's sessions and, when a split is due (attribution.due) or under way, read one page of
    rows for it: a store of one page is split every time; a larger one over consecutive checks. Returns its Poll."""
    started = time.monotonic()
    connection = yield from gateway.connect_steps(host, [gateway.READ], identities, early=True)
    try:
        counts = yield from count_steps(connection, host, idle_after)
        split = split_pass = None
        listing = "all" if connection.lists_archived else "system"
        under_way = attribution.resumed(splitting.passes.get(host.name), listing, splitting.now,
                                         SPLIT_PAGE) if splitting else None
        if splitting and (under_way or attribution.due(counts.reading.usage, splitting.warning,
                                                       splitting.last_as_of.get(host.name), splitting.every,
                                                       splitting.now)):
            main_key = connection.hello.main_session_key
            if counts.rows is not None:  # 2026.4: its counts listed every row, and it has no paging
                split = attribution.split(counts.rows, counts.agents, splitting.rules, splitting.now, main_key)
            else:
                split, split_pass = yield from _split_page_steps(connection, listing, under_way, counts.agents,
                                                                 splitting, main_key)
    except Exception:  # closed all the same; the error is the host's
        yield from connection.close_steps()
        raise
    yield from connection.close_steps()
    version = connection.hello.server_version
    return Poll(host, counts.reading, classes=counts.classes, split=split, split_pass=split_pass,
                server_version=version, elapsed=time.monotonic() - started, agents=counts.agents)


def _split_page_steps(connection, listing: str, under_way: SplitPass | None, agents: dict | None,
                      splitting: Splitting, main_key: str | None):
    """Steps to read the pass's next page (the first, with none under way) and add it: (the split when it was the
    last, else None; the pass as it goes on, None when it begins again). Every page is judged as of the pass's
    first."""
    offset = under_way.offset if under_way else 0
    page = yield from connection.call_steps("sessions.list", {"limit": SPLIT_PAGE,
                                                              **({"offset": offset} if offset else {}),
                                                              **LISTINGS[listing]})
    rows = list({r.get("key"): r for r in _rows(page)}.values())  # a key twice on a page counts once
    as_of = under_way.started if under_way else splitting.now
    done, going = attribution.advance(under_way, listing, attribution.tally(rows, splitting.rules, as_of, main_key),
                                      gateway.total_count(page) or 0, SPLIT_PAGE, splitting.now)
    return (attribution.finish(done.tally, agents, done.started) if done else None), going


@dataclass(frozen=True)
class Counts:
    reading: Reading
    classes: dict  # by what usage may count (settings.model.COUNTABLE), as far as this read tells them apart
    agents: dict | None  # status's sessions per agent
    rows: list[dict] | None  # 2026.4's every row, which come with its counts; None on 2026.9 (counts only)


def count_steps(connection, host: Host, idle_after: float):
    """Steps to a host's Counts: its sessions (what its `count` names) and those active within idle_after, with
    status's count per agent, in one round trip (two on 2026.4, which has no totalCount)."""
    minutes = max(1, math.ceil(idle_after / 60))
    counted = set(host.count)
    # listed only: today's figure; everything: status's; between them, what separates the classes
    classes_needed = counted not in ({attribution.LISTED}, set(COUNTABLE))
    calls = [("sessions.list", {"limit": 1}), ("sessions.list", {"limit": 1, "activeMinutes": minutes}),
             ("status", {})]
    if classes_needed:
        calls.append(("sessions.list", {"limit": 1, **SYSTEM_ROWS}))
        if connection.lists_archived:  # 2026.4 refuses `archived` (and has no archive)
            calls.append(("sessions.list", {"limit": 1, **ALL_ROWS}))
    answers = yield from connection.call_many_steps(calls)
    agents, status_count = _agent_counts(answers.pop(2), host)
    rows = None
    if gateway.total_count(_answer(answers[0])) is None:  # 2026.4: no totalCount; every row when no limit
        answers = yield from connection.call_many_steps([(method, {k: v for k, v in params.items() if k != "limit"})
                                        for method, params in calls if method != "status"])
        rows = _rows(answers[-1] if classes_needed else answers[0])
    listed, active, *others = (_session_count(_answer(a), rows is None) for a in answers)
    classes = _classes(status_count, listed, *others)
    total = (listed if counted == {attribution.LISTED} else
             status_count if counted == set(COUNTABLE) else attribution.usage_count(classes, host.count))
    reading = Reading(count=total, limit=host.limit, idle=max(0, listed - active) if active is not None else None)
    return Counts(reading, classes, agents, rows)


def _answer(answer):
    if isinstance(answer, gateway.GatewayError):
        raise answer
    return answer


def _agent_counts(status, host: Host) -> tuple[dict | None, int | None]:
    """status's sessions per agent ({agentId: count}) and in all, each None when it has none (or the call failed).
    A host whose usage counts more than the listed sessions needs the count: a GatewayError without it."""
    sessions = status.get("sessions") if isinstance(status, dict) else None
    count = sessions.get("count") if isinstance(sessions, dict) else None
    count = count if type(count) is int and count >= 0 else None
    if count is None and host.count != (attribution.LISTED,):
        if isinstance(status, gateway.GatewayError):
            raise status
        raise gateway.GatewayError("PROTOCOL", f"{host.name}: status answered without sessions.count, which its "
                                               f"count ({', '.join(host.count)}) needs")
    if not isinstance(sessions, dict):
        return None, None
    entries = sessions.get("byAgent")
    if not isinstance(entries, list):
        return None, count
    agents = {e["agentId"]: e["count"] for e in entries if isinstance(e, dict) and isinstance(e.get("agentId"), str)
              and type(e.get("count")) is int and e["count"] >= 0}
    return agents, count


def _classes(status_count: int | None, listed: int, with_system: int | None = None,
             every_row: int | None = None) -> dict:
    """The cheap counts by class (settings.model.COUNTABLE) as far as this read tells them apart. The listings are
    not one snapshot: a class the store's changes between them would make negative counts as none."""
    classes = {attribution.LISTED: listed}
    if with_system is not None:
        classes[attribution.SYSTEM] = max(0, with_system - listed)
        every_row = with_system if every_row is None else every_row  # 2026.4: nothing is archived
        classes[attribution.ARCHIVED] = max(0, every_row - with_system)
    if status_count is not None and every_row is not None:
        classes[attribution.CRON_RUN] = max(0, status_count - every_row)
    return classes


def _rows(payload) -> list[dict]:
    rows = _answer(payload).get("sessions")
    if not isinstance(rows, list):
        raise gateway.GatewayError("PROTOCOL", "sessions.list answered without a sessions list")
    return [r for r in rows if isinstance(r, dict)]


def _session_count(payload: dict, paged: bool) -> int | None:
    total = gateway.total_count(payload)
    if total is not None or paged:
        return total
    rows = payload.get("sessions")
    if not isinstance(rows, list):
        raise gateway.GatewayError("PROTOCOL", "sessions.list answered without totalCount or a sessions list")
    return len(rows)


def poll_hosts(hosts: list[Host], idle_after: float, identities: IdentityStore,
               concurrency: int = Check.concurrency, splitting: Splitting | None = None) -> list[Poll]:
    """Every host read at once on this thread (poller.py), at most `concurrency` under way; each host's failure is
    its Poll's error."""
    readings = poller.run_all([read_host_steps(h, idle_after, identities, splitting) for h in hosts], concurrency)
    polls = []
    for host, result in zip(hosts, readings):
        if isinstance(result, Poll):
            polls.append(result)
        else:
            polls.append(Poll(host, error=_sentence(host, result)))
    return polls


def _sentence(host: Host, exc: Exception) -> str:
    if isinstance(exc, gateway.GatewayError):
        return str(exc.message)
    return f"{host.name}: unexpected {type(exc).__name__} while polling ({exc}); run with --debug for details"


def pool_reading(pool: Pool, polls: dict[str, Poll]) -> Reading | None:
    """A pool's reading is the sum of its reachable hosts': a lower bound while a member is unreachable
    (the others alone may reach a level); unknown when none is reachable."""
    members = [polls[name].reading for name in pool.hosts if polls[name].reading is not None]
    if not members:
        return None
    idle = None if any(m.idle is None for m in members) else sum(m.idle for m in members)
    return Reading(count=sum(m.count for m in members), limit=pool.limit, idle=idle)


def agent_reading(poll: Poll, agent: str, limit: int) -> Reading | None:
    """An agent's reading on its host: its sessions by the host's count per agent (ids match whatever their case:
    OpenClaw folds them); unknown while the host or its count per agent is not read (the host alerts for that)."""
    if poll.reading is None or poll.agents is None:
        return None
    folded = agent.casefold()
    return Reading(count=sum(n for name, n in poll.agents.items() if str(name).casefold() == folded), limit=limit)


def agent_subject_ids(config: Config) -> set[str]:
    """'agent:t440/sales' for each host and each agent with a cleanup.agents.<id>.limit."""
    return {subject_id("agent", f"{host}/{agent}") for host in config.hosts for agent in config.cleanup.agent_limit}


def run(config: Config, host_names: str | None, now: float, act: bool = True,
        backoff: Backoff | None = None) -> CheckReport:
    """One check. `act=False` (--no-notify) decides and shows only: it sends nothing, cleans nothing and
    writes no state back, judging against the state as it is."""
    started, hosts = time.monotonic(), config.select(host_names)
    pools = config.pools_within(hosts)
    identities = IdentityStore(config.state_dir)
    split_cache = SplitCache(config.state_dir)
    latest, passes = split_cache.read()
    splitting = Splitting(rules=config.cleanup, now=now, warning=config.alerts.thresholds["warning"],
                          every=config.attribution.every, last_as_of={h: s.as_of for h, s in latest.items()},
                          passes=passes)
    polls = {p.host.name: p for p in poll_hosts(hosts, config.cleanup.idle_after, identities,
                                                config.check.concurrency, splitting=splitting)}
    latest, split_warnings = _keep_splits(split_cache, latest, passes, polls, config, act)
    audit = AuditLog(config.state_dir, new_run_id(), "check")
    ledger = ArchiveLedger(config.state_dir)
    waiting = ledger.waiting()
    store = StateFile(config.state_dir, cooldown=config.alerts.cooldown)
    silences = SilenceFile(config.state_dir)
    subjects, deliveries, run_warnings, error = None, [], [], None
    quiet = Quiet(windows=tuple(config.maintenance))
    try:
        with store.locked() if act else contextlib.nullcontext(store.look()) as state:
            configured = {*(subject_id("host", name) for name in config.hosts),
                          *(subject_id("pool", name) for name in config.pools), *agent_subject_ids(config)}
            state.forget_departed(configured, {log_channel(config).name, *(c.name for c in config.alerts.channels)},
                                  now)
            subjects = _judge_all(state, hosts, pools, polls, config, now, latest, waiting)
            book = silences.read()
            if act:  # an acknowledgement ends (a rise, a return to ok, its end) and the end is recorded
                run_warnings = end_acks(config, silences, book, state, now)
            quiet = Quiet(tuple(book.silences), tuple(a for a in book.acks if a.ended is None), quiet.windows)
            _show_quiet(state, subjects, quiet, config, now)
            run_warnings += _cleanup_critical(config, subjects, now, audit, quiet) if act else []
            run_warnings += _trends(config, subjects, now, audit)
            deliveries = _notify(state, subjects, config.alerts.channels, config, now, act, backoff, audit, quiet)
            run_warnings += _alertmanager_silences(subjects, config, quiet, now) if act else []
            with contextlib.suppress(AuditError):  # delivered is remembered all the same; said once below
                record_deliveries(audit, deliveries, now)
    except StateError as exc:
        error = str(exc)
        if subjects is None:  # nothing was decided: judged afresh, to show what this run saw
            state = State()
            subjects = _judge_all(state, hosts, pools, polls, config, now, latest, waiting)
            # a critical host is cleaned all the same (the cleanup's own lock keeps two runs apart)
            run_warnings = _cleanup_critical(config, subjects, now, audit, quiet) if act else []
            if not isinstance(exc, StateBusy):  # busy: the runs holding the lock are telling
                # Without the memory the channels would hear every alert again on every run, so
                # only the stderr line (cron mails it) says what this run saw.
                deliveries = _notify(state, subjects, (), config, now, act, backoff, audit, quiet)
    warnings = [*config.warnings, *identities.warnings, *store.warnings, *silences.warnings, *split_warnings,
                *ledger.warnings, *run_warnings, *_audit_warning(audit.failures)]
    return CheckReport(time=now, subjects=subjects, deliveries=deliveries, warnings=warnings, error=error,
                       duration=time.monotonic() - started)


def _keep_splits(cache: SplitCache, latest: dict, passes: dict, polls: dict[str, Poll], config: Config,
                 act: bool) -> tuple[dict, list[str]]:
    """The latest split of each configured host, this check's where it made one; kept in splits.json when acting,
    with each host's pass under way as this check left it (a host not read keeps its own)."""
    fresh = {name: p.split for name, p in polls.items() if p.split is not None}
    latest = {name: split for name, split in {**latest, **fresh}.items() if name in config.hosts}
    read = {name: p.split_pass for name, p in polls.items() if p.reading is not None}
    going = {name: p for name, p in {**passes, **read}.items() if p is not None and name in config.hosts}
    if not (act and (fresh or going != passes)):
        return latest, []
    try:
        cache.write(latest, going)
    except OSError as exc:
        return latest, [f"cannot write {cache.path} ({exc.strerror}): the next checks list rows again"]
    return latest, []


def _judge_all(state, hosts: list[Host], pools: list[Pool], polls: dict[str, Poll], config: Config,
               now: float, splits: dict, waiting: dict[str, int] | None) -> list[Subject]:
    subjects, holders = [], {}
    for host in hosts:
        poll = polls[host.name]
        holders[host.name] = attribution.holders(splits.get(host.name), poll.agents) if poll.reading else None
        subjects.append(_judge(state, "host", host.name, host.limit, poll.reading, poll.error, config, now,
                               server_version=poll.server_version, elapsed=poll.elapsed, url=host.url,
                               holders=holders[host.name], classes=poll.classes, counted=host.count,
                               waiting_for_purge=None if waiting is None else waiting.get(host.name, 0)))
    for pool in pools:
        unread = tuple(name for name in pool.hosts if polls[name].reading is None)
        known = [holders[name] for name in pool.hosts if holders[name] is not None]
        subjects.append(_judge(state, "pool", pool.name, pool.limit, pool_reading(pool, polls), None, config,
                               now, members=pool.hosts, unreachable_members=unread, holders=attribution.pooled(known)))
    for host in hosts:
        for agent, limit in config.cleanup.agent_limit.items():
            reading = agent_reading(polls[host.name], agent, limit)
            subjects.append(_judge(state, "agent", f"{host.name}/{agent}", limit, reading, None, config, now,
                                   members=(host.name,)))
    return subjects


def _show_quiet(state, subjects: list[Subject], quiet: Quiet, config: Config, now: float) -> None:
    """Give each subject what holds its alerts now (usage, or unreachable while its polls fail), to show."""
    channels = [*(c.name for c in config.alerts.channels), log_channel(config).name]
    for subject in subjects:
        level = quiet_level(subject.level, state.subject(subject.id).failures, config.alerts.unreachable_after)
        subject.quiet = shown(quiet, subject.id, "unreachable" if level == UNREACHABLE else "usage", channels, level,
                              now)


def _alertmanager_silences(subjects: list[Subject], config: Config, quiet: Quiet, now: float) -> list[str]:
    """Each Alertmanager channel holds a silence for each guardian silence and ack there, and no other of ours."""
    channels = [c for c in config.alerts.channels if c.type == "alertmanager"]
    if not channels:
        return []
    from guardian.alerts.transports import sync_alertmanager_silences

    created_by = f"guardian@{socket.gethostname()}"
    warnings = []
    for channel in channels:
        wanted = alertmanager_silences(quiet, subjects, channel, created_by, now + config.alerts.max_silence, now)
        error = sync_alertmanager_silences(channel, wanted, created_by)
        if error:
            warnings.append(f"alert channel {channel.name}: {error}; tried again on the next run")
    return warnings


def _cleanup_critical(config: Config, subjects: list[Subject], now: float, audit: AuditLog,
                      quiet: Quiet) -> list[str]:
    """cleanup.on_critical: clean a host at critical now instead of waiting for cron (same rules, same lock).
    Each host cleaned has its `closed_now`, for its alert line; what went wrong comes back as warnings.
    A maintenance window with `cleanup: false` keeps its hosts out."""
    if not config.cleanup.on_critical:
        return []
    # only with on_critical, and the shell only for a critical host: each costs start-up
    from guardian.core import planner

    targets = [name for name in planner.on_critical(subjects, config.alerts.thresholds["critical"])
               if cleanup_held(quiet, name, now) is None]
    if not targets:
        return []
    from guardian.commands import cleanup

    warnings: list[str] = []  # the archive ledger's (a corrupt file moved aside)
    try:
        reports = cleanup.run(config, [config.hosts[name] for name in targets],
                              config.cleanup, now, False, audit, warnings=warnings)
    except cleanup.CleanupBusy:
        return ["a host is critical but a cleanup is already running; it was left to that cleanup"]
    except AuditError:  # nothing was closed without its record; the run's one audit warning says why
        return []
    except StateError as exc:  # no audit record, no delete: the alert still goes out
        return [f"a host is critical but it could not be cleaned: {exc}"]
    closed = {r.host.name: r.closed for r in reports if r.before is not None}
    for subject in subjects:
        if subject.kind == "host" and subject.name in closed:
            subject.closed_now = closed[subject.name]
    return warnings + [f"{r.host.name}: the critical cleanup failed: {r.error}" for r in reports if r.error]


def _audit_warning(failures: list[AuditError]) -> list[str]:
    """What an audit log this run could not use cost it, in one sentence however often it failed."""
    if not failures:
        return []
    cost = ("this run's alerts were still sent and remembered but are not recorded there, and no cleanup closes "
            "a session until it can be written" if any(f.writing for f in failures)
            else "rebound notices wait until it can be read")
    return [f"cannot use the audit log {failures[0].path} ({failures[0].reason}): {cost}"]


def _trends(config: Config, subjects: list[Subject], now: float, audit: AuditLog) -> list[str]:
    """Record this check in history.db, then give each subject its forecast and anomalies.

    A history that cannot be used costs the forecast and the anomalies, never the check: warnings.
    """
    history = History(config.state_dir)
    # back far enough for the forecast window, and for the check before the oldest cleanup in question
    since = now - max(config.history.forecast_window, config.alerts.rebound + REBOUND_LOOKBACK)
    cleanups = cleanup_runs(audit.records_since(now - config.alerts.rebound)) if config.alerts.rebound else []
    try:  # the check before each cleanup is kept for rebound
        recent = history.record([_sample(s, now) for s in subjects], since, config.history,
                                tuple(c.time for c in cleanups), anomaly.reads_samples(config.alerts, cleanups))
    except HistoryError as exc:
        return [*history.warnings, f"{exc}; this check has no forecast"]
    window = config.history.forecast_window
    critical = config.alerts.thresholds["critical"]
    try:
        peaks = cached_peaks(history, config.state_dir, {s.id: (s.kind, s.name) for s in subjects},
                             config.history.zone, critical, now)
    except (HistoryError, OSError) as exc:
        peaks = {}
        history.warnings.append(f"{exc}; this check has no peak forecast")
    earlier = _agent_baselines(history, subjects, config, now)
    for subject in subjects:
        times, usages, samples = recent[subject.kind, subject.name]
        subject.peak = peaks.get(subject.id)
        subject.forecast = forecast(zip(times, usages), critical, now, window)
        if subject.name in earlier and subject.kind == "host":
            since, counts = earlier[subject.name]
            subject.growth, subject.growth_span = attribution.growth(counts, _agent_sessions(subject)), now - since
        if subject.full_reading is not None:
            ran_here = [c for c in cleanups if subject.kind == "host" and c.host == subject.name]
            subject.anomalies = anomaly.find(samples, ran_here, config.alerts, window, now, subject.peak)
            where = attribution.growth_text(subject.growth or [], subject.growth_span)
            if anomaly.GROWTH in subject.anomalies and where:  # "sessions keep growing" says where
                subject.anomalies[anomaly.GROWTH] += f"; {where}"
    return history.warnings


def _agent_sessions(subject: Subject) -> dict:
    return {share.name: share.sessions for share in subject.holders.agents}


def _agent_baselines(history: History, subjects: list[Subject], config: Config, now: float) -> dict[str, tuple]:
    """Record each host's sessions per agent; each host's first counts within the forecast window, (time, counts),
    to measure growth from."""
    counts = {s.name: _agent_sessions(s) for s in subjects if s.kind == "host" and s.holders is not None}
    if not counts:
        return {}
    try:
        return history.record_agents(counts, now, now - config.history.forecast_window, config.history)
    except HistoryError as exc:
        history.warnings.append(f"{exc}; this check has no growth by agent")
        return {}


def _sample(subject: Subject, now: float) -> Sample:
    r = subject.full_reading
    return Sample(now, subject.kind, subject.name, r.count if r else None, subject.limit, r.usage if r else None,
                  subject.level, r.idle if r else None, r is not None)


def _judge(state, kind, name, limit, reading, error, config, now, **extra) -> Subject:
    key = subject_id(kind, name)
    previous = state.subject(key)
    if reading is None and kind != "host":
        current = previous  # its hosts are down (or not counted per agent): those hosts alert; it keeps what it knew
    elif extra.get("unreachable_members"):
        # A lower bound can raise the pool's level, never lower it: a member going dark is no resolve.
        seen = policy.observe(previous, reading, config.alerts, now)
        level = max(seen.level, previous.level, key=policy.RANK.get)
        current = replace(previous, level=level, since=previous.since if level == previous.level else now)
    else:
        current = policy.observe(previous, reading, config.alerts, now)
    state.subjects[key] = current
    return Subject(kind=kind, name=name, limit=limit, reading=reading, error=error, level=current.level,
                   previous_count=previous.count, last_success=current.checked_at, **extra)


def _notify(state, subjects: list[Subject], channels, config: Config, now: float, send: bool,
            backoff: Backoff | None, audit: AuditLog, quiet: Quiet) -> list[Delivery]:
    """Plan for the log line and `channels`, send one message per channel (all at once), remember what was
    accepted; record what the quiet held."""
    plans = plan(state, subjects, [log_channel(config), *channels], config, now, quiet)
    if send:
        errors = deliver_all([(p.channel, p.message) for p in plans], now, backoff)
        remember(plans, errors)
        with contextlib.suppress(AuditError):  # said once, with the run's audit warning
            record_suppressed(audit, plans, now)
    else:
        errors = [None] * len(plans)
    return [Delivery(p.channel.name, p.told, error, sent=send) for p, error in zip(plans, errors) if p.told or error]


