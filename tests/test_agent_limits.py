"""Per-agent limits (issue 14): `cleanup.agents.<id>.limit: 20` makes each host's agent a subject of its own,
`agent:t440/sales`, with the hosts' policy, cooldowns, channels, history, state pruning and silences.

The count is the host's sessions per agent (Poll.agents, from status's sessions.byAgent). Here the polls get it
from the fake gateway's store, as the real reading will give it; the promises about it are in test_promises.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest
from conftest import read_state

from guardian.adapters.state import FORGET_AFTER, State
from guardian.alerts.transports import alertmanager_alerts
from guardian.commands import check as checking
from guardian.core.records import AlertLine, ChannelMemory, Poll, Reading
from guardian.settings.model import Host

T0 = 1_800_000_000.0


@pytest.fixture
def per_agent(monkeypatch):
    """Each poll of a fake gateway counts its sessions per agent too, as status's sessions.byAgent does."""
    gateways, read = {}, checking.read_host_steps

    def counted(host, *args, **kwargs):
        poll = yield from read(host, *args, **kwargs)
        fake = gateways.get(host.url)
        return replace(poll, agents=dict(Counter(r["agentId"] for r in fake._rows()))) if fake else poll

    monkeypatch.setattr(checking, "read_host_steps", counted)

    def register(*fakes):
        gateways.update({fake.url: fake for fake in fakes})

    return register


def filled(fake, **per_agent_count):
    for agent, count in per_agent_count.items():
        for _ in range(count):
            fake.add_session(agent=agent)
    return fake


def test_an_agent_over_its_limit_is_a_subject_in_every_format(fake, per_agent, write_config, cli, state_dir):
    per_agent(filled(fake, sales=19, support=3, main=2))
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          cleanup={"agents": {"sales": {"limit": 20}, "support": {"limit": 10}}})
    result = cli("check", "--config", config, "--json")
    assert result.exit_code == 2, result.output  # the host is at 40 %: the agent's critical is the exit code's
    report = json.loads(result.stdout)
    agents = {a["name"]: a for a in report["agents"]}
    assert (agents["t440/sales"]["sessions"], agents["t440/sales"]["limit"], agents["t440/sales"]["level"]) == (
        19, 20, "critical")
    assert (agents["t440/sales"]["host"], agents["t440/sales"]["agent"]) == ("t440", "sales")
    assert (agents["t440/support"]["sessions"], agents["t440/support"]["level"]) == (3, "ok")
    assert report["hosts"][0]["level"] == "ok" and report["status"] == "critical"
    assert "guardian alert: CRITICAL agent t440/sales 95% (19/20), up from ok" in result.stderr
    assert read_state(state_dir)["subjects"]["agent:t440/sales"]["level"] == "critical"

    plain = cli("check", "--config", config, "--format", "plain", "--no-notify").stdout.splitlines()
    assert "agent t440/sales 95% (19/20) critical" in plain[-2] and plain[-1].startswith("agent t440/support 30%")
    nagios = cli("check", "--config", config, "--format", "nagios", "--no-notify").stdout
    assert nagios.startswith("SESSIONS CRITICAL - agent t440/sales 95% (19/20)")
    assert "'agent:t440/sales'=19;16;18;0;20" in nagios
    table = cli("check", "--config", config, "--format", "table", "--no-notify", env={"COLUMNS": "200"}).stdout
    assert "agent t440/sales" in table


def test_an_agent_alert_goes_to_the_channels_with_its_own_dedup_key(fake, per_agent, write_config, cli, receiver,
                                                                     monkeypatch):
    monkeypatch.setenv("HOOK_URL", receiver.url)
    per_agent(filled(fake, sales=21))
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 100}},
                          cleanup={"agents": {"sales": {"limit": 20}}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL", "hosts": ["t440"]}]})
    assert cli("check", "--config", config).exit_code == 2
    (body,) = receiver.bodies
    (line,) = body["alerts"]
    assert (line["subject"], line["kind"], line["name"], line["dedup_key"]) == (
        "agent:t440/sales", "agent", "t440/sales", "guardian/agent/t440/sales/usage")
    assert (line["count"], line["limit"], line["level"]) == (21, 20, "critical")
    assert "CRITICAL agent t440/sales 105% (21/20), up from ok" in body["text"]
    # the same level again within its cooldown: not sent again
    assert cli("check", "--config", config).exit_code == 2 and len(receiver.bodies) == 1


def test_a_silence_on_the_agent_holds_its_alert(fake, per_agent, write_config, cli, receiver, monkeypatch):
    monkeypatch.setenv("HOOK_URL", receiver.url)
    per_agent(filled(fake, sales=21))
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 100}},
                          cleanup={"agents": {"sales": {"limit": 20}}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    added = cli("silence", "add", "--config", config, "--agents", "t440/sales", "--for", "2h", "--reason", "import")
    assert added.exit_code == 0, added.output
    result = cli("check", "--config", config, "--json")
    assert receiver.bodies == []
    (agent,) = json.loads(result.stdout)["agents"]
    assert agent["silenced_by"] is not None and "silenced by" in agent["held"]


def test_an_agent_whose_count_is_not_read_is_unknown_and_alerts_nothing(fakes, write_config, cli, monkeypatch):
    """Its host's poll failed, or gave no count per agent: the host alerts for that; the agent keeps its level."""
    read = checking.read_host_steps

    def without_agents(*args, **kwargs):
        return replace((yield from read(*args, **kwargs)), agents=None)

    monkeypatch.setattr(checking, "read_host_steps", without_agents)
    up = filled(fakes(), sales=5)  # polled without a count per agent
    config = write_config({"up": {"url": up.url, "token": "secret", "limit": 100},
                           "down": {"url": "ws://127.0.0.1:1", "token": "secret", "limit": 100}},
                          cleanup={"agents": {"sales": {"limit": 2}}})
    for _ in range(3):
        result = cli("check", "--config", config, "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 3  # the unreachable host's, not the agents'
    assert [(a["name"], a["reachable"], a["level"]) for a in report["agents"]] == [
        ("up/sales", False, "unknown"), ("down/sales", False, "unknown")]
    assert "agent" not in result.stderr.replace("agents", "")


def test_agent_subjects_are_in_the_metrics_and_the_report(fake, per_agent, write_config, cli, tmp_path):
    per_agent(filled(fake, sales=16, main=1))
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 100}},
                          cleanup={"agents": {"sales": {"limit": 20}}})
    prom = tmp_path / "guardian.prom"
    cli("check", "--config", config, "--prom-file", prom, "-q")
    text = prom.read_text()
    assert 'guardian_sessions{kind="agent",name="t440/sales"} 16' in text
    assert 'guardian_level{kind="agent",name="t440/sales"} 2' in text  # 80 %: warning
    report = json.loads(cli("report", "--config", config, "--json").stdout)
    (agent,) = report["agents"]
    assert (agent["name"], agent["sessions_now"], agent["level_now"]) == ("t440/sales", 16, "warning")
    assert "agent t440/sales now=80%" in cli("report", "--config", config, "--format", "plain").stdout
    page = tmp_path / "report.html"
    assert cli("report", "--config", config, "-o", page).exit_code == 0
    assert "t440/sales" in page.read_text()


def test_an_agents_alertmanager_labels_name_its_host_too():
    line = AlertLine(subject="agent:t440/sales", kind="agent", name="t440/sales", reason="escalated",
                     level="critical", previous="ok", count=21, limit=20, idle=None, error=None, action="")
    labels = [alert["labels"] for alert in alertmanager_alerts([line], T0, 120)]
    assert {(lb["host"], lb["agent"]) for lb in labels} == {("t440", "t440/sales")}
    assert not any(alert["labels"]["alertname"] == "SessionHostUnreachable"
                   for alert in alertmanager_alerts([line], T0, 120))


def test_an_agents_memory_is_kept_while_it_is_configured_and_forgotten_a_day_after_it_left():
    """State pruning: an agent's id has a slash of its own ('agent:t440/sales', and 'agent:t440/sales/growth')."""
    state = State()
    told = ChannelMemory(level="critical", told_at={"critical": T0})
    for key in ("agent:t440/sales", "agent:t440/sales/growth", "agent:t440/old", "agent:t440/old/growth"):
        state.memories[(key, "chat")] = told
    configured = {"host:t440", "agent:t440/sales"}
    state.forget_departed(configured, {"chat"}, T0)
    state.forget_departed(configured, {"chat"}, T0 + FORGET_AFTER + 1)
    assert set(state.memories) == {("agent:t440/sales", "chat"), ("agent:t440/sales/growth", "chat")}


def test_an_agents_count_matches_its_id_whatever_the_case():
    host = Host(name="t440", url="ws://127.0.0.1:1", limit=60)
    poll = Poll(host, Reading(count=30, limit=60), agents={"sales": 12, "support": 3})
    assert checking.agent_reading(poll, "Sales", 20) == Reading(count=12, limit=20)
    assert checking.agent_reading(poll, "ops", 20) == Reading(count=0, limit=20)  # an agent with no sessions: 0
    assert checking.agent_reading(Poll(host, Reading(count=30, limit=60)), "sales", 20) is None
    assert checking.agent_reading(Poll(host, error="down"), "sales", 20) is None



def test_an_export_with_agent_samples_imports_again(fake, per_agent, write_config, cli, tmp_path, state_dir):
    """history export writes every subject a check recorded, agents too; history import takes back what it wrote."""
    per_agent(filled(fake, sales=16))
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 100}},
                          cleanup={"agents": {"sales": {"limit": 20}}})
    cli("check", "--config", config, "-q")
    exported = tmp_path / "history.csv"
    assert cli("history", "export", "--config", config, "-o", exported).exit_code == 0
    assert ",agent,t440/sales,16,20" in exported.read_text()
    (state_dir / "history.db").unlink()
    imported = cli("history", "import", "--config", config, exported)
    assert imported.exit_code == 0, imported.stderr
    report = json.loads(cli("report", "--config", config, "--json").stdout)
    assert [(a["name"], a["sessions_now"]) for a in report["agents"]] == [("t440/sales", 16)]
