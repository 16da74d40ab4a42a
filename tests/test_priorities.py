"""Agent priorities in cleanup (issue 14): `cleanup.agents.<id>.priority: protected | high | normal | low`.

Promised: the sessions a run closes are the first ones of the order low, normal, high priority, each most idle
first, among those every other rule lets go; never more than max_per_run; a protected agent's never (and
`protect.agents` is the same rule, spelt the other way). The dry run shows each one's place and why.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_cleanup import AGENT_IDS, NOW, RULES_DRAWN, STORES, H, may_close, row

from guardian.core.planner import OVER_CAP, plan
from guardian.settings.load import parse
from guardian.settings.model import Cleanup, ConfigError, Protect

RANK = {"low": 0, "normal": 1, "high": 2}
RULES_WITH_PRIORITIES = st.tuples(RULES_DRAWN, st.dictionaries(
    st.sampled_from([a.casefold() for a in AGENT_IDS]), st.sampled_from(["low", "high", "protected"]), max_size=3,
)).map(lambda drawn: Cleanup(**{**drawn[0].__dict__, "agent_priority": drawn[1]}))


def priority(agent, rules: Cleanup) -> str:
    """The priority the config gives an agent, read plainly: protect.agents or its own entry, whatever the case."""
    folded = str(agent).casefold()
    if folded in [a.casefold() for a in rules.protect.agents]:
        return "protected"
    return rules.agent_priority.get(folded, "normal")


def protected_may_close(r, rules, now, main_key) -> bool:
    """may_close, with `priority: protected` an agent protection like protect.agents."""
    agent = r.get("agentId") if isinstance(r.get("agentId"), str) else (
        r["key"].split(":")[1] if r["key"].startswith("agent:") and r["key"].count(":") >= 2 else None)
    return may_close(r, rules, now, main_key) and priority(agent, rules) != "protected"


# pinned: a high-priority session more idle than a normal one still goes after it (the cap of 1 takes the normal)
HIGH_BEFORE_LOW = ([row("agent:sales:a", 9), row("agent:main:b", 3)],
                   Cleanup(idle_after=7200, max_per_run=1, agent_priority={"sales": "high"}))


@example(*HIGH_BEFORE_LOW)
@example([row("agent:ops:a", 9)], Cleanup(idle_after=7200, max_per_run=5, agent_priority={"ops": "protected"}))
@given(STORES, RULES_WITH_PRIORITIES)
def test_the_sessions_closed_are_the_first_of_the_priority_order_among_those_that_may_go(rows, rules):
    decisions = plan(rows, rules, NOW, main_key="agent:main:main")
    by_key = {r["key"]: r for r in rows}
    may_go = [d for d in decisions if protected_may_close(by_key[d.key], rules, NOW, "agent:main:main")]
    closed = [d for d in decisions if d.close]
    assert {d.key for d in closed} <= {d.key for d in may_go}
    assert len(closed) == min(len(may_go), rules.max_per_run)
    assert not [d for d in closed if priority(d.agent, rules) == "protected"]

    def place(d):
        return RANK[priority(d.agent, rules)], -d.idle_seconds

    left = [d for d in may_go if not d.close]
    assert all(place(c) <= place(n) for c in closed for n in left), "a session closed before one that goes first"
    assert all(d.reason == OVER_CAP for d in left)
    # the order shown is the order they go: 1, 2, 3 ... through the closed ones, then those the cap held back
    ordered = sorted(may_go, key=lambda d: d.order)
    assert [d.order for d in ordered] == list(range(1, len(may_go) + 1))
    assert [place(d) for d in ordered] == sorted(place(d) for d in ordered)
    assert all(d.order is None for d in decisions if d not in may_go)


def test_low_priority_goes_first_then_normal_then_high_each_most_idle_first():
    rows = [row("agent:sales:s1", 9), row("agent:support:s2", 3), row("agent:main:s3", 5), row("agent:support:s4", 4),
            row("agent:sales:s5", 8), row("agent:main:s6", 7)]
    rules = Cleanup(idle_after=7200, max_per_run=4, agent_priority={"support": "low", "sales": "high"})
    decisions = plan(rows, rules, NOW)
    assert [(d.key, d.order, d.priority, d.close) for d in decisions] == [
        ("agent:support:s4", 1, "low", True), ("agent:support:s2", 2, "low", True),
        ("agent:main:s6", 3, "normal", True), ("agent:main:s3", 4, "normal", True),
        ("agent:sales:s1", 5, "high", False), ("agent:sales:s5", 6, "high", False)]
    assert {d.reason for d in decisions if not d.close} == {OVER_CAP}


def test_a_protected_priority_is_never_closed_like_protect_agents():
    rows = [row("agent:ops:a", 30), row("agent:Audit:b", 30)]
    by_priority = Cleanup(idle_after=7200, max_per_run=5, agent_priority={"ops": "protected", "audit": "protected"})
    by_list = Cleanup(idle_after=7200, max_per_run=5, protect=Protect(agents=("ops", "AUDIT")))
    for rules in (by_priority, by_list):
        assert [(d.close, d.reason) for d in plan(rows, rules, NOW)] == [(False, "protected agent")] * 2


# --- the config -------------------------------------------------------------------------------

HOST = "hosts:\n  a: {url: 'ws://127.0.0.1:1', limit: 10}\n"


def cleanup_of(text: str) -> Cleanup:
    return parse(HOST + text, "guardian.yaml").cleanup


def test_priority_protected_and_protect_agents_are_one_rule():
    rules = cleanup_of("cleanup:\n  protect: {agents: [ops]}\n  agents:\n    audit: {priority: protected}\n"
                       "    Support: {priority: low}\n    sales: {priority: high}\n    main: {priority: normal}\n")
    assert set(rules.protect.agents) == {"ops", "audit"}
    assert [rules.priority_for(a) for a in ("ops", "AUDIT", "support", "sales", "main", "other", None)] == [
        "protected", "protected", "low", "high", "normal", "normal", "normal"]
    # the agent listed both ways, saying the same: fine
    assert cleanup_of("cleanup:\n  protect: {agents: [ops]}\n  agents: {ops: {priority: protected}}\n"
                      ).protect.agents == ("ops",)


@pytest.mark.parametrize("text, where", [
    ("cleanup:\n  agents: {sales: {priority: urgent}}\n", "cleanup.agents.sales.priority"),
    ("cleanup:\n  agents: {sales: {priority: 3}}\n", "cleanup.agents.sales.priority"),
    ("cleanup:\n  protect: {agents: [sales]}\n  agents: {sales: {priority: low}}\n", "cleanup.agents.sales.priority"),
    ("cleanup:\n  agents: {sales: {limit: 0}}\n", "cleanup.agents.sales.limit"),
    ("cleanup:\n  agents: {sales: {limit: many}}\n", "cleanup.agents.sales.limit"),
    ("cleanup:\n  agents: {sales: {limit: 2.5}}\n", "cleanup.agents.sales.limit"),
])
def test_a_bad_priority_or_limit_is_one_sentence_naming_the_key(text, where):
    with pytest.raises(ConfigError) as caught:
        cleanup_of(text)
    assert where in str(caught.value) and "\n" not in str(caught.value)


def test_an_agents_limit_is_read_as_written():
    rules = cleanup_of("cleanup:\n  agents: {sales: {limit: 20, priority: low}, ops: {idle_after: 30m}}\n")
    assert rules.agent_limit == {"sales": 20} and rules.agent_idle_after == {"ops": 1800.0}


# --- the dry run shows the order and why --------------------------------------------------------


def test_the_dry_run_shows_each_sessions_place_and_why(fake, write_config, cli):
    import time

    now = int(time.time() * 1000)
    fake.add_session("agent:support:x", agent="support", updated_at=now - 9 * H)
    fake.add_session("agent:main:y", updated_at=now - 12 * H)
    fake.add_session("agent:sales:z", agent="sales", updated_at=now - 20 * H)
    priorities = {"support": {"priority": "low"}, "sales": {"priority": "high"}}
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}},
                          cleanup={"max_per_run": 2, "agents": priorities})
    plain = cli("cleanup", "--config", config, "--dry-run", "--format", "plain")
    assert plain.exit_code == 0, plain.output
    lines = [line for line in plain.stdout.splitlines() if " agent=" in line]
    assert [line.split()[2] for line in lines] == ["agent:support:x", "agent:main:y", "agent:sales:z"]
    assert "why=1st: low priority (support), idle 9h" in lines[0]
    assert "why=2nd: normal priority (main), idle 12h" in lines[1]
    assert "reason=over the per-run cap" in lines[2] and "why=3rd: high priority (sales), idle 20h" in lines[2]
    data = json.loads(cli("cleanup", "--config", config, "--dry-run", "--json").stdout)
    assert [(p["order"], p["priority"], p["decision"]) for p in data["hosts"][0]["plan"]] == [
        (1, "low", "close"), (2, "normal", "close"), (3, "high", "keep")]
    assert data["hosts"][0]["plan"][0]["why"] == "1st: low priority (support), idle 9h"
