"""Output: a rich table on a terminal, plain lines when piped, documented JSON, the Nagios line.

`rich` is imported only for the table, so cron runs (piped, plain) never load it.
"""

from __future__ import annotations

import json
import math

from guardian.core import attribution
from guardian.core.forecast import Forecast
from guardian.core.planner import CLEANED, NOT_CLEANED, OVER_CAP, PARTLY_CLEANED
from guardian.core.records import CheckReport, Reading, Subject
from guardian.output.message import holders_json, line_json
from guardian.output.quiet import QUIET_COLUMNS, quiet_report_json, quiet_report_text, quiet_row
from guardian.output.text import (
    UNDO,
    forecast_text,
    holders_text,
    other_outcomes,
    peak_text,
    percent,
    plural,
    report_headline,
    safe,
    subject_label,
)
from guardian.settings.levels import worst
from guardian.settings.model import ARCHIVE
from guardian.settings.units import duration_text, eta_text, iso_time

STATUS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
JSON_VERSION = 1


def usage_text(subject: Subject) -> str:
    r = subject.reading
    return f"{lower_bound(subject)}{r.usage:.0f}% ({r.count}/{r.limit})" if r else "unknown"


def lower_bound(subject: Subject) -> str:
    """What goes before a pool's usage while a member is unreachable: the rest only count so far."""
    return "at least " if subject.unreachable_members else ""


def unreachable_text(subject: Subject) -> str:
    """The table's note for a pool read in part: its sessions and usage are a lower bound."""
    return f"at least: {', '.join(subject.unreachable_members)} unreachable" if subject.unreachable_members else ""


def change_text(change: int | None) -> str:
    return "" if change is None else f"{change:+d}"


def forecast_json(fit: Forecast | None, limit: int) -> dict | None:
    if fit is None or not fit.enough:
        return None
    return {"trend": "rising" if fit.rising else "none", "critical_in_seconds": _round(fit.critical_in),
            "full_in_seconds": _round(fit.full_in), "usage_points_per_hour": round(fit.slope * 3600, 2),
            "sessions_per_hour": round(fit.slope * 36 * limit, 2), "r2": None if fit.r2 is None else round(fit.r2, 3),
            "samples": fit.samples, "span_seconds": round(fit.span)}


def forecast_plain(fit: Forecast | None) -> list[str]:
    if fit is None or not fit.enough:
        return []
    if not fit.rising:
        return ["trend=none"]
    quality = [] if fit.r2 is None else [f"r2={fit.r2:.2f}"]
    return [f"critical_in={eta_text(fit.critical_in)}", f"full_in={eta_text(fit.full_in)}", *quality]


def _round(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds)


def quiet_json(s: Subject) -> dict:
    """What holds the subject's alerts: `silenced_by` (the silence's id), `acknowledged` (the ack's id),
    `maintenance` (the window's name), each null unless it is the one; `held` says it in words, and until when."""
    kind = s.quiet.kind if s.quiet else None
    return {"silenced_by": s.quiet.id if kind == "silence" else None,
            "acknowledged": s.quiet.id if kind == "ack" else None,
            "maintenance": s.quiet.id if kind == "maintenance" else None,
            "held": s.quiet.text if s.quiet else None,
            "held_until": iso_time(s.quiet.until) if s.quiet and s.quiet.until is not None else None}


def check_json(report: CheckReport) -> dict:
    def entry(s: Subject) -> dict:
        r = s.reading
        data = {"name": s.name, "reachable": r is not None, "sessions": r.count if r else None, "limit": s.limit,
                "usage": round(r.usage, 1) if r else None, "level": s.level if r else "unknown",
                "change": s.change, "idle": r.idle if r else None, "forecast": forecast_json(s.forecast, s.limit),
                "peak": s.peak, **quiet_json(s)}
        if s.kind == "host":
            data.update(url=s.url, server_version=s.server_version,
                        elapsed_ms=round(s.elapsed * 1000) if s.elapsed is not None else None, error=s.error,
                        counted=list(s.counted), counts=s.classes, **holders_json(s.holders),
                        growth=None if s.growth is None else [{"agent": a, "change": n} for a, n in s.growth],
                        growth_seconds=None if s.growth is None else round(s.growth_span),
                        waiting_for_purge=s.waiting_for_purge)
        elif s.kind == "agent":
            data.update(host=s.members[0], agent=s.name.partition("/")[2])
        else:
            data.update(hosts=list(s.members), unreachable_hosts=list(s.unreachable_members), **holders_json(s.holders))
        return data

    code = report.exit_code
    levels = [s.level for s in report.subjects if s.reading]
    status = "unknown" if code == 3 else worst("ok", *levels)
    return {
        "version": JSON_VERSION, "time": iso_time(report.time), "status": status, "exit_code": code,
        "hosts": [entry(s) for s in report.subjects if s.kind == "host"],
        "pools": [entry(s) for s in report.subjects if s.kind == "pool"],
        "agents": [entry(s) for s in report.subjects if s.kind == "agent"],
        "alerts": [{"channel": d.channel, "sent": d.sent, "delivered": d.sent and d.error is None, "error": d.error,
                    "lines": [line_json(line, iso_time(report.time)) for line in d.lines]} for d in report.deliveries],
        "warnings": report.warnings,
    }


def check_plain(report: CheckReport) -> str:
    lines = []
    for s in report.subjects:
        if s.reading is None:
            held = f" ({s.quiet.text})" if s.quiet else ""
            lines.append(f"{subject_label(s)} UNKNOWN {safe(s.error or 'a member host is unknown')}{held}")
            continue
        parts = [subject_label(s), usage_text(s), s.level]
        if s.change is not None:
            parts.append(f"change={change_text(s.change)}")
        if s.reading.idle is not None:
            parts.append(f"idle={s.reading.idle}")
        if s.unreachable_members:
            parts.append(f"unreachable={','.join(s.unreachable_members)}")
        if s.holders and s.holders.agents:
            parts.append("holders=" + ",".join(f"{safe(h.name, 40).replace(' ', '?')}:{h.sessions}"
                                               + ("" if h.closable is None else f"/{h.closable}")
                                               for h in s.holders.agents[:3]))
        if s.growth:
            parts.append("grew=" + ",".join(f"{safe(a, 40).replace(' ', '?')}{n:+d}" for a, n in s.growth[:3]))
        if s.waiting_for_purge:
            parts.append(f"waiting_for_purge={s.waiting_for_purge}")
        parts += forecast_plain(s.forecast)
        if s.quiet:
            parts.append(f"({s.quiet.text})")
        lines.append(" ".join(parts))
    return "\n".join(lines)


def growth_text(subject: Subject) -> str:
    """The agents that grew most over the forecast window, for the forecast's column."""
    return attribution.growth_text(subject.growth or [], subject.growth_span)


def check_nagios(report: CheckReport, thresholds: dict) -> str:
    """`SESSIONS CRITICAL - t440 92% (55/60), pc-a 40% (16/40) | 'pc-a'=16;32;36;0;40 ...`.

    Worst first in the text; perfdata in config order, warn/crit at the counts where the exit code turns
    WARNING and CRITICAL, so a graph's lines and the states agree.
    """
    rank = {"unknown": 3.5, "critical": 4, "warning": 2, "notice": 1, "ok": 0}
    ordered = sorted(report.subjects, key=lambda s: -rank[s.level if s.reading else "unknown"])
    text = ", ".join(f"{subject_label(s)} {usage_text(s)}" for s in ordered)
    perf = []
    for s in report.subjects:
        warn, crit = (threshold_count(s.limit, thresholds[level]) for level in ("warning", "critical"))
        value = s.reading.count if s.reading else "U"
        label = s.name if s.kind == "host" else f"{s.kind}:{s.name}"
        perf.append(f"'{label}'={value};{warn};{crit};0;{s.limit}")
    return f"SESSIONS {STATUS[report.exit_code]} - {text} | {' '.join(perf)}"


def threshold_count(limit: int, percent: float) -> int:
    """The fewest sessions whose usage reaches `percent` of `limit`, by the usage the levels are judged on."""
    count = math.ceil(limit * percent / 100)
    # the float division can land a count either side of the exact threshold: step to the one the levels see
    while count > 0 and Reading(count - 1, limit).usage >= percent:
        count -= 1
    while Reading(count, limit).usage < percent:
        count += 1
    return count


def check_table(report: CheckReport):
    from rich.table import Table
    from rich.text import Text

    colours = {"ok": "green", "notice": "cyan", "warning": "yellow", "critical": "bold red", "unknown": "magenta"}
    table = Table(title=f"Sessions at {iso_time(report.time)}", title_justify="left")
    # the sessions archived and not purged yet, once there are any (delete mode never has them)
    purge = ("To purge",) if any(s.waiting_for_purge for s in report.subjects) else ()
    for column in ("Host", "Sessions", "Limit", "Usage", "Level", "Change", "Idle", *purge, "Holders", "Forecast",
                   "Note"):
        table.add_column(column, justify="left" if column in ("Host", "Level", "Holders", "Forecast", "Note")
                         else "right")
    for s in report.subjects:
        r = s.reading
        level = s.level if r else "unknown"
        note = safe(s.error or "") if r is None else (s.server_version or unreachable_text(s))
        note = "; ".join(part for part in (s.quiet.text if s.quiet else "", note) if part)
        table.add_row(
            Text(subject_label(s)), str(r.count) if r else "-", str(s.limit), f"{r.usage:.0f}%" if r else "-",
            Text(level, style=colours[level]), change_text(s.change), "" if not r or r.idle is None else str(r.idle),
            *((_known(s.waiting_for_purge),) if purge else ()), Text(holders_text(s.holders)),
            Text("; ".join(p for p in (forecast_text(s.forecast), growth_text(s)) if p)), Text(note),
        )
    return table


def _known(count: int | None) -> str:
    return "" if count is None else str(count)


def print_check(report: CheckReport, fmt: str, thresholds: dict) -> None:
    import click

    if fmt == "json":
        click.echo(json.dumps(check_json(report), indent=2))
    elif fmt == "nagios":
        click.echo(check_nagios(report, thresholds))
    elif fmt == "table":
        from rich.console import Console

        Console().print(check_table(report))
    else:
        click.echo(check_plain(report))


# --- cleanup ---------------------------------------------------------------------------------


def _action(o) -> dict:
    return {"key": o.decision.key, "session_id": o.decision.session_id, "agent": o.decision.agent,
            "idle_seconds": None if o.decision.idle_seconds is None else round(o.decision.idle_seconds),
            "result": o.result, "error": o.error}


def cleanup_json(reports, rules, dry_run: bool, reserve: int, now: float, run_id: str | None = None) -> dict:
    def host(r) -> dict:
        limit = r.host.limit
        return {
            "name": r.host.name, "status": r.status, "error": r.error,
            "held_by": {"kind": r.held.kind, "id": r.held.id, "until": iso_time(r.held.until), "text": r.held.text}
            if r.held else None,
            "before": r.before, "after": r.after, "limit": limit,
            "usage_before": None if r.before is None else round(100 * r.before / limit, 1),
            "usage_after": None if r.after is None else round(100 * r.after / limit, 1),
            "mode": r.mode, "fallback": r.fallback,
            # closed: left the usage (archived or deleted)
            "closed": r.closed, "archived": r.count("archived"), "deleted": r.count("closed"), "purged": r.purged,
            "failed": r.failed, "skipped_changed": r.count("skipped: changed"),
            "already_gone": r.count("already gone"), "kept": dict(r.kept),
            "reserve": reserve, "reserve_met": None if r.after is None else limit - r.after >= reserve,
            "actions": [_action(o) for o in r.outcomes],
            "purges": [_action(o) for o in r.purges],
            "plan": [{"key": d.key, "agent": d.agent, "decision": "close" if d.close else "keep", "reason": d.reason,
                      "idle_seconds": None if d.idle_seconds is None else round(d.idle_seconds),
                      "priority": d.priority, "order": d.order, "why": place_text(d)}
                     for d in r.decisions] if dry_run else None,
        }

    return {"version": JSON_VERSION, "time": iso_time(now), "run_id": run_id, "dry_run": dry_run,
            "idle_after_seconds": rules.idle_after,
            "max_per_run": rules.max_per_run, "hosts": [host(r) for r in reports]}


# how the line with a host's error starts, by how far its run got
STOPPED = {NOT_CLEANED: "not cleaned: ", PARTLY_CLEANED: "partly cleaned, stopped early: ", CLEANED: "cleaned, but "}


def cleanup_summary(r, reserve: int, dry_run: bool) -> list[str]:
    name = r.host.name
    if r.before is None:
        return [f"{name}: not cleaned: {safe(r.held.text if r.held else r.error)}"]
    limit = r.host.limit
    kept = ", ".join(f"{n} {reason}" for reason, n in r.kept.most_common()) or "none"
    verb = ("would " if dry_run else "") + (("archive" if dry_run else "archived") if r.mode == ARCHIVE
                                            else ("close" if dry_run else "closed"))
    closing = len(r.outcomes) if dry_run else r.closed
    after = "?" if r.after is None else f"{r.after}"
    usage_after = "" if r.after is None else f" -> {100 * r.after / limit:.0f}%"
    purged = f"; {'would purge' if dry_run else 'purged'} {len(r.purges) if dry_run else r.purged}" if r.purges else ""
    lines = [f"{name}: {r.before} -> {after} sessions ({100 * r.before / limit:.0f}%{usage_after} of {limit}); "
             f"{verb} {closing}{purged}; kept {sum(r.kept.values())} ({kept})"
             + ("" if dry_run else f"; skipped (changed) {r.count('skipped: changed')}; already gone "
                                    f"{r.count('already gone')}; failed {r.failed}")
             + (f"; {'would delete' if dry_run else 'deleted'}, not archived: {r.fallback}" if r.fallback else "")]
    if r.error:
        lines.append(f"{name}: {STOPPED[r.status]}{safe(r.error)}")
    for o in [*r.purges, *r.outcomes]:
        if o.result in ("failed", "unknown"):
            lines.append(f"{name}: {o.result}: {safe(o.decision.key)}: {safe(o.error or '')}")
    if r.after is not None and limit - r.after < reserve:
        free = limit - r.after
        lines.append(f"{name}: reserve not met: {plural(free, 'free slot')} after cleanup, {reserve} wanted; "
                     + "; ".join(reserve_causes(r)))
    return lines


def reserve_causes(r) -> list[str]:
    """Why a host's cleanup left fewer free slots than the reserve: what held sessions back, the cap first."""
    held = r.kept[OVER_CAP]
    causes = []
    if held:
        causes.append(f"the per-run cap held {plural(held, 'idle session')} back (the next run closes them, or raise "
                      "max_per_run)")
    if r.failed:
        causes.append(f"{plural(r.failed, 'delete')} failed")
    if r.count("skipped: changed"):
        causes.append(f"{plural(r.count('skipped: changed'), 'session')} woke up since the listing")
    in_use = ", ".join(f"{n} {reason}" for reason, n in r.kept.most_common() if reason != OVER_CAP)
    if in_use:
        # only idle sessions may be closed: unless the cap is what held them, the rest needs a person
        causes.append(f"the other sessions are in use or protected ({in_use})"
                      + ("" if held else ": for a person to look at"))
    return causes or ["no session was left that may be closed"]


def place_text(d) -> str | None:
    """'3rd: low priority (support), idle 9h': where a session that may close comes in the run's order, and why
    (None for one kept by a rule)."""
    if d.order is None:
        return None
    return f"{ordinal(d.order)}: {d.priority} priority ({safe(d.agent or '-')}), idle {duration_text(d.idle_seconds)}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def print_cleanup(reports, rules, dry_run: bool, reserve: int, fmt: str, now: float, run_id: str | None = None) -> None:
    import click

    if fmt == "json":
        click.echo(json.dumps(cleanup_json(reports, rules, dry_run, reserve, now, run_id), indent=2))
        return
    if dry_run:
        plan_rows = [(r.host.name, d, "archive" if r.mode == ARCHIVE else "close")
                     for r in reports for d in r.decisions]
        if fmt == "table":
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text

            table = Table(
                title=f"Cleanup plan (dry run), idle after {duration_text(rules.idle_after)}", title_justify="left"
            )
            for column in ("Host", "Session", "Agent", "Idle", "Decision", "Reason"):
                table.add_column(column, justify="right" if column == "Idle" else "left")
            for host, d, verb in plan_rows:
                why = place_text(d)
                reason = why if d.close else d.reason + (f" ({why})" if why else "")
                table.add_row(host, Text(safe(d.key, 80)), Text(safe(d.agent or "-")), duration_text(d.idle_seconds),
                              Text(verb, style="bold red") if d.close else "keep", Text(reason))
            Console().print(table)
        else:
            for host, d, verb in plan_rows:
                why = place_text(d)
                click.echo(f"{host} {verb if d.close else 'keep'} {safe(d.key, 300)} agent={safe(d.agent or '-')} "
                           f"idle={duration_text(d.idle_seconds)} reason={d.reason}" + (f" why={why}" if why else ""))
    for r in reports:
        for line in cleanup_summary(r, reserve, dry_run):
            click.echo(line)


# --- restore ---------------------------------------------------------------------------------

# a restore's results, as the summary says them and --json names their counts
RESTORE_COUNTS = {"restored": "restored", "already active": "already_active", "purged": "purged",
                  "not the guardian's": "not_the_guardians", "refused: session id changed": "refused_changed",
                  "already gone": "already_gone", "failed": "failed", "unknown": "unknown", "planned": "planned"}


def restore_json(reports, dry_run: bool, now: float, run_id: str) -> dict:
    return {"version": JSON_VERSION, "time": iso_time(now), "run_id": run_id, "dry_run": dry_run, "hosts": [
        {"name": r.host.name, "error": r.error, "fallback": r.fallback,
         **{name: r.count(result) for result, name in RESTORE_COUNTS.items()},
         "results": [{"key": i.key, "session_id": i.session_id, "result": i.result, "error": i.error}
                     for i in r.results]} for r in reports]}


def print_restore(reports, dry_run: bool, fmt: str, now: float, run_id: str) -> None:
    import click

    if fmt == "json":
        click.echo(json.dumps(restore_json(reports, dry_run, now, run_id), indent=2))
        return
    if not reports:
        click.echo("nothing to restore: no cleanup closed a session that matches")
    for r in reports:
        for item in r.results:
            result = "would restore" if item.result == "planned" else item.result
            why = f" ({safe(item.error)})" if item.error else ""
            click.echo(f"{r.host.name} {result} {safe(item.key, 300)}{why}")
        counts = [f"{'would restore' if result == 'planned' else result} {r.count(result)}"
                  for result in RESTORE_COUNTS if r.count(result)]
        click.echo(f"{r.host.name}: {'; '.join(counts) or 'nothing to restore'}")
        if r.fallback:
            click.echo(f"{r.host.name}: {r.fallback}: cleanup deletes there, and what it deleted cannot be restored")
        if r.error:
            click.echo(f"{r.host.name}: stopped: {safe(r.error)}")


# --- report ----------------------------------------------------------------------------------

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(series: list[tuple[float, float | None]], since: float, until: float, width: int = 32) -> str:
    """Usage over the period, one character per slice of time on a 0-100 % scale (blank: no reading)."""
    columns: list[float | None] = [None] * width
    for when, usage in series:
        if usage is None or until <= since:
            continue
        index = min(width - 1, max(0, int((when - since) / (until - since) * width)))
        columns[index] = max(usage, columns[index] or 0.0)
    return "".join(" " if u is None else SPARK[min(len(SPARK) - 1, int(u / 100 * len(SPARK)))] for u in columns)


def level_times_text(subject) -> str:
    spent = subject.time_at_level
    return " ".join(f"{level}={duration_text(seconds)}" for level, seconds in spent.items() if seconds)


def alerts_text(subject) -> str:
    return ",".join(f"{level}:{n}" for level, n in subject.alerts_sent.items() if n) or "none"


def undo_plain(subject) -> list[str]:
    """archived=, purged=, restored= of a host where archive mode did any of it."""
    return [f"{result}={subject.outcomes(result)}" for result in UNDO if subject.outcomes(result)]


def report_json(report) -> dict:
    def entry(s) -> dict:
        latest = s.latest
        return {
            "name": s.name, "limit": s.limit, "samples": s.samples,
            "as_of": iso_time(latest.time) if latest else None, "sessions_now": latest.sessions if latest else None,
            "level_now": latest.level if latest else None,
            "usage": {key: None if value is None else round(value, 1) for key, value in s.usage.items()},
            "time_at_level_seconds": {level: round(seconds) for level, seconds in s.time_at_level.items()},
            "alerts_sent": s.alerts_sent, "sessions_closed": s.sessions_closed,
            **{f"sessions_{result}": s.outcomes(result) for result in UNDO},
            "forecast": forecast_json(s.forecast, s.limit),
            "peak": s.peak.as_json(),
            "series": [[round(when, 3), None if usage is None else round(usage, 1)] for when, usage in s.series],
            **agents_json(s),
        }

    hottest = report.hottest
    return {
        "version": JSON_VERSION,
        "time": iso_time(report.now),
        "since": iso_time(report.since),
        "thresholds": report.thresholds,
        "hottest": hottest.name if hottest else None,
        "headline": report_headline(report),
        "hosts": [entry(s) for s in report.subjects if s.kind == "host"],
        "pools": [entry(s) for s in report.subjects if s.kind == "pool"],
        "agents": [entry(s) for s in report.subjects if s.kind == "agent"],
        "alerts": [
            {
                "time": iso_time(a.time),
                "subject": a.subject,
                "reason": a.reason,
                "level": a.level,
                "count": a.count,
                "limit": a.limit,
                "usage": a.usage,
                "detail": a.detail,
                "channels": list(a.channels),
                "failed_channels": list(a.failed),
            }
            for a in report.alerts
        ],
        "cleanups": [
            {
                "time": iso_time(run.time),
                "host": run.host,
                "command": run.command,
                "run_id": run.run_id,
                "closed": run.closed,
                "results": run.results,
            }
            for run in report.cleanups
        ],
        "quiet": [quiet_report_json(q) for q in report.quiet],
    }


def report_plain(report) -> str:
    lines = [f"report {iso_time(report.since)} .. {iso_time(report.now)}", report_headline(report)]
    for s in report.subjects:
        usage = s.usage
        parts = [subject_label(s), f"now={percent(usage['now'])}", f"min={percent(usage['min'])}",
                 f"mean={percent(usage['mean'], 1)}", f"max={percent(usage['max'])}", level_times_text(s),
                 f"alerts={alerts_text(s)}", f"closed={s.sessions_closed}", *undo_plain(s), *forecast_plain(s.forecast),
                 f"usage=[{sparkline(s.series, report.since, report.now)}]"]
        lines.append(" ".join(p for p in parts if p))
    lines += [f"peak {safe(subject_label(s))}: {peak_text(s.peak, report.now)}" for s in report.subjects]
    lines += agents_plain(report)
    for a in report.alerts:
        lines.append(f"alert {iso_time(a.time)} {safe(a.subject)} {a.level} {a.reason} {percent(a.usage)} "
                     f"channels={','.join(map(safe, a.channels)) or 'none'}"
                     + (f" failed={','.join(map(safe, a.failed))}" if a.failed else ""))
    for run in report.cleanups:
        outcomes = " ".join(f"{result.replace(': ', '_').replace(' ', '_')}={n}" for result, n in run.results.items())
        lines.append(f"cleanup {iso_time(run.time)} {safe(run.host)} {outcomes} by={run.command}")
    lines += [f"quiet {safe(quiet_report_text(q), 2000)}" for q in report.quiet]
    return "\n".join(lines)


def agents_json(subject) -> dict:
    """A host's `agents` over the period (top N by sessions now, then `other`); nothing for a pool or an agent."""
    return {"agents": [a.as_json() for a in subject.agents]} if subject.kind == "host" else {}


def agents_plain(report) -> list[str]:
    """'agent-period t440 sales now=31 max=35 growth=+4 closed=12': one line per host and agent."""
    return [f"agent-period {safe(s.name)} {safe(a.agent, 80)} now={a.now} max={a.max} growth={a.growth:+d} "
            f"closed={a.closed}" for s in report.subjects for a in s.agents]


def agents_table(report) -> list:
    """The per-agent table (now, max, growth, closed by cleanup over the period), when a host has agents."""
    from rich.table import Table
    from rich.text import Text

    rows = [(s, a) for s in report.subjects for a in s.agents]
    if not rows:
        return []
    table = Table(title="Sessions by agent", title_justify="left")
    for column in ("Host", "Agent", "Now", "Max", "Growth", "Closed"):
        table.add_column(column, justify="left" if column in ("Host", "Agent") else "right")
    for s, a in rows:
        table.add_row(Text(safe(s.name)), Text(safe(a.agent, 80)), str(a.now), str(a.max), f"{a.growth:+d}",
                      str(a.closed))
    return [table]


def report_tables(report) -> list:
    from rich.table import Table
    from rich.text import Text

    colours = {"ok": "green", "notice": "cyan", "warning": "yellow", "critical": "bold red", None: "magenta"}
    hosts = Table(title=f"Sessions from {iso_time(report.since)} to {iso_time(report.now)}", title_justify="left",
                  caption=report_headline(report), caption_justify="left")
    # archive mode's columns, those the period has any of (delete mode has none)
    undo = [result for result in UNDO if any(run.results.get(result) for run in report.cleanups)]
    counts = ("Closed", *(result.capitalize() for result in undo))
    for column in ("Host", "Now", "Min", "Mean", "Max", "Usage over the period", "Time at level", "Alerts sent",
                   *counts, "Forecast"):
        hosts.add_column(column, justify="right" if column in ("Now", "Min", "Mean", "Max", *counts) else "left")
    for s in report.subjects:
        usage, latest = s.usage, s.latest
        hosts.add_row(Text(subject_label(s)), Text(percent(usage["now"]), style=colours[latest and latest.level]),
                      percent(usage["min"]), percent(usage["mean"], 1), percent(usage["max"]),
                      sparkline(s.series, report.since, report.now), level_times_text(s), alerts_text(s),
                      str(s.sessions_closed), *(str(s.outcomes(result)) for result in undo),
                      forecast_text(s.forecast))
    peaks = Table(title="Daily peaks", title_justify="left")
    for column in ("Subject", "Peak forecast"):
        peaks.add_column(column)
    for s in report.subjects:
        peaks.add_row(Text(subject_label(s)), peak_text(s.peak, report.now))
    alerts = Table(title="Alerts", title_justify="left")
    for column in ("Time", "Subject", "Level", "Reason", "Usage", "Channels"):
        alerts.add_column(column)
    for a in report.alerts:
        alerts.add_row(
            iso_time(a.time),
            Text(safe(a.subject)),
            Text(a.level, style=colours.get(a.level, "")),
            a.reason,
            percent(a.usage),
            Text(", ".join(a.channels) + (f" (failed: {', '.join(a.failed)})" if a.failed else "")),
        )
    cleanups = Table(title="Cleanups", title_justify="left")
    for column in ("Time", "Host", *counts, "Other outcomes", "By"):
        cleanups.add_column(column, justify="right" if column in counts else "left")
    for run in report.cleanups:
        cleanups.add_row(iso_time(run.time), Text(safe(run.host)), str(run.closed),
                         *(str(run.results.get(result, 0)) for result in undo),
                         Text(safe(other_outcomes(run))), run.command)
    quiet = Table(title="Silences, acknowledgements and maintenance windows", title_justify="left")
    for column in QUIET_COLUMNS:
        quiet.add_column(column)
    for q in report.quiet:
        quiet.add_row(*(Text(safe(cell)) for cell in quiet_row(q)))
    return [hosts, peaks, *agents_table(report), alerts, cleanups, *([quiet] if report.quiet else [])]


def print_report(report, fmt: str, output: str | None) -> None:
    """The report to stdout, or to the file `output` (replaced whole)."""
    import click

    if fmt == "table":
        import io

        from rich.console import Console

        console = Console(file=io.StringIO(), width=160) if output else Console()
        for table in report_tables(report):
            console.print(table)
        text = console.file.getvalue() if output else None
    elif fmt == "html":
        from guardian.output.dashboard import page

        text = page(report)
    elif fmt == "json":
        text = json.dumps(report_json(report), indent=2)
    else:
        text = report_plain(report)
    if output:
        from pathlib import Path

        Path(output).write_text(text if text.endswith("\n") else text + "\n")
    elif text is not None:
        click.echo(text)
