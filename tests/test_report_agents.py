"""`guardian report`'s per-agent view (issue 14): for each host, each agent's sessions now, its most and its growth
over the period (from history.db's agent_samples, aggregated in SQLite) and what cleanup closed of its sessions
(the audit log's outcomes), the top N by sessions now and the rest as `other`; in every format, escaped."""

from __future__ import annotations

import json
import re
import time

from hypothesis import example, given
from hypothesis import strategies as st

from guardian.adapters.audit import AuditLog
from guardian.adapters.history import History
from guardian.core.attribution import OTHER, agents_of_period
from guardian.core.records import AgentPeriod, Sample
from guardian.settings.model import HistorySettings

NOW = time.time()
# t440's checks, hours back from now, and the sessions each agent held at each (an agent missing from one held none)
CHECKS = {5: {"sales": 10, "support": 5, "billing": 2, "legacy": 4},
          3: {"sales": 20, "support": 5, "ops": 2, "billing": 2},
          1: {"sales": 35, "support": 8, "ops": 3, "billing": 2},
          0: {"sales": 31, "support": 12, "ops": 3, "billing": 2}}
# (hours back, agent, result): the outcomes of cleanups on t440; only closed and archived left the usage
OUTCOMES = [(8, "sales", "closed"),  # before --since 6h: not counted
            (4, "sales", "closed"), (4, "sales", "closed"), (4, "sales", "closed"), (4, "sales", "failed"),
            (2, "sales", "archived"), (2, "sales", "archived"), (2, "legacy", "closed"), (2, "support", "already gone"),
            (2, None, "closed")]  # a session with no agent (global): main's, as status counts it


def fill(state_dir, checks=CHECKS, outcomes=OUTCOMES, host="t440") -> None:
    history = History(state_dir)
    for hours, agents in sorted(checks.items(), reverse=True):
        at = NOW - hours * 3600 - 60
        history.record([Sample(at, "host", host, sum(agents.values()), 60, sum(agents.values()) / 0.6, "ok", None,
                               True)], at - 3600, HistorySettings())
        history.record_agents({host: agents}, at, at - 3600, HistorySettings())
    audit = AuditLog(state_dir, "run1", "cleanup")
    for hours, agent, result in outcomes:
        audit.write(NOW - hours * 3600, "outcome", host=host, dry_run=False, action="delete", key=f"agent:{agent}:x",
                    agent=agent, result=result)


def config(write_config, top: int = 2) -> str:
    return write_config({"t440": {"url": "ws://127.0.0.1:9", "token_env": "HOME", "limit": 60},
                         "pc-a": {"url": "ws://127.0.0.1:9", "token_env": "HOME", "limit": 10}},
                        attribution={"top": top})


# sales and support hold most now; ops, billing, legacy (gone since the first check) and main are `other`, summed
EXPECTED_6H = [{"agent": "sales", "now": 31, "max": 35, "growth": 21, "closed": 5},
               {"agent": "support", "now": 12, "max": 12, "growth": 7, "closed": 0},
               {"agent": "other", "now": 5, "max": 9, "growth": -1, "closed": 2}]


def test_report_json_names_each_hosts_agents_now_max_growth_and_closed(write_config, cli, state_dir):
    path = config(write_config)
    fill(state_dir)
    report = json.loads(cli("report", "--config", path, "--since", "6h", "--format", "json").stdout)
    hosts = {h["name"]: h for h in report["hosts"]}
    assert hosts["t440"]["agents"] == EXPECTED_6H
    assert hosts["pc-a"]["agents"] == []  # no agent seen, nothing closed
    # a shorter period measures growth from its own first check, and counts only its own outcomes
    report = json.loads(cli("report", "--config", path, "--since", "2h", "--format", "json").stdout)
    assert report["hosts"][0]["agents"][:2] == [{"agent": "sales", "now": 31, "max": 35, "growth": -4, "closed": 0},
                                                {"agent": "support", "now": 12, "max": 12, "growth": 4, "closed": 0}]


def test_report_json_top_is_config_attribution_top(write_config, cli, state_dir):
    fill(state_dir)
    report = json.loads(cli("report", "--config", config(write_config, top=10), "--since", "6h", "--format",
                            "json").stdout)
    assert [a["agent"] for a in report["hosts"][0]["agents"]] == ["sales", "support", "ops", "billing", "legacy",
                                                                  "main"]
    assert report["hosts"][0]["agents"][4] == {"agent": "legacy", "now": 0, "max": 4, "growth": -4, "closed": 1}


def test_report_plain_and_table_show_the_agents(write_config, cli, state_dir, tmp_path):
    path = config(write_config)
    fill(state_dir)
    plain = cli("report", "--config", path, "--since", "6h", "--format", "plain").stdout.splitlines()
    assert [line for line in plain if line.startswith("agent-period ")] == [
        "agent-period t440 sales now=31 max=35 growth=+21 closed=5",
        "agent-period t440 support now=12 max=12 growth=+7 closed=0",
        "agent-period t440 other now=5 max=9 growth=-1 closed=2"]
    result = cli("report", "--config", path, "--since", "6h", "--format", "table", "-o", tmp_path / "r.txt")
    assert result.exit_code == 0
    table = (tmp_path / "r.txt").read_text()
    assert "Sessions by agent" in table
    assert re.search(r"t440\s*│\s*sales\s*│\s*31\s*│\s*35\s*│\s*\+21\s*│\s*5", table)


def test_html_stacks_each_hosts_agents_now_in_a_bar(write_config, cli, state_dir, tmp_path):
    path = config(write_config)
    fill(state_dir)
    assert cli("report", "--config", path, "--since", "6h", "-o", tmp_path / "r.html").exit_code == 0
    html = (tmp_path / "r.html").read_text()
    bar = re.search(r'<div class="agents" data-subject="host:t440"[^>]*>(.*?)</div>', html).group(1)
    widths = re.findall(r'class="agent" style="flex:0 0 ([\d.]+)%', bar)
    assert [float(w) for w in widths] == [round(31 / 60 * 100, 2), 20.0, round(5 / 60 * 100, 2)]  # of the limit
    assert 'data-subject="host:pc-a"' in html and '<div class="agents" data-subject="host:pc-a"' not in html


def test_html_and_plain_escape_a_hostile_agent_id(write_config, cli, state_dir, tmp_path):
    path = config(write_config)
    hostile = '<img src=x onerror="alert(1)">\x1b[2J'
    fill(state_dir, {1: {hostile: 3, "sales": 1}, 0: {hostile: 4}}, [(1, hostile, "closed")])
    assert cli("report", "--config", path, "--since", "6h", "-o", tmp_path / "r.html").exit_code == 0
    html = (tmp_path / "r.html").read_text()
    assert "<img" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    plain = cli("report", "--config", path, "--since", "6h", "--format", "plain").stdout
    assert "\x1b" not in plain and "agent-period t440 <img" in plain
    assert json.loads(cli("report", "--config", path, "--since", "6h", "--format", "json").stdout
                      )["hosts"][0]["agents"][0] == {"agent": hostile, "now": 4, "max": 4, "growth": 1, "closed": 1}


# --- the rules, on random histories --------------------------------------------------------------------------------

agents = st.sampled_from(["sales", "support", "ops", "cron"])
checks = st.dictionaries(st.integers(0, 40), st.dictionaries(agents, st.integers(0, 50), max_size=4), max_size=8)


@given(checks, st.integers(0, 40), st.integers(0, 40))
@example({0: {"sales": 3, "ops": 1}, 5: {"ops": 2}}, 0, 40)  # sales gone by the latest check: none now
def test_agents_over_is_what_a_row_by_row_count_gives(tmp_path_factory, by_check, low, high):
    """History.agents_over against a slow reference: now at the latest check of the period, max over its checks,
    first at its first check (an agent missing from a check held none then)."""
    state_dir = tmp_path_factory.mktemp("agents")
    history = History(state_dir)
    for minute, counts in sorted(by_check.items()):
        history.record_agents({"t440": counts}, NOW + minute * 60, NOW, HistorySettings())
    since, until = NOW + min(low, high) * 60, NOW + max(low, high) * 60
    period = {m: c for m, c in by_check.items() if since <= NOW + m * 60 <= until and c}  # checks with a row
    expected = []
    if period:
        first, last = period[min(period)], period[max(period)]
        seen = {agent for counts in period.values() for agent in counts}
        expected = [(a, last.get(a, 0), max(c.get(a, 0) for c in period.values() if a in c), first.get(a, 0))
                    for a in seen]
        expected.sort(key=lambda row: (-row[1], row[0]))
    assert history.agents_over(["t440"], since, until) == {"t440": expected}


counts = st.lists(st.tuples(agents, st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
                  unique_by=lambda row: row[0])


@given(counts, st.dictionaries(st.sampled_from(["sales", "gone", "main"]), st.integers(1, 9)), st.integers(1, 6))
def test_agents_of_period_keeps_the_top_holders_and_sums_the_rest(rows, closed, top):
    periods = agents_of_period(rows, closed, top)
    named = [p for p in periods if p.agent != OTHER]
    assert len(named) <= top and len(periods) <= top + 1
    assert [p.now for p in named] == sorted((p.now for p in named), reverse=True)
    everyone = {a for a, *_ in rows} | set(closed)
    assert (len(named) == len(everyone)) == (len(periods) == len(named))  # `other` only when some are left out
    for field in ("now", "growth", "closed"):  # nothing lost to the cap
        assert sum(getattr(p, field) for p in periods) == (
            sum(now for _, now, _, _ in rows) if field == "now" else
            sum(now - first for _, now, _, first in rows) if field == "growth" else sum(closed.values()))
    rest = {p.agent: p for p in periods}
    for agent, now, most, first in rows:
        if agent in rest:
            assert rest[agent] == AgentPeriod(agent, now, most, now - first, closed.get(agent, 0))
