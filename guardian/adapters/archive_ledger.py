"""archived.json: the sessions the guardian archived and has not purged yet, per host, changed under the cleanup lock.

`{"version": 1, "hosts": {HOST: {KEY: {"session_id": ..., "archived_at": epoch_s, "run_id": ...}}}}`

Only what is in here is ever purged or restored: a session archived by anyone else is never the guardian's.
An entry is added once the gateway answered its archive, so a crash in between leaves a session archived and
never purged (the safe side). The file is replaced atomically; reading it never raises: a corrupt file is a
warning and an empty ledger (moved aside by the next change, which purges nothing that run).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

from guardian.adapters.files import move_aside, write_private
from guardian.adapters.state import StateError

VERSION = 1
ENTRY_FIELDS = {"session_id", "archived_at", "run_id"}


class LedgerError(StateError):
    """archived.json cannot be written (or must not be: it could not be read): one sentence."""


def empty() -> dict:
    return {"version": VERSION, "hosts": {}}


def parsed(text: str) -> dict:
    """The ledger in `text`; ValueError for anything that is not exactly what we write."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != VERSION or set(data) != {"version", "hosts"} \
            or not isinstance(data["hosts"], dict):
        raise ValueError(f"not a guardian archive ledger of version {VERSION}")
    for host, entries in data["hosts"].items():
        if not isinstance(entries, dict):
            raise ValueError(f"host {str(host)[:40]!r} is not a map of keys to entries")
        for key, entry in entries.items():
            if not isinstance(entry, dict) or set(entry) != ENTRY_FIELDS or not isinstance(entry["run_id"], str) \
                    or not (entry["session_id"] is None or isinstance(entry["session_id"], str)) \
                    or not _is_time(entry["archived_at"]):
                raise ValueError(f"{str(host)[:40]}: the entry of {str(key)[:60]!r} is not a session id, a time "
                                 f"and a run id")
    return data


def _is_time(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


class ArchiveLedger:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "archived.json"
        self.warnings: list[str] = []
        self.unusable = False  # the last read found the file corrupt or unreadable: nothing is purged on it
        self._change = threading.Lock()  # hosts are cleaned in threads: one read-modify-write at a time

    def read(self) -> dict:
        """The ledger as it is: never raises (a corrupt or unreadable file: a warning, and an empty ledger)."""
        self.unusable = False
        try:
            return parsed(self.path.read_text())
        except FileNotFoundError:
            return empty()
        except OSError as exc:
            self._unusable(f"cannot read {self.path} ({exc.strerror}); nothing is purged until it can be")
        except (ValueError, TypeError) as exc:
            self._unusable(f"{self.path} is corrupt ({exc}); nothing is purged from it")
        return empty()

    def _unusable(self, warning: str) -> None:
        self.unusable = True
        if warning not in self.warnings:
            self.warnings.append(warning)

    def waiting(self) -> dict[str, int] | None:
        """Per host, how many sessions the guardian archived and has not purged (or seen restored) yet: one read of
        a small file, none without it; None when it cannot be read (the warning says why)."""
        hosts = self.read()["hosts"]
        return None if self.unusable else {host: len(entries) for host, entries in hosts.items()}

    def host(self, host: str) -> dict:
        """`host`'s entries: key -> {"session_id", "archived_at", "run_id"}."""
        return self.read()["hosts"].get(host, {})

    def set_aside_corrupt(self) -> None:
        """Move a corrupt file out of the way (kept for the operator), for a cleanup that holds the lock."""
        self.read()
        if self.unusable and self.path.exists():
            try:
                moved = move_aside(self.path)
            except OSError as exc:
                self.warnings.append(f"cannot move the corrupt {self.path} aside ({exc.strerror})")
                return
            self.warnings.append(f"moved the corrupt {self.path.name} to {moved.name}; sessions archived before "
                                 f"are no longer purged by the guardian")

    def add(self, host: str, entries: dict) -> None:
        """Record archived sessions: key -> {"session_id", "archived_at", "run_id"} (a key archived again replaces)."""
        if entries:
            self._changed(lambda hosts: hosts.setdefault(host, {}).update(entries))

    def drop(self, host: str, keys) -> None:
        """Forget keys: purged, restored, or no longer archived (never again the guardian's to purge)."""
        keys = set(keys)
        if keys:
            self._changed(lambda hosts: hosts.__setitem__(host, {k: e for k, e in hosts.get(host, {}).items()
                                                                 if k not in keys}))

    def _changed(self, change) -> None:
        with self._change:
            data = self.read()
            if self.unusable and self.path.exists():
                raise LedgerError(f"{self.path} could not be read; not written over")
            change(data["hosts"])
            data["hosts"] = {host: entries for host, entries in sorted(data["hosts"].items()) if entries}
            try:
                write_private(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
            except OSError as exc:
                raise LedgerError(f"cannot write {self.path} ({exc.strerror})") from None
