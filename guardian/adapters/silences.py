"""silences.json: the silences and acknowledgements, changed under the state lock.

The file is replaced atomically; a corrupt one is moved aside with a warning and the guardian goes on
without it. A check must never stop for it: `SilenceFile.read` never raises (an unreadable file
means no silences and a warning: the alerts go out). A change refuses to write over a file it
could not read, which would lose every silence in it. Entries that stopped holding more than a
week ago are dropped when the file is written. The changes themselves are guardian.commands.silence's.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from guardian.adapters.files import move_aside, write_private
from guardian.adapters.state import StateError, StateFile
from guardian.core.quiet import UNREACHABLE, Ack, Silence
from guardian.settings.levels import LEVELS
from guardian.settings.model import Scope

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
