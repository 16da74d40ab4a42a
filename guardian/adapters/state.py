"""state.json: each subject's level, what each channel was told (what each Alertmanager holds), and
when a host, pool or channel left the config, under an exclusive lock.

Read-modify-write happens inside one `StateFile.locked()` block; the file is replaced atomically,
and a corrupt file is moved aside with a warning so the run goes on from a clean slate.
"""

from __future__ import annotations

import functools
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from guardian.adapters.files import LockBusy, hold_lock, move_aside, write_private
from guardian.core.plan import Posted
from guardian.core.records import ChannelMemory, SubjectState
from guardian.settings.levels import LEVELS
from guardian.settings.model import Alerts

VERSION = 2  # 2: a channel's memory keeps when each kind was told (`told_at`); 1 kept when it might repeat
LOCK_TIMEOUT = 20.0  # seconds a run waits for the state lock before giving up (cron runs every 30 s)
# Free space a run needs in the state dir (state.json, audit lines, history rows), checked before
# anything is decided: a run that delivered and then could not remember it would deliver again
# on every run, an alert storm on a full disk.
MIN_FREE = 1 << 20
# How long a host, pool or channel that left the config is remembered: a typo fixed within a day
# brings it back with what its channels were told (no alert storm); later it starts afresh.
FORGET_AFTER = 86400.0


class StateError(Exception):
    """The state dir cannot be used (permissions, full disk, lock held too long): one sentence."""


class StateBusy(StateError):
    """Other runs held the state lock past the lock timeout: they are the ones deciding and telling."""


@dataclass
class State:
    subjects: dict = field(default_factory=dict)  # "host:NAME" / "pool:NAME" / "agent:HOST/AGENT" -> SubjectState
    memories: dict = field(default_factory=dict)  # (subject id, channel name) -> ChannelMemory
    posted: dict = field(default_factory=dict)  # (subject id, Alertmanager channel name) -> Posted
    departed: dict = field(default_factory=dict)  # "host:NAME", "pool:NAME", "channel:NAME" -> when it left the config

    def subject(self, subject_id: str) -> SubjectState:
        return self.subjects.get(subject_id, SubjectState())

    def memory(self, subject_id: str, channel: str) -> ChannelMemory:
        return self.memories.get((subject_id, channel), ChannelMemory())

    def to_json(self) -> str:
        # Compact, one line: json's C encoder writes it; an indented file took the pure-Python one, ~20 ms of
        # a 50-host check (and asdict's deep copies as much again). `jq . state.json` shows it laid out.
        subjects = {sid: {**vars(subject), "channels": {}} for sid, subject in sorted(self.subjects.items())}

        def entry(subject_id: str) -> dict:  # a memory of a subject never checked goes under a fresh SubjectState
            return subjects.setdefault(subject_id, {**vars(SubjectState()), "channels": {}})

        for (subject_id, channel), memory in sorted(self.memories.items()):
            entry(subject_id)["channels"][channel] = vars(memory)
        for (subject_id, channel), posted in sorted(self.posted.items()):
            entry(subject_id).setdefault("alertmanager", {})[channel] = vars(posted)
        return json.dumps({"version": VERSION, "subjects": subjects, "departed": self.departed},
                          separators=(",", ":"), sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, cooldown: dict | None = None) -> "State":
        """Parse state.json; ValueError for anything that is not exactly what we write.

        A version 1 file (the previous release's) is upgraded: each channel's "not again before"
        time becomes the time it was told, one `cooldown` earlier, so every cooldown runs on as it would have.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") not in (1, VERSION) \
                or not isinstance(data.get("subjects"), dict):
            raise ValueError(f"not a guardian state file of version 1 or {VERSION}")
        upgrade = data["version"] == 1
        state = cls()
        departed = data.get("departed", {})
        if not isinstance(departed, dict) or not all(_is_number(when) for when in departed.values()):
            raise ValueError("departed is not a map of names to times")
        state.departed = departed
        for subject_id, entry in data["subjects"].items():
            channels = entry.pop("channels", {})
            posted = entry.pop("alertmanager", {})
            subject = _checked(SubjectState, entry)
            state.subjects[subject_id] = replace(subject, since=subject.checked_at) if upgrade else subject
            for channel, memory in channels.items():
                if upgrade:
                    memory = _upgraded(subject_id, _checked(_MemoryV1, memory), cooldown or Alerts().cooldown)
                state.memories[(subject_id, channel)] = _checked(ChannelMemory, memory)
            for channel, held in posted.items():
                state.posted[(subject_id, channel)] = _checked(Posted, held)
        return state

    def forget_departed(self, subject_ids: set[str], channel_names: set[str], now: float) -> None:
        """Drop what is kept about hosts, pools, agents and channels that left the config FORGET_AFTER ago.

        `subject_ids` and `channel_names` are those the config has now (every host, not only a --hosts
        selection). An anomaly's memory ("host:t440/growth") goes with its subject.
        """
        def subject_of(key: str) -> str:
            # an agent's id has a slash of its own: 'agent:t440/sales', its anomaly 'agent:t440/sales/growth'
            return "/".join(key.split("/")[:2 if key.startswith("agent:") else 1])

        channel_keys = [*self.memories, *self.posted]
        kept = {*self.subjects, *(subject_of(key) for key, _ in channel_keys),
                *(f"channel:{channel}" for _, channel in channel_keys)}
        present = {*subject_ids, *(f"channel:{name}" for name in channel_names)}
        # min(): a clock set back must not hold a departure in the future
        self.departed = {name: min(self.departed.get(name, now), now) for name in kept - present}
        gone = {name for name, since in self.departed.items() if now - since >= FORGET_AFTER}
        if not gone:
            return
        for subject_id in [s for s in self.subjects if s in gone]:
            del self.subjects[subject_id]
        for memories in (self.memories, self.posted):
            for key, channel in [k for k in memories if subject_of(k[0]) in gone or f"channel:{k[1]}" in gone]:
                del memories[(key, channel)]
        for name in gone:
            del self.departed[name]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class _MemoryV1:
    """A channel's memory as version 1 kept it."""

    level: str = "ok"
    repeat_after: float = 0.0  # the same level was not to be sent again before this time
    unreachable: bool = False
    unreachable_repeat_after: float = 0.0


def _upgraded(subject_id: str, old: _MemoryV1, cooldown: dict) -> dict:
    """Version 1's "not again before" times, as the times they were told."""
    anomaly = subject_id.rpartition("/")[2] if "/" in subject_id else None  # "host:t440/growth"
    kind = anomaly or old.level
    if kind not in cooldown and kind != "ok":
        raise ValueError(f"unknown alert kind {kind!r}")
    told_at = {kind: old.repeat_after - cooldown[kind]} if kind != "ok" and old.repeat_after else {}
    if old.unreachable_repeat_after:
        told_at["unreachable"] = old.unreachable_repeat_after - cooldown["unreachable"]
    return {"level": old.level, "told_at": told_at, "unreachable": old.unreachable}


_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "None": (type(None),), "dict": (dict,)}
TOLD_KINDS = (*LEVELS[1:], "unreachable", "growth", "rebound", "peak")


@functools.cache
def _field_types(kind) -> tuple[tuple[str, tuple[type, ...], str], ...]:
    """Each field of a state record: its name, the types its value may have, and its annotation as written."""
    return tuple((item.name, tuple(t for name in item.type.split(" | ") for t in _TYPES[name]), item.type)
                 for item in fields(kind))


def _checked(kind, entry):
    if not isinstance(entry, dict):
        raise ValueError(f"a {kind.__name__} entry is not an object")
    value = kind(**entry)  # TypeError on unknown or missing-required keys
    for name, allowed, written in _field_types(kind):  # a hand-edited "repeat_after": "soon" must not fail later
        found = getattr(value, name)
        if not isinstance(found, allowed) or (isinstance(found, bool) and bool not in allowed):
            raise ValueError(f"{kind.__name__}.{name} is {str(found)[:40]!r}, not {written}")
    if value.level not in LEVELS:
        raise ValueError(f"unknown level {value.level!r}")
    for told, at in getattr(value, "told_at", {}).items():
        if told not in TOLD_KINDS or isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise ValueError(f"told_at {str(told)[:20]!r}: {str(at)[:40]!r} is not a kind and a time")
    return value


class StateFile:
    def __init__(self, state_dir: Path, lock_timeout: float | None = None, cooldown: dict | None = None):
        self.cooldown = cooldown  # the configured cooldowns, to upgrade a version 1 file
        self.dir = Path(state_dir)
        self.path = self.dir / "state.json"
        self.lock_path = self.dir / "state.lock"
        self.lock_timeout = LOCK_TIMEOUT if lock_timeout is None else lock_timeout
        self.warnings: list[str] = []

    @contextmanager
    def locked(self):
        """Yield the State under an exclusive lock; write it back if the block completes."""
        with self.lock():
            state = self._read()
            yield state
            for stale in self.dir.glob(f".{self.path.name}.*.tmp"):  # a killed run's; under the lock none is live
                stale.unlink(missing_ok=True)
            try:
                write_private(self.path, state.to_json())
            except OSError as exc:
                raise StateError(
                    f"cannot write {self.path} ({exc.strerror}); alerts of this run may be sent again"
                ) from None

    @contextmanager
    def lock(self):
        """The exclusive state lock alone, room checked: for files changed beside state.json (silences.json)."""
        try:
            fd = hold_lock(self.lock_path, self.lock_timeout)
        except LockBusy:
            raise StateBusy(f"another guardian run has held {self.lock_path} for over "
                            f"{self.lock_timeout:g}s; giving up this run") from None
        except OSError as exc:
            raise StateError(f"cannot use the state dir {self.dir} ({exc.strerror})") from None
        try:
            self._check_room()
            yield
        finally:
            os.close(fd)  # releases the lock

    def look(self) -> State:
        """The State as it is, for a run that changes nothing (`check --no-notify`): no lock, nothing written,
        a corrupt file left where it is."""
        try:
            return State.from_json(self.path.read_text(), self.cooldown)
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"cannot read {self.path} ({exc.strerror})") from None
        except (ValueError, TypeError, AttributeError) as exc:
            self.warnings.append(f"{self.path} is corrupt ({exc}); starting from a clean slate")
            return State()

    def _check_room(self) -> None:
        try:
            disk = os.statvfs(self.dir)
        except OSError as exc:
            raise StateError(f"cannot use the state dir {self.dir} ({exc.strerror})") from None
        free = disk.f_bavail * disk.f_frsize
        if free < MIN_FREE:
            raise StateError(f"cannot use the state dir {self.dir}: only {free // 1024} KiB free (No space left "
                             f"on device, {MIN_FREE // 1024} KiB needed); alerts go to stderr only until there is room")

    def _read(self) -> State:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"cannot read {self.path} ({exc.strerror})") from None
        try:
            return State.from_json(text, self.cooldown)
        except (ValueError, TypeError, AttributeError) as exc:
            moved = move_aside(self.path)
            self.warnings.append(f"{self.path} was corrupt ({exc}); moved it to {moved.name} and started afresh")
            return State()
