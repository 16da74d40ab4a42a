"""audit.jsonl: an append-only record of alerts delivered and cleanup and restore actions (each with its `action`:
archive, delete, purge, restore).

One JSON object per line, written with a single write() on an O_APPEND descriptor (several lines
at once when they may share one flush), so concurrent runs never interleave a line, and fsynced
before the call returns unless the caller has a later fsync coming (a delete's outcome). The file
is created 0600 and never rewritten.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from guardian.adapters.files import private_dir
from guardian.adapters.state import StateError
from guardian.core.records import CleanupRun

BLOCK = 1 << 16  # read_since reads the file backwards in blocks of this many bytes


def new_run_id() -> str:
    return os.urandom(6).hex()


class AuditError(StateError):
    """audit.jsonl cannot be appended to or read (another owner, a full or read-only disk): one sentence."""

    def __init__(self, message: str, path: Path, reason: str, writing: bool):
        super().__init__(message)
        self.path = path
        self.reason = reason  # the system's word: Permission denied, No space left on device
        self.writing = writing


class AuditLog:
    def __init__(self, state_dir: Path, run_id: str, command: str):
        self.path = Path(state_dir) / "audit.jsonl"
        self.run_id = run_id
        self.command = command
        self._fd: int | None = None  # open for the length of kept_open()
        self.failures: list[AuditError] = []  # what this log could not do, for a run that goes on without it

    def write(self, now: float, event: str, **fields) -> None:
        self.write_all([(now, event, fields)])

    def write_all(self, records: list[tuple[float, str, dict]], sync: bool = True) -> None:
        """(time, event, fields) records in one write() and, with `sync`, one fsync, in order.

        For records that are durable together without losing exactness: decisions made at once
        (a plan, the intents of a batch of deletes). Without `sync` the records are in the kernel,
        safe from a crash of this process but not of the machine, until the next fsync: for a
        delete's outcome, whose loss would only leave its intent saying "may or may not be gone".
        An fsync costs about as much as a fast gateway's delete.
        """
        if not records:
            return
        data = b"".join(self._line(now, event, fields) for now, event, fields in records)
        try:
            fd = self._fd if self._fd is not None else self._open()
            try:
                written = 0
                while written < len(data):  # a short write (a signal) goes on; a full disk raises ENOSPC
                    written += os.write(fd, data[written:])
                if sync:
                    os.fsync(fd)
            finally:
                if fd != self._fd:
                    os.close(fd)
        except OSError as exc:
            raise self._error(exc) from None

    @contextlib.contextmanager
    def kept_open(self):
        """One descriptor for a run of many writes (a cleanup's deletes) instead of an open() per write."""
        try:
            self._fd = self._open()
        except OSError as exc:
            raise self._error(exc) from None
        try:
            yield self
        finally:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        private_dir(self.path.parent)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _error(self, exc: OSError) -> AuditError:
        # the caller must not act without its record (a delete waits for its intent line)
        error = AuditError(f"cannot append to {self.path} ({exc.strerror}); stopped before acting without a record",
                           self.path, exc.strerror, writing=True)
        self.failures.append(error)
        return error

    def records_since(self, since: float) -> list[dict]:
        """read_since for a run that goes on without the log: none when it cannot be read (see `failures`)."""
        try:
            return read_since(self.path.parent, since)
        except AuditError as exc:
            self.failures.append(exc)
            return []

    def _line(self, now: float, event: str, fields: dict) -> bytes:
        record = {"time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds"),
                  "run_id": self.run_id, "command": self.command, "event": event, **fields}
        return (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


def read(state_dir: Path) -> list[dict]:
    """Every record, skipping a torn last line (a crash mid-write) rather than failing."""
    try:
        lines = (Path(state_dir) / "audit.jsonl").read_bytes().splitlines()
    except FileNotFoundError:
        return []
    return parse_lines(lines)


def read_since(state_dir: Path, since: float) -> list[dict]:
    """The records timed from `since` on, read backwards from the end of the file.

    The log only grows, and a check wants its last minutes: this reads a few blocks, not the file.
    AuditError when it exists but cannot be read.
    """
    path = Path(state_dir) / "audit.jsonl"
    try:
        with open(path, "rb") as handle:
            return _records_since(handle, since)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditError(f"cannot read {path} ({exc.strerror})", path, exc.strerror, writing=False) from None


def _records_since(handle, since: float) -> list[dict]:
    start = handle.seek(0, os.SEEK_END)
    data = b""
    while start > 0:
        size = min(BLOCK, start)
        start -= size
        handle.seek(start)
        data = handle.read(size) + data
        lines = data.split(b"\n", 2)
        earliest = lines[0] if start == 0 else lines[1] if len(lines) == 3 else None  # a whole line
        records = parse_lines([earliest]) if earliest else []
        if records and (timestamp(records[0]) or since) < since:
            break
    if start > 0:
        data = data.split(b"\n", 1)[1]  # the first line was cut by the block
    return [r for r in parse_lines(data.splitlines()) if (timestamp(r) or since - 1) >= since]


def parse_lines(lines: list[bytes]) -> list[dict]:
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def timestamp(record: dict) -> float | None:
    try:
        return datetime.fromisoformat(record["time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def events(records: list[dict], event: str) -> Iterator[tuple[float, dict]]:
    """(time, record) of each record of this event that has a readable time."""
    for record in records:
        when = timestamp(record)
        if record.get("event") == event and when is not None:
            yield when, record


def cleanup_runs(records: list[dict]) -> list[CleanupRun]:
    """The outcomes of the records (archive, delete, purge; restore in a run of command "restore"), one CleanupRun
    per run and host, oldest first: `results` counts each result, and CleanupRun.closed is what left the usage
    (archived or deleted)."""
    runs: dict[tuple, CleanupRun] = {}
    for when, record in events(records, "outcome"):
        key = (record.get("run_id"), record.get("host"))
        run = runs.setdefault(key, CleanupRun(when, str(record.get("host")), str(record.get("run_id")),
                                              str(record.get("command")), {}))
        result = str(record.get("result"))
        run.results[result] = run.results.get(result, 0) + 1
    return sorted(runs.values(), key=lambda run: run.time)


CLOSED = ("closed", "archived")  # the outcomes that left the usage (CleanupRun.closed)


def closed_by_agent(records: list[dict]) -> dict[tuple[str, str], int]:
    """The sessions cleanup closed (deleted or archived), by (host, agent), over the outcome records; a session with
    no agent (global, unknown) under `main`, as the gateway's status counts it."""
    closed: dict[tuple[str, str], int] = {}
    for _, record in events(records, "outcome"):
        if record.get("result") in CLOSED:
            key = (str(record.get("host")), str(record.get("agent") or "main"))
            closed[key] = closed.get(key, 0) + 1
    return closed
