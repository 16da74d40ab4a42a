"""End to end against real OpenClaw gateways (2026.9.6): check, doctor and cleanup.

The gateways are real processes started by scripts/peer.py (session fixture `real_gateways`);
sessions are made with `sessions.create`, runs with `chat.send` against a fake model on 127.0.0.1.
"""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import create_sessions, idle_after_between, list_rows, rpc, wait_until
from test_check import closed_port

from guardian.adapters import audit

pytestmark = pytest.mark.real_gateway


def hosts_config(real_gateways, limits: dict) -> dict:
    return {name: {"url": real_gateways[name].url, "token": real_gateways[name].token, "limit": limit}
            for name, limit in limits.items()}


def test_check_and_doctor_against_two_real_gateways(real_gateways, write_config, cli, receiver, monkeypatch):
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config(hosts_config(real_gateways, {"pc-a": 10, "t440": 20}),
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})

    def check():
        result = cli("check", "--config", config, "--json")
        return result.exit_code, {h["name"]: h for h in json.loads(result.stdout)["hosts"]}

    doctor = cli("doctor", "--config", config, "--format", "plain")
    assert doctor.exit_code == 0, doctor.stdout
    assert doctor.stdout.count("usable") == 2 and "server 2026.9.6, protocol 4" in doctor.stdout

    code, hosts = check()
    assert code == 0 and (hosts["pc-a"]["sessions"], hosts["t440"]["sessions"]) == (0, 0)

    create_sessions(real_gateways["pc-a"], 7)  # 70 %: notice
    code, hosts = check()
    assert code == 0 and (hosts["pc-a"]["sessions"], hosts["pc-a"]["level"]) == (7, "notice")
    assert [(a["name"], a["level"], a["reason"]) for b in receiver.bodies for a in b["alerts"]] == [
        ("pc-a", "notice", "escalated")
    ]

    create_sessions(real_gateways["t440"], 17)  # 85 %: warning
    code, hosts = check()
    assert code == 1 and (hosts["t440"]["sessions"], hosts["t440"]["level"]) == (17, "warning")

    create_sessions(real_gateways["pc-a"], 2)  # 90 %: critical
    code, hosts = check()
    assert code == 2 and (hosts["pc-a"]["sessions"], hosts["pc-a"]["level"]) == (9, "critical")
    assert hosts["pc-a"]["server_version"] == "2026.9.6" and hosts["pc-a"]["change"] == 2

    sent = [(a["name"], a["level"], a["reason"], a["count"], a["limit"]) for b in receiver.bodies for a in b["alerts"]]
    assert sent == [("pc-a", "notice", "escalated", 7, 10), ("t440", "warning", "escalated", 17, 20),
                    ("pc-a", "critical", "escalated", 9, 10)]
    assert all(b["version"] == "1" and b["status"] == "firing" for b in receiver.bodies)

    nagios = cli("check", "--config", config, "--format", "nagios", "--no-notify").stdout.strip()
    assert nagios == "SESSIONS CRITICAL - pc-a 90% (9/10), t440 85% (17/20) | 'pc-a'=9;8;9;0;10 't440'=17;16;18;0;20"

    # a stopped gateway is unknown at once; the other is still checked (critical outranks unknown)
    real_gateways["t440"].stop()
    code, hosts = check()
    assert code == 2 and hosts["pc-a"]["sessions"] == 9
    assert hosts["t440"]["reachable"] is False and "refused the connection" in hosts["t440"]["error"]
    single = cli("check", "--config", config, "--hosts", "t440", "--format", "plain")
    assert single.exit_code == 3 and "t440 UNKNOWN" in single.stdout


def test_cleanup_closes_exactly_the_idle_unprotected_sessions(real_gateways, fake_model, write_config, cli, state_dir):
    lab = real_gateways["lab"]
    with rpc(lab) as connection:
        connection.call("sessions.create", {"key": "agent:main:main"})
        pinned = connection.call("sessions.create", {"label": "pinned"})["key"]
        connection.call("sessions.patch", {"key": pinned, "pinned": True})
        labelled = connection.call("sessions.create", {"label": "keep-me"})["key"]
        telegram = connection.call("sessions.create", {"key": "agent:main:telegram:4242"})["key"]
    idle = create_sessions(lab, 5)
    touched, idle = idle[0], idle[1:]

    # a real agent run, kept alive by the fake model until `hold` is set
    fake_model.hold.clear()
    running = create_sessions(lab, 1)[0]
    with rpc(lab) as connection:
        connection.call("chat.send", {"sessionKey": running, "message": "hello", "idempotencyKey": uuid.uuid4().hex})
    try:
        wait_until(
            lambda: any(r["key"] == running and r.get("hasActiveRun") for r in list_rows(lab)), what="a running run"
        )

        recent = []

        def wake_and_create():
            with rpc(lab) as connection:
                connection.call("sessions.patch", {"key": touched, "label": "woke up"})
            recent.extend(create_sessions(lab, 2))
            return recent + [touched]

        idle_after_ms = idle_after_between(lab, wake_and_create)

        config = write_config(hosts_config(real_gateways, {"lab": 100}),  # delete mode: archive has its own test
                              cleanup={"mode": "delete",
                                       "protect": {"keys": ["agent:*:telegram:*"], "labels": ["keep-me"]}})
        def snapshot():  # the running session bumps its own updatedAt as its run streams: its key only
            return {r["key"]: None if r["key"] == running else r["updatedAt"] for r in list_rows(lab)}

        before = snapshot()
        dry = cli("cleanup", "--config", config, "--dry-run", "--json", "--idle-after", f"{idle_after_ms}ms")
        assert dry.exit_code == 0, dry.stderr
        assert snapshot() == before  # the dry run changed nothing
        plan = {p["key"]: p for p in json.loads(dry.stdout)["hosts"][0]["plan"]}
        predicted = {k for k, p in plan.items() if p["decision"] == "close"}
        assert predicted == set(idle)
        assert {plan[k]["reason"] for k in (pinned, labelled, telegram, running, "agent:main:main")} == {
            "pinned", "protected label", "protected key pattern", "active run", "main session"}
        assert {plan[k]["reason"] for k in recent + [touched]} == {"not idle long enough"}

        real = cli("cleanup", "--config", config, "--json", "--idle-after", f"{idle_after_ms + 1000}ms")
        assert real.exit_code == 0, real.stdout + real.stderr
        survivors = {r["key"] for r in list_rows(lab)}
        assert survivors == set(before) - predicted
        assert any(r["key"] == running and r.get("hasActiveRun") for r in list_rows(lab))  # the run lives on
        outcomes = [r for r in audit.read(state_dir) if r["event"] == "outcome"]
        assert {r["key"] for r in outcomes if r["result"] == "closed"} == predicted
        assert all(r["host"] == "lab" and r["reason"] == "idle" and r["session_id"] for r in outcomes)
        assert json.loads(real.stdout)["hosts"][0]["closed"] == 4
    finally:
        fake_model.hold.set()


def archived_rows(gw) -> dict:
    with rpc(gw) as connection:
        return {r["key"]: r for r in connection.call("sessions.list", {"limit": 1000, "archived": True})["sessions"]}


def test_archive_restore_archive_again_then_purge_exactly_the_guardians(real_gateways, fake_model, write_config, cli,
                                                                       state_dir):
    """Issue 17 on a real 2026.9.6: idle sessions archived (gone from the default listing, listed with archived:
    true), `restore --last` brings every one back, a second cleanup archives them again, and once purge_after has
    passed (a moved clock) a cleanup purges exactly the guardian's archived sessions, not one archived by hand.
    A running session is never archived."""
    import time

    from guardian.commands import cleanup as cleaning
    from guardian.settings.load import load

    lab = real_gateways["lab"]
    idle = create_sessions(lab, 4)
    with rpc(lab) as connection:
        by_hand = connection.call("sessions.create", {})
        connection.call("sessions.patch", {"key": by_hand["key"], "archived": True,
                                           "expectedSessionId": by_hand["sessionId"]})
    fake_model.hold.clear()
    running = create_sessions(lab, 1)[0]
    with rpc(lab) as connection:
        connection.call("chat.send", {"sessionKey": running, "message": "hello", "idempotencyKey": uuid.uuid4().hex})
    try:
        wait_until(lambda: any(r["key"] == running and r.get("hasActiveRun") for r in list_rows(lab)),
                   what="a running run")
        config = write_config(hosts_config(real_gateways, {"lab": 100}), cleanup={"purge_after": "24h"})

        def cleanup_archives_every_idle_one():
            result = cli("cleanup", "--config", config, "--json", "--idle-after", "1ms")
            assert result.exit_code == 0, result.stdout + result.stderr
            host = json.loads(result.stdout)["hosts"][0]
            assert host["mode"] == "archive" and host["archived"] == host["closed"] >= len(idle)
            listed, archived = {r["key"] for r in list_rows(lab)}, archived_rows(lab)
            assert not set(idle) & listed and all(archived[k]["archived"] is True for k in idle)
            assert running in listed and running not in archived  # the live one: untouched, its run goes on
            assert any(r["key"] == running and r.get("hasActiveRun") for r in list_rows(lab))
            return json.loads(result.stdout)["run_id"]

        first_run = cleanup_archives_every_idle_one()
        restored = cli("restore", "--config", config, "--last", "--json")
        assert restored.exit_code == 0, restored.stdout + restored.stderr
        results = {r["key"]: r["result"] for r in json.loads(restored.stdout)["hosts"][0]["results"]}
        assert set(results.values()) == {"restored"} and set(idle) <= set(results)
        assert set(idle) <= {r["key"] for r in list_rows(lab)} and not set(idle) & set(archived_rows(lab))
        assert {r["run_id"] for r in audit.read(state_dir) if r["command"] == "restore"} != {first_run}

        cleanup_archives_every_idle_one()  # restored sessions are idle again: archived again
        ledger = json.loads((state_dir / "archived.json").read_text())["hosts"]["lab"]
        assert set(idle) <= set(ledger) and by_hand["key"] not in ledger and running not in ledger

        later = time.time() + 86400  # purge_after has passed: the clock moved, nothing slept
        log = audit.AuditLog(state_dir, "purging", "cleanup")
        loaded = load(config)
        (report,) = cleaning.run(loaded, list(loaded.hosts.values()), loaded.cleanup, later, False, log,
                                 clock=lambda: later)
        assert {o.decision.key for o in report.purges if o.result == "purged"} == set(ledger)
        archived = archived_rows(lab)
        assert not set(ledger) & archived.keys() and not set(ledger) & {r["key"] for r in list_rows(lab)}
        assert archived[by_hand["key"]]["archived"] is True  # archived by hand: not the guardian's to purge
        assert "clock" in report.error  # then the listing's clock, a day behind `later`, stops the rest
    finally:
        fake_model.hold.set()


def test_cleanup_keeps_every_agents_main_session_and_a_protected_key_the_gateway_folded(agents_gateway, write_config,
                                                                                         cli):
    """Measured on 2026.9.6: a key made as `...:[C123]` is listed as `...:[c123]` (keys are folded to lower
    case), and each agent's `agent:<id>:main` is its main session. Only the plain idle session goes."""
    gw = agents_gateway
    keys = ("agent:main:main", "agent:sales:main", "agent:main:slack:channel:[c123]")
    try:
        with rpc(gw) as connection:
            for key in ("agent:main:main", "agent:sales:main", "agent:main:slack:channel:[C123]", "agent:sales:idle"):
                connection.call("sessions.create", {"key": key})
        config = write_config({"keys": {"url": gw.url, "token": gw.token, "limit": 100}},
                              cleanup={"protect": {"keys": ["agent:main:slack:channel:[C123]"]}})
        dry = cli("cleanup", "--config", config, "--idle-after", "1ms", "--dry-run", "--json")
        reasons = {p["key"]: p["reason"] for p in json.loads(dry.stdout)["hosts"][0]["plan"]}
        assert reasons == {"agent:main:main": "main session", "agent:sales:main": "main session",
                           "agent:main:slack:channel:[c123]": "protected key pattern", "agent:sales:idle": "idle"}
        real = cli("cleanup", "--config", config, "--idle-after", "1ms", "--json")
        assert real.exit_code == 0, real.stdout + real.stderr
        assert {r["key"] for r in list_rows(gw)} == set(keys)
    finally:  # the store as it was, for the other tests on this gateway
        with rpc(gw) as connection:
            connection.call_many([("sessions.delete", {"key": key}) for key in keys])


def test_flapping_and_outages_against_a_real_gateway_are_told_once(real_gateways, write_config, receiver, monkeypatch):
    """A real gateway and a loopback webhook, `now` passed in: five warning/critical flaps inside the
    critical cooldown are one critical; three short outages inside the unreachable cooldown are one
    unreachable and one "reachable again"; coming back at warning is never a usage resolved."""
    from guardian.commands import check as checking
    from guardian.settings.load import load

    gw = real_gateways["pc-a"]
    monkeypatch.setenv("HOOK_URL", receiver.url)
    channels = {"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]}

    def config(limit, url=gw.url):
        return load(write_config({"pc-a": {"url": url, "token": gw.token, "limit": limit}}, alerts=channels))

    count = checking.run(config(1000), None, now=0, act=False).subjects[0].reading.count
    if count < 20:  # enough sessions that a limit puts them at warning or at critical
        create_sessions(gw, 20 - count)
        count = 20
    critical, warning = int(count / 0.9), int(count / 0.8)  # >= 90 %; 80..85 %, below critical's margin
    t0 = 1_800_000_000.0
    levels = []
    for run in range(10):  # every 30 s: critical, warning, critical, ... all inside critical's 5 min
        report = checking.run(config(critical if run % 2 == 0 else warning), None, now=t0 + 30 * run)
        levels.append(report.subjects[0].level)
    assert levels == ["critical", "warning"] * 5
    closed = f"ws://127.0.0.1:{closed_port()}"
    for cycle in range(3):  # down, down, back at warning; 90 s a cycle, all inside unreachable's 15 min
        for run, url in enumerate((closed, closed, gw.url)):
            report = checking.run(config(warning, url), None, now=t0 + 300 + 90 * cycle + 30 * run)
            assert (report.subjects[0].reading is None) == (url == closed)
    assert report.subjects[0].level == "warning"
    told = [(a["alert"], a["status"], a["reason"], a["level"], a["dedup_key"])
            for body in receiver.bodies for a in body["alerts"]]
    assert told == [("usage", "firing", "escalated", "critical", "guardian/host/pc-a/usage"),
                    ("unreachable", "firing", "unreachable", "warning", "guardian/host/pc-a/unreachable"),
                    ("unreachable", "resolved", "reachable", "warning", "guardian/host/pc-a/unreachable")]
    assert "reachable again, still at warning" in receiver.bodies[-1]["text"]
