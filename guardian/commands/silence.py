"""`guardian silence add/list/remove` and `guardian ack`, and the acks a check ends.

Each change reads silences.json under the state lock (adapters.silences), decides with guardian.core.quiet,
writes the file back, and records who, when and why in the audit log. The words are guardian.output.quiet's.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from guardian.adapters.audit import AuditLog, new_run_id
from guardian.adapters.silences import Book, SilenceFile
from guardian.adapters.state import State, StateError, StateFile
from guardian.core.quiet import (
    Ack,
    Listed,
    Quiet,
    Silence,
    acknowledged,
    ended_acks,
    listed,
    named_subject,
    new_ack,
    new_silence,
    quiet_level,
    removal,
)
from guardian.settings.model import Config, Scope
from guardian.settings.units import iso_time


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


def listing(config: Config, now: float, include_ended: bool) -> tuple[list[Listed], list[str]]:
    """The active silences, acks and maintenance windows (with `include_ended`, those of the last week too)."""
    store = SilenceFile(config.state_dir)
    with StateFile(config.state_dir).lock():
        book = store.read()
    quiet = Quiet(tuple(book.silences), tuple(book.acks), tuple(config.maintenance))
    return listed(quiet, now, include_ended), store.warnings


def acknowledge(config: Config, name: str, reason: str, duration: float | None, now: float) -> tuple[Ack, list[str]]:
    """Acknowledge the level the subject holds now (state.json, read under the lock); an earlier ack of it ends."""
    subject = named_subject(name, config)
    store = SilenceFile(config.state_dir)
    by = operator()
    with store.changing(now) as book:
        held = _state(config).subject(subject)
        level = quiet_level(held.level, held.failures, config.alerts.unreachable_after)
        ack = new_ack(subject, level, reason, by, book.new_id(), now, duration)
        book.acks = acknowledged(book.acks, ack, now)
    return ack, store.warnings + _audit(config, "ack", now, "added", ack.id, by, ack.reason, subject=subject,
                                        level=level, ends=iso_time(ack.ends) if ack.ends else None)


def _state(config: Config) -> State:
    """state.json as it is (the caller holds the lock); a corrupt one is an error: its level would be a guess."""
    state_file = StateFile(config.state_dir)
    try:
        state = state_file.look()
    except StateError as exc:
        raise StateError(f"{exc}, so not the level to acknowledge") from None
    if state_file.warnings:
        raise StateError(f"{state_file.path} is corrupt; the next check starts it afresh, then acknowledge")
    return state


def remove(config: Config, entry_id: str, now: float) -> tuple[str, list[str]]:
    """End the active silence or acknowledgement with this id; (what it was, warnings)."""
    store = SilenceFile(config.state_dir)
    by = operator()
    with store.changing(now) as book:
        kind, after = removal(Quiet(tuple(book.silences), tuple(book.acks)), entry_id, by, now)
        book.silences, book.acks = list(after.silences), list(after.acks)
    return kind, store.warnings + _audit(config, kind, now, "removed", entry_id, by, None)


def end_acks(config: Config, store: SilenceFile, book: Book, state: State, now: float) -> list[str]:
    """End the acknowledgements this check's levels end (quiet.ending: a rise, a return to ok, their end), in
    the book and the file, each with its audit record (check holds the state lock); the warnings."""
    levels = {}
    for ack in book.acks:
        held = state.subject(ack.subject)
        levels[ack.subject] = quiet_level(held.level, held.failures, config.alerts.unreachable_after)
    book.acks, ended = ended_acks(book.acks, levels, now)
    if not ended:
        return []
    try:
        store.write(book, now)
    except StateError as exc:
        return [f"{exc}: the ended acknowledgements are ended for this run only"]
    return [warning for ack in ended
            for warning in _audit(config, "ack", now, "ended", ack.id, "check", ack.ended_why, subject=ack.subject)]


def _audit(config: Config, event: str, now: float, action: str, entry_id: str, by: str, reason: str | None,
           **details) -> list[str]:
    """The change's audit record; a log that cannot take it is a warning: the change itself is made."""
    try:
        AuditLog(config.state_dir, new_run_id(), event).write(now, event, action=action, id=entry_id, by=by,
                                                              reason=reason, **details)
    except StateError as exc:
        return [f"the {event} is {action}, but the audit log did not record it: {exc}"]
    return []
