"""history.db: one row per host and pool per check, for the forecast, the anomalies and `guardian report`,
and their 5-minute and hourly rollups, so months of history stay small and quick to report on.

SQLite in WAL mode, so `guardian report` reads while a check writes. A check's write is one
transaction: insert its rows, roll up the buckets that just finished (a few rows, once a bucket),
prune what is past its window (indexed range deletes that find nothing on most runs), read back the
recent raw rows its forecast needs. `report` aggregates in SQL (`summaries`), never row by row in
Python, so its memory does not grow with the history. Alerts and cleanup actions are
not copied here: they are read from the audit log. The one thing kept from it is the running totals
behind the Prometheus counters (`audit_counters`), brought up to date from where they stopped.

A corrupt file is moved aside with a warning and a fresh one started; any other failure is a
HistoryError, which costs a check its forecast, never its alerts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from guardian.adapters.audit import parse_lines
from guardian.adapters.files import move_aside
from guardian.core.policy import level_for
from guardian.core.records import Sample
from guardian.settings.levels import LEVELS

SCHEMA_VERSION = 4
PAGE_CACHE_KIB = 256  # SQLite's page cache a connection (its default: 2,000 KiB)
SAMPLES = """
CREATE TABLE samples (
  time REAL NOT NULL,         -- epoch seconds of the check
  kind TEXT NOT NULL,         -- host | pool | agent
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
# version 2: the samples of each finished 5-minute and hour bucket, summed up, so raw rows can go after two days
ROLLUPS = """
CREATE TABLE rollups (
  resolution INTEGER NOT NULL,      -- seconds: 300 | 3600
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  start INTEGER NOT NULL,           -- epoch seconds, a multiple of the resolution
  "limit" INTEGER NOT NULL,         -- the last sample's
  samples INTEGER NOT NULL,
  readings INTEGER NOT NULL,        -- samples with a usage
  usage_min REAL, usage_max REAL, usage_sum REAL,
  -- times as whole seconds after `start`, and seconds at each level, whole: small integers take 1-2 bytes, not 8
  max_at INTEGER,                   -- when the highest reading was first seen
  first_at INTEGER NOT NULL, last_at INTEGER NOT NULL,     -- the first and last sample
  last_reading_at INTEGER, last_usage REAL, last_sessions INTEGER, last_level TEXT,
  ok INTEGER NOT NULL, notice INTEGER NOT NULL, warning INTEGER NOT NULL, critical INTEGER NOT NULL,
  unknown INTEGER NOT NULL,
  PRIMARY KEY (resolution, kind, name, start)
) WITHOUT ROWID;
CREATE TABLE rolled (resolution INTEGER PRIMARY KEY, until REAL NOT NULL);  -- samples before `until` are rolled up
-- raw samples are complete from `before` on
CREATE TABLE pruned (id INTEGER PRIMARY KEY CHECK (id = 1), before REAL NOT NULL);
CREATE TABLE imports (sha256 TEXT PRIMARY KEY, rows INTEGER NOT NULL, time REAL NOT NULL);
"""
# version 3: each host's sessions per agent at each check (status's byAgent), for growth by agent; raw only
AGENT_SAMPLES = """
CREATE TABLE agent_samples (
  name TEXT NOT NULL,         -- the host
  time REAL NOT NULL,         -- epoch seconds of the check
  agent TEXT NOT NULL,
  sessions INTEGER NOT NULL,
  PRIMARY KEY (name, time, agent)
) WITHOUT ROWID;
"""
# version 4: each subject's period each import covered (its first to last row): a grown log or an overlapping one
# imported again adds only the rows outside what was imported before
IMPORTED = """
CREATE TABLE imported (kind TEXT NOT NULL, name TEXT NOT NULL, low REAL NOT NULL, high REAL NOT NULL);
CREATE INDEX imported_by_subject ON imported (kind, name);
"""
RESOLUTIONS = (300, 3600)
MAX_GAP = 600.0  # a longer gap between two checks is time nobody watched: counted at no level
TIME_LEVELS = (*LEVELS, "unknown")
CSV_HEADER = ("time", "kind", "name", "sessions", "limit")

# Seconds from each sample to the next of its subject, once, over the rows of `{source}` from :lo on
_GAPS = """SELECT *, LEAD(time) OVER (PARTITION BY kind, name ORDER BY time) - time AS gap FROM {source}
           WHERE time >= :lo {subject}"""
_AT_LEVEL = ", ".join(f"CASE WHEN gap <= {MAX_GAP} AND {test} THEN gap ELSE 0 END AS {level}" for level, test in (
    *((level, f"reachable AND level = '{level}'") for level in TIME_LEVELS[:-1]), ("unknown", "NOT reachable")))
_BUCKET = "PARTITION BY kind, name, start"
# One rollup row per subject and finished bucket in [:lo, :hi); a bucket already there (an import) is merged into
_ROLL_UP = f"""
INSERT INTO rollups
SELECT :resolution, kind, name, start, max(last_limit), count(*), count(usage), min(usage), max(usage), sum(usage),
       {", ".join(f"CAST(round({time} - start) AS INTEGER)" for time in ("max(max_at)", "min(time)", "max(time)",
                                                                        "max(last_reading_at)"))},
       max(last_usage), max(last_sessions), max(last_level),
       {", ".join(f"CAST(round(sum({level})) AS INTEGER)" for level in TIME_LEVELS)}
FROM (SELECT *, {_AT_LEVEL},
             FIRST_VALUE("limit") OVER (PARTITION BY kind, name, start ORDER BY time DESC) AS last_limit,
             FIRST_VALUE(time) OVER by_usage AS max_at,
             FIRST_VALUE(CASE WHEN usage IS NOT NULL THEN time END) OVER latest AS last_reading_at,
             FIRST_VALUE(usage) OVER latest AS last_usage,
             FIRST_VALUE(CASE WHEN usage IS NOT NULL THEN sessions END) OVER latest AS last_sessions,
             FIRST_VALUE(CASE WHEN usage IS NOT NULL THEN level END) OVER latest AS last_level
      FROM (SELECT *, CAST(time / :resolution AS INTEGER) * :resolution AS start FROM ({_GAPS})) WHERE time < :hi
      WINDOW by_usage AS ({_BUCKET} ORDER BY usage IS NULL, usage DESC, time),
             latest AS ({_BUCKET} ORDER BY usage IS NULL, time DESC))
WHERE true GROUP BY kind, name, start
ON CONFLICT (resolution, kind, name, start) DO UPDATE SET
  "limit" = CASE WHEN excluded.last_at > last_at THEN excluded."limit" ELSE "limit" END,
  samples = samples + excluded.samples, readings = readings + excluded.readings,
  usage_min = min(coalesce(usage_min, excluded.usage_min), coalesce(excluded.usage_min, usage_min)),
  usage_max = max(coalesce(usage_max, excluded.usage_max), coalesce(excluded.usage_max, usage_max)),
  usage_sum = coalesce(usage_sum, 0) + coalesce(excluded.usage_sum, 0),
  max_at = CASE WHEN excluded.usage_max > coalesce(usage_max, -1) THEN excluded.max_at ELSE max_at END,
  first_at = min(first_at, excluded.first_at), last_at = max(last_at, excluded.last_at),
  {", ".join(f"{column} = CASE WHEN excluded.last_reading_at > coalesce(last_reading_at, -1) THEN excluded.{column} "
             f"ELSE {column} END" for column in ("last_reading_at", "last_usage", "last_sessions", "last_level"))},
  {", ".join(f"{level} = {level} + excluded.{level}" for level in TIME_LEVELS)}
"""


def _segments(time_at_level: bool) -> str:
    """A subject's period as `segments`: its raw samples from :lo, and before them its rollups of :resolution;
    with the seconds at each level, or without (the chart needs no gaps between checks: a window pass saved)."""
    raw = (_GAPS.format(source="samples INDEXED BY samples_by_subject",
                        subject="AND kind = :kind AND name = :name AND time <= :until") if time_at_level else
           "SELECT * FROM samples WHERE kind = :kind AND name = :name AND time >= :lo AND time <= :until")
    return f"""
WITH raw AS ({raw}),
segments AS (
  SELECT 1 AS samples, usage IS NOT NULL AS readings, usage AS usage_min, usage AS usage_max, usage AS usage_sum,
         time AS point, time AS first_at, time AS last_at{", " + _AT_LEVEL if time_at_level else ""}
  FROM raw
  UNION ALL
  SELECT samples, readings, usage_min, usage_max, usage_sum, start + coalesce(max_at, first_at), start + first_at,
         start + last_at{", " + ", ".join(TIME_LEVELS) if time_at_level else ""}
  FROM rollups WHERE resolution = :resolution AND kind = :kind AND name = :name
                     AND start >= :rollup_from AND start < :lo)
"""


_SUMMARY = _segments(True) + f"""SELECT count(*), sum(samples), sum(readings), min(usage_min), max(usage_max),
    sum(usage_sum), min(first_at), max(last_at), {", ".join(f"sum({level})" for level in TIME_LEVELS)} FROM segments"""
# the latest reading: raw, by the index; else from the latest rollup that had one
_LATEST = ("""SELECT time, sessions, "limit", usage, level, idle FROM samples WHERE kind = :kind AND name = :name
              AND usage IS NOT NULL AND time >= :lo AND time <= :until ORDER BY time DESC LIMIT 1""",
           """SELECT start + last_reading_at, last_sessions, "limit", last_usage, last_level, NULL FROM rollups
              WHERE resolution = :resolution AND kind = :kind AND name = :name AND start >= :rollup_from
              AND start < :lo AND last_reading_at IS NOT NULL ORDER BY start DESC LIMIT 1""")
_EVERY_POINT = _segments(False) + "SELECT point, usage_max FROM segments ORDER BY first_at"
# the highest reading of each of :points time buckets (the first one on a tie), or the bucket's first time and NULL
_PEAKS = _segments(False) + """SELECT point, usage_max FROM (
    SELECT point, usage_max, bucket, ROW_NUMBER() OVER (PARTITION BY bucket ORDER BY usage_max IS NULL,
                                                        usage_max DESC, point) AS rank
    FROM (SELECT *, max(0, min(:points - 1, CAST((point - :first) / (:last - :first) * :points AS INTEGER)))
                    AS bucket FROM segments))
WHERE rank = 1 ORDER BY bucket"""


# RECENT_POINTS: an hour's forecast window in 15 s stretches. At the default 30 s checks no row is left out; at a
# shorter interval the slope's input (and its O(n²) pairs: 28,680 at most) stays what 15 s checks would give it.
RECENT_POINTS = 240
# the latest row of each subject within each (low, high] stretch: one index seek each
_RECENT = """
WITH subject(kind, name) AS MATERIALIZED (SELECT value ->> 0, value ->> 1 FROM json_each(:subjects)),
     stretch(low, high) AS MATERIALIZED (SELECT value ->> 0, value ->> 1 FROM json_each(:stretches))
SELECT {columns} FROM samples WHERE rowid IN (
    SELECT (SELECT rowid FROM samples INDEXED BY samples_by_subject
            WHERE kind = subject.kind AND name = subject.name AND time > low AND time <= high
            ORDER BY time DESC LIMIT 1)
    FROM subject, stretch)
ORDER BY time"""

# A host's agents over a period, by the primary key (name, time, agent): now is the latest check's, first the first's
_AGENTS_OVER = """
WITH period AS (SELECT * FROM agent_samples WHERE name = :name AND time >= :since AND time <= :until),
     checks(first, last) AS (SELECT min(time), max(time) FROM period)
SELECT agent, sum(CASE WHEN time = last THEN sessions ELSE 0 END) AS now, max(sessions),
       sum(CASE WHEN time = first THEN sessions ELSE 0 END)
FROM period, checks GROUP BY agent ORDER BY now DESC, agent"""


@dataclass(frozen=True)
class Summary:
    """One subject over a period, as SQLite aggregated it: what `guardian report` shows of it."""

    samples: int
    usage: dict  # min / mean / max over the period (the mean of the samples), and now (the latest reading)
    time_at_level: dict  # seconds at each level (`unknown`: unreadable); a gap over MAX_GAP counts nowhere
    latest: Sample | None  # the latest reading
    series: list  # (time, usage) to draw, at most `points`: each time bucket's highest reading (None: unreachable)


class Recent(NamedTuple):
    """One subject's recent raw rows (History.record), oldest first: their times and usages (None: unreachable),
    which the forecast fits, and the rows themselves when asked for (else empty)."""

    times: list[float]
    usages: list[float | None]
    samples: list[Sample]


class HistoryError(Exception):
    """history.db cannot be used (permissions, full disk, locked too long): one sentence."""


class History:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "history.db"
        self.warnings: list[str] = []

    def record(self, samples: list[Sample], since: float, keep, before: tuple[float, ...] = (),
               whole_rows: bool = False) -> dict[tuple[str, str], Recent]:
        """Append this check's rows, roll up the buckets it finished, prune what is past its window (`keep`:
        config.history), and return each of these (kind, name) subjects' recent rows since `since`, thinned (see
        `_recent`): their times and usages, and the rows themselves only when `whole_rows` (the anomalies look at
        them; most checks' do not, and reading four columns of a row, not nine, is about half the read's cost)."""
        now = max(s.time for s in samples)
        subjects = sorted({(s.kind, s.name) for s in samples})
        with self._transaction(write=True) as db:
            db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", samples)
            rolled = self._roll_up(db, now)
            self._prune(db, now, keep, set(subjects), rolled)
            return _by_subject(db, subjects, since, now, before, whole_rows)

    def record_agents(self, counts: dict[str, dict], now: float, since: float, keep) -> dict[str, dict]:
        """Append each host's sessions per agent at `now` ({host: {agent: sessions}}), drop its rows past
        `keep.retention`, and return each host's first check since `since` (before `now`), (time, {agent: sessions}):
        what growth by agent is measured from."""
        with self._transaction(write=True) as db:
            db.executemany("INSERT OR REPLACE INTO agent_samples VALUES (?, ?, ?, ?)",
                           [(host, now, agent, n) for host, agents in counts.items() for agent, n in agents.items()])
            earlier = {}
            for host in counts:  # by the primary key, per host: no index on time alone to keep
                db.execute("DELETE FROM agent_samples WHERE name = ? AND time < ?", (host, now - keep.retention))
                first = db.execute("SELECT min(time) FROM agent_samples WHERE name = ? AND time >= ? AND time < ?",
                                   (host, since, now)).fetchone()[0]
                if first is not None:
                    earlier[host] = first, dict(db.execute("SELECT agent, sessions FROM agent_samples WHERE name = ? "
                                                           "AND time = ?", (host, first)).fetchall())
            return earlier

    def agents_over(self, hosts: list[str], since: float, until: float) -> dict[str, list[tuple[str, int, int, int]]]:
        """Each host's agents from `since` to `until`, aggregated in SQLite: (agent, sessions at the host's latest
        check, the most at any check, sessions at its first check), most now first. An agent missing from a check
        held none then. Only what agent_samples still keeps (raw rows, `history.retention`) is there to read."""
        if not self.path.exists():
            return {host: [] for host in hosts}
        with self._transaction(write=False) as db:
            return {host: db.execute(_AGENTS_OVER, {"name": host, "since": since, "until": until}).fetchall()
                    for host in hosts}

    def read(self, subjects: list[tuple[str, str]], since: float, until: float) -> list[Sample]:
        """The raw rows of these (kind, name) subjects from `since` to `until`, oldest first, thinned as a check's
        (see `_recent`): `report`'s forecast input, bounded however short the check interval."""
        if not self.path.exists():
            return []
        wanted = set(subjects)
        with self._transaction(write=False) as db:  # a range read brings every subject's rows
            return [_sample(row) for row in _recent(db, sorted(wanted), since, until, (), "*") if row[1:3] in wanted]

    def usage_points(self, subjects: list[tuple[str, str]], since: float, until: float):
        """Each subject's ((kind, name), [(time, usage)]) from `since` to `until`, oldest first, for a daily profile:
        a 5-minute rollup's mean (at its middle) where the samples are rolled up, the raw samples after; a 5-minute
        rollup is 10 times fewer rows than 30-second samples and as good for a peak found in 15-minute windows.
        One subject at a time (four weeks of 50 hosts' rollups would take 50 MiB at once), each part read in its
        index's order (no sort)."""
        if not self.path.exists():
            yield from ((subject, []) for subject in subjects)
            return
        with self._transaction(write=False) as db:
            rolled = dict(db.execute("SELECT resolution, until FROM rolled")).get(300, since)
            boundary = min(max(since, rolled), until)
            for kind, name in subjects:
                params = {"kind": kind, "name": name, "since": since, "boundary": boundary, "until": until}
                yield (kind, name), [
                    *db.execute("SELECT start + 150, usage_sum / readings FROM rollups WHERE resolution = 300 "
                                "AND kind = :kind AND name = :name AND start >= :since AND start < :boundary "
                                "AND readings > 0 ORDER BY start", params),
                    *db.execute("SELECT time, usage FROM samples INDEXED BY samples_by_subject WHERE kind = :kind "
                                "AND name = :name AND time >= :boundary AND time <= :until ORDER BY time", params)]

    def summaries(self, subjects: list[tuple[str, str]], since: float, until: float, keep,
                  points: int) -> dict[tuple[str, str], Summary]:
        """Each subject from `since` to `until`, aggregated in SQLite: the raw samples when they reach back that far,
        else the 5-minute rollups (within `keep.five_minute`) or the hourly ones, then raw after the last rollup."""
        if not self.path.exists():
            return {subject: _summary(0, 0, None, None, None, [0] * len(TIME_LEVELS), None, []) for subject in subjects}
        summaries = {}
        with self._transaction(write=False) as db:
            raw_from = (db.execute("SELECT before FROM pruned").fetchone() or (-math.inf,))[0]
            newest = db.execute("SELECT max(time) FROM samples").fetchone()[0] or until
            resolution = 0 if since >= raw_from else 300 if since >= newest - keep.five_minute else 3600
            rolled = dict(db.execute("SELECT resolution, until FROM rolled"))
            base = _period(since, until, resolution, rolled)
            # a chart point an hour or more wide is drawn from the hourly rollups: 12 times fewer rows
            chart = _period(-(-since // 3600) * 3600, until, 3600, rolled) if (
                resolution and (until - since) / points >= 3600) else base
            for kind, name in subjects:
                params = {**base, "kind": kind, "name": name}
                summary = db.execute(_SUMMARY, params).fetchone()
                count, samples, readings, low, high, total, first, last, *spent = summary
                latest = next(filter(None, (db.execute(query, params).fetchone() for query in _LATEST)), None)
                latest = latest and Sample(latest[0], kind, name, latest[1], latest[2], latest[3], latest[4], latest[5],
                                           True)
                series = db.execute(_EVERY_POINT if count <= points else _PEAKS,
                                    {**chart, "kind": kind, "name": name, "points": points, "first": first,
                                     "last": last}).fetchall()
                summaries[kind, name] = _summary(samples or 0, readings or 0, low, high, total, spent, latest,
                                                 [tuple(point) for point in series])
        return summaries

    def import_csv(self, data: bytes, alerts, keep, now: float) -> int | None:
        """Add the samples of a CSV file from another monitor (see parse_csv) to the raw rows and to every rollup
        they fall in: the number added, or None when this very file was imported before. A subject's rows within a
        period an earlier import covered for it (its first to last row) are left out: a log that grew since, or one
        that overlaps, adds only what is new. ValueError (naming the line) when any row is bad, and then nothing is
        added."""
        samples = parse_csv(data, alerts)
        digest = hashlib.sha256(data).hexdigest()
        with self._transaction(write=True) as db:
            if db.execute("SELECT 1 FROM imports WHERE sha256 = ?", (digest,)).fetchone():
                return None
            db.execute("CREATE TEMP TABLE incoming AS SELECT * FROM samples WHERE 0")
            db.executemany("INSERT INTO incoming VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", samples)
            covered = db.execute("SELECT kind, name, min(time), max(time) FROM incoming GROUP BY kind, name").fetchall()
            db.execute("DELETE FROM incoming WHERE EXISTS (SELECT 1 FROM imported WHERE imported.kind = incoming.kind"
                       " AND imported.name = incoming.name AND incoming.time BETWEEN imported.low AND imported.high)")
            db.executemany("INSERT INTO imported VALUES (?, ?, ?, ?)", covered)
            added = db.execute("SELECT count(*) FROM incoming").fetchone()[0]
            for resolution, until in db.execute("SELECT resolution, until FROM rolled").fetchall():
                # buckets already rolled up take their imported samples now; later ones get them as checks roll up
                db.execute(_ROLL_UP.format(source="incoming", subject=""),
                           {"resolution": resolution, "lo": -math.inf, "hi": until})
            db.execute("INSERT INTO samples SELECT * FROM incoming")
            db.execute("DROP TABLE incoming")
            self._prune(db, now, keep, {(s.kind, s.name) for s in samples}, self._roll_up(db, now) or RESOLUTIONS)
            db.execute("INSERT INTO imports VALUES (?, ?, ?)", (digest, added, now))
        return added

    def export_csv(self, since: float, handle) -> int:
        """Write the CSV that import_csv reads (times in ISO 8601, UTC) from `since`, oldest first; the rows written."""
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        written = 0
        for when, kind, name, sessions, limit in self.export(since):
            writer.writerow((datetime.fromtimestamp(when, timezone.utc).isoformat(), kind, name,
                             "" if sessions is None else sessions, limit))
            written += 1
        return written

    def export(self, since: float):
        """(time, kind, name, sessions, limit) from `since`, oldest first: the raw samples, and for the buckets
        wholly before the oldest of them the latest reading of each 5-minute bucket, and before those of each hour."""
        if not self.path.exists():
            return
        with self._transaction(write=False) as db:
            raw_from = db.execute("SELECT min(time) FROM samples").fetchone()[0] or math.inf
            five_minute_from = min(raw_from, db.execute("SELECT min(start) FROM rollups WHERE resolution = 300")
                                   .fetchone()[0] or math.inf)
            for resolution, until in ((3600, five_minute_from), (300, raw_from)):
                yield from db.execute(
                    'SELECT start + last_reading_at AS at, kind, name, last_sessions, "limit" FROM rollups '
                    "WHERE resolution = ? AND at >= ? AND start + resolution <= ? ORDER BY at, kind, name",
                    (resolution, since, until))
            yield from db.execute('SELECT time, kind, name, sessions, "limit" FROM samples WHERE time >= ? '
                                  "ORDER BY time, kind, name", (max(since, raw_from),))

    @staticmethod
    def _roll_up(db, now: float) -> list[int]:
        """Roll up the raw samples of every bucket finished since the last time (a few rows, once a bucket):
        the resolutions that had one."""
        rolled_until = dict(db.execute("SELECT resolution, until FROM rolled"))
        rolled = []
        for resolution in RESOLUTIONS:
            finished, lo = now // resolution * resolution, rolled_until.get(resolution, -math.inf)
            if finished > lo:
                # the minutes since the last roll-up, found by time: the planner would otherwise walk every raw row
                # (two days of them) in subject order; a first roll-up (an upgraded file) takes every row anyway
                source = "samples" if lo == -math.inf else "samples INDEXED BY samples_by_time"
                db.execute(_ROLL_UP.format(source=source, subject=""),
                           {"resolution": resolution, "lo": lo, "hi": finished})
                db.execute("INSERT OR REPLACE INTO rolled VALUES (?, ?)", (resolution, finished))
                rolled.append(resolution)
        return rolled

    @staticmethod
    def _prune(db, now: float, keep, subjects: set[tuple[str, str]], resolutions) -> None:
        """Drop raw rows past `keep.retention` once rolled up (an indexed range delete that finds nothing on most
        runs), and these subjects' rollups of `resolutions` past their window (by the primary key, per subject:
        no index on time alone to keep)."""
        rolled_until = db.execute("SELECT min(until) FROM rolled").fetchone()[0]  # kept until every rollup has them
        cutoff = min(now - keep.retention, rolled_until or math.inf)
        if db.execute("DELETE FROM samples WHERE time < ?", (cutoff,)).rowcount:
            db.execute("INSERT OR REPLACE INTO pruned VALUES (1, ?)", (cutoff,))
        windows = dict(zip(RESOLUTIONS, (keep.five_minute, keep.hourly)))
        for resolution, window in ((r, windows[r]) for r in resolutions):
            db.executemany("DELETE FROM rollups WHERE resolution = ? AND kind = ? AND name = ? AND start < ?",
                           [(resolution, kind, name, now - window) for kind, name in sorted(subjects)])

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
                _upgrade(db)
            db.execute("PRAGMA synchronous = NORMAL")  # WAL: a power cut may lose the last rows, never the file
            # A connection lives for one transaction, so its page cache only ever holds what that one read:
            # at the default 2 MiB it grew with the file to 2 MiB of heap a check (the first 10 minutes of a
            # 1 s soak), which the allocator kept. Pages beyond it are read again from the OS's cache.
            db.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except BaseException:
            db.close()
            raise
        return db


def parse_csv(data: bytes, alerts) -> list[Sample]:
    """Samples from CSV with the header `time,kind,name,sessions,limit`: time in epoch seconds or ISO 8601 (UTC
    unless it says otherwise), kind host or pool, sessions empty when the subject could not be read. Each gets the
    level a check would have given it with these thresholds. ValueError naming the first bad line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if [field.strip() for field in header or []] != list(CSV_HEADER):
        raise ValueError(f"line 1: the header must be {','.join(CSV_HEADER)}")
    rows = []
    for row in reader:
        if any(field.strip() for field in row):
            try:
                rows.append(_csv_row(row))
            except ValueError as exc:
                raise ValueError(f"line {reader.line_num}: {exc}") from None
    rows.sort(key=lambda row: row[0])
    levels: dict[tuple[str, str], str] = {}  # per subject, the level it was at: kept while it cannot be read
    samples = []
    for when, kind, name, sessions, limit in rows:
        usage = None if sessions is None else 100 * sessions / limit
        previous = levels.get((kind, name), "ok")
        levels[kind, name] = previous if usage is None else level_for(usage, alerts, previous)
        samples.append(Sample(when, kind, name, sessions, limit, usage, levels[kind, name], None, usage is not None))
    return samples


def _csv_row(row: list[str]) -> tuple:
    if len(row) != len(CSV_HEADER):
        raise ValueError(f"expected {len(CSV_HEADER)} fields ({','.join(CSV_HEADER)}), found {len(row)}")
    time_text, kind, name, sessions_text, limit_text = (field.strip() for field in row)
    if kind not in ("host", "pool", "agent"):  # what a check records (an agent's name: HOST/AGENT)
        raise ValueError(f"kind must be host, pool or agent, not {kind!r}")
    if not name:
        raise ValueError("the name is empty")
    sessions = None if sessions_text == "" else _count("sessions", sessions_text, 0)
    return _time(time_text), kind, name, sessions, _count("limit", limit_text, 1)


def _time(text: str) -> float:
    try:
        when = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"time {text!r} is neither epoch seconds nor an ISO 8601 date and time") from None
        when = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    if not math.isfinite(when):
        raise ValueError(f"time {text!r} is not a moment")
    return when


def _count(field: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{field} {text!r} is not a whole number") from None
    if value < minimum:
        raise ValueError(f"{field} must be at least {minimum}, not {value}")
    return value


def _statements(script: str) -> list[str]:
    """The statements of a script, split where SQLite says one ends (a `;` in a comment does not)."""
    import sqlite3

    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    return statements


def _upgrade(db) -> None:
    """Create the schema, or bring an older file up to date: a version 1 file (raw samples only) to version 2 by
    rolling up all its rows, a version 2 file to 3 by adding agent_samples, 3 to 4 by adding imported (the imports
    before it are known by their files' digests only): once, under the write lock, whoever opens it first."""
    db.execute("BEGIN IMMEDIATE")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        script = ((SAMPLES if version == 0 else "") + (ROLLUPS if version < 2 else "")
                  + (AGENT_SAMPLES if version < 3 else "") + IMPORTED)
        for statement in _statements(script):
            db.execute(statement)  # not executescript: it would commit, and let another process in
        oldest, latest = db.execute("SELECT min(time), max(time) FROM samples").fetchone()
        if latest is not None and version < 2:  # version 1 pruned by age: what is left is complete from its oldest row
            History._roll_up(db, latest)
            db.execute("INSERT INTO pruned VALUES (1, ?)", (oldest,))
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("COMMIT")


def _recent(db, subjects: list[tuple[str, str]], since: float, until: float, before: tuple[float, ...],
            columns: str):
    """These columns of these subjects' raw rows from `since` to `until` for the forecast and the anomalies, oldest
    first: of each of RECENT_POINTS equal stretches of the period its latest row, and the rows those rules look at
    besides (the latest before `until`, for growth's check before this one; the latest at or before each time of
    `before`, the cleanups, for rebound). A period sampled every 30 s (120 rows an hour) comes back whole, by one
    range read (which brings every subject's rows); every second (3,600) as 240, by an index seek per stretch, so
    the rows left out are never read: the rows in memory and the slope's pairs no longer grow with the check
    interval (only the count that chooses). A cursor: each row is gone once looked at, so 6,000 of them never
    wake the garbage collector."""
    rows_since = "FROM samples WHERE time >= ? AND time <= ?"
    if db.execute(f"SELECT count(*) {rows_since}", (since, until)).fetchone()[0] <= RECENT_POINTS * len(subjects):
        # few enough (30 s checks, say) to take whole: one range read, cheaper than the seeks
        return db.execute(f"SELECT {columns} {rows_since} ORDER BY time", (since, until))
    start, width = math.nextafter(since, -math.inf), (until - since) / RECENT_POINTS  # `since` itself is in
    bounds = [start, *(since + k * width for k in range(1, RECENT_POINTS)), until]
    stretches = [*zip(bounds, bounds[1:]), (start, math.nextafter(until, -math.inf)),
                 *((start, min(at, until)) for at in before)]
    return db.execute(_RECENT.format(columns=columns),
                      {"subjects": json.dumps(subjects), "stretches": json.dumps(stretches)})


def _by_subject(db, subjects: list[tuple[str, str]], since: float, until: float, before: tuple[float, ...],
                whole_rows: bool) -> dict[tuple[str, str], Recent]:
    """`_recent`'s rows of each subject, grouped here once (a check would otherwise group 6,000 rows for 50 hosts
    again), as the columns the forecast fits and, when `whole_rows`, as Samples."""
    grouped = {subject: Recent([], [], []) for subject in subjects}
    if not whole_rows:  # no Sample a row, nor its sessions, limit and level: the forecast reads only these two
        # a row's kind comes as its place among these subjects' kinds (a small int, which Python has made already),
        # not as a string made for each row: a fifth less of the read's cost, and 60,000 rows at 500 hosts
        kinds = sorted({kind for kind, _ in subjects})
        if not kinds:
            return grouped
        named = [{} for _ in range(len(kinds) + 1)]  # by that place, name -> Recent (the last: any other kind)
        for (kind, name), recent in grouped.items():
            named[kinds.index(kind)][name] = recent
        place = "CASE kind " + " ".join(f"WHEN {_quoted(kind)} THEN {i}" for i, kind in enumerate(kinds)) + \
                f" ELSE {len(kinds)} END"
        for number, name, time, usage in _recent(db, subjects, since, until, before, f"{place}, name, time, usage"):
            recent = named[number].get(name)
            if recent is not None:
                recent.times.append(time)
                recent.usages.append(usage)
        return grouped
    for row in _recent(db, subjects, since, until, before, "*"):
        recent = grouped.get((row[1], row[2]))
        if recent is not None:
            recent.samples.append(_sample(row))
            recent.times.append(row[0])
            recent.usages.append(row[5])
    return grouped


def _quoted(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _period(since: float, until: float, resolution: int, rolled: dict) -> dict:
    """The query parameters for a period read from rollups of `resolution` (0: raw), then raw after them."""
    rolled_until = rolled.get(resolution, -math.inf)
    if since >= rolled_until:  # raw covers it all
        return {"until": until, "lo": since, "resolution": 0, "rollup_from": since}
    return {"until": until, "lo": rolled_until, "resolution": resolution,
            "rollup_from": since // resolution * resolution}


def _summary(samples, readings, low, high, total, spent, latest, series) -> Summary:
    usage = {"now": latest.usage if latest else None, "min": low, "mean": total / readings if readings else None,
             "max": high}
    return Summary(samples, usage, dict(zip(TIME_LEVELS, (float(s or 0) for s in spent))), latest, series)


def _sample(row) -> Sample:
    time, kind, name, sessions, limit, usage, level, idle, reachable = row
    # SQLite gives each row new strings: a check holds up to RECENT_POINTS rows a subject (12,000 for 50 hosts),
    # and one copy of each name and level, not one a row, is half of that memory (serve's RSS after warm-up)
    return Sample(time, sys.intern(kind), sys.intern(name), sessions, limit, usage, sys.intern(level), idle,
                  bool(reachable))
