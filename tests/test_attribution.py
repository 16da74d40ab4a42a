"""Who holds the sessions (issue 14): the split by agent and kind against a slow reference that reads the store row by
row, alone and through check's read of a fake gateway; what usage counts; when rows are listed."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_cleanup import NOW, RULES_DRAWN, may_close

from guardian.core import attribution
from guardian.core.records import Share, Split
from guardian.settings.model import COUNTABLE, DEFAULT_COUNT, Cleanup, Host, Protect
from guardian.settings.secrets import Secret

H = 3600 * 1000
AGENTS = ["main", "sales", "support", "ops"]
SHAPES = {  # key shape -> the kind the split must call it
    "agent:{a}:dashboard:{i}": "direct", "agent:{a}:telegram:group:-{i}": "group", "agent:{a}:subagent:{i}": "subagent",
    "agent:{a}:cron:job{i}": "cron", "agent:{a}:cron:job{i}:run:r{i}": "cron-run", "agent:{a}:main": "direct",
    "global": "system", "unknown": "system",
}


@st.composite
def stores(draw):
    """A store as the gateway holds it: agents, kinds, pinned, protected, running, archived, idle or not."""
    rows = {}
    for i in range(draw(st.integers(0, 14))):
        agent, shape = draw(st.sampled_from(AGENTS)), draw(st.sampled_from(list(SHAPES)))
        key = shape.format(a=agent, i=i)
        if key in rows:
            continue
        running = draw(st.booleans())
        rows[key] = {
            "key": key, "sessionId": f"s{i}", "agentId": "main" if key in ("global", "unknown") else agent,
            "updatedAt": int(NOW * 1000 - draw(st.integers(0, 6 * 60)) * 60_000),
            "pinned": draw(st.booleans()), "archived": draw(st.sampled_from([False, False, True])),
            "hasActiveRun": running, **({"status": "running"} if running else {}),
            **({"label": "keep-me"} if draw(st.booleans()) else {}),
            "kind": "group" if ":group:" in key else key if key in ("global", "unknown") else "direct",
            "classification": ("subagent" if ":subagent:" in key else "cron" if ":cron:" in key
                               else key if key in ("global", "unknown") else "custom"),
            "isMain": key.endswith(":main") and key.count(":") == 2,
        }
    return list(rows.values())


def reference(store: list[dict], rules: Cleanup) -> tuple[dict, dict]:
    """Row by row: per agent and per kind [sessions, idle, closable]; idle and closable of the listable rows only
    (cron runs are never listed, archived ones never closed)."""
    agents, kinds = {}, {}
    for r in store:
        shape = SHAPES[re.sub(r"\d+", "{i}", r["key"].replace(f":{r['agentId']}:", ":{a}:", 1))]
        kind = "archived" if r["archived"] and shape != "cron-run" else shape  # no listing shows a cron run
        agent = agents.setdefault(r["agentId"], [0, 0, 0])
        share = kinds.setdefault(kind, [0, 0, 0])
        agent[0] += 1
        share[0] += 1
        if kind in ("cron-run", "archived"):
            continue
        idle = (NOW * 1000 - r["updatedAt"]) / 1000 > rules.agent_idle_after.get(r["agentId"], rules.idle_after)
        closable = may_close(r, rules, NOW, None)
        for counts in (agent, share):
            counts[1] += idle
            counts[2] += closable
    return agents, kinds


def by_agent(store: list[dict]) -> dict:
    """status's sessions.byAgent: every row of the agent, cron runs and archived ones too."""
    return dict(Counter(r["agentId"] for r in store))


def as_reference(split: Split) -> tuple[dict, dict]:
    kinds = {s.name: [s.sessions, s.idle or 0, s.closable or 0] for s in split.kinds}
    return {s.name: [s.sessions, s.idle, s.closable] for s in split.agents if s.sessions}, kinds


def listable(store: list[dict]) -> list[dict]:
    return [r for r in store if ":run:" not in r["key"]]


@example(store=[{"key": "agent:sales:cron:job0:run:r0", "sessionId": "s0", "agentId": "sales", "updatedAt": 1,
                 "pinned": False, "archived": False, "hasActiveRun": False, "kind": "direct",
                 "classification": "cron", "isMain": False}], rules=Cleanup())
@given(store=stores(), rules=RULES_DRAWN)
def test_the_split_is_the_stores_rows_counted_one_by_one(store, rules):
    """Sessions per agent are status's (cron runs in their agent); idle and closable per agent and kind are what the
    rows say, closable by cleanup's own rules without its per-run cap; cron runs are what status counts beyond rows."""
    split = attribution.split(listable(store), by_agent(store), rules, NOW)
    agents, kinds = reference(store, rules)
    assert as_reference(split) == (agents, kinds)
    assert [s.sessions for s in split.agents] == sorted((s.sessions for s in split.agents), reverse=True)
    assert split.as_of == NOW


def test_an_agent_idle_after_of_its_own_decides_its_idle_sessions():
    rows = [{"key": f"agent:{a}:x", "sessionId": a, "agentId": a, "updatedAt": int(NOW * 1000 - H)}
            for a in ("batch", "sales")]
    split = attribution.split(rows, None, Cleanup(idle_after=7200, agent_idle_after={"batch": 1800}), NOW)
    assert {s.name: (s.sessions, s.idle, s.closable) for s in split.agents} == {"batch": (1, 1, 1), "sales": (1, 0, 0)}


def test_a_protected_agents_idle_sessions_are_idle_but_not_closable():
    rows = [{"key": f"agent:ops:{i}", "sessionId": str(i), "agentId": "ops", "updatedAt": int(NOW * 1000 - 5 * H)}
            for i in range(3)]
    split = attribution.split(rows, {"ops": 3}, Cleanup(protect=Protect(agents=("ops",))), NOW)
    assert split.agents == (Share("ops", 3, 3, 0),)


def test_holders_take_this_checks_counts_and_the_latest_splits_idle_and_closable():
    latest = Split(as_of=NOW - 120, agents=(Share("sales", 10, 6, 5), Share("main", 2, 0, 0)),
                   kinds=(Share("direct", 12, 6, 5),))
    shown = attribution.holders(latest, {"sales": 14, "main": 2, "new": 1})
    assert shown.as_of == NOW - 120 and shown.kinds == latest.kinds
    assert shown.agents == (Share("sales", 14, 6, 5), Share("main", 2, 0, 0), Share("new", 1, None, None))
    assert attribution.holders(None, {"a": 1}) == Split(None, (Share("a", 1),), ())
    assert attribution.holders(None, None) is None


shares_drawn = st.lists(st.tuples(st.sampled_from(AGENTS), st.integers(0, 9), st.none() | st.integers(0, 9)),
                        unique_by=lambda t: t[0], max_size=4)


@given(members=st.lists(st.tuples(st.none() | st.floats(0, NOW), shares_drawn), max_size=4))
def test_a_pools_holders_are_its_members_summed_and_unknown_where_one_member_does_not_know(members):
    splits = [Split(as_of, tuple(Share(a, n, idle, idle) for a, n, idle in shares), ()) for as_of, shares in members]
    pooled = attribution.pooled(splits)
    if not splits:
        assert pooled is None
        return
    for agent in {s.name for split in splits for s in split.agents}:
        held = [s for split in splits for s in split.agents if s.name == agent]
        (share,) = [s for s in pooled.agents if s.name == agent]
        assert share.sessions == sum(s.sessions for s in held)
        assert share.idle == (None if any(s.idle is None for s in held) else sum(s.idle for s in held))
    assert [s.sessions for s in pooled.agents] == sorted((s.sessions for s in pooled.agents), reverse=True)
    assert pooled.as_of == (None if any(s.as_of is None for s in splits) else min(s.as_of for s in splits))


def test_a_pools_alert_names_its_members_holders_summed(fakes, write_config, cli, receiver, monkeypatch):
    import time

    one, two = fakes(), fakes()
    uneven(one, time.time())
    two.add_session("agent:sales:elsewhere", agent="sales")
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"a": {"url": one.url, "token": "secret", "limit": 100},
                           "b": {"url": two.url, "token": "secret", "limit": 100}},
                          pools={"both": {"hosts": ["a", "b"], "limit": 12}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    (pool,) = json.loads(cli("check", "--config", config, "--json").stdout)["pools"]
    assert pool["sessions"] == 11 and pool["holders"][0] == {"agent": "sales", "sessions": 7, "idle": 6,
                                                             "closable": 5}
    assert "held by sales 7 (5 closable)" in receiver.bodies[0]["text"]


@example(shares=[("other", 3), ("a", 2)], n=1)
@given(shares=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "other", "zz"]), st.integers(0, 9)),
                       unique_by=lambda t: t[0]), n=st.integers(0, 5))
def test_the_top_agents_and_other_name_each_label_once_and_keep_every_session(shares, n):
    """An agent really called `other` folds into the rest: one label, one series (a repeated one voids the file)."""
    ranked = tuple(sorted((Share(a, k, k, k) for a, k in shares), key=lambda s: (-s.sessions, s.name)))
    shown = attribution.top(ranked, n)
    assert len({s.name for s in shown}) == len(shown) <= n + 1
    assert sum(s.sessions for s in shown) == sum(k for _, k in shares)
    periods = attribution.agents_of_period([(a, k, k, 0) for a, k in shares], {}, n)
    assert len({p.agent for p in periods}) == len(periods)
    assert sum(p.now for p in periods) == sum(k for _, k in shares)


def test_metrics_name_the_top_agents_and_the_rest_as_other():
    shares = (Share("a", 9, 1, 1), Share("b", 5, 2, 2), Share("c", 3, 0, 0), Share("d", 1, None, None))
    assert attribution.top(shares, 2) == [Share("a", 9, 1, 1), Share("b", 5, 2, 2), Share("other", 4, None, None)]
    assert attribution.top(shares, 4) == list(shares)


@pytest.mark.parametrize("usage, as_of, due", [
    (80.0, NOW - 10, True),  # at warning: every check
    (79.9, NOW - 10, False),  # below: the latest split serves while younger than attribution.every
    (10.0, NOW - 300, True),  # as old as attribution.every
    (10.0, None, True),  # no split yet
])
def test_rows_are_listed_at_warning_or_once_every_attribution_every(usage, as_of, due):
    assert attribution.due(usage, 80.0, as_of, 300.0, NOW) is due


# --- through check's read of a fake gateway ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway():
    from fake_gateway import FakeGateway

    with FakeGateway("secret") as fake:
        fake.clock = lambda: int(NOW * 1000)
        yield fake


DEFAULT_RULES = Cleanup()


def read(fake, count=DEFAULT_COUNT, rules=DEFAULT_RULES, due=True, tmp=None):
    from guardian.adapters.gateway import drive
    from guardian.adapters.identity import IdentityStore
    from guardian.commands.check import Splitting, read_host_steps

    host = Host(name="t440", url=fake.url, limit=1000, token=Secret("secret", "test"), count=count)
    splitting = Splitting(rules=rules, now=NOW, warning=80.0, every=300.0, last_as_of={} if due else {"t440": NOW})
    return drive(read_host_steps(host, rules.idle_after, IdentityStore(tmp), splitting))


ARCHIVED_CRON_RUN = {"key": "agent:main:cron:job0:run:r0", "sessionId": "s0", "agentId": "main",
                     "updatedAt": int(NOW * 1000), "pinned": False, "archived": True, "hasActiveRun": False,
                     "kind": "direct", "classification": "cron", "isMain": False}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(store=[ARCHIVED_CRON_RUN], rules=Cleanup(idle_after=60), count=set())  # found by hypothesis: a cron run
# archived is still a cron run (status counts it, no listing shows it, archived:"all" included)
@given(store=stores(), rules=RULES_DRAWN, count=st.sets(st.sampled_from(COUNTABLE[1:])))
def test_check_reads_the_split_and_the_count_the_store_holds(gateway, tmp_path, store, rules, count):
    """A fake gateway that lists what the real one lists (no cron runs; global and unknown on request; archived
    apart): check's usage counts exactly the classes its host's `count` names, and its split is the reference's."""
    gateway.sessions = {r["key"]: dict(r) for r in store}
    poll = read(gateway, ("listed", *sorted(count)), rules, tmp=tmp_path)
    classes = Counter("cron-run" if ":run:" in r["key"] else "archived" if r["archived"]
                      else "system" if r["key"] in ("global", "unknown") else "listed" for r in store)
    assert poll.reading.count == sum(classes[name] for name in ("listed", *count))
    assert poll.agents == by_agent(store)
    assert as_reference(poll.split) == reference(store, rules)


def test_check_lists_no_rows_when_the_latest_split_is_fresh_and_the_host_below_warning(gateway, tmp_path):
    gateway.sessions = {}
    for i in range(3):
        gateway.add_session(f"agent:sales:{i}", agent="sales", updated_at=int(NOW * 1000 - 5 * H))
    gateway.requests.clear()
    poll = read(gateway, due=False, tmp=tmp_path)
    assert poll.split is None and poll.agents == {"sales": 3} and poll.reading.count == 3
    assert all(r["params"].get("limit") == 1 or r["method"] == "status" for r in gateway.requests)
    assert read(gateway, due=True, tmp=tmp_path).split.agents == (Share("sales", 3, 3, 3),)


def test_a_legacy_gateway_is_split_from_the_rows_it_lists_with_its_counts(tmp_path):
    """2026.4 has no totalCount, no archive: its listing is every row, and it is the split's too (no second read)."""
    from fake_gateway import FakeGateway

    with FakeGateway("secret", legacy=True) as fake:
        fake.clock = lambda: int(NOW * 1000)
        for i in range(2):
            fake.add_session(f"agent:sales:{i}", agent="sales", updated_at=int(NOW * 1000 - 5 * H))
        fake.add_session("agent:main:cron:nightly:run:r1", updated_at=int(NOW * 1000 - 5 * H))
        fake.add_session("global", updated_at=int(NOW * 1000 - 5 * H))
        poll = read(fake, tmp=tmp_path)
        listings = [r for r in fake.requests if r["method"] == "sessions.list"]
    assert poll.reading.count == 4 and poll.classes == {"listed": 2, "system": 1, "archived": 0, "cron-run": 1}
    assert {s.name: s.sessions for s in poll.split.kinds} == {"direct": 2, "system": 1, "cron-run": 1}
    assert len(listings) == 6  # the counts with a limit, then again without one (every row); nothing more


# --- what every view says, through `guardian check` and `guardian doctor` --------------------------------------------


def uneven(fake, now):
    """sales 6 (idle, one pinned), support 2 (fresh), main 1 + a cron run: 10 sessions status counts, 9 listed."""
    idle = int((now - 3 * 3600) * 1000)
    for i in range(6):
        fake.add_session(f"agent:sales:{i}", agent="sales", updated_at=idle, pinned=i == 0)
    for i in range(2):
        fake.add_session(f"agent:support:{i}", agent="support")
    fake.add_session("agent:main:x", agent="main")
    fake.add_session("agent:main:cron:nightly:run:r1", agent="main", updated_at=idle)


def test_check_json_the_webhook_and_the_metrics_name_the_holders(fake, write_config, cli, receiver, monkeypatch,
                                                                 tmp_path):
    import time

    from test_metrics import parse

    uneven(fake, time.time())
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 11}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]}, attribution={"top": 2})
    prom = tmp_path / "guardian.prom"
    result = cli("check", "--config", config, "--json", "--prom-file", prom)
    (host,) = json.loads(result.stdout)["hosts"]
    assert host["sessions"] == 10 and host["counted"] == ["listed", "cron-run", "system"]  # the cron run counts
    assert host["counts"] == {"listed": 9, "system": 0, "archived": 0, "cron-run": 1}
    expected = [{"agent": "sales", "sessions": 6, "idle": 6, "closable": 5},
                {"agent": "main", "sessions": 2, "idle": 0, "closable": 0},
                {"agent": "support", "sessions": 2, "idle": 0, "closable": 0}]
    assert host["holders"] == expected and host["holders_as_of"] is not None
    assert {k["kind"]: k["sessions"] for k in host["kinds"]} == {"direct": 9, "cron-run": 1}
    (alert,) = receiver.bodies[0]["alerts"]
    assert alert["holders"] == expected
    # the agents' counts include their cron runs: the cron runs are said as a part of them, never added on top
    assert "held by sales 6 (5 closable), main 2, support 2 (1 of them a cron run)." in receiver.bodies[0]["text"]
    metrics = parse(prom)
    assert metrics["guardian_agent_sessions", frozenset({"name": "t440", "agent": "sales"}.items())] == 6
    assert metrics["guardian_agent_closable_sessions", frozenset({"name": "t440", "agent": "sales"}.items())] == 5
    assert metrics["guardian_agent_sessions", frozenset({"name": "t440", "agent": "other"}.items())] == 2  # top 2


def test_below_warning_the_split_is_reused_until_attribution_every_and_says_as_of_when(fake, write_config, cli):
    import time

    uneven(fake, time.time())
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 100}}, attribution={"every": "1h"})
    first = json.loads(cli("check", "--config", config, "--json").stdout)["hosts"][0]
    fake.requests.clear()
    fake.add_session("agent:support:new", agent="support")
    second = json.loads(cli("check", "--config", config, "--json").stdout)["hosts"][0]
    assert not [r for r in fake.requests if r["params"].get("limit") == 1000]  # no rows listed
    assert second["holders_as_of"] == first["holders_as_of"]
    assert {h["agent"]: h["sessions"] for h in second["holders"]}["support"] == 3  # this check's count


def test_doctor_lists_the_agents_and_says_what_cleanup_cannot_reach(fake, write_config, cli):
    import time

    uneven(fake, time.time())
    result = cli("doctor", "--config", write_config({"t440": {"url": fake.url, "token": "secret", "limit": 20}}),
                 "--format", "plain")
    assert "agents: sales 6, main 2, support 2" in result.stdout
    assert "usage counts: listed, cron-run, system (listed 9, system 0, archived 0, cron-run 1)" in result.stdout
    assert "cron runs are never listed, so cleanup cannot close them" in result.stdout


@given(name=st.text(min_size=1, max_size=80))
def test_an_agent_id_from_the_gateway_is_printable_and_escaped_in_every_channel(name):
    """An agent id is the gateway's text: it can neither add a line nor markup to an alert, nor mention anyone."""
    from guardian.alerts.transports import discord_payload, slack_payload
    from guardian.core.records import AlertLine
    from guardian.output.message import body

    holders = Split(NOW, (Share(name, 30, 20, 12), Share("support", 4, 0, 0)), (Share("cron-run", 3),))
    line = AlertLine(subject="host:t440", kind="host", name="t440", reason="escalated", level="critical",
                     previous="warning", count=55, limit=60, idle=20, error=None, action="act", holders=holders)
    text = body(line)
    assert text.isprintable() and "support 4 (3 of them cron runs)" in text
    assert "<" not in slack_payload([line])["text"]  # no <!channel>, <@U123> or <url|link> can form
    assert "@everyone" not in slack_payload([line])["text"] + discord_payload([line])["content"]
