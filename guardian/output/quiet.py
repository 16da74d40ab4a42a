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
