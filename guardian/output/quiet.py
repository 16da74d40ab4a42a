"""Output of silences, acknowledgements and maintenance windows: `silence list` and the report's part of them."""

from __future__ import annotations

import json
from dataclasses import asdict

from guardian.core.quiet import Listed
from guardian.settings.units import iso_time


def entry_json(row: Listed) -> dict:
    """A silence, ack or window as `silence list --json` and the report's JSON give it."""
    e = row.entry
    ends = iso_time(row.ends) if row.ends is not None else None
    if row.kind == "silence":
        return {"id": e.id, "kind": "silence", "status": row.status, **asdict(e.scope), "starts": iso_time(e.starts),
                "ends": ends, "by": e.by, "reason": e.reason}
    if row.kind == "ack":
        return {"id": e.id, "kind": "ack", "status": row.status, "subject": e.subject, "level": e.level,
                "starts": iso_time(e.made), "ends": ends, "by": e.by, "reason": e.reason}
    return {"id": e.name, "kind": "maintenance", "status": row.status, **asdict(e.scope), "when": e.when, "tz": e.tz,
            "ends": ends, "cleanup": e.cleanup}


def entry_text(row: dict) -> str:
    """One plain line (of entry_json's row): id, kind and status, what it holds, until when, who and why."""
    held = row.get("subject") or ",".join(row["hosts"] + row["pools"] + row["agents"])
    what = f"at {row['level']}" if row["kind"] == "ack" else ",".join(row["alerts"]) or "all alerts"
    where = f" on {','.join(row['channels'])}" if row.get("channels") else ""
    until = f"until {row['ends']}" if row["ends"] else "until the level changes"
    why = f"{row['when']} {row['tz']}" if row["kind"] == "maintenance" else f"by {row['by']}: {row['reason'] or '-'}"
    return f"{row['id']}  {row['kind']} {row['status']}  {held} {what}{where}  {until}  {why}"


def print_listing(rows: list[Listed], as_json: bool) -> None:
    """`guardian silence list`: one line each, or {"quiet": [...]}."""
    import click

    entries = [entry_json(row) for row in rows]
    if as_json:
        click.echo(json.dumps({"quiet": entries}, indent=2))
    for entry in [] if as_json else entries:
        click.echo(entry_text(entry))


# --- the report's part ----------------------------------------------------------------------------


def held_groups(held) -> list[dict]:
    """What a silence, ack or window held (HeldAlerts), one entry per subject, reason and level, first held first."""
    groups: dict[tuple, dict] = {}
    for h in held:
        group = groups.setdefault((h.subject, h.reason, h.level), {
            "subject": h.subject, "reason": h.reason, "level": h.level, "count": 0, "channels": [],
            "first": iso_time(h.time)})
        group["count"] += 1
        group["last"] = iso_time(h.time)
        group["channels"] += [c for c in h.channels if c not in group["channels"]]
    return list(groups.values())


def quiet_report_json(q) -> dict:
    """A silence, ack or window of the report (QuietReport): as in `silence list --json`, and what it held."""
    entry = entry_json(q.entry) if q.entry else {"id": q.id, "kind": q.kind, "status": "unknown"}
    return {**entry, "held_alerts": len(q.held), "held": held_groups(q.held)}


def held_text(q) -> str:
    """'held 12: host:t440 critical repeat x11 on ops; ...', or 'held nothing'."""
    groups = held_groups(q.held)
    if not groups:
        return "held nothing"
    return f"held {len(q.held)}: " + "; ".join(
        f"{g['subject']} {g['level']} {g['reason']} x{g['count']} on {','.join(g['channels'])}" for g in groups)


def quiet_report_text(q) -> str:
    """One plain line of the report: the entry as `silence list` says it (or what the audit log knows), what it held."""
    entry = entry_text(entry_json(q.entry)) if q.entry else f"{q.id}  {q.kind} (no longer in silences.json)"
    return f"{entry}  {held_text(q)}"


QUIET_COLUMNS = ("Id", "Kind", "Status", "Holds", "Until", "Why", "Held")


def quiet_row(q) -> tuple[str, ...]:
    """The report's table row (QUIET_COLUMNS) of a silence, ack or window, unescaped."""
    entry = quiet_report_json(q)
    holds = entry.get("subject") or ",".join(entry.get("hosts", []) + entry.get("pools", []) + entry.get("agents", []))
    if q.kind == "maintenance":
        why = f"{entry['when']} {entry['tz']}"
    else:
        why = f"{entry['by']}: {entry['reason'] or '-'}" if q.entry else "-"
    return q.id, q.kind, entry["status"], holds or "-", entry.get("ends") or "-", why, held_text(q)
