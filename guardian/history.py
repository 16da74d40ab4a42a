"""history.db: one row per host and pool per check, for the forecast, the anomalies and `guardian report`.

SQLite in WAL mode, so `guardian report` reads while a check writes. A check's write is one
transaction: insert its rows, prune those past the retention (an indexed range delete that finds
nothing on most runs), read back the recent rows its forecast needs. Alerts and cleanup actions are
not copied here: they are read from the audit log. The one thing kept from it is the running totals
behind the Prometheus counters (`audit_counters`), brought up to date from where they stopped.

A corrupt file is moved aside with a warning and a fresh one started; any other failure is a
HistoryError, which costs a check its forecast, never its alerts.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from guardian.adapters.audit import parse_lines
from guardian.adapters.files import move_aside
from guardian.core.records import Sample

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE samples (
  time REAL NOT NULL,         -- epoch seconds of the check
  kind TEXT NOT NULL,         -- host | pool
  name TEXT NOT NULL,
  sessions INTEGER,           -- non-archived sessions; NULL when unreachable
  "limit" INTEGER NOT NULL,
  usage REAL,                 -- percent of the limit; NULL when unreachable
  level TEXT NOT NULL,        -- ok | notice | warning | critical (the last known one when unreachable)
  idle INTEGER,               -- sessions idle past cleanup.idle_after; NULL when not known
  reachable INTEGER NOT NULL  -- 1 | 0
);
CREATE INDEX samples_by_time ON samples (time);
CREATE INDEX samples_by_subject ON samples (kind, name, time);
CREATE TABLE counters (metric TEXT NOT NULL, labels TEXT NOT NULL, value INTEGER NOT NULL,
                       PRIMARY KEY (metric, labels)) WITHOUT ROWID;
CREATE TABLE audit_position (id INTEGER PRIMARY KEY CHECK (id = 1), inode INTEGER NOT NULL,
                             bytes_read INTEGER NOT NULL);
"""


class HistoryError(Exception):
    """history.db cannot be used (permissions, full disk, locked too long): one sentence."""


class History:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "history.db"
        self.warnings: list[str] = []

    def record(self, samples: list[Sample], since: float, retention: float) -> list[Sample]:
        """Append this check's rows, prune those older than `retention`, return every row since `since`."""
        now = max(s.time for s in samples)
        with self._transaction(write=True) as db:
            db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", samples)
            db.execute("DELETE FROM samples WHERE time < ?", (now - retention,))
            rows = db.execute("SELECT * FROM samples WHERE time >= ? ORDER BY time", (since,)).fetchall()
        return [_sample(row) for row in rows]

    def read(self, subjects: list[tuple[str, str]], since: float, until: float) -> list[Sample]:
        """The rows of these (kind, name) subjects from `since` to `until`, oldest first."""
        if not self.path.exists():
            return []
        rows = []
        with self._transaction(write=False) as db:
            for kind, name in subjects:
                rows += db.execute("SELECT * FROM samples WHERE kind = ? AND name = ? AND time >= ? AND time <= ? "
                                   "ORDER BY time", (kind, name, since, until)).fetchall()
        return sorted((_sample(row) for row in rows), key=lambda s: s.time)

    def audit_counters(self, audit_path: Path, count) -> dict[tuple[str, str], int]:
        """Running totals over the audit log, {(metric, labels json): value}.

        `count(records)` turns new audit records into increments, {(metric, labels json): n}. Only
        the bytes appended since the last call are read (up to the last whole line); a replaced log
        (another inode, or shorter than where we stopped) is read from its start and adds to the totals.
        """
        with self._transaction(write=True) as db:  # two checks at once never count the same lines twice
            position = db.execute("SELECT inode, bytes_read FROM audit_position").fetchone()
            try:
                with open(audit_path, "rb") as handle:
                    inode, size = os.fstat(handle.fileno()).st_ino, os.fstat(handle.fileno()).st_size
                    offset = position[1] if position and position[0] == inode and position[1] <= size else 0
                    handle.seek(offset)
                    data = handle.read(size - offset)
            except FileNotFoundError:
                inode, offset, data = 0, 0, b""
            except OSError:  # another owner's, say: the totals stand until it can be read (the check warns)
                (inode, offset), data = position or (0, 0), b""
            whole = data[: data.rfind(b"\n") + 1]
            for (metric, labels), increment in count(parse_lines(whole.splitlines())).items():
                db.execute("INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (metric, labels) "
                           "DO UPDATE SET value = value + excluded.value", (metric, labels, increment))
            db.execute("INSERT OR REPLACE INTO audit_position VALUES (1, ?, ?)", (inode, offset + len(whole)))
            totals = db.execute("SELECT metric, labels, value FROM counters ORDER BY metric, labels").fetchall()
        return {(metric, labels): value for metric, labels, value in totals}

    @contextmanager
    def _transaction(self, write: bool):
        """One transaction; a writer takes the write lock at BEGIN, so it never fails to upgrade later."""
        import sqlite3

        try:
            db = self._connect(sqlite3, write)
        except sqlite3.OperationalError as exc:
            raise HistoryError(f"cannot use {self.path} ({exc})") from None
        except sqlite3.DatabaseError as exc:  # not a database, or a malformed one
            moved = move_aside(self.path)
            self.warnings.append(f"{self.path} was corrupt ({exc}); moved it to {moved.name} and started afresh")
            db = self._connect(sqlite3, write)
        try:
            with db:  # commits, or rolls back on an error
                yield db
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot use {self.path} ({exc})") from None
        finally:
            db.close()

    def _connect(self, sqlite3, write: bool):
        if write and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite gives -wal/-shm the same mode
        # isolation_level None: transactions are ours (BEGIN when asked; `with db` commits what is open)
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        if hasattr(db, "setconfig"):  # Python >= 3.12
            # Closing the last connection would checkpoint the WAL into the file: two fsyncs, ~10 ms on
            # every check. Left to the automatic checkpoint instead (every ~1000 pages, a few hours).
            db.setconfig(sqlite3.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, True)
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript(f"BEGIN; {SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL: a power cut may lose the last rows, never the file
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except BaseException:
            db.close()
            raise
        return db


def _sample(row) -> Sample:
    time, kind, name, sessions, limit, usage, level, idle, reachable = row
    return Sample(time, kind, name, sessions, limit, usage, level, idle, bool(reachable))
