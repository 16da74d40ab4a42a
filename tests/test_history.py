"""history.db written by real `check` runs (fake gateways, `now` moved forward): the rows, the forecast
beside each host, and the growth and rebound notices through the per-channel alert machinery."""

from __future__ import annotations

import json

from conftest import read_state

from guardian.adapters.audit import AuditLog
from guardian.commands import check as checking
from guardian.commands import cleanup
from guardian.history import History
from guardian.render import check_json, check_plain
from guardian.settings.load import load

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
    assert growth["detail"] == "forecast to reach critical in 14m at +60.0 sessions/h (fit r² 1.00)"
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
    closed = cleanup.run(config, list(config.hosts.values()), cleanup.Rules.from_config(config.cleanup), at, False,
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
