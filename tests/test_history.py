"""history.db written by real `check` runs (fake gateways, `now` moved forward): the rows, the forecast
beside each host, and the growth and rebound notices through the per-channel alert machinery."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import shutil
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import read_state
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guardian.adapters.audit import AuditLog
from guardian.adapters.history import (
    CSV_HEADER,
    MAX_GAP,
    PAGE_CACHE_KIB,
    SCHEMA_VERSION,
    TIME_LEVELS,
    History,
    Summary,
)
from guardian.commands import check as checking
from guardian.commands import cleanup
from guardian.core.forecast import forecast
from guardian.core.records import Sample
from guardian.output.render import check_json, check_plain
from guardian.settings.load import load
from guardian.settings.model import Alerts, HistorySettings

T0 = 1_800_000_000.0
MIN = 60.0


def set_sessions(gateway, count: int, at: float, idle: int = 0) -> None:
    """Make the fake hold `count` sessions: `idle` of them untouched for 3 hours before `at`, the rest active."""
    with gateway._lock:
        gateway.sessions.clear()
    for index in range(count):
        gateway.add_session(updated_at=int((at - (3 * 3600 if index < idle else 0)) * 1000))


def reasons(report) -> list[str]:
    return sorted({line.reason for d in report.deliveries for line in d.lines})


def test_each_check_appends_a_row_per_host_and_pool(fakes, write_config, state_dir):
    a, b = fakes(), fakes()
    set_sessions(a, 30, T0)
    set_sessions(b, 42, T0)
    config = load(write_config({"a": {"url": a.url, "token": "secret", "limit": 50},
                                "b": {"url": b.url, "token": "secret", "limit": 50},
                                "down": {"url": "ws://127.0.0.1:9", "token": "secret", "limit": 10}},
                               pools={"shared": {"hosts": ["a", "b"], "limit": 80}}))
    checking.run(config, None, now=T0)
    checking.run(config, None, now=T0 + 30)
    rows = History(state_dir).read([("host", "a"), ("host", "down"), ("pool", "shared")], T0, T0 + 30)
    assert [(r.time, r.subject, r.sessions, r.limit, r.usage, r.level, r.reachable) for r in rows if r.time == T0] == [
        (T0, "host:a", 30, 50, 60.0, "ok", True), (T0, "host:down", None, 10, None, "ok", False),
        (T0, "pool:shared", 72, 80, 90.0, "critical", True)]
    assert len(rows) == 6 and (state_dir / "history.db").stat().st_mode & 0o777 == 0o600


def test_rows_past_the_retention_are_pruned(fake, write_config, state_dir):
    set_sessions(fake, 5, T0)
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}}, history={"retention": "1d"}))
    for day in (0, 0.5, 1.5):
        checking.run(config, None, now=T0 + day * 86400)
    assert [r.time for r in History(state_dir).read([("host", "a")], 0, 2 * T0)] == [T0 + 0.5 * 86400, T0 + 1.5 * 86400]


def test_no_statement_of_a_check_walks_the_whole_history(tmp_path, monkeypatch):
    """A check's statements (its insert, the roll-up of the buckets it finished, the prunes, the read-back) find their
    rows by an index: none scans the raw samples or the rollups, so a check costs the same beside a year of them."""
    history, keep = History(tmp_path), HistorySettings()
    for k in range(36):  # three hours of 5-minute checks, rolled up as they went
        history.record([Sample(T0 + 300 * k, "host", name, 1, 10, 10.0, "ok", 0, True) for name in "ab"],
                       T0 + 300 * k - 3600, keep)
    statements = []
    connect = History._connect

    def traced(self, sqlite, write):
        db = connect(self, sqlite, write)
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(History, "_connect", traced)
    now = T0 + 3 * 3600 + 1  # finishes a 5-minute and an hourly bucket
    history.record([Sample(now, "host", name, 1, 10, 10.0, "ok", 0, True) for name in "ab"], now - 3600, keep)
    assert any("INSERT INTO rollups" in sql for sql in statements)
    db = sqlite3.connect(tmp_path / "history.db")
    plans = {sql: [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")] for sql in statements
             if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "PRAGMA"))}
    assert {sql: plan for sql, plan in plans.items() if any(step.startswith(("SCAN samples", "SCAN rollups"))
                                                                for step in plan)} == {}


def test_forecast_beside_each_host_once_history_allows(fake, write_config):
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}}))
    outputs = []
    for minute in range(6):  # 50 % + 2 points a minute: 60 % at the last, critical (90) in 15 min
        set_sessions(fake, 50 + 2 * minute, T0)
        outputs.append(checking.run(config, None, now=T0 + minute * MIN, act=False))
    assert check_json(outputs[4])["hosts"][0]["forecast"] is None  # five samples: not enough history
    forecast = check_json(outputs[5])["hosts"][0]["forecast"]
    assert forecast == {"trend": "rising", "critical_in_seconds": 900, "full_in_seconds": 1200,
                        "usage_points_per_hour": 120.0, "sessions_per_hour": 120.0, "r2": 1.0, "samples": 6,
                        "span_seconds": 300}
    assert check_plain(outputs[5]).endswith("critical_in=15m full_in=20m r2=1.00")
    set_sessions(fake, 50, T0)
    flat = [checking.run(config, None, now=T0 + minute * MIN, act=False) for minute in range(6, 66, 10)][-1]
    assert check_json(flat)["hosts"][0]["forecast"]["trend"] == "none" and "trend=none" in check_plain(flat)


def test_growth_notice_after_two_checks_in_a_row_then_its_cooldown(
    fake, write_config, receiver, monkeypatch, state_dir
):
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                               alerts={"predict": "30m", "channels": [{"type": "webhook", "url_env": "HOOK_URL"}]}))
    sent = {}
    for minute in range(14):  # 70 sessions, one more a minute
        set_sessions(fake, 70 + minute, T0)
        report = checking.run(config, None, now=T0 + minute * MIN)
        if reasons(report):
            sent[minute] = reasons(report)
    # minute 5: the first forecast (six samples), minute 6: the second in a row
    assert sent == {0: ["escalated"], 6: ["growth"], 10: ["escalated"]}
    growth = next(a for b in receiver.bodies for a in b["alerts"] if a["reason"] == "growth")
    assert (
        growth["dedup_key"] == "guardian/host/a/growth" and growth["alert"] == "growth" and growth["level"] == "notice"
    )
    # which agent grew, over the checks since the forecast window began: "sessions keep growing" says where
    assert growth["detail"] == ("forecast to reach critical in 14m at +60.0 sessions/h (fit r² 1.00); "
                                "main +6 in the last 6m")
    assert "guardian report --hosts a" in growth["action"]
    memory = read_state(state_dir)["subjects"]["host:a/growth"]["channels"]["webhook-1"]
    assert memory["told_at"] == {"growth": T0 + 6 * MIN}  # so repeated 30 min (cooldown.growth) later


def test_failed_growth_delivery_is_sent_on_the_next_run(fake, write_config, receiver, monkeypatch):
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                               alerts={"predict": "30m", "channels": [{"type": "webhook", "url_env": "HOOK_URL"}]}))
    for minute in range(8):
        set_sessions(fake, 70 + minute, T0)
        receiver.status = 500 if minute == 6 else 200
        checking.run(config, None, now=T0 + minute * MIN)
    assert [a["reason"] for b in receiver.bodies for a in b["alerts"]] == ["escalated", "growth"]


def test_rebound_after_a_cleanup_is_a_notice(fake, write_config, state_dir, capsys):
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}}))
    set_sessions(fake, 66, T0, idle=5)  # at notice: a rebound below it would be churn (issue 12)
    checking.run(config, None, now=T0)
    checking.run(config, None, now=T0 + MIN)
    at = T0 + 1.5 * MIN
    fake.clock = lambda: int(at * 1000)  # the gateway's clock agrees with the moved one
    closed = cleanup.run(config, list(config.hosts.values()), config.cleanup, at, False,
                         AuditLog(state_dir, "c1", "cleanup"), clock=lambda: at)
    assert closed[0].closed == 5
    assert reasons(checking.run(config, None, now=T0 + 2 * MIN)) == []  # 61: the cleanup worked
    for _ in range(5):
        fake.add_session(updated_at=int(T0 * 1000))
    capsys.readouterr()
    back = checking.run(config, None, now=T0 + 3 * MIN)
    assert reasons(back) == ["rebound"]
    assert (
        "guardian alert: NOTICE a 66% (66/100), rebounding: 66 sessions, 66 before a cleanup closed 5 of them "
        "1m30s ago: sessions leak faster than cleanup reclaims them. Cleanup alone will not hold"
    ) in capsys.readouterr().err
    assert reasons(checking.run(config, None, now=T0 + 4 * MIN)) == []  # its cooldown


@pytest.mark.parametrize("write", [True, False])
def test_a_connection_caches_at_most_page_cache_kib_of_pages(tmp_path, write):
    """Each transaction is a new connection: a cache as large as SQLite's default (2 MiB) only raised the
    heap a 1 s serve kept, as the file grew past it."""
    history = History(tmp_path)
    with history._transaction(write=True):
        pass  # the file, created
    with history._transaction(write=write) as db:
        assert db.execute("PRAGMA cache_size").fetchone()[0] == -PAGE_CACHE_KIB


def test_corrupt_history_is_moved_aside_and_the_check_goes_on(fake, write_config, state_dir):
    set_sessions(fake, 3, T0)
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}}))
    state_dir.mkdir(parents=True)
    (state_dir / "history.db").write_bytes(b"this is not a database" * 100)
    report = checking.run(config, None, now=T0)
    assert report.exit_code == 0 and any("history.db was corrupt" in w for w in report.warnings)
    assert len(list(state_dir.glob("history.db.corrupt-*"))) == 1
    assert len(History(state_dir).read([("host", "a")], 0, 2 * T0)) == 1


def test_unusable_history_costs_the_forecast_not_the_check(fake, write_config, state_dir, cli):
    set_sessions(fake, 3, T0)
    path = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}})
    state_dir.mkdir(parents=True)
    (state_dir / "history.db").mkdir()  # cannot be opened as a file
    result = cli("check", "--config", path, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["hosts"][0]["sessions"] == 3
    assert "this check has no forecast" in result.stderr


# --- history that scales (issue 15): SQL aggregation, rollups, the schema migration ---------------------------

RAW_ONLY = HistorySettings(retention=400 * 86400.0)
DATA = Path(__file__).parent / "data"


def reference(samples: list[Sample], since: float, until: float, points: int) -> Summary:
    """What `report` computed in Python over every row before issue 15: the oracle for the SQL aggregation."""
    own = [s for s in samples if since <= s.time <= until]
    readings = [s for s in own if s.usage is not None]
    values = [s.usage for s in readings]
    usage = ({"now": values[-1], "min": min(values), "mean": sum(values) / len(values), "max": max(values)} if values
             else {"now": None, "min": None, "mean": None, "max": None})
    spent = dict.fromkeys(TIME_LEVELS, 0.0)
    for sample, following in zip(own, own[1:]):
        gap = following.time - sample.time
        if gap <= MAX_GAP:
            spent[sample.level if sample.reachable else "unknown"] += gap
    if len(own) <= points:
        series = [(s.time, s.usage) for s in own]
    else:
        start, end = own[0].time, own[-1].time
        buckets: dict[int, list[Sample]] = {}
        for sample in own:
            buckets.setdefault(min(points - 1, int((sample.time - start) / (end - start) * points)), []).append(sample)
        series = []
        for bucket in buckets.values():
            with_usage = [s for s in bucket if s.usage is not None]
            peak = max(with_usage, key=lambda s: s.usage) if with_usage else bucket[0]
            series.append((peak.time, peak.usage))
    return Summary(len(own), usage, spent, readings[-1] if readings else None, series)


SUBJECTS = (("host", "a", 40), ("pool", "p", 60))
checks = st.lists(st.tuples(st.integers(1, 900),
                            st.tuples(*[st.tuples(st.one_of(st.none(), st.integers(0, 70)),
                                                  st.sampled_from(("ok", "notice", "warning", "critical")))] * 2)),
                  min_size=1, max_size=20)


def record_checks(state_dir: Path, drawn, keep) -> list[Sample]:
    """Write the drawn checks through History.record, as `check` does, and return every sample written."""
    history, written, now = History(state_dir), [], T0
    for gap, readings in drawn:
        now += gap
        rows = [Sample(now, kind, name, sessions, limit, None if sessions is None else 100 * sessions / limit, level,
                       None if sessions is None else sessions // 2, sessions is not None)
                for (kind, name, limit), (sessions, level) in zip(SUBJECTS, readings)]
        history.record(rows, now - 3600, keep)
        written += rows
    return written


@given(checks, st.floats(0, 1), st.integers(2, 12))
def test_report_aggregation_in_sqlite_equals_the_python_of_every_row(drawn, where, points):
    with tempfile.TemporaryDirectory() as tmp:
        written = record_checks(Path(tmp), drawn, RAW_ONLY)
        until = written[-1].time
        since = T0 + where * (until - T0)
        got = History(Path(tmp)).summaries([(kind, name) for kind, name, _ in SUBJECTS], since, until, RAW_ONLY, points)
    for kind, name, _ in SUBJECTS:
        assert got[kind, name] == reference([s for s in written if s.name == name], since, until, points)


@given(checks, st.floats(0, 1))
def test_rollups_keep_the_numbers_of_the_raw_rows_they_replace(drawn, where):
    """Over a period the raw rows no longer cover, the rollups give the same count, min, max, mean, latest
    reading and time at each level as the raw rows did (from a bucket boundary on); the chart keeps the peak."""
    keep = HistorySettings(retention=600.0, five_minute=1800.0)
    with tempfile.TemporaryDirectory() as tmp:
        written = record_checks(Path(tmp), drawn, keep)
        until = written[-1].time
        since = (T0 + where * (until - T0)) // 300 * 300
        if since < until - keep.five_minute:  # read from the hourly rollups
            since = since // 3600 * 3600
        got = History(Path(tmp)).summaries([(kind, name) for kind, name, _ in SUBJECTS], since, until, keep, 480)
        # a chart of points an hour or more wide: drawn from the hourly rollups
        wide = History(Path(tmp)).summaries([(kind, name) for kind, name, _ in SUBJECTS], since, until, keep, 2)
    for kind, name, _ in SUBJECTS:
        expected = reference([s for s in written if s.name == name], since, until, 480)
        summary = got[kind, name]
        assert (summary.samples, summary.latest[:7] if summary.latest else None) == (
            expected.samples, expected.latest[:7] if expected.latest else None)  # idle counts are not rolled up
        assert summary.usage == pytest.approx(expected.usage)
        assert summary.time_at_level == pytest.approx(expected.time_at_level)
        assert max((u for _, u in summary.series if u is not None), default=None) == expected.usage["max"]
        chart = wide[kind, name].series  # within the period, and never above its peak
        assert len(chart) <= 2
        assert all(since <= t <= until and (u is None or u <= expected.usage["max"]) for t, u in chart)


def test_each_subject_gets_its_own_recent_rows_whatever_the_kinds_and_names_they_share(tmp_path):
    history = History(tmp_path)
    subjects = [("host", "a"), ("pool", "a"), ("agent", "a/b"), ("host", "it's")]
    written = {subject: [] for subject in [*subjects, ("host", "gone")]}
    for i in range(8):  # a host and a pool of one name (the pool since removed and the host added), and one departed
        check = [Sample(T0 + 30 * i, kind, name, n, 100, float(n), "ok", None, True)
                 for n, (kind, name) in enumerate(written, start=10 * i)]
        for sample in check:
            written[sample.kind, sample.name].append((sample.time, sample.usage))
        got = history.record(check, T0, HistorySettings(), whole_rows=bool(i % 2))
    assert set(got) == set(written)
    for subject in subjects:
        assert list(zip(got[subject].times, got[subject].usages)) == written[subject]
    only_some = history.record([Sample(T0 + 300, "pool", "a", 1, 100, 1.0, "ok", None, True)], T0, HistorySettings())
    assert list(only_some) == [("pool", "a")]
    assert only_some["pool", "a"].usages[-2:] == [written["pool", "a"][-1][1], 1.0]


def test_a_version_2_history_gets_per_agent_counts_and_keeps_its_rows_and_rollups(tmp_path):
    history = History(tmp_path)
    samples = [Sample(T0 + 30 * i, "host", "a", i, 10, 10.0 * i, "ok", None, True) for i in range(3)]
    history.record(samples, T0, HistorySettings())
    db = sqlite3.connect(tmp_path / "history.db")
    db.executescript("DROP TABLE agent_samples; DROP TABLE imported; PRAGMA user_version = 2;")  # as version 2 left it
    db.close()
    assert history.read([("host", "a")], 0, 2 * T0) == samples
    assert history.record_agents({"a": {"sales": 3}}, T0 + 90, T0, HistorySettings()) == {}
    assert history.record_agents({"a": {"sales": 5}}, T0 + 120, T0, HistorySettings()) == {"a": (T0 + 90, {"sales": 3})}
    assert sqlite3.connect(tmp_path / "history.db").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION



def test_a_version_3_history_learns_the_periods_imported_and_keeps_its_rows(tmp_path):
    history = History(tmp_path)
    csv_text = "time,kind,name,sessions,limit\n" + "".join(f"{T0 + 30 * i:.0f},host,a,{i},10\n" for i in range(4))
    assert history.import_csv(csv_text.encode(), Alerts(), RAW_ONLY, T0 + 3600) == 4
    db = sqlite3.connect(tmp_path / "history.db")
    db.executescript("DROP TABLE imported; PRAGMA user_version = 3;")  # as version 3 left it
    db.close()
    before = history.read([("host", "a")], 0, 2 * T0)  # opening it upgrades it
    assert len(before) == 4
    assert sqlite3.connect(tmp_path / "history.db").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert history.import_csv(csv_text.encode(), Alerts(), RAW_ONLY, T0 + 3600) is None  # known by its digest still

def test_a_version_1_history_is_upgraded_in_place_once_without_losing_rows(tmp_path):
    db = sqlite3.connect(tmp_path / "history.db")
    db.executescript((DATA / "history-v1.sql").read_text())
    rows = [Sample(*row[:8], bool(row[8])) for row in db.execute("SELECT * FROM samples ORDER BY time, kind, name")]
    db.close()
    assert len(rows) == 576
    history = History(tmp_path)
    history.read([("host", "a"), ("host", "b")], 0, 2 * T0)  # opening it upgrades it, keeping every row
    db = sqlite3.connect(tmp_path / "history.db")
    assert [Sample(*row[:8], bool(row[8])) for row in db.execute("SELECT * FROM samples ORDER BY time, kind, name")
            ] == rows
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rolled = db.execute("SELECT resolution, sum(samples) FROM rollups GROUP BY resolution").fetchall()
    last = rows[-1].time
    assert rolled == [(300, sum(1 for s in rows if s.time < last // 300 * 300)),
                      (3600, sum(1 for s in rows if s.time < last // 3600 * 3600))]
    history.read([("host", "a")], 0, 2 * T0)
    assert db.execute("SELECT resolution, sum(samples) FROM rollups GROUP BY resolution").fetchall() == rolled  # once
    # a check later prunes the raw rows past two days; the report over them reads the rollups
    later = last + 3 * 86400
    history.record([Sample(later, "host", "a", 1, 40, 2.5, "ok", 0, True)], later - 3600, HistorySettings())
    assert db.execute("SELECT min(time) FROM samples").fetchone()[0] == later
    start = rows[0].time // 300 * 300
    summary = history.summaries([("host", "b")], start, last, HistorySettings(), 480)["host", "b"]
    expected = reference([s for s in rows if s.name == "b"], start, last, 480)
    assert (summary.samples, summary.latest[:7]) == (expected.samples, expected.latest[:7])
    assert summary.usage == pytest.approx(expected.usage)
    assert summary.time_at_level == pytest.approx(expected.time_at_level)


def test_usage_points_are_the_5_minute_means_then_the_raw_samples(tmp_path):
    """The peak forecast's points: each finished 5-minute bucket's mean usage at its middle where the raw rows
    were rolled up (and may be pruned), the raw samples after; every sample counted once."""
    keep = HistorySettings(retention=600.0)
    history = History(tmp_path)
    written = []
    for minute in range(80):  # a check a minute, usage = the minute; the first hour is rolled up, then pruned
        sample = Sample(T0 + minute * 60, "host", "a", minute, 100, float(minute), "ok", 0, True)
        history.record([sample], T0, keep)
        written.append(sample)
    got = dict(history.usage_points([("host", "a")], T0, written[-1].time))[("host", "a")]
    assert history.read([("host", "a")], T0, T0 + 20 * 60) == []  # pruned: only the rollups have these minutes
    boundary = next(i for i, (t, _) in enumerate(got) if t in {s.time for s in written})
    rolled, raw = got[:boundary], got[boundary:]
    assert rolled == [(T0 + k * 300 + 150, 5 * k + 2.0) for k in range(boundary)]  # minutes 5k..5k+4
    assert raw == [(s.time, s.usage) for s in written[5 * boundary:]]


# --- guardian history import / export -------------------------------------------------------------------------


def test_import_brings_in_another_monitors_samples_once(write_config, cli, tmp_path, state_dir):
    path = write_config({"a": {"url": "ws://127.0.0.1:9", "token_env": "HOME", "limit": 40}},
                        alerts={"thresholds": {"notice": 50, "warning": 70, "critical": 90}})
    now = float(int(time.time()))
    csv_file = tmp_path / "old-monitor.csv"
    csv_file.write_text("time,kind,name,sessions,limit\n"
                        f"{now - 7200:.0f},host,a,10,40\n"
                        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now - 7170))},host,a,30,40\n"
                        f"{now - 7140:.0f},host,a,,40\n")
    first = cli("history", "import", "--config", path, csv_file)
    assert (first.exit_code, first.stdout.strip()) == (0, f"{csv_file}: 3 samples added")
    again = cli("history", "import", "--config", path, csv_file)
    assert again.exit_code == 0 and "imported before; nothing added" in again.stdout
    rows = History(state_dir).read([("host", "a")], 0, now)
    # the level a check would have given each, with the configured thresholds; kept while unreadable
    assert [(r.sessions, r.usage, r.level, r.reachable) for r in rows] == [
        (10, 25.0, "ok", True), (30, 75.0, "warning", True), (None, None, "warning", False)]
    report = cli("report", "--config", path, "--since", "3h", "--format", "plain")
    assert "a now=75% min=25% mean=50.0% max=75% ok=30s warning=30s" in report.stdout
    exported = cli("history", "export", "--config", path, "--since", "7185s", "-o", tmp_path / "out.csv")
    assert exported.exit_code == 0 and (tmp_path / "out.csv").read_text().splitlines()[1:] == [
        f"{time.strftime('%Y-%m-%dT%H:%M:%S+00:00', time.gmtime(now - 7170 + k * 30))},host,a,{sessions},40"
        for k, sessions in enumerate(("30", ""))]


@pytest.mark.parametrize("line, problem", [
    ("x,host,a,1,2", "line 3: time 'x' is neither epoch seconds nor an ISO 8601 date and time"),
    ("1,gateway,a,1,2", "line 3: kind must be host, pool or agent, not 'gateway'"),
    ("1,host,,1,2", "line 3: the name is empty"),
    ("1,host,a,-1,2", "line 3: sessions must be at least 0, not -1"),
    ("1,host,a,1,0", "line 3: limit must be at least 1, not 0"),
    ("1,host,a,1", "line 3: expected 5 fields (time,kind,name,sessions,limit), found 4"),
])
def test_a_bad_row_is_named_and_nothing_is_imported(write_config, cli, tmp_path, state_dir, line, problem):
    path = write_config({"a": {"url": "ws://127.0.0.1:9", "token_env": "HOME", "limit": 40}})
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text(f"time,kind,name,sessions,limit\n1800000000,host,a,5,40\n{line}\n")
    result = cli("history", "import", "--config", path, csv_file)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"guardian: {csv_file}: {problem}; nothing was imported from it"
    assert History(state_dir).read([("host", "a")], 0, 2 * T0) == []
    header = cli("history", "import", "--config", path, csv_file.write_text("when,host\n") and csv_file)
    assert header.exit_code == 2 and "line 1: the header must be time,kind,name,sessions,limit" in header.stderr


exported_rows = st.lists(st.tuples(st.integers(0, 86400 * 1000), st.sampled_from(("host", "pool")),
                                   st.sampled_from(("a", "b", "x y", "é")), st.one_of(st.none(), st.integers(0, 99)),
                                   st.integers(1, 99)),
                         max_size=30, unique_by=lambda row: (row[0], row[1], row[2]))



def csv_of(rows) -> bytes:
    return ("time,kind,name,sessions,limit\n" + "".join(
        f"{T0 + ms / 1000},{kind},{name},{'' if sessions is None else sessions},{limit}\n"
        for ms, kind, name, sessions, limit in rows)).encode()


@given(exported_rows, st.integers(0, 30), st.integers(0, 30))
@example([(0, "host", "a", 1, 9), (1000, "host", "a", 2, 9), (2000, "host", "a", 3, 9)], 2, 1)
def test_a_log_imported_again_grown_or_overlapping_adds_each_sample_once(rows, grown_at, overlap_from):
    """A sample is imported once: a log imported, then the same log grown (later lines appended), or one that
    overlaps it (a later log starting before the first ended), adds only the rows outside the periods imported."""
    rows = sorted(rows)
    first, grown = rows[:grown_at], rows
    later = rows[min(overlap_from, grown_at):]
    with tempfile.TemporaryDirectory() as tmp:
        history, now = History(Path(tmp)), T0 + 86400 + 60
        assert history.import_csv(csv_of(first), Alerts(), RAW_ONLY, now) == len(first)
        history.import_csv(csv_of(grown), Alerts(), RAW_ONLY, now)
        history.import_csv(csv_of(later) + b"\n", Alerts(), RAW_ONLY, now)  # another file, whatever it holds
        kept = [(round(when * 1000) - round(T0 * 1000), kind, name) for when, kind, name, _, _ in
                history.export(-math.inf)]
        assert sorted(kept) == sorted((ms, kind, name) for ms, kind, name, _, _ in rows)

@given(exported_rows)
def test_export_then_import_is_a_round_trip(rows):
    alerts = Alerts()
    text = "time,kind,name,sessions,limit\n" + "".join(
        f"{T0 + ms / 1000},{kind},{name},{'' if sessions is None else sessions},{limit}\n"
        for ms, kind, name, sessions, limit in rows)
    expected = sorted((round(T0 * 1000) + ms, kind, name, sessions, limit) for ms, kind, name, sessions, limit in rows)
    with tempfile.TemporaryDirectory() as tmp:
        first, second = History(Path(tmp) / "1"), History(Path(tmp) / "2")
        now = T0 + 86400 + 60
        first.import_csv(text.encode(), alerts, RAW_ONLY, now)
        out = io.StringIO()
        assert first.export_csv(-math.inf, out) == len(rows)
        exported = list(csv.reader(io.StringIO(out.getvalue())))
        assert exported[0] == list(CSV_HEADER)
        assert [(round(datetime.fromisoformat(t).timestamp() * 1000), k, n, int(s) if s else None, int(lim))
                for t, k, n, s, lim in exported[1:]] == expected
        second.import_csv(out.getvalue().encode(), alerts, RAW_ONLY, now)
        again = io.StringIO()
        second.export_csv(-math.inf, again)
        assert again.getvalue() == out.getvalue()
        assert first.import_csv(text.encode(), alerts, RAW_ONLY, now) is None  # the same file again adds nothing



# --- the peak forecast in check (issue 15) -----------------------------------------------------------------------


def peaked_history(state_dir: Path, days: int, until: float) -> None:
    """`days` days before `until` of 5-minute samples of host a with a daily bump at 10:00 UTC."""
    rows = [Sample(t, "host", "a", 0, 100, 20 + 60 * math.exp(-((t % 86400 / 3600 - 10) / 1.5) ** 2 / 2), "ok", 0,
                   True) for t in range(int(until // 86400 - days) * 86400, int(until), 300)]
    History(state_dir).record(rows, until, HistorySettings(retention=400 * 86400))


@contextmanager
def profile_reads():
    """The list of History.usage_points calls (the peak forecasts' read of four weeks) made within."""
    reads = []
    real = History.usage_points
    def counted(self, *args):
        reads.append(args)
        return real(self, *args)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(History, "usage_points", counted)
        yield reads


def test_check_json_carries_the_next_peak_from_a_profile_computed_once_a_day(fake, write_config, state_dir):
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}}, history={"tz": "UTC"}))
    peaked_history(state_dir, 5, T0)
    set_sessions(fake, 30, T0)
    first = check_json(checking.run(config, None, now=T0 + 60, act=False))["hosts"][0]["peak"]
    assert first["days_of_history"] == 5 and first["typical_time"].startswith(("09:5", "10:0"))
    assert datetime.fromisoformat(first["next_at"]).timestamp() > T0 + 60

    with profile_reads() as reads:
        for minute in range(2, 110, 9):  # every check of the day before its peak (~10:00) reads the cached profile
            checking.run(config, None, now=T0 + minute * 60, act=False)
        assert reads == []
        midnight = (T0 // 86400 + 1) * 86400  # T0 is 08:00 UTC
        later = check_json(checking.run(config, None, now=midnight + 60, act=False))["hosts"][0]["peak"]
    assert len(reads) == 1 and later["days_of_history"] == 5  # the next day: computed again, once


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo")), st.floats(0, 1), st.floats(0, 1))
def test_a_cached_peak_is_the_one_computed_afresh_at_any_later_moment_of_its_day(zone_name, first, second):
    """The forecast's input is the complete days before today, and `now` only picks the next peak: kept for the rest
    of the local day (and dropped once that peak passes), the cached forecast is the one computed afresh."""
    from zoneinfo import ZoneInfo

    from guardian.adapters.peak_cache import cached_peaks
    from guardian.core.peaks import LOOKBACK_DAYS, peak_forecast

    zone, ids = ZoneInfo(zone_name), {"host:a": ("host", "a")}
    day = datetime.fromtimestamp(T0, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = day.timestamp(), (day + timedelta(days=1)).timestamp()  # the zone's local day holding T0
    at = start + first * (end - start)
    later = min(at + second * (end - at), math.nextafter(end, 0))
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        peaked_history(state_dir, 6, T0)
        history = History(state_dir)
        cached_peaks(history, state_dir, ids, zone, 90.0, at)
        got = cached_peaks(history, state_dir, ids, zone, 90.0, later)
        points = dict(history.usage_points([("host", "a")], later - (LOOKBACK_DAYS + 1) * 86400, later))
    assert got["host:a"] == peak_forecast(points[("host", "a")], later, zone, 90.0).as_json()


def test_a_cached_peak_that_has_passed_or_another_zone_is_computed_again(state_dir):
    from zoneinfo import ZoneInfo

    from guardian.adapters.peak_cache import cached_peaks

    peaked_history(state_dir, 5, T0)
    history, ids = History(state_dir), {"host:a": ("host", "a")}
    first = cached_peaks(history, state_dir, ids, ZoneInfo("UTC"), 90.0, T0)
    next_at = datetime.fromisoformat(first["host:a"]["next_at"]).timestamp()
    assert cached_peaks(history, state_dir, ids, ZoneInfo("UTC"), 90.0, T0 + 60) == first
    paris = cached_peaks(history, state_dir, ids, ZoneInfo("Europe/Paris"), 90.0, T0 + 60)["host:a"]
    assert paris["next_at"].endswith("+01:00")  # T0 is in January (2027-01-15)
    before = cached_peaks(history, state_dir, ids, ZoneInfo("UTC"), 90.0, next_at - 600)["host:a"]
    assert before["next_at"] == first["host:a"]["next_at"]
    after = cached_peaks(history, state_dir, ids, ZoneInfo("UTC"), 90.0, next_at + 60)["host:a"]  # the same day
    assert datetime.fromisoformat(after["next_at"]).timestamp() > next_at + 60  # the passed peak is not announced
    (state_dir / "peaks.json").write_text("{not json")
    assert cached_peaks(history, state_dir, ids, ZoneInfo("UTC"), 90.0, T0) == first



def test_report_takes_the_peak_forecasts_from_their_file_while_they_equal_a_computation_now(write_config, state_dir):
    """The report's peaks (profiles and heatmap too) are what history.db gives at the report's `now`: read from
    peak_forecasts.json while it is fresh, computed again (and kept) when a day has completed since or an import changed
    the days; reading it does not touch the 5-minute rollups."""
    from guardian.adapters.peak_cache import forget
    from guardian.commands import report as reporting

    config = load(write_config({"a": {"url": "ws://127.0.0.1:9", "token": "secret", "limit": 100}},
                               history={"tz": "UTC"}))
    midnight = (T0 // 86400 + 1) * 86400  # T0 is 08:00 UTC, the peaks are at 10:00
    peaked_history(state_dir, 5, midnight)  # T0's day too, which completes at midnight

    def peaks_at(now, cached=True):
        if not cached:
            forget(state_dir)
        return [(s.id, s.peak) for s in reporting.run(config, None, now - 86400, now).subjects]

    computed = peaks_at(T0 + 60)
    assert (state_dir / "peak_forecasts.json").exists() and computed[0][1].enough and computed[0][1].heatmap
    with profile_reads() as reads:
        assert peaks_at(T0 + 1800) == computed == peaks_at(T0 + 1800, cached=False)
        assert len(reads) == 1  # the cached one read nothing
        before = peaks_at(midnight - 600, cached=False)
        assert peaks_at(midnight + 600) == peaks_at(midnight + 600, cached=False) != before
        assert (before[0][1].days_of_history, peaks_at(midnight + 600)[0][1].days_of_history) == (4, 5)
        assert len(reads) == 4  # the last one read the file the one before wrote


def test_an_import_keeps_the_peak_forecasts_computed_with_its_samples(write_config, cli, tmp_path, state_dir):
    """The forecasts kept before an import were made without its samples; the import makes them again, so the next
    report reads them (cold, 50 hosts' cost ~0.8 s) and they are what history.db gives now."""
    from guardian.adapters.peak_cache import forget
    from guardian.commands import report as reporting

    path = write_config({"a": {"url": "ws://127.0.0.1:9", "token_env": "HOME", "limit": 40}}, history={"tz": "UTC"})
    imported_at = time.time()
    peaked_history(state_dir, 5, imported_at)
    for name in ("peaks.json", "peak_forecasts.json"):
        (state_dir / name).write_text("{}")
    csv_file = tmp_path / "old-monitor.csv"  # a day a week back, busier than any since: the p90 peak moves
    day = (imported_at // 86400 - 7) * 86400
    csv_file.write_text("time,kind,name,sessions,limit\n" + "".join(
        f"{t:.0f},host,a,38,40\n" for t in range(int(day), int(day) + 86400, 300)))
    assert cli("history", "import", "--config", path, csv_file).exit_code == 0
    kept = json.loads((state_dir / "peak_forecasts.json").read_text())
    assert imported_at <= kept["computed_at"] <= time.time() and "host:a" in kept["subjects"]
    config, now = load(path), time.time()
    with profile_reads() as reads:
        cached = [(s.id, s.peak) for s in reporting.run(config, None, now - 86400, now).subjects]
    if kept["computed_at"] // 86400 == now // 86400:
        assert reads == []  # the same local day: the report computed nothing
    forget(state_dir)
    assert cached == [(s.id, s.peak) for s in reporting.run(config, None, now - 86400, now).subjects]
    assert cached[0][1].days_of_history == 6


def test_check_tells_a_peak_notice_hours_before_a_peak_expected_at_critical(fake, write_config, state_dir):
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}}, history={"tz": "UTC"},
                               alerts={"thresholds": {"notice": 50, "warning": 60, "critical": 75},
                                       "peak_notice": "8h"}))
    peaked_history(state_dir, 5, T0)  # a daily peak at 80 % around 10:00 UTC; T0 is 08:00 UTC
    set_sessions(fake, 30, T0)
    first = checking.run(config, None, now=T0 + 60, act=True)
    assert "peak" in reasons(first)
    line = next(line for d in first.deliveries for line in d.lines if line.reason == "peak")
    assert line.level == "notice" and line.detail.startswith("daily peak expected at 10:0")
    assert "peak" not in reasons(checking.run(config, None, now=T0 + 120, act=True))  # once per peak


# The forecast's input is bounded (issue 18, "Memory flat"): a check reads at most RECENT_POINTS rows a subject of
# its window, however short the check interval, and the forecast from them is the full one's within a tolerance.

def second_by_second(now: float, window: float, usage) -> list[Sample]:
    """A check every second over `window` before `now`: usage(t) percent of a 100-session limit (None: unreachable)."""
    rows = []
    for k in range(int(window) + 1):
        at = now - window + k
        sessions = usage(at)
        rows.append(Sample(at, "host", "a", sessions, 100, sessions, "ok", 0, sessions is not None))
    return rows


def recorded(rows: list[Sample], since: float, before: tuple[float, ...] = ()) -> list[Sample]:
    """What the check recording the last of `rows` gets back for its forecast and anomalies."""
    with tempfile.TemporaryDirectory() as tmp:
        history = History(Path(tmp))
        history.record(rows[:-1], since, HistorySettings())
        return history.record(rows[-1:], since, HistorySettings(), before, whole_rows=True)[("host", "a")].samples


def test_a_one_second_interval_reads_a_bounded_number_of_rows_keeping_what_the_rules_need():
    now, cleaned = T0 + 3600, T0 + 1234.5
    rows = second_by_second(now, 3600, lambda at: 20 + int((at - T0) / 60))
    got = recorded(rows, now - 3600, before=(cleaned,))
    times = [s.time for s in got]
    assert len(got) <= 240 + 2 and times == sorted(times)
    assert times[-2:] == [now - 1, now]  # the latest, and the check before it (growth asks both)
    assert math.floor(cleaned) in times  # the check before the cleanup (rebound compares with it)
    assert max(b - a for a, b in zip(times, times[1:])) <= 3600 / 240 + 1  # evenly spaced in time


def test_the_reports_forecast_input_is_bounded_the_same_way():
    now = T0 + 3600
    rows = second_by_second(now, 3600, lambda at: 20 + int((at - T0) / 60))
    other = [Sample(s.time, "host", "b", 1, 100, 1.0, "ok", 0, True) for s in rows]
    with tempfile.TemporaryDirectory() as tmp:
        history = History(Path(tmp))
        history.record(rows + other, now - 3600, HistorySettings())
        got = history.read([("host", "a")], now - 3600, now)
    times = [s.time for s in got]
    assert {s.subject for s in got} == {"host:a"} and len(got) <= 240 + 1 and times == sorted(times)
    assert times[-1] == now and max(b - a for a, b in zip(times, times[1:])) <= 3600 / 240 + 1


def test_a_thirty_second_interval_reads_every_row():
    rows = [Sample(T0 + 30 * k, "host", "a", k % 7, 10, 10.0 * (k % 7), "ok", 0, True) for k in range(121)]
    assert recorded(rows, T0) == rows


# Tolerance: the fitted slopes differ by at most the noise (plus the whole-session rounding) over the window, and so
# do the lines' distances to critical (an ETA times its slope: the ETA itself, hours away on a slope near flat, moves
# by more than 10 % between two fits of 60 points); the two agree on rising or not unless the slope is within that of
# flat.
@settings(max_examples=30)  # each example writes 900 samples to a history.db
@given(seed=st.integers(0, 2**32), slope=st.floats(-0.02, 0.06), base=st.floats(0, 70), noise=st.floats(0, 5),
       unreachable=st.floats(0, 0.2))
@example(seed=0, slope=0.001, base=0.0, noise=0.0, unreachable=0.125)  # usage 0 or 1: the full fit flat
@example(seed=0, slope=0.001953125, base=0.0, noise=1.0, unreachable=0.0)  # a near-flat ETA hours away
@example(seed=94398241, slope=0.0, base=3.25, noise=3.0, unreachable=0.0390625)  # found by hypothesis (Theil-Sen)
def test_the_thinned_forecast_is_the_full_one_within_tolerance(seed, slope, base, noise, unreachable):
    now, window, draw = T0 + 900, 900.0, random.Random(seed)

    def usage(at):
        trend = base + slope * (at - T0) + draw.uniform(-noise, noise)
        return None if draw.random() < unreachable else max(0, round(trend))

    rows = second_by_second(now, window, usage)
    full = forecast([(s.time, s.usage) for s in rows], 90, now, window)
    thinned = forecast([(s.time, s.usage) for s in recorded(rows, now - window)], 90, now, window)
    assert full.enough == thinned.enough
    if not full.enough:
        return
    tolerance = (noise + 0.5) / window
    assert abs(full.slope - thinned.slope) <= tolerance
    if abs(full.slope) > tolerance:
        assert full.rising == thinned.rising
    if full.rising and thinned.rising:
        assert abs(full.critical_in * full.slope - thinned.critical_in * thinned.slope) <= noise + 0.5


# What a check reads back for its forecast when the anomalies look at no sample (anomaly.reads_samples) is the whole
# rows' times and usages, subject by subject: the same rows, thinned or not, so the same forecast.
@settings(max_examples=20, deadline=None)  # each example writes up to 3,600 samples to two history.db files
@given(seed=st.integers(0, 2**32), every=st.sampled_from([1.0, 30.0]), unreachable=st.floats(0, 0.3),
       cleanups=st.lists(st.floats(0, 900), max_size=2))
def test_the_forecasts_read_is_the_whole_rows_times_and_usages(seed, every, unreachable, cleanups):
    draw, now = random.Random(seed), T0 + 900
    checked = [("host", "a"), ("pool", "a"), ("host", "b")]  # a pool may share a host's name
    rows = []
    for k in range(int(900 / every) + 1):
        at = T0 + k * every - draw.random() * min(every, 1) / 2
        for kind, name in [*checked, ("host", "left")] if k < 10 else checked:  # "left": no longer checked
            sessions = None if draw.random() < unreachable else draw.randrange(50)
            rows.append(Sample(at if k else T0, kind, name, sessions, 50, None if sessions is None else 2.0 * sessions,
                               "ok", 0, sessions is not None))
    last = [Sample(now, kind, name, 1, 50, 2.0, "ok", 0, True) for kind, name in checked]
    before = tuple(T0 + at for at in cleanups)
    with tempfile.TemporaryDirectory() as tmp:
        History(Path(tmp, "light")).record(rows, T0, HistorySettings())
        shutil.copytree(Path(tmp, "light"), Path(tmp, "whole"))
        light = History(Path(tmp, "light")).record(last, now - 900, HistorySettings(), before)
        whole = History(Path(tmp, "whole")).record(last, now - 900, HistorySettings(), before, whole_rows=True)
    assert set(light) == set(whole) == set(checked)
    for subject in checked:
        samples = whole[subject].samples
        assert all((s.kind, s.name) == subject for s in samples) and samples
        assert (light[subject].times, light[subject].usages) == ([s.time for s in samples], [s.usage for s in samples])
        assert (whole[subject].times, whole[subject].usages) == (light[subject].times, light[subject].usages)
        assert light[subject].samples == []
