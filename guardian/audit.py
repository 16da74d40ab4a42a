"""audit.jsonl: an append-only record of alerts delivered and cleanup actions.

One JSON object per line, each written with a single write() on an O_APPEND descriptor and
fsynced before the call returns, so concurrent runs never interleave a line and a crash leaves
every record up to the last action. The file is created 0600 and never rewritten.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path


def new_run_id() -> str:
    return os.urandom(6).hex()


class AuditLog:
    def __init__(self, state_dir: Path, run_id: str, command: str):
        self.path = Path(state_dir) / "audit.jsonl"
        self.run_id = run_id
        self.command = command

    def write(self, now: float, event: str, **fields) -> None:
        record = {"time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
                  "run_id": self.run_id, "command": self.command, "event": event, **fields}
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def read(state_dir: Path) -> list[dict]:
    """Every record, skipping a torn last line (a crash mid-write) rather than failing."""
    try:
        lines = (Path(state_dir) / "audit.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
