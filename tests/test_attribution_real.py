"""Who holds the sessions, end to end against a real OpenClaw 2026.9.6 gateway with several agents (t440 of the
session fixture `real_gateways`: agents main, sales and support): check's JSON, the webhook's envelope and the
Prometheus file name the right holders with the right counts, and a cron run counts as the README says."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import delete_sessions, rpc, wait_until
from test_metrics import parse

pytestmark = pytest.mark.real_gateway


def test_a_real_gateways_holders_in_check_the_webhook_and_the_metrics(real_gateways, write_config, cli, receiver,
                                                                       monkeypatch, tmp_path):
    gw = real_gateways["t440"]
    tag = uuid.uuid4().hex[:8]
    keys = ([f"agent:sales:h14-{tag}-{i}" for i in range(5)] + [f"agent:support:h14-{tag}-{i}" for i in range(2)]
            + [f"agent:main:cron:h14{tag}:run:r1"])
    with rpc(gw) as connection:  # unevenly: sales 5, support 2, and a cron run (never listed, counted by status)
        answers = connection.call_many([("sessions.create", {"key": key}) for key in keys])
        assert all(isinstance(a, dict) and a.get("ok") for a in answers), answers
        listed = connection.call("sessions.list", {"limit": 1})["totalCount"]
    try:
        monkeypatch.setenv("HOOK_URL", receiver.url)
        host = {"url": gw.url, "token": gw.token}
        rules = {"idle_after": "1s", "protect": {"agents": ["support"]}}

        def check(limit, count=None, *args):  # a split every check: one made before 1 s passed is not kept 5 minutes
            config = write_config({"t440": {**host, "limit": limit, **({"count": count} if count else {})}},
                                  cleanup=rules, alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]},
                                  attribution={"every": "1ms"})
            return json.loads(cli("check", "--config", config, "--json", *args).stdout)["hosts"][0]

        only_listed = check(1000, ["listed"])
        assert only_listed["sessions"] == listed  # what sessions.list counts: not the cron run
        first = check(1000)
        assert first["sessions"] == listed + first["counts"]["cron-run"] and first["counts"]["cron-run"] >= 1
        assert {k["kind"]: k["sessions"] for k in first["kinds"]}["cron-run"] == first["counts"]["cron-run"]

        def idle_enough():  # real time must pass for a real session to be idle: polled, never slept
            holders = {h["agent"]: h for h in check(1000)["holders"]}
            return holders if holders["sales"]["closable"] == 5 and holders["support"]["idle"] == 2 else None

        holders = wait_until(idle_enough, what="the sales sessions idle past 1s")
        assert holders["sales"] == {"agent": "sales", "sessions": 5, "idle": 5, "closable": 5}
        assert holders["support"] == {"agent": "support", "sessions": 2, "idle": 2, "closable": 0}  # protected

        prom = tmp_path / "guardian.prom"
        critical = check(first["sessions"], None, "--prom-file", str(prom))  # 100 %
        assert critical["level"] == "critical"
        (alert,) = receiver.bodies[-1]["alerts"]
        assert {h["agent"]: h for h in alert["holders"]}["sales"] == holders["sales"]
        assert "sales 5 (5 closable)" in receiver.bodies[-1]["text"]
        metrics = parse(prom)
        assert metrics["guardian_agent_sessions", frozenset({"name": "t440", "agent": "sales"}.items())] == 5
        assert metrics["guardian_agent_closable_sessions", frozenset({"name": "t440", "agent": "support"}.items())] == 0
    finally:  # the shared gateway left as found
        delete_sessions(gw, keys)


def test_a_real_gateways_split_made_a_page_a_check_is_the_one_made_in_one_page(real_gateways, write_config, cli,
                                                                              monkeypatch, state_dir):
    """The pass over pages (`offset` on a real 2026.9.6 listing, a page a check) ends in the split one page makes."""
    from guardian.adapters.splits import SplitCache
    from guardian.commands import check as checking

    gw = real_gateways["t440"]
    tag = uuid.uuid4().hex[:8]
    keys = [f"agent:sales:pg-{tag}-{i}" for i in range(7)] + [f"agent:support:pg-{tag}-{i}" for i in range(3)]
    with rpc(gw) as connection:
        answers = connection.call_many([("sessions.create", {"key": key}) for key in keys])
        assert all(isinstance(a, dict) and a.get("ok") for a in answers), answers
    try:
        host = {"url": gw.url, "token": gw.token, "limit": 1000}
        config = write_config({"t440": host}, cleanup={"idle_after": "1s"}, attribution={"every": "1ms"})

        def check():
            return json.loads(cli("check", "--config", config, "--json").stdout)["hosts"][0]

        def ours(entry):
            return {h["agent"]: (h["idle"], h["closable"]) for h in entry["holders"]
                    if h["agent"] in ("sales", "support")}

        def settled():  # every session of ours idle past 1 s, in a split of one page (real time must pass: polled)
            entry = check()
            return entry if all(idle is not None and idle >= 7 * (a == "sales") + 3 * (a == "support")
                                for a, (idle, _) in ours(entry).items()) else None

        one_page = wait_until(settled, what="the new sessions idle past 1s")
        rows = one_page["counts"]["listed"] + one_page["counts"]["system"] + one_page["counts"]["archived"]
        monkeypatch.setattr(checking, "SPLIT_PAGE", 4)
        pages = -(-rows // 4)
        assert pages >= 3  # offsets really used
        kept = SplitCache(state_dir)
        (before,), _ = (list(d.values()) for d in kept.read())
        for page in range(1, pages):  # a pass under way: the views keep the one-page split
            assert check()["holders_as_of"] == one_page["holders_as_of"]
            assert kept.read()[1]["t440"].offset == 4 * page
        paged = check()
        splits, passes = kept.read()
        assert "t440" not in passes and splits["t440"].as_of > before.as_of  # the pass ended: a split of its own
        assert ours(paged) == ours(one_page)
    finally:  # the shared gateway left as found
        delete_sessions(gw, keys)
