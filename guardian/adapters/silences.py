"""silences.json: the silences and acknowledgements, changed under the state lock, and the commands' changes.

The file is replaced atomically; a corrupt one is moved aside with a warning and the guardian goes on
without it. A check must never stop for it: `SilenceFile.read` never raises (an unreadable file
means no silences and a warning: the alerts go out). A change refuses to write over a file it
could not read, which would lose every silence in it. Entries that stopped holding more than a
week ago are dropped when the file is written. Each change is also an audit record (who, when, why).
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from guardian.adapters.audit import AuditLog, new_run_id
from guardian.adapters.files import move_aside, write_private
from guardian.adapters.state import State, StateError, StateFile
from guardian.core.quiet import (
    UNREACHABLE,
    Ack,
    QuietError,
    Silence,
    ending,
    finish,
    named_subject,
    new_ack,
    new_silence,
    window_end,
)
from guardian.settings.levels import LEVELS
from guardian.settings.model import Config, Scope
from guardian.settings.units import iso_time

VERSION = 1
KEEP = 7 * 86400.0  # ended entries stay this long, for `silence list --all` and the report


@dataclass
class Book:
    """What silences.json holds."""

    silences: list[Silence] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)

    def to_json(self) -> str:
        silences = [{**{k: v for k, v in asdict(s).items() if k != "scope"}, **asdict(s.scope)} for s in self.silences]
        return json.dumps({"version": VERSION, "silences": silences, "acks": [asdict(a) for a in self.acks]},
                          indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Book":
        """ValueError for anything that is not exactly what we write."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != VERSION or set(data) != {"version", "silences", "acks"}:
            raise ValueError(f"not a guardian silences file of version {VERSION}")
        silences = []
        for entry in _entries(data, "silences"):
            scope = {f.name: entry.pop(f.name, None) for f in fields(Scope)}
            if not all(isinstance(names, list) and all(isinstance(n, str) for n in names) for names in scope.values()):
                raise ValueError("a silence's hosts, pools, agents, alerts or channels are not lists of text")
            silences.append(_checked(Silence, {**entry, "scope": Scope(**{k: tuple(v) for k, v in scope.items()})}))
        acks = [_checked(Ack, entry) for entry in _entries(data, "acks")]
        for ack in acks:
            if ack.level not in (*LEVELS[1:], UNREACHABLE):
                raise ValueError(f"ack {ack.id} is of an unknown level {ack.level[:20]!r}")
        return cls(silences, acks)

    def kept(self, now: float) -> "Book":
        """Without the entries that stopped holding more than KEEP ago."""
        return Book([s for s in self.silences if s.over > now - KEEP],
                    [a for a in self.acks if a.over is None or a.over > now - KEEP])

    def new_id(self) -> str:
        """Eight hex digits, short enough to type, not yet taken by a silence or an ack in the file."""
        taken = {s.id for s in self.silences} | {a.id for a in self.acks}
        while (candidate := os.urandom(4).hex()) in taken:
            pass
        return candidate


_TYPES = {"str": (str,), "float": (int, float), "None": (type(None),), "Scope": (Scope,)}


def _entries(data: dict, key: str) -> list[dict]:
    entries = data[key]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{key} is not a list of objects")
    return entries


def _checked(kind, entry: dict):
    value = kind(**entry)  # TypeError on unknown or missing keys
    for item in fields(kind):
        found = getattr(value, item.name)
        allowed = tuple(t for name in item.type.split(" | ") for t in _TYPES[name])
        finite = not isinstance(found, float) or math.isfinite(found)
        if isinstance(found, bool) or not isinstance(found, allowed) or not finite:
            raise ValueError(f"{kind.__name__}.{item.name} is {str(found)[:40]!r}, not {item.type}")
    return value


class SilenceFile:
    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)
        self.path = self.dir / "silences.json"
        self.warnings: list[str] = []

    def read(self) -> Book:
        """The book, for a run that holds the state lock (check); never raises: a fault is a warning."""
        try:
            return self._parsed(self.path.read_text())
        except FileNotFoundError:
            return Book()
        except OSError as exc:
            self.warnings.append(f"cannot read {self.path} ({exc.strerror}); alerts go out unsilenced")
            return Book()

    @contextmanager
    def changing(self, now: float):
        """Yield the book under the state lock; write it back when the block completes."""
        with StateFile(self.dir).lock():
            try:
                book = self._parsed(self.path.read_text())
            except FileNotFoundError:
                book = Book()
            except OSError as exc:
                raise StateError(f"cannot read {self.path} ({exc.strerror}); nothing was changed") from None
            yield book
            self.write(book, now)

    def write(self, book: Book, now: float) -> None:
        """Replace the file (the caller holds the state lock), without the entries ended over a week ago."""
        try:
            write_private(self.path, book.kept(now).to_json())
        except OSError as exc:
            raise StateError(f"cannot write {self.path} ({exc.strerror}); nothing was changed") from None

    def _parsed(self, text: str) -> Book:
        try:
            return Book.from_json(text)
        except (ValueError, TypeError) as exc:
            moved = move_aside(self.path)
            self.warnings.append(f"{self.path} was corrupt ({exc}); moved it to {moved.name}, so nothing is silenced")
            return Book()


# --- the commands' changes ----------------------------------------------------------------------


def operator() -> str:
    """Who is making a change: the user behind sudo, else the user."""
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"


def add(config: Config, scope: Scope, ends: float, reason: str, now: float) -> tuple[Silence, list[str]]:
    """Make and store a silence from now to `ends` (refused as quiet.new_silence says); (it, warnings)."""
    store = SilenceFile(config.state_dir)
    with store.changing(now) as book:
        silence = new_silence(config, scope, ends, reason, operator(), book.new_id(), now)
        book.silences.append(silence)
    details = {**asdict(scope), "starts": iso_time(silence.starts), "ends": iso_time(silence.ends)}
    return silence, store.warnings + _audit(config, "silence", now, "added", silence.id, silence.by, silence.reason,
                                            **details)


def listing(config: Config, now: float, include_ended: bool) -> tuple[list[dict], list[str]]:
    """The active silences, acks and maintenance windows (with `include_ended`, those of the last week too)."""
    store = SilenceFile(config.state_dir)
    with StateFile(config.state_dir).lock():
        book = store.read()
    rows = []
    for s in book.silences:
        status = "active" if s.active(now) else "removed" if s.removed is not None else "expired"
        if include_ended or status == "active":
            rows.append({"id": s.id, "kind": "silence", "status": status, **asdict(s.scope),
                         "starts": iso_time(s.starts), "ends": iso_time(s.ends), "by": s.by, "reason": s.reason})
    for a in book.acks:
        why = ending(a, a.level, now)
        if include_ended or why is None:
            rows.append({"id": a.id, "kind": "ack", "status": "active" if why is None else why, "subject": a.subject,
                         "level": a.level, "starts": iso_time(a.made), "ends": iso_time(a.over) if a.over else None,
                         "by": a.by, "reason": a.reason})
    for w in config.maintenance:
        until = window_end(w, now)
        if until is not None:
            rows.append({"id": w.name, "kind": "maintenance", "status": "active", **asdict(w.scope), "when": w.when,
                         "tz": w.tz, "ends": iso_time(until), "cleanup": w.cleanup})
    return rows, store.warnings


def row_text(row: dict) -> str:
    """One plain line of `silence list`: id, kind and status, what it holds, until when, who and why."""
    held = row.get("subject") or ",".join(row["hosts"] + row["pools"] + row["agents"])
    what = f"at {row['level']}" if row["kind"] == "ack" else ",".join(row["alerts"]) or "all alerts"
    where = f" on {','.join(row['channels'])}" if row.get("channels") else ""
    until = f"until {row['ends']}" if row["ends"] else "until the level changes"
    why = f"{row['when']} {row['tz']}" if row["kind"] == "maintenance" else f"by {row['by']}: {row['reason'] or '-'}"
    return f"{row['id']}  {row['kind']} {row['status']}  {held} {what}{where}  {until}  {why}"


def acknowledge(config: Config, name: str, reason: str, duration: float | None, now: float) -> tuple[Ack, list[str]]:
    """Acknowledge the level the subject holds now (state.json, read under the lock); an earlier ack of it ends."""
    subject = named_subject(name, config)
    store = SilenceFile(config.state_dir)
    by = operator()
    with store.changing(now) as book:
        level = level_now(config.state_dir, subject, config.alerts.unreachable_after)
        ack = new_ack(subject, level, reason, by, book.new_id(), now, duration)
        book.acks = [finish(a, f"replaced by {ack.id}", now) if a.subject == subject and a.ended is None else a
                     for a in book.acks] + [ack]
    return ack, store.warnings + _audit(config, "ack", now, "added", ack.id, by, ack.reason, subject=subject,
                                        level=level, ends=iso_time(ack.ends) if ack.ends else None)


def remove(config: Config, entry_id: str, now: float) -> tuple[str, list[str]]:
    """End the active silence or acknowledgement with this id; (what it was, warnings)."""
    store = SilenceFile(config.state_dir)
    by = operator()
    with store.changing(now) as book:
        silence = next((s for s in book.silences if s.id == entry_id and s.active(now)), None)
        ack = next((a for a in book.acks if a.id == entry_id and ending(a, a.level, now) is None), None)
        if silence:
            book.silences = [replace(s, removed=now, removed_by=by) if s is silence else s for s in book.silences]
        elif ack:
            book.acks = [finish(a, f"removed by {by}", now) if a is ack else a for a in book.acks]
        else:
            raise QuietError(f"no active silence or acknowledgement has the id {entry_id!r} (guardian silence list)")
    kind = "silence" if silence else "ack"
    return kind, store.warnings + _audit(config, kind, now, "removed", entry_id, by, None)


def end_acks(config: Config, store: SilenceFile, book: Book, state: State, now: float) -> list[str]:
    """End the acknowledgements this check's levels end (quiet.ending: a rise, a return to ok, their end), in
    the book and the file, each with its audit record (check holds the state lock); the warnings."""
    ended = []
    for i, ack in enumerate(book.acks):
        held = state.subject(ack.subject)
        level = UNREACHABLE if held.failures >= config.alerts.unreachable_after else held.level
        why = None if ack.ended is not None else ending(ack, level, now)
        if why:
            book.acks[i] = finish(ack, why, now)
            ended.append(book.acks[i])
    if not ended:
        return []
    try:
        store.write(book, now)
    except StateError as exc:
        return [f"{exc}: the ended acknowledgements are ended for this run only"]
    return [warning for ack in ended
            for warning in _audit(config, "ack", now, "ended", ack.id, "check", ack.ended_why, subject=ack.subject)]


def level_now(state_dir: Path, subject: str, unreachable_after: int) -> str:
    """The level state.json holds for the subject, or "unreachable" while its polls fail (caller holds the lock)."""
    path = Path(state_dir) / "state.json"
    try:
        state = State.from_json(path.read_text())
    except FileNotFoundError:
        state = State()
    except OSError as exc:
        raise StateError(f"cannot read {path} ({exc.strerror}), so not the level to acknowledge") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise StateError(f"{path} is corrupt ({exc}); the next check starts it afresh, then acknowledge") from None
    held = state.subject(subject)
    return UNREACHABLE if held.failures >= unreachable_after else held.level


def _audit(config: Config, event: str, now: float, action: str, entry_id: str, by: str, reason: str | None,
           **details) -> list[str]:
    """The change's audit record; a log that cannot take it is a warning: the change itself is made."""
    try:
        AuditLog(config.state_dir, new_run_id(), event).write(now, event, action=action, id=entry_id, by=by,
                                                              reason=reason, **details)
    except StateError as exc:
        return [f"the {event} is {action}, but the audit log did not record it: {exc}"]
    return []
