"""Agent priorities end to end against a real OpenClaw gateway (2026.9.6) with several agents (issue 14).

The gateway (conftest's `agents_gateway`) defines its agents in openclaw.json (`agents.entries`); sessions are
made with `sessions.create` and `agent:<id>:...` keys, unevenly, in one round trip, and deleted after the test.
"""

from __future__ import annotations

import json

import pytest
from conftest import list_rows, rpc

from guardian.adapters import audit

pytestmark = pytest.mark.real_gateway


def test_a_cleanup_over_the_reserve_closes_the_low_priority_agents_idle_sessions_first(
        agents_gateway, write_config, cli, state_dir):
    gw = agents_gateway
    filled = {"support": 4, "main": 3, "sales": 3, "ops": 2}
    made = [f"agent:{agent}:s{index}" for agent, count in filled.items() for index in range(count)]
    with rpc(gw) as connection:
        connection.call_many([("sessions.create", {"key": key}) for key in made])
    try:
        check_priorities(gw, len(list_rows(gw)), write_config, cli, state_dir)
    finally:  # the store as it was, for the other tests on this gateway
        with rpc(gw) as connection:
            connection.call_many([("sessions.delete", {"key": key}) for key in made])


def check_priorities(gw, sessions: int, write_config, cli, state_dir):
    config = write_config({"agents": {"url": gw.url, "token": gw.token, "limit": sessions}},  # full: no free slot
                          cleanup={"reserve": 5, "max_per_run": 6, "agents": {
                              "support": {"priority": "low"}, "sales": {"priority": "high"},
                              "ops": {"priority": "protected"}}})
    # every session is idle past 1 ms: the cap of 6 decides, and the priorities decide which 6
    dry = cli("cleanup", "--config", config, "--idle-after", "1ms", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stdout + dry.stderr
    plan = json.loads(dry.stdout)["hosts"][0]["plan"]
    closing = [(p["agent"], p["order"], p["priority"]) for p in plan if p["decision"] == "close"]
    assert closing == [("support", 1, "low"), ("support", 2, "low"), ("support", 3, "low"), ("support", 4, "low"),
                       ("main", 5, "normal"), ("main", 6, "normal")]
    held = [(p["agent"], p["reason"]) for p in plan if p["decision"] == "keep" and p["reason"] != "main session"]
    assert sorted(held) == [("main", "over the per-run cap"), *[("ops", "protected agent")] * 2,
                            *[("sales", "over the per-run cap")] * 3]
    assert [p["why"].split(", idle")[0] for p in plan if p["order"] in (1, 5, 7)] == [
        "1st: low priority (support)", "5th: normal priority (main)", "7th: normal priority (main)"]
    listed = {r["key"]: r["updatedAt"] for r in list_rows(gw)}
    main_closed = [listed[p["key"]] for p in plan if p["agent"] == "main" and p["decision"] == "close"]
    (main_held,) = [listed[p["key"]] for p in plan if p["agent"] == "main" and p["order"] == 7]
    assert max(main_closed) <= main_held  # of main's sessions, the least idle is the one the cap holds back

    real = cli("cleanup", "--config", config, "--idle-after", "1ms", "--json")
    assert real.exit_code == 0, real.stdout + real.stderr
    (host,) = json.loads(real.stdout)["hosts"]
    assert (host["closed"], host["reserve_met"]) == (6, True)
    planned = {p["key"] for p in plan if p["decision"] == "close"}
    assert set(listed) - {r["key"] for r in list_rows(gw)} == planned
    closed = [r for r in audit.read(state_dir) if r["event"] == "outcome" and r["result"] in ("archived", "closed")]
    assert {r["key"] for r in closed} == planned
    # the audit trail says why each went when it did: the agent's priority and the session's place in the plan
    assert sorted((r["order"], r["priority"]) for r in closed) == [(1, "low"), (2, "low"), (3, "low"), (4, "low"),
                                                                   (5, "normal"), (6, "normal")]
