"""`guardian check` through the CLI against fake gateways: outputs, exit codes, state, webhook."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from conftest import read_state
from fake_gateway import FakeGateway
from hypothesis import example, given
from hypothesis import strategies as st

from guardian.commands import check as checking
from guardian.core.policy import level_for
from guardian.core.records import Reading
from guardian.output.message import line_text
from guardian.output.render import threshold_count
from guardian.settings.levels import RANK
from guardian.settings.load import load
from guardian.settings.model import Alerts


def fill(gateway, count, idle=0, idle_age_ms=3 * 3600 * 1000):
    now = int(time.time() * 1000)
    for index in range(count):
        gateway.add_session(updated_at=now - idle_age_ms if index < idle else now)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_hosts_counts_levels_exit_code_and_json(fakes, write_config, cli, state_dir):
    pc_a, t440 = fakes(), fakes()
    fill(pc_a, 16, idle=3)
    fill(t440, 55, idle=12)
    config = write_config({"pc-a": {"url": pc_a.url, "token": "secret", "limit": 40},
                           "t440": {"url": t440.url, "token": "secret", "limit": 60}})
    result = cli("check", "--config", config, "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    hosts = {h["name"]: h for h in report["hosts"]}
    assert (hosts["pc-a"]["sessions"], hosts["pc-a"]["level"], hosts["pc-a"]["idle"]) == (16, "ok", 3)
    assert (hosts["t440"]["sessions"], hosts["t440"]["level"], hosts["t440"]["idle"]) == (55, "critical", 12)
    assert hosts["t440"]["usage"] == 91.7 and hosts["t440"]["server_version"] == "2026.9.6"
    assert report["status"] == "critical" and report["exit_code"] == 2
    assert "guardian alert: CRITICAL t440 92% (55/60), up from ok; 12 idle sessions" in result.stderr
    state = read_state(state_dir)["subjects"]
    assert state["host:t440"]["level"] == "critical" and state["host:t440"]["count"] == 55
    assert state["host:t440"]["channels"]["log"]["level"] == "critical"
    # the client never sends an Origin header and asks only for the scope check needs
    assert all("origin" not in {k.lower() for k in c["headers"]} for c in pc_a.connects)
    assert pc_a.connects[-1]["params"]["scopes"] == ["operator.read"]
    assert pc_a.connects[-1]["params"]["client"] == {
        "id": "gateway-client",
        "version": pc_a.connects[-1]["params"]["client"]["version"],
        "platform": "linux",
        "mode": "backend",
    }


def test_nagios_line_and_plain_output(fakes, write_config, cli):
    pc_a, t440 = fakes(), fakes()
    fill(pc_a, 16)
    fill(t440, 55)
    config = write_config({"pc-a": {"url": pc_a.url, "token": "secret", "limit": 40},
                           "t440": {"url": t440.url, "token": "secret", "limit": 60}})
    result = cli("check", "--config", config, "--format", "nagios", "--no-notify")
    assert (
        result.stdout.strip()
        == "SESSIONS CRITICAL - t440 92% (55/60), pc-a 40% (16/40) | 'pc-a'=16;32;36;0;40 't440'=55;48;54;0;60"
    )
    plain = cli("check", "--config", config, "--format", "plain", "--no-notify").stdout.splitlines()
    assert plain[0].startswith("pc-a 40% (16/40) ok") and "idle=0" in plain[0]
    assert plain[1].startswith("t440 92% (55/60) critical")


@given(limit=st.integers(1, 10_000), percents=st.lists(st.floats(0.01, 100), min_size=3, max_size=3, unique=True))
@example(limit=60, percents=[65.0, 80.0, 90.0])  # main gave the notice and warning counts, 39 and 48
@example(limit=3, percents=[10.0, 100 / 3 * 2, 100.0])  # thresholds that land on a count exactly
def test_nagios_warn_and_crit_are_the_counts_where_the_exit_code_turns(limit, percents):
    # design.md: perfdata warn/crit at the warning and critical counts, so a graph's lines and the state agree
    alerts = Alerts(thresholds=dict(zip(("notice", "warning", "critical"), sorted(percents))), margin=0)
    for level in ("warning", "critical"):
        count = threshold_count(limit, alerts.thresholds[level])
        assert 0 <= count <= limit
        assert RANK[level_for(Reading(count, limit).usage, alerts)] >= RANK[level]
        if count:
            assert RANK[level_for(Reading(count - 1, limit).usage, alerts)] < RANK[level]


def test_change_since_last_check(fake, write_config, cli):
    fill(fake, 10)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    cli("check", "--config", config, "-q")
    fill(fake, 3)
    report = json.loads(cli("check", "--config", config, "--json").stdout)
    assert report["hosts"][0]["change"] == 3


def test_webhook_gets_one_escalation_then_nothing_within_cooldown(
    fake, write_config, cli, receiver, monkeypatch, state_dir
):
    fill(fake, 70)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    assert cli("check", "--config", config, "-q").exit_code == 0
    assert cli("check", "--config", config, "-q").exit_code == 0
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["version"] == "1" and body["status"] == "firing"
    alert = body["alerts"][0]
    assert {k: alert[k] for k in ("subject", "level", "previous_level", "reason", "count", "limit", "usage")} == {
        "subject": "host:a", "level": "notice", "previous_level": "ok", "reason": "escalated", "count": 70,
        "limit": 100, "usage": 70.0}
    assert alert["dedup_key"] == "guardian/host/a/usage" and "guardian cleanup --dry-run --hosts a" in alert["action"]
    fill(fake, 15)  # 85 %: warning, an escalation is sent at once despite the notice cooldown
    assert cli("check", "--config", config, "-q").exit_code == 1
    assert [b["alerts"][0]["level"] for b in receiver.bodies] == ["notice", "warning"]
    assert read_state(state_dir)["subjects"]["host:a"]["channels"]["webhook-1"]["level"] == "warning"


def test_failed_webhook_is_sent_again_on_the_next_run(fake, write_config, cli, receiver, monkeypatch, state_dir):
    fill(fake, 95)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    receiver.status = 500
    first = cli("check", "--config", config, "-q")
    assert ("alert channel webhook-1 failed (the webhook (env HOOK_URL) answered HTTP 500 (3 attempts)); "
            "it will be sent again on the next run") in first.stderr
    assert len(receiver.requests) == 3  # retried within the run, with backoff
    assert receiver.url not in first.stderr  # the URL is a secret
    assert read_state(state_dir)["subjects"]["host:a"]["channels"].get("webhook-1", {}).get("level", "ok") == "ok"
    receiver.status = 200
    cli("check", "--config", config, "-q")
    cli("check", "--config", config, "-q")
    assert [b["alerts"][0]["reason"] for b in receiver.bodies] == ["escalated"]


def test_dead_host_is_unknown_while_the_other_is_checked(fake, write_config, cli):
    fill(fake, 10)
    config = write_config({"up": {"url": fake.url, "token": "secret", "limit": 100},
                           "down": {"url": f"ws://127.0.0.1:{closed_port()}", "token": "secret", "limit": 10}})
    first = cli("check", "--config", config, "--format", "plain")
    assert first.exit_code == 3
    assert "up 10% (10/100) ok" in first.stdout
    assert "down UNKNOWN down at 127.0.0.1:" in first.stdout and "refused the connection" in first.stdout
    assert "UNREACHABLE" not in first.stderr  # one failed poll is not yet an alert
    second = cli("check", "--config", config, "--format", "plain")
    assert "guardian alert: UNREACHABLE down" in second.stderr and "guardian doctor --hosts down" in second.stderr


def test_silent_host_times_out_without_costing_the_other(fakes, write_config, cli):
    up, silent = fakes(), fakes()
    silent.silent = True
    fill(up, 5)
    config = write_config({"up": {"url": up.url, "token": "secret", "limit": 10},
                           "silent": {"url": silent.url, "token": "secret", "limit": 10, "timeout": "1s"}})
    report = json.loads(cli("check", "--config", config, "--json").stdout)
    hosts = {h["name"]: h for h in report["hosts"]}
    assert hosts["up"]["sessions"] == 5
    assert hosts["silent"]["reachable"] is False and "no connect challenge within 1s" in hosts["silent"]["error"]


def test_events_garbage_and_startup_unavailable_are_survived(fake, write_config, cli):
    fill(fake, 7)
    fake.events_before_response = 3
    fake.garbage_before_response = True
    fake.unavailable_connects = 2
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}})
    report = json.loads(cli("check", "--config", config, "--json").stdout)
    assert report["hosts"][0]["sessions"] == 7 and report["hosts"][0]["level"] == "notice"


def test_an_answer_holding_nan_is_read_as_the_json_module_reads_it(fake, write_config, cli):
    # not JSON to a strict parser (orjson refuses NaN): read by the json module as before, not skipped to a timeout
    fill(fake, 4)
    next(iter(fake.sessions.values()))["lastInteractionAt"] = float("nan")
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10, "timeout": "2s"}})
    report = json.loads(cli("check", "--config", config, "--json").stdout)
    assert report["hosts"][0]["reachable"] is True and report["hosts"][0]["sessions"] == 4


def test_wrong_token_is_one_sentence(fake, write_config, cli):
    config = write_config({"a": {"url": fake.url, "token": "wrong", "limit": 10}})
    result = cli("check", "--config", config, "--format", "plain")
    assert result.exit_code == 3
    assert "a: the gateway rejected the token from env TOKEN_A (token mismatch)" in result.stdout
    assert "wrong" not in result.stdout + result.stderr


def test_pools_sum_their_hosts(fakes, write_config, cli):
    a, b = fakes(), fakes()
    fill(a, 30)
    fill(b, 42)
    config = write_config(
        {"a": {"url": a.url, "token": "secret", "limit": 50}, "b": {"url": b.url, "token": "secret", "limit": 50}},
        pools={"shared": {"hosts": ["a", "b"], "limit": 80}},
    )
    result = cli("check", "--config", config, "--json")
    pool = json.loads(result.stdout)["pools"][0]
    assert (pool["sessions"], pool["level"], pool["hosts"]) == (72, "critical", ["a", "b"])
    assert result.exit_code == 2 and "CRITICAL pool shared 90% (72/80)" in result.stderr


def test_a_pool_with_a_member_down_alerts_on_what_the_others_hold(fakes, write_config, cli):
    """The reachable members' sum is a lower bound: the pool still rises on it, says so, and a member
    going dark never resolves it."""
    a, b = fakes(), fakes()
    fill(a, 60)
    fill(b, 5)
    config = write_config({"a": {"url": a.url, "token": "secret", "limit": 100},
                           "b": {"url": b.url, "token": "secret", "limit": 100}},
                          pools={"shared": {"hosts": ["a", "b"], "limit": 80}})
    first = cli("check", "--config", config, "-q")
    assert "WARNING pool shared 81% (65/80), up from ok" in first.stderr
    b.stop()
    fill(a, 14)  # a alone: 74 of the pool's 80
    second = cli("check", "--config", config, "--json")
    assert ("guardian alert: CRITICAL pool shared at least 92% (74/80), b unreachable, up from warning"
            in second.stderr)
    pool = json.loads(second.stdout)["pools"][0]
    assert (pool["sessions"], pool["usage"], pool["level"], pool["unreachable_hosts"]) == (74, 92.5, "critical", ["b"])
    assert json.loads(second.stdout)["alerts"][0]["lines"][-1]["unreachable_hosts"] == ["b"]
    plain = cli("check", "--config", config, "--format", "plain", "--no-notify").stdout.splitlines()
    assert plain[2].startswith("pool shared at least 92% (74/80) critical") and "unreachable=b" in plain[2]
    table = cli("check", "--config", config, "--format", "table", "--no-notify", env={"COLUMNS": "200"}).stdout
    assert "at least: b unreachable" in table

    a.sessions.clear()
    fill(a, 10)  # a alone is far below notice now; b, dark, may hold anything
    third = cli("check", "--config", config, "--json")
    assert json.loads(third.stdout)["pools"][0]["level"] == "critical"
    assert "RESOLVED pool" not in third.stderr and "pool shared" not in third.stderr


def test_hosts_option_selects_a_subset_and_rejects_unknown_names(fakes, write_config, cli):
    a, b = fakes(), fakes()
    config = write_config(
        {"a": {"url": a.url, "token": "secret", "limit": 5}, "b": {"url": b.url, "token": "secret", "limit": 5}}
    )
    report = json.loads(cli("check", "--config", config, "--hosts", "b", "--json").stdout)
    assert [h["name"] for h in report["hosts"]] == ["b"] and not a.connects
    bad = cli("check", "--config", config, "--hosts", "b,zz")
    assert bad.exit_code == 3 and "--hosts names zz" in bad.stderr  # no verdict: UNKNOWN


def test_bad_config_is_one_sentence_and_unknown_for_check_exit_2_for_the_rest(tmp_path, cli):
    path = tmp_path / "g.yaml"
    path.write_text("hosts:\n  a:\n    url: ws://127.0.0.1:1\n    limit: -3\n")
    sentence = f"config error: {path}:4: hosts.a.limit: must be a positive number of sessions, got -3"
    result = cli("check", "--config", path)
    assert result.exit_code == 3  # check is a Nagios plugin: no verdict is UNKNOWN
    assert result.stderr == f"guardian: {sentence}\n" and result.stdout == ""
    nagios = cli("check", "--config", path, "--format", "nagios")
    assert nagios.exit_code == 3 and nagios.stdout == f"SESSIONS UNKNOWN - {sentence}\n"
    assert cli("check", "--config", path, "--format", "nagios", "-q").stdout == ""
    for command in (["cleanup"], ["doctor"], ["report"], ["notify-test"]):
        other = cli(*command, "--config", path)
        assert other.exit_code == 2 and other.stderr == f"guardian: {sentence}\n", command


@pytest.mark.parametrize("args, sentence", [
    (["--bogus"], "No such option '--bogus'."),
    (["--format", "xml"], "Invalid value for '--format': 'xml' is not one of 'table', 'plain', 'json', 'nagios'."),
    (["--limit", "0"], "Invalid value for '--limit': 0 is not in the range x>=1."),
    (["extra"], "Got unexpected extra argument (extra)"),
])
def test_a_usage_error_of_check_is_unknown(args, sentence, cli, fake, write_config):
    """click's own usage errors exit 2; a Nagios plugin's must be UNKNOWN, with its line under --format nagios."""
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}})
    plain = cli("check", "--config", config, *args)
    assert plain.exit_code == 3 and plain.stdout == "" and f"Error: {sentence}" in plain.stderr
    nagios = cli("check", "--config", config, "--format", "nagios", *args)
    assert nagios.exit_code == 3
    if "--format" not in args:
        assert nagios.stdout == f"SESSIONS UNKNOWN - {sentence}\n"
    assert not fake.connects  # nothing was checked
    assert cli("cleanup", "--config", config, "--bogus").exit_code == 2  # the other commands keep click's 2


def test_the_unknown_line_is_one_line_without_perfdata():
    from guardian.cli import nagios_unknown

    assert nagios_unknown("hosts.a|b: bad\n  here") == "SESSIONS UNKNOWN - hosts.a/b: bad here"


def test_an_unexpected_failure_of_check_is_unknown(fake, write_config, cli, monkeypatch):
    from guardian.output import render

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(render, "print_check", broken)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}})
    result = cli("check", "--config", config, "--format", "nagios")
    sentence = "unexpected RuntimeError: a bug (run with --debug for the traceback)"
    assert result.exit_code == 3 and result.stderr == f"guardian: {sentence}\n"
    assert result.stdout == f"SESSIONS UNKNOWN - {sentence}\n"
    debug = cli("--debug", "check", "--config", config, "--format", "nagios")
    assert debug.exit_code == 3 and "Traceback" in debug.stderr and "RuntimeError: a bug" in debug.stderr


def test_corrupt_state_is_moved_aside_and_the_run_goes_on(fake, write_config, cli, state_dir):
    fill(fake, 3)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}})
    state_dir.mkdir(parents=True)
    (state_dir / "state.json").write_text("{not json")
    result = cli("check", "--config", config, "-q")
    assert result.exit_code == 0 and "state.json was corrupt" in result.stderr
    assert read_state(state_dir)["subjects"]["host:a"]["count"] == 3
    assert len(list(state_dir.glob("state.json.corrupt-*"))) == 1


def test_older_release_without_total_count_is_counted(fakes, write_config, cli):
    legacy = fakes(legacy=True)
    fill(legacy, 9, idle=4)
    config = write_config({"old": {"url": legacy.url, "token": "secret", "limit": 10}})
    report = json.loads(cli("check", "--config", config, "--json").stdout)
    assert (report["hosts"][0]["sessions"], report["hosts"][0]["idle"], report["hosts"][0]["level"]) == (
        9,
        4,
        "critical",
    )


def test_remote_gateway_pairing_then_device_token(fakes, write_config, cli, state_dir):
    remote = fakes(remote=True)
    fill(remote, 2)
    config = write_config({"far": {"url": remote.url, "token": "secret", "limit": 10, "device": True}})
    first = cli("check", "--config", config, "--format", "plain")
    assert first.exit_code == 3
    (request_id,) = remote.pending_pairings
    assert "pairing required" in first.stdout
    # the approve command ends the line, so the request id can be copied without punctuation
    assert first.stdout.strip().endswith(
        f"run on far, then run the guardian again: openclaw devices approve {request_id}"
    )
    assert remote.connects[-1]["params"]["scopes"] == ["operator.read", "operator.admin"]  # one approval for all
    remote.approve(request_id)
    second = cli("check", "--config", config, "--json")
    assert second.exit_code == 0 and json.loads(second.stdout)["hosts"][0]["sessions"] == 2
    tokens = json.loads((state_dir / "identity" / "device-tokens.json").read_text())
    assert tokens["far"]["token"] and (state_dir / "identity" / "device.json").stat().st_mode & 0o777 == 0o600
    # later runs reuse the stored identity: no new pairing request
    cli("check", "--config", config, "-q")
    assert not remote.pending_pairings and len(remote.paired_devices) == 1


def test_check_over_time_with_now_passed_in(fake, write_config):
    """The library's run() takes `now`: a cooldown is exercised without a clock."""
    fill(fake, 66)
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}}))
    t0 = 1_800_000_000.0
    reasons = []
    for minutes in (0, 10, 31):
        report = checking.run(config, None, now=t0 + minutes * 60)
        reasons.append([line.reason for d in report.deliveries for line in d.lines])
    assert reasons == [["escalated"], [], ["repeat"]]


def test_hosts_and_channels_that_left_the_config_are_forgotten_after_a_day(fakes, write_config, receiver,
                                                                          monkeypatch, state_dir):
    """Back within a day (a typo fixed) a host is remembered, so nobody is told again; gone for a day,
    its state and its channels' memories are pruned, and a host that comes back later starts fresh."""
    a, b = fakes(), fakes()
    fill(a, 95)
    fill(b, 95)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    both = {"a": {"url": a.url, "token": "secret", "limit": 100}, "b": {"url": b.url, "token": "secret", "limit": 100}}
    hook = {"channels": [{"type": "webhook", "url_env": "HOOK_URL", "name": "hook"}]}
    t0, day = 1_800_000_000.0, 86400.0

    def run(hosts, alerts, at) -> list[str]:
        report = checking.run(load(write_config(hosts, alerts=alerts)), None, now=at)
        return [line.subject for d in report.deliveries if d.channel == "hook" for line in d.lines]

    assert run(both, hook, t0) == ["host:a", "host:b"]
    assert run({"a": both["a"]}, hook, t0 + 60) == []  # b left the config by mistake...
    assert run(both, hook, t0 + 120) == []  # ...and is back: still within its critical cooldown, not told again
    run({"a": both["a"]}, {}, t0 + 180)  # b and the channel leave the config
    run({"a": both["a"]}, {}, t0 + 180 + day - 1)
    subjects = read_state(state_dir)["subjects"]
    assert "host:b" in subjects and "hook" in subjects["host:a"]["channels"]  # not yet a day gone
    run({"a": both["a"]}, {}, t0 + 180 + day)
    subjects = read_state(state_dir)["subjects"]
    assert "host:b" not in subjects and set(subjects["host:a"]["channels"]) == {"log"}
    assert run(both, hook, t0 + 240 + day) == ["host:a", "host:b"]  # the channel and b start fresh


def test_a_host_left_out_by_hosts_is_not_forgotten(fakes, write_config, state_dir):
    a, b = fakes(), fakes()
    fill(b, 95)
    config = load(write_config({"a": {"url": a.url, "token": "secret", "limit": 100},
                                "b": {"url": b.url, "token": "secret", "limit": 100}}))
    checking.run(config, None, now=1_800_000_000.0)
    checking.run(config, "a", now=1_800_000_000.0 + 60)
    checking.run(config, "a", now=1_800_000_000.0 + 3 * 86400)  # still in the config: only not selected
    assert read_state(state_dir)["subjects"]["host:b"]["level"] == "critical"


def test_on_critical_cleans_at_once_and_the_alert_says_so(fake, write_config, cli, receiver, monkeypatch, state_dir):
    from guardian.adapters import audit

    fill(fake, 19, idle=4)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 20}},
                          cleanup={"on_critical": True},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    result = cli("check", "--config", config, "-q")
    assert len(fake.sessions) == 15
    assert "the guardian closed 4 idle sessions at once" in result.stderr
    assert receiver.bodies[0]["alerts"][0]["closed_now"] == 4
    events = [r["event"] for r in audit.read(state_dir)]
    assert events.count("outcome") == 4 and events[-1] == "alert"
    assert audit.read(state_dir)[-1]["alerts"][0]["subject"] == "host:a"


IDLE_KINDS = ("closable", "pinned", "running", "protected_agent", "protected_label", "main", "recent")


def add_idle_mix(gateway, mix: dict) -> None:
    """Sessions idle for 3 h (but `recent`) that cleanup closes (`closable`) or keeps, and why."""
    idle_since = int(time.time() * 1000) - 3 * 3600 * 1000
    for kind, count in mix.items():
        for _ in range(count):
            options = {"closable": {}, "pinned": {"pinned": True}, "running": {"has_active_run": True},
                       "protected_agent": {"agent": "ops"}, "protected_label": {"label": "keep"},
                       "main": {"key": "agent:main:main"}, "recent": {"updated_at": None}}[kind]
            gateway.add_session(**{"updated_at": idle_since, **options})


def test_the_idle_words_never_promise_more_than_a_dry_run_would_close(write_config, cli):
    """The cheap count (sessions.list activeMinutes) cannot see pinned, protected, main or running
    sessions: an alert says "cleanup could close" only of a number a dry run would close."""
    with FakeGateway("secret") as gateway:
        config = write_config({"a": {"url": gateway.url, "token": "secret", "limit": 1}},
                              cleanup={"protect": {"agents": ["ops"], "labels": ["keep"]}})

        @given(st.fixed_dictionaries({kind: st.integers(0, 1 if kind == "main" else 3) for kind in IDLE_KINDS}))
        @example(dict.fromkeys(IDLE_KINDS, 0) | {"closable": 1, "pinned": 1})
        def words_hold(mix):
            gateway.sessions.clear()
            add_idle_mix(gateway, mix | {"recent": mix["recent"] + 1})  # at least one session: an alert
            report = checking.run(load(config), None, now=time.time(), act=False)
            (line,) = [line for d in report.deliveries if d.channel == "log" for line in d.lines]
            dry_run = json.loads(cli("cleanup", "--config", config, "--dry-run", "--json").stdout)
            would_close = len(dry_run["hosts"][0]["actions"])
            assert would_close == mix["closable"]
            promised = re.search(r"(\d+) idle sessions? cleanup could close", line_text(line))
            assert promised is None or int(promised[1]) <= would_close
            idle = sum(mix.values()) - mix["recent"]
            assert (f"; {idle} idle session" in line_text(line)) == (idle > 0)  # the cheap count, called what it is

        words_hold()


def test_no_notify_changes_no_state(fake, write_config, cli, state_dir):
    """Two --no-notify looks at a dead host, then a real run: that run counts one failed poll, not three."""
    fill(fake, 10)
    config = write_config({"up": {"url": fake.url, "token": "secret", "limit": 100},
                           "down": {"url": f"ws://127.0.0.1:{closed_port()}", "token": "secret", "limit": 10}})
    for _ in range(2):
        assert cli("check", "--config", config, "-q", "--no-notify").exit_code == 3
    assert not (state_dir / "state.json").exists()
    real = cli("check", "--config", config, "-q")
    assert "UNREACHABLE" not in real.stderr  # one failed poll is not yet an alert
    assert read_state(state_dir)["subjects"]["host:down"]["failures"] == 1


def test_a_version_1_state_keeps_its_cooldowns(fake, write_config, state_dir):
    """state.json from the previous release: what each channel was told carries over, no alert storm."""
    fill(fake, 95)
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}}))
    t0 = 1_800_000_000.0
    state_dir.mkdir(parents=True)
    told = {"level": "critical", "repeat_after": t0 + 180, "unreachable": False, "unreachable_repeat_after": 0.0}
    growth = {"level": "notice", "repeat_after": t0 + 600, "unreachable": False, "unreachable_repeat_after": 0.0}
    (state_dir / "state.json").write_text(json.dumps({"version": 1, "subjects": {
        "host:a": {"level": "critical", "failures": 0, "count": 95, "checked_at": t0 - 60, "channels": {"log": told}},
        "host:a/growth": {"level": "ok", "failures": 0, "count": None, "checked_at": None, "channels": {"log": growth}},
    }}))
    sent = []
    for minutes in (0, 2, 3):
        report = checking.run(config, None, now=t0 + minutes * 60)
        sent.append([line.reason for d in report.deliveries for line in d.lines])
        assert not report.warnings
    assert sent == [[], [], ["repeat"]]  # critical was told 2 min before the upgrade: repeated 5 min after it
    state = read_state(state_dir)
    assert state["version"] == 2
    assert state["subjects"]["host:a/growth"]["channels"]["log"]["told_at"] == {"growth": t0 + 600 - 1800}


def test_a_version_1_unreachable_memory_keeps_its_cooldown():
    from guardian.adapters.state import State

    old = {"level": "warning", "repeat_after": 2_000.0, "unreachable": True, "unreachable_repeat_after": 1_500.0}
    state = State.from_json(json.dumps({"version": 1, "subjects": {"host:a": {
        "level": "warning", "failures": 3, "count": 85, "checked_at": 100.0, "channels": {"pager": old}}}}))
    memory = state.memory("host:a", "pager")
    assert (memory.level, memory.unreachable) == ("warning", True)
    assert memory.told_at == {"warning": 1_100.0, "unreachable": 600.0}
    assert state.subject("host:a").since == 100.0  # a lower level's reminder waits a cooldown from the last poll


def test_a_silenced_host_is_checked_shown_and_recorded_but_not_sent_and_told_once_when_removed(
    fake, write_config, cli, receiver, monkeypatch, state_dir, tmp_path
):
    from guardian.adapters import audit

    fill(fake, 95)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    added = cli("silence", "add", "--config", config, "--hosts", "a", "--for", "2h", "--reason", "load test")
    assert added.exit_code == 0, added.stderr
    silence_id = added.stdout.split()[0]
    prom = tmp_path / "g.prom"
    first = cli("check", "--config", config, "--prom-file", prom)
    assert first.exit_code == 2  # the Nagios state is the truth: a silence is about notifications
    assert f"silenced by {silence_id} until " in first.stdout
    assert re.search(rf"guardian alert: .*\[held: silenced by {silence_id} until ", first.stderr)
    assert 'guardian_silenced{kind="host",name="a"} 1' in prom.read_text()
    assert 'guardian_acknowledged{kind="host",name="a"} 0' in prom.read_text()
    entry = json.loads(cli("check", "--config", config, "--json").stdout)["hosts"][0]
    assert (entry["silenced_by"], entry["acknowledged"], entry["maintenance"]) == (silence_id, None, None)
    assert receiver.bodies == []
    suppressed = [r for r in audit.read(state_dir) if r["event"] == "suppressed"]
    assert suppressed and {(r["channel"], r["held_by"], r["id"]) for r in suppressed} == {
        ("webhook-1", "silence", silence_id)}
    assert cli("silence", "remove", "--config", config, silence_id).exit_code == 0
    cli("check", "--config", config, "-q")
    cli("check", "--config", config, "-q")
    assert [(b["alerts"][0]["reason"], b["alerts"][0]["level"]) for b in receiver.bodies] == [("escalated", "critical")]


# A 2026.9 gateway queues requests sent behind `connect` until it has answered it (it says so with `capabilities`
# in its challenge): a check sends its reads right behind `connect`, a round trip saved (issue 18's 500 gateways).
def test_a_check_sends_its_reads_behind_connect_where_the_gateway_queues_them(fake, write_config, cli):
    fill(fake, 4)
    fake.latency = 0.2  # time enough for the reads to reach it while it handles connect, however busy the machine
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}})
    report = json.loads(cli("check", "--config", config, "--json").stdout)
    assert report["hosts"][0]["sessions"] == 4
    # every read of the check went behind connect: the two counts, status, and the two listings of the classes
    assert [c["queued"] for c in fake.connects] == [5]


def test_a_gateway_that_refuses_early_reads_gets_them_after_hello(fakes, write_config, cli):
    old, fussy = fakes(legacy=True), fakes()
    fussy.early_requests_refused = True  # says `capabilities`, refuses all the same: a release between the two
    fussy.latency = 0.2  # the reads reach it while it handles connect
    fill(old, 3)
    fill(fussy, 5)
    config = write_config({"old": {"url": old.url, "token": "secret", "limit": 10},
                           "fussy": {"url": fussy.url, "token": "secret", "limit": 10}})
    report = json.loads(cli("check", "--config", config, "--json").stdout)
    assert {h["name"]: h["sessions"] for h in report["hosts"]} == {"old": 3, "fussy": 5}
    assert [c["queued"] for c in old.connects] == [0]  # no capabilities: never sent early
    assert [c["queued"] for c in fussy.connects] == [0, 0]  # refused, then asked again on a new connection
