"""Output: a rich table on a terminal, plain lines when piped, documented JSON, the Nagios line.

`rich` is imported only for the table, so cron runs (piped, plain) never load it.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from guardian.check import CheckReport, Subject
from guardian.notify import safe

STATUS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
JSON_VERSION = 1


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def usage_text(subject: Subject) -> str:
    r = subject.reading
    return f"{r.usage:.0f}% ({r.count}/{r.limit})" if r else "unknown"


def change_text(change: int | None) -> str:
    return "" if change is None else f"{change:+d}"


def subject_label(subject: Subject) -> str:
    return f"pool {subject.name}" if subject.kind == "pool" else subject.name


def check_json(report: CheckReport) -> dict:
    def entry(s: Subject) -> dict:
        r = s.reading
        data = {"name": s.name, "reachable": r is not None, "sessions": r.count if r else None, "limit": s.limit,
                "usage": round(r.usage, 1) if r else None, "level": s.level if r else "unknown",
                "change": s.change, "idle": r.idle if r else None}
        if s.kind == "host":
            data.update(url=s.url, server_version=s.server_version,
                        elapsed_ms=round(s.elapsed * 1000) if s.elapsed is not None else None, error=s.error)
        else:
            data["hosts"] = list(s.members)
        return data

    code = report.exit_code
    levels = [s.level for s in report.subjects if s.reading]
    status = "unknown" if code == 3 else max(levels, key=["ok", "notice", "warning", "critical"].index, default="ok")
    return {
        "version": JSON_VERSION, "time": iso(report.time), "status": status, "exit_code": code,
        "hosts": [entry(s) for s in report.subjects if s.kind == "host"],
        "pools": [entry(s) for s in report.subjects if s.kind == "pool"],
        "alerts": [{"channel": d.channel, "sent": d.sent, "delivered": d.sent and d.error is None, "error": d.error,
                    "lines": [line.to_json(iso(report.time)) for line in d.lines]} for d in report.deliveries],
        "warnings": report.warnings,
    }


def check_plain(report: CheckReport) -> str:
    lines = []
    for s in report.subjects:
        if s.reading is None:
            lines.append(f"{subject_label(s)} UNKNOWN {safe(s.error or 'a member host is unknown')}")
            continue
        parts = [subject_label(s), usage_text(s), s.level]
        if s.change is not None:
            parts.append(f"change={change_text(s.change)}")
        if s.reading.idle is not None:
            parts.append(f"idle={s.reading.idle}")
        lines.append(" ".join(parts))
    return "\n".join(lines)


def check_nagios(report: CheckReport, thresholds: dict) -> str:
    """`SESSIONS CRITICAL - t440 92% (55/60), pc-a 40% (16/40) | 'pc-a'=16;26;32;0;40 ...`.

    Worst first in the text; perfdata in config order, warn/crit at the notice/warning counts.
    """
    rank = {"unknown": 3.5, "critical": 4, "warning": 2, "notice": 1, "ok": 0}
    ordered = sorted(report.subjects, key=lambda s: -rank[s.level if s.reading else "unknown"])
    text = ", ".join(f"{subject_label(s)} {usage_text(s)}" for s in ordered)
    perf = []
    for s in report.subjects:
        warn, crit = (math.ceil(s.limit * thresholds[level] / 100 - 1e-9) for level in ("notice", "warning"))
        value = s.reading.count if s.reading else "U"
        label = s.name if s.kind == "host" else f"pool:{s.name}"
        perf.append(f"'{label}'={value};{warn};{crit};0;{s.limit}")
    return f"SESSIONS {STATUS[report.exit_code]} - {text} | {' '.join(perf)}"


def check_table(report: CheckReport):
    from rich.table import Table
    from rich.text import Text

    colours = {"ok": "green", "notice": "cyan", "warning": "yellow", "critical": "bold red", "unknown": "magenta"}
    table = Table(title=f"Sessions at {iso(report.time)}", title_justify="left")
    for column in ("Host", "Sessions", "Limit", "Usage", "Level", "Change", "Idle", "Note"):
        table.add_column(column, justify="right" if column in ("Sessions", "Limit", "Usage", "Change", "Idle") else "left")
    for s in report.subjects:
        r = s.reading
        level = s.level if r else "unknown"
        note = safe(s.error or "") if r is None else (s.server_version or "")
        table.add_row(
            Text(subject_label(s)), str(r.count) if r else "-", str(s.limit), f"{r.usage:.0f}%" if r else "-",
            Text(level, style=colours[level]), change_text(s.change), "" if not r or r.idle is None else str(r.idle),
            Text(note),
        )
    return table


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


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds % size // {"d": 3600, "h": 60, "m": 1}[unit]
            return f"{seconds // size}{unit}{rest:02d}{ {'d': 'h', 'h': 'm', 'm': 's'}[unit]}" if rest else f"{seconds // size}{unit}"
    return f"{seconds}s"


def cleanup_json(reports, rules, dry_run: bool, reserve: int, now: float) -> dict:
    def host(r) -> dict:
        limit = r.host.limit
        return {
            "name": r.host.name, "error": r.error, "before": r.before, "after": r.after, "limit": limit,
            "usage_before": None if r.before is None else round(100 * r.before / limit, 1),
            "usage_after": None if r.after is None else round(100 * r.after / limit, 1),
            "closed": r.closed, "failed": r.failed, "skipped_changed": r.count("skipped: changed"),
            "already_gone": r.count("already gone"), "kept": dict(r.kept),
            "reserve": reserve, "reserve_met": None if r.after is None else limit - r.after >= reserve,
            "actions": [{"key": o.decision.key, "session_id": o.decision.session_id, "agent": o.decision.agent,
                         "idle_seconds": None if o.decision.idle_seconds is None else round(o.decision.idle_seconds),
                         "result": o.result, "error": o.error} for o in r.outcomes],
            "plan": [{"key": d.key, "agent": d.agent, "decision": "close" if d.close else "keep", "reason": d.reason,
                      "idle_seconds": None if d.idle_seconds is None else round(d.idle_seconds)}
                     for d in r.decisions] if dry_run else None,
        }

    return {"version": JSON_VERSION, "time": iso(now), "dry_run": dry_run, "idle_after_seconds": rules.idle_after,
            "max_per_run": rules.max_per_run, "hosts": [host(r) for r in reports]}


def cleanup_summary(r, reserve: int, dry_run: bool) -> list[str]:
    name = r.host.name
    if r.before is None:
        return [f"{name}: not cleaned: {safe(r.error)}"]
    limit = r.host.limit
    kept = ", ".join(f"{n} {reason}" for reason, n in r.kept.most_common()) or "none"
    verb = "would close" if dry_run else "closed"
    closing = len(r.outcomes) if dry_run else r.closed
    after = "?" if r.after is None else f"{r.after}"
    usage_after = "" if r.after is None else f" -> {100 * r.after / limit:.0f}%"
    lines = [f"{name}: {r.before} -> {after} sessions ({100 * r.before / limit:.0f}%{usage_after} of {limit}); "
             f"{verb} {closing}; kept {sum(r.kept.values())} ({kept})"
             + ("" if dry_run else f"; skipped (changed) {r.count('skipped: changed')}; already gone "
                                    f"{r.count('already gone')}; failed {r.failed}")]
    if r.error:
        lines.append(f"{name}: stopped early: {safe(r.error)}")
    for o in r.outcomes:
        if o.result in ("failed", "unknown"):
            lines.append(f"{name}: {o.result}: {safe(o.decision.key)}: {safe(o.error or '')}")
    if r.after is not None and limit - r.after < reserve:
        lines.append(f"{name}: reserve not met: {limit - r.after} free slots after cleanup, {reserve} wanted; "
                     f"only idle sessions may be closed, so the rest is for a person to look at")
    return lines


def print_cleanup(reports, rules, dry_run: bool, reserve: int, fmt: str, now: float) -> None:
    import click

    if fmt == "json":
        click.echo(json.dumps(cleanup_json(reports, rules, dry_run, reserve, now), indent=2))
        return
    if dry_run:
        plan_rows = [(r.host.name, d) for r in reports for d in r.decisions]
        if fmt == "table":
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text

            table = Table(title=f"Cleanup plan (dry run), idle after {duration_text(rules.idle_after)}", title_justify="left")
            for column in ("Host", "Session", "Agent", "Idle", "Decision", "Reason"):
                table.add_column(column, justify="right" if column == "Idle" else "left")
            for host, d in plan_rows:
                table.add_row(host, Text(safe(d.key, 80)), Text(safe(d.agent or "-")), duration_text(d.idle_seconds),
                              Text("close", style="bold red") if d.close else "keep", d.reason)
            Console().print(table)
        else:
            for host, d in plan_rows:
                click.echo(f"{host} {'close' if d.close else 'keep'} {safe(d.key, 300)} agent={safe(d.agent or '-')} "
                           f"idle={duration_text(d.idle_seconds)} reason={d.reason}")
    for r in reports:
        for line in cleanup_summary(r, reserve, dry_run):
            click.echo(line)
