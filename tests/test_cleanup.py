"""`guardian cleanup`: the planner with `now` passed in, then the CLI against fake gateways."""

from __future__ import annotations

import fnmatch
import json
import math
import os
import random
import re
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from guardian.adapters import audit
from guardian.commands.cleanup import count_sessions
from guardian.core.planner import plan
from guardian.settings.model import Cleanup, Protect

NOW = 1_800_000_000.0
H = 3600 * 1000  # an hour in ms


def row(key, idle_hours, **fields):
    return {"key": key, "sessionId": f"id-{key}", "agentId": fields.pop("agentId", key.split(":")[1]),
            "updatedAt": int(NOW * 1000 - idle_hours * H), **fields}


RULES = Cleanup(idle_after=2 * 3600, max_per_run=50, agent_idle_after={"batch": 1800},
                protect=Protect(agents=("ops",), keys=("agent:*:telegram:*",), labels=("keep-me",)))


@pytest.mark.parametrize("session, close, reason", [
    (row("agent:main:a", 3), True, "idle"),
    (row("agent:main:a", 1), False, "not idle long enough"),
    (row("agent:main:a", 2), False, "not idle long enough"),  # exactly at the threshold is not past it
    (row("agent:main:a", 3, hasActiveRun=True), False, "active run"),
    (row("agent:main:a", 3, status="running"), False, "running status"),
    (row("agent:main:a", 3, status="done"), True, "idle"),
    (row("agent:main:a", 3, isMain=True), False, "main session"),
    (row("agent:main:main", 3), False, "main session"),  # by the hello-ok mainSessionKey
    (row("agent:main:a", 3, pinned=True), False, "pinned"),
    (row("agent:ops:a", 3), False, "protected agent"),
    (row("agent:main:telegram:123", 3), False, "protected key pattern"),
    (row("agent:main:a", 3, label="keep-me"), False, "protected label"),
    (row("agent:batch:a", 0.6), True, "idle"),  # per-agent threshold: 30 min
    (row("agent:batch:a", 0.4), False, "not idle long enough"),
    (row("agent:main:a", 3, lastInteractionAt=int(NOW * 1000 - 0.5 * H)), False, "not idle long enough"),
    (row("agent:main:a", 3, endedAt=int(NOW * 1000 - 0.5 * H)), False, "not idle long enough"),
    ({"key": "agent:main:x", "sessionId": "x"}, False, "no activity time"),
])
def test_each_rule(session, close, reason):
    (decision,) = plan([session], RULES, NOW, main_key="agent:main:main")
    assert (decision.close, decision.reason) == (close, reason)


def test_most_idle_first_and_the_cap():
    rows = [row(f"agent:main:s{h}", h) for h in (3, 9, 5, 1, 7)]
    decisions = plan(rows, Cleanup(idle_after=7200, max_per_run=2), NOW)
    assert [(d.key, d.close, d.reason) for d in decisions] == [
        ("agent:main:s9", True, "idle"), ("agent:main:s7", True, "idle"),
        ("agent:main:s5", False, "over the per-run cap"), ("agent:main:s3", False, "over the per-run cap"),
        ("agent:main:s1", False, "not idle long enough")]
    assert decisions[0].idle_seconds == 9 * 3600 and decisions[0].session_id == "id-agent:main:s9"


PRIORITY_ORDER = ["low", "normal", "high", "protected"]


def reference_plan(rows, rules, now, main_key):
    """The rules of design.md written out plainly, one session at a time: slow, and obviously right."""
    decided = []
    for index, r in enumerate(rows):
        times = [r[k] for k in ("updatedAt", "lastInteractionAt", "endedAt") if k in r]
        idle = (now * 1000 - max(times)) / 1000 if times else None
        agent = r.get("agentId") or r["key"].split(":")[1]
        if r.get("hasActiveRun"):
            reason = "active run"
        elif r.get("status") == "running":
            reason = "running status"
        elif r.get("isMain") or r["key"] == main_key:
            reason = "main session"
        elif r.get("pinned"):
            reason = "pinned"
        elif agent in rules.protect.agents:
            reason = "protected agent"
        elif any(fnmatch.fnmatchcase(r["key"], p) for p in rules.protect.keys):
            reason = "protected key pattern"
        elif r.get("label") in rules.protect.labels:
            reason = "protected label"
        elif idle is None:
            reason = "no activity time"
        elif idle <= rules.agent_idle_after.get(agent, rules.idle_after):
            reason = "not idle long enough"
        else:
            reason = "idle"
        priority = "protected" if agent in rules.protect.agents else rules.agent_priority.get(agent, "normal")
        decided.append((PRIORITY_ORDER.index(priority), index, r["key"], idle, reason))
    # low priority first, then normal, high (protected: kept), each most idle first; a tie keeps the listing's order
    decided.sort(key=lambda d: (d[0], -(d[3] or 0), d[1]))
    result, closing = [], 0
    for _, _, key, _idle, reason in decided:
        if reason == "idle":
            closing += 1
            if closing > rules.max_per_run:
                reason = "over the per-run cap"
        result.append((key, reason == "idle", reason))
    return result


def random_store(count, seed):
    """`count` sessions with every feature the rules look at, some of them sharing an activity time."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        agent = rng.choice(["main", "main", "ops", "batch", "sales"])
        kind = rng.choice(["dashboard", "dashboard", "telegram", "cron"])
        r = {"key": f"agent:{agent}:{kind}:{i}", "sessionId": f"s{i}", "agentId": agent,
             "updatedAt": int(NOW * 1000 - rng.choice([rng.randrange(0, 12 * H), 3 * H]))}
        for field_name, chance, value in (("hasActiveRun", 0.05, True), ("status", 0.05, "running"),
                                          ("status", 0.1, "done"), ("pinned", 0.03, True),
                                          ("isMain", 0.01, True), ("label", 0.05, "keep-me"),
                                          ("lastInteractionAt", 0.2, int(NOW * 1000 - rng.randrange(0, 4 * H))),
                                          ("endedAt", 0.1, int(NOW * 1000 - rng.randrange(0, 4 * H)))):
            if rng.random() < chance:
                r[field_name] = value
        if rng.random() < 0.01:
            del r["updatedAt"]
        rows.append(r)
    return rows


@pytest.mark.parametrize("count, cap", [(10, 3), (10_000, 3_000)])
def test_a_big_store_gets_the_same_decisions_as_the_plain_rules(count, cap):
    rows = random_store(count, seed=count)
    rules = Cleanup(idle_after=2 * 3600, max_per_run=cap, agent_idle_after={"batch": 1800},
                    protect=Protect(agents=("ops",), keys=("agent:*:telegram:*",), labels=("keep-me",)),
                    agent_priority={"sales": "low", "batch": "high"})
    decisions = plan(rows, rules, NOW, main_key="agent:main:main")
    assert [(d.key, d.close, d.reason) for d in decisions] == reference_plan(rows, rules, NOW, "agent:main:main")
    assert sum(d.close for d in decisions) == cap  # the store is big enough to reach the cap


# --- against the fake gateway -----------------------------------------------------------------


def seed(gateway, idle=0, fresh=0, **extra):
    now = int(time.time() * 1000)
    idle_rows = [gateway.add_session(updated_at=now - 3 * H, **extra) for _ in range(idle)]
    fresh_rows = [gateway.add_session(updated_at=now) for _ in range(fresh)]
    return idle_rows, fresh_rows


def records(state_dir, event=None):
    return [r for r in audit.read(state_dir) if event is None or r["event"] == event]


def test_closes_exactly_the_idle_ones_and_records_intent_and_outcome(fake, write_config, cli, state_dir):
    idle, fresh = seed(fake, idle=3, fresh=2)
    protected = fake.add_session("agent:main:telegram:42", updated_at=int(time.time() * 1000) - 5 * H)
    running = fake.add_session(updated_at=int(time.time() * 1000) - 5 * H, has_active_run=True, status="running")
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          cleanup={"protect": {"keys": ["agent:*:telegram:*"]}})
    result = cli("cleanup", "--config", config, "--format", "plain")
    assert result.exit_code == 0, result.stderr
    assert set(fake.sessions) == {r["key"] for r in fresh} | {protected["key"], running["key"]}
    assert "a: 7 -> 4 sessions" in result.stdout and "closed 3" in result.stdout
    intents, outcomes = records(state_dir, "intent"), records(state_dir, "outcome")
    assert sorted(r["key"] for r in intents) == sorted(r["key"] for r in idle)
    assert [r["result"] for r in outcomes] == ["closed"] * 3
    assert all(r["session_id"] and r["agent"] == "main" and r["idle_seconds"] >= 3 * 3600 - 5 for r in outcomes)
    kept = {r["reason"] for r in records(state_dir, "kept")}
    assert kept == {"protected key pattern", "active run"}
    deletes = [r["params"] for r in fake.requests if r["method"] == "sessions.delete"]
    assert all({"expectedSessionId", "expectedSessionUpdatedAt"} <= set(p) for p in deletes)
    assert (state_dir / "audit.jsonl").stat().st_mode & 0o777 == 0o600


def test_dry_run_prints_the_plan_and_changes_nothing(fake, write_config, cli, state_dir):
    seed(fake, idle=2, fresh=1)
    before = dict(fake.sessions)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    result = cli("cleanup", "--config", config, "--dry-run", "--json")
    assert result.exit_code == 0 and fake.sessions == before
    assert not [r for r in fake.requests if r["method"] == "sessions.delete"]
    host = json.loads(result.stdout)["hosts"][0]
    assert sorted(p["decision"] for p in host["plan"]) == ["close", "close", "keep"]
    assert all(r["dry_run"] for r in records(state_dir)) and len(records(state_dir, "planned")) == 2


def test_each_intent_is_on_disk_before_its_delete_and_each_outcome_written_before_the_next(
        fake, write_config, cli, state_dir, monkeypatch):
    """On disk means fsynced: the log's size at its last fsync is what a crash of the machine keeps."""
    seed(fake, idle=4)
    log = state_dir / "audit.jsonl"
    synced = [0]
    real_fsync = os.fsync

    def fsync(fd):
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}") == str(log):
            synced.append(os.fstat(fd).st_size)

    def events(data: bytes):
        return [
            (r["event"], r["key"]) for r in audit.parse_lines(data.splitlines()) if r["event"] in ("intent", "outcome")
        ]

    seen_at_each_delete = []  # (key, records written, records on disk) when the gateway has the request
    fake.on_request = lambda method, params: method == "sessions.delete" and seen_at_each_delete.append(
        (params["key"], events(log.read_bytes()), events(log.read_bytes()[:synced[-1]])))
    monkeypatch.setattr(os, "fsync", fsync)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    assert cli("cleanup", "--config", config).exit_code == 0
    keys = [key for key, _, _ in seen_at_each_delete]
    assert len(keys) == 4 and not fake.sessions
    for n, (key, written, on_disk) in enumerate(seen_at_each_delete):
        assert ("intent", key) in on_disk  # its intent is durable before the request
        assert all(("outcome", k) in written for k in keys[:n])  # every earlier outcome survives a kill
        assert all(("outcome", k) in on_disk for k in keys[:max(0, n - 1)])  # on disk a delete later
        assert not [k for k in keys[n + 2:] if ("intent", k) in written]  # at most the next one announced
    assert synced[-1] == log.stat().st_size  # the run ends with everything on disk
    # the next intent is written while a delete is in flight, before that delete's outcome
    assert events(log.read_bytes()) == [("intent", keys[0]), ("intent", keys[1]), ("outcome", keys[0]),
                                        ("intent", keys[2]), ("outcome", keys[1]), ("intent", keys[3]),
                                        ("outcome", keys[2]), ("outcome", keys[3])]


def test_an_intent_that_cannot_be_written_stops_its_delete(fake, write_config, state_dir):
    from guardian.adapters.state import StateError
    from guardian.commands import cleanup as cleaning
    from guardian.settings.load import load

    seed(fake, idle=3)

    class FullAfterThreeWrites(audit.AuditLog):
        """The disk fills up while the second delete is in flight: the third intent cannot be written."""
        writes = 0

        def write_all(self, records, sync=True):
            self.writes += 1
            if self.writes == 4:
                raise StateError("cannot append to audit.jsonl (No space left on device)")
            super().write_all(records, sync)

    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}}))
    (report,) = cleaning.run(config, list(config.hosts.values()), config.cleanup, time.time(), False,
                             FullAfterThreeWrites(state_dir, "r", "cleanup"))
    closed = [r["key"] for r in records(state_dir, "outcome") if r["result"] == "closed"]
    assert [r["key"] for r in records(state_dir, "intent")] == closed and len(closed) == 2
    assert len(fake.sessions) == 1 and not set(closed) & set(fake.sessions)  # the third was never sent
    assert report.error == "cannot append to audit.jsonl (No space left on device)"
    assert (report.closed, report.status) == (2, "partly cleaned")  # the report counts what was closed


def test_a_session_touched_after_the_listing_is_skipped_not_closed(fake, write_config, cli, state_dir):
    (victim, other), _ = seed(fake, idle=2)
    touched = []

    def wake_up(method, params):
        if method == "sessions.delete" and not touched:
            fake.touch(victim["key"])  # the agent woke up between list and delete
            touched.append(True)

    fake.on_request = wake_up
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    result = cli("cleanup", "--config", config, "--json")
    assert victim["key"] in fake.sessions and other["key"] not in fake.sessions
    results = {r["key"]: r["result"] for r in records(state_dir, "outcome")}
    assert results == {victim["key"]: "skipped: changed", other["key"]: "closed"}
    assert json.loads(result.stdout)["hosts"][0]["skipped_changed"] == 1 and result.exit_code == 0


def test_older_release_gets_the_same_guarantee_from_a_re_read(fakes, write_config, cli, state_dir):
    legacy = fakes(legacy=True)
    (victim, other), _ = seed(legacy, idle=2)
    woke = []

    def wake_up(method, params):
        if method == "sessions.delete" and not woke:
            legacy.touch(victim["key"])
            woke.append(True)

    legacy.on_request = wake_up
    config = write_config({"old": {"url": legacy.url, "token": "secret", "limit": 100}})
    cli("cleanup", "--config", config)
    assert victim["key"] in legacy.sessions and other["key"] not in legacy.sessions
    deletes = [r["params"] for r in legacy.requests if r["method"] == "sessions.delete"]
    assert deletes[-1] == {"key": other["key"]}  # learnt to leave out the fields it rejects


def test_a_failing_delete_does_not_stop_the_rest(fake, write_config, cli, state_dir):
    idle, _ = seed(fake, idle=3)
    fake.fail_deletes = {idle[1]["key"]}
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    result = cli("cleanup", "--config", config, "--format", "plain")
    assert result.exit_code == 1
    assert list(fake.sessions) == [idle[1]["key"]]
    results = {r["key"]: r["result"] for r in records(state_dir, "outcome")}
    assert results[idle[1]["key"]] == "failed" and list(results.values()).count("closed") == 2
    assert f"failed: {idle[1]['key']}" in result.stdout


def test_connection_dropping_mid_run_leaves_an_exact_record(fake, write_config, cli, state_dir):
    seed(fake, idle=4)
    fake.drop_after_requests = 3  # list, then two deletes, then the socket dies
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    result = cli("cleanup", "--config", config, "--json")
    assert result.exit_code == 1
    outcomes = records(state_dir, "outcome")
    closed = {r["key"] for r in outcomes if r["result"] == "closed"}
    assert len(closed) == 2 and not closed & set(fake.sessions)
    unsure = [r for r in outcomes if r["result"] in ("unknown", "failed")]
    assert len(unsure) == 2 and {r["key"] for r in unsure} == set(fake.sessions) | (
        {r["key"] for r in unsure} - set(fake.sessions)
    )
    assert len(fake.sessions) == 2
    # a rerun completes the cleanup without closing anything twice
    fake.drop_after_requests = None
    cli("cleanup", "--config", config)
    assert not fake.sessions
    all_closed = [r["key"] for r in records(state_dir, "outcome") if r["result"] == "closed"]
    assert len(all_closed) == len(set(all_closed)) == 4


@pytest.mark.parametrize("fmt", ["json", "plain"])
@pytest.mark.parametrize("answered", [1, 3, 5])  # the listing, then 0, 2 or all 4 deletes answered; then the drop
def test_a_connection_lost_mid_run_reports_what_was_closed_and_how_far_it_got(fake, write_config, cli, answered, fmt):
    seed(fake, idle=4)
    fake.drop_after_requests = answered
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    result = cli("cleanup", "--config", config, "--format", fmt)
    closed = 4 - len(fake.sessions)
    assert closed == answered - 1 and result.exit_code == 1  # a host partly cleaned, or not counted after, is a failure
    if fmt == "json":
        (host,) = json.loads(result.stdout)["hosts"]
        assert host["closed"] == closed and host["error"]
        assert host["status"] == ("cleaned" if closed == 4 else "partly cleaned")
    else:
        assert f"closed {closed};" in result.stdout
        assert ("a: cleaned, but the sessions left could not be counted" if closed == 4
                else "a: partly cleaned, stopped early: ") in result.stdout


def test_reserve_not_met_exits_1_and_names_the_sessions_in_use(fake, write_config, cli):
    seed(fake, idle=1, fresh=8)
    fake.add_session(label="keep-me", updated_at=int(time.time() * 1000) - 5 * H)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}},
                          cleanup={"reserve": 3, "protect": {"labels": ["keep-me"]}})
    result = cli("cleanup", "--config", config, "--format", "plain")
    assert result.exit_code == 1
    assert ("a: reserve not met: 1 free slot after cleanup, 3 wanted; the other sessions are in use or protected "
            "(8 not idle long enough, 1 protected label): for a person to look at") in result.stdout
    assert "per-run cap" not in result.stdout


@pytest.mark.parametrize("dry_run", [False, True])
def test_reserve_not_met_because_of_the_cap_says_the_cap_held_them_back(fake, write_config, cli, dry_run):
    seed(fake, idle=9, fresh=1)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}}, cleanup={"reserve": 3})
    result = cli("cleanup", "--config", config, "--format", "plain", "--max-per-run", "2", *["--dry-run"] * dry_run)
    assert ("a: reserve not met: 2 free slots after cleanup, 3 wanted; the per-run cap held 7 idle sessions back "
            "(the next run closes them, or raise max_per_run); the other sessions are in use or protected "
            "(1 not idle long enough)") in result.stdout
    assert "for a person to look at" not in result.stdout  # the next run gets there on its own


def test_reserve_not_met_because_a_delete_failed_says_so(fake, write_config, cli):
    idle, _ = seed(fake, idle=2, fresh=8)
    fake.fail_deletes = {idle[0]["key"]}
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}}, cleanup={"reserve": 3})
    result = cli("cleanup", "--config", config, "--format", "plain")
    assert result.exit_code == 1
    assert (
        "a: reserve not met: 1 free slot after cleanup, 3 wanted; 1 delete failed; the other sessions" in result.stdout
    )


def test_without_admin_scope_the_host_is_skipped_with_exit_3(fake, write_config, cli):
    seed(fake, idle=1)
    fake.remote = True  # scopes cleared for a client without a device: the trap, reported plainly
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}})
    result = cli("cleanup", "--config", config, "--format", "plain")
    assert result.exit_code == 3 and len(fake.sessions) == 1
    assert "without operator.read and operator.admin" in result.stdout and "device: true" in result.stdout


def test_overrides_and_cap_from_the_command_line(fake, write_config, cli):
    now = int(time.time() * 1000)
    for minutes in (10, 20, 30, 40):
        fake.add_session(updated_at=now - minutes * 60 * 1000)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    cli("cleanup", "--config", config, "--idle-after", "15m", "--max-per-run", "2")
    assert len(fake.sessions) == 2  # the two most idle of the three past 15 min
    assert cli("cleanup", "--config", config, "--idle-after", "soon").exit_code == 2


def test_a_second_cleanup_exits_at_once_while_one_runs(fake, write_config, cli, state_dir):
    from guardian.commands.cleanup import lock

    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    with lock(state_dir):
        result = cli("cleanup", "--config", config)
    assert result.exit_code == 1 and "another guardian cleanup is running" in result.stderr
    assert not fake.connects


# --- odd activity times -------------------------------------------------------------------------

IDLE_MS = int(NOW * 1000 - 5 * H)  # a good time, idle well past every threshold
ODD_TIMES = [math.nan, math.inf, -math.inf, 0, -1, -IDLE_MS, int(NOW) - 5 * 3600, float(int(NOW)),  # seconds, not ms
             10 ** 400, "1799982000000", True, False, [IDLE_MS], {"ms": IDLE_MS}]


@example(field_name="updatedAt", odd=math.nan, position=0)
@example(field_name="updatedAt", odd=math.inf, position=0)
@example(field_name="updatedAt", odd=0, position=0)
@example(field_name="lastInteractionAt", odd=int(NOW) - 5 * 3600, position=1)  # seconds: reads as 1970
@example(field_name="endedAt", odd=-IDLE_MS, position=2)
@example(field_name="lastInteractionAt", odd="1799982000000", position=0)
@example(field_name="endedAt", odd=10 ** 400, position=3)  # no time, and too large to subtract from now
@given(field_name=st.sampled_from(["updatedAt", "lastInteractionAt", "endedAt"]), odd=st.sampled_from(ODD_TIMES),
       position=st.integers(0, 3))
def test_an_unreadable_activity_time_keeps_its_session_and_the_rest_is_cleaned(field_name, odd, position):
    """Whatever else the row says, a time that is there but is no epoch-ms time means its idle time is unknown."""
    idle = [row(f"agent:main:idle{i}", 5) for i in range(3)]
    odd_row = {**row("agent:main:odd", 5), field_name: odd}
    decisions = {d.key: d for d in plan(idle[:position] + [odd_row] + idle[position:], RULES, NOW)}
    odd_decision = decisions["agent:main:odd"]
    assert (odd_decision.close, odd_decision.reason) == (False, "unreadable activity time")
    assert all(decisions[r["key"]].close for r in idle)


# --- protect: a key, agent or label named in cleanup.protect is never closed ----------------------


@example(key="agent:main:slack:channel:[C123]")
@example(key="agent:main:what?")
@example(key="agent:main:[!x]")
@given(key=st.text(min_size=1))
def test_a_key_named_literally_in_protect_keys_is_protected_whatever_characters_it_has(key):
    session = {"key": key, "sessionId": "s", "agentId": "main", "updatedAt": int(NOW * 1000 - 5 * H)}
    (decision,) = plan([session], Cleanup(idle_after=7200, max_per_run=50, protect=Protect(keys=(key,))), NOW)
    assert (decision.close, decision.reason) == (False, "protected key pattern")


@pytest.mark.parametrize("protect, session, reason", [
    ({"protect": Protect(agents=("Sales",))}, row("agent:sales:a", 5), "protected agent"),  # OpenClaw folds agent ids
    ({"protect": Protect(labels=("Keep-Me",))}, row("agent:main:a", 5, label="keep-me"), "protected label"),
    ({"protect": Protect(keys=("agent:*:Telegram:*",))}, row("agent:main:telegram:42", 5), "protected key pattern"),
])
def test_protect_entries_match_whatever_their_case(protect, session, reason):
    (decision,) = plan([session], Cleanup(idle_after=7200, max_per_run=50, **protect), NOW)
    assert (decision.close, decision.reason) == (False, reason)


# --- main sessions, archived rows and paging ------------------------------------------------------


@example(agent="sales", main_key="agent:main:main")
@example(agent="main", main_key=None)  # a release whose hello-ok names no main session
@given(agent=st.sampled_from(["main", "sales", "ops-2", "Work"]), main_key=st.sampled_from([None, "agent:main:main"]))
def test_no_agents_main_session_is_closed_even_when_the_row_does_not_say_it_is_main(agent, main_key):
    (decision,) = plan([{"key": f"agent:{agent}:main", "sessionId": "s", "updatedAt": int(NOW * 1000 - 5 * H)}],
                       Cleanup(idle_after=7200, max_per_run=50), NOW, main_key=main_key)
    assert (decision.close, decision.reason) == (False, "main session")


def test_an_archived_row_is_never_planned():
    (decision,) = plan([row("agent:main:a", 5, archived=True)], RULES, NOW)
    assert (decision.close, decision.reason) == (False, "archived")


class Pages:
    """A connection whose sessions.list answers are scripted, one per call; one call too many is a failure."""

    def __init__(self, *answers):
        self.answers, self.params = list(answers), []
        self.host = type("Host", (), {"name": "a"})

    def call(self, method, params):
        assert method == "sessions.list" and self.answers, "listed again: the paging did not end"
        self.params.append(params)
        return self.answers.pop(0)


def page(keys, next_offset, total, **fields):
    return {"ts": int(NOW * 1000), "totalCount": total, "hasMore": next_offset is not None, "nextOffset": next_offset,
            "sessions": [row(k, 5, **fields) for k in keys]}


@pytest.mark.parametrize("next_offset", [0, 1, 2])  # 2 does not advance past the page at offset 2; 0 and 1 go back
def test_a_next_offset_that_does_not_advance_is_an_error_not_a_loop(next_offset):
    from guardian.adapters.gateway import GatewayError
    from guardian.commands.cleanup import listing

    stuck = page(["agent:main:c", "agent:main:d"], next_offset, 6)
    connection = Pages(page(["agent:main:a", "agent:main:b"], 2, 6), *[stuck] * 5)
    with pytest.raises(GatewayError, match="sessions.list paging did not advance"):
        listing(connection)


def test_a_key_listed_on_two_pages_is_counted_and_planned_once():
    from guardian.commands.cleanup import listing

    # a session created between the two calls pushed b onto the second page as well
    connection = Pages(page(["agent:main:a", "agent:main:b"], 2, 4), page(["agent:main:b", "agent:main:c"], None, 4))
    rows, _ = listing(connection)
    assert sorted(r["key"] for r in rows) == ["agent:main:a", "agent:main:b", "agent:main:c"]


def test_the_fallback_for_a_release_without_paging_keeps_the_archived_filter():
    from guardian.commands.cleanup import PAGE, listing

    full = {"ts": int(NOW * 1000), "sessions": [row(f"agent:main:s{i}", 5) for i in range(PAGE)]}
    everything = {"sessions": full["sessions"] + [row("agent:main:gone", 5, archived=True)]}
    rows, _ = listing(Pages(full, everything))  # a full first page: the limit may have cut the list
    assert len(rows) == PAGE and "agent:main:gone" not in {r["key"] for r in rows}


def test_an_older_release_never_loses_an_agents_main_session(fakes, write_config, cli):
    legacy = fakes(legacy=True)
    hours_ago = int(time.time() * 1000) - 5 * H
    for agent in ("main", "sales"):
        legacy.add_session(f"agent:{agent}:main", agent=agent, updated_at=hours_ago)
    idle = legacy.add_session(updated_at=hours_ago)
    config = write_config({"old": {"url": legacy.url, "token": "secret", "limit": 100}})
    assert cli("cleanup", "--config", config).exit_code == 0
    assert set(legacy.sessions) == {"agent:main:main", "agent:sales:main"} and idle["key"] not in legacy.sessions


# --- the promise itself: never a live session, over random stores and rules -----------------------

AGENT_IDS = ["main", "sales", "ops", "Batch"]
GOOD_TIME = st.integers(int(NOW * 1000) - 12 * H, int(NOW * 1000) + 60_000)
ODD_TIME = st.sampled_from([math.nan, math.inf, 0, -5, int(NOW) - 3 * 3600, 10 ** 400, "1799990000000", True])
FLAG = st.sampled_from([True, False, None, 1, 0, "yes"])


def random_row(key_and_index):
    key, index = key_and_index
    times = st.one_of(GOOD_TIME, GOOD_TIME, GOOD_TIME, ODD_TIME, st.none())
    return st.fixed_dictionaries({"key": st.just(key), "sessionId": st.just(f"s{index}")}, optional={
        "agentId": st.sampled_from(AGENT_IDS), "updatedAt": times, "lastInteractionAt": times, "endedAt": times,
        "hasActiveRun": FLAG, "status": st.sampled_from(["running", "done", "failed", "killed", None]),
        "isMain": FLAG, "pinned": FLAG, "archived": FLAG,
        "label": st.sampled_from(["keep-me", "Keep-Me", "chat", None])})


KEYS = st.one_of(st.builds("agent:{}:{}:{}".format, st.sampled_from(AGENT_IDS),
                           st.sampled_from(["dashboard", "telegram"]), st.sampled_from(["1", "2", "[C123]", "x*"])),
                 st.builds("agent:{}:main".format, st.sampled_from(AGENT_IDS + ["MAIN", "lab"])), st.text(max_size=12))
STORES = st.lists(KEYS, unique=True, max_size=12).flatmap(
    lambda keys: st.tuples(*[random_row((key, i)) for i, key in enumerate(keys)]).map(list))
RULES_DRAWN = st.builds(
    Cleanup, idle_after=st.floats(60, 6 * 3600), max_per_run=st.integers(1, 8),
    protect=st.builds(
        Protect,
        agents=st.lists(st.sampled_from(AGENT_IDS + ["SALES"]), max_size=2).map(tuple),
        keys=st.lists(st.sampled_from(["agent:*:telegram:*", "agent:main:dashboard:[C123]", "agent:sales:*"]),
                      max_size=2).map(tuple),
        labels=st.lists(st.sampled_from(["keep-me", "KEEP-ME"]), max_size=1).map(tuple)),
    agent_idle_after=st.dictionaries(st.sampled_from(AGENT_IDS), st.floats(60, 6 * 3600), max_size=2))


def may_close(r, rules, now, main_key) -> bool:
    """design.md's rules for one listed row, written out plainly: may cleanup close it?"""
    key = r["key"]
    times = [r[name] for name in ("updatedAt", "lastInteractionAt", "endedAt") if r.get(name) is not None]
    if not times or not all(type(t) in (int, float) and 10 ** 12 <= t <= 253_402_300_800_000 for t in times):
        return False  # no activity time, or one that cannot be read: the idle time is unknown
    from_key = re.match(r"agent:([^:]*):", key)
    agent = r["agentId"] if isinstance(r.get("agentId"), str) else from_key and from_key.group(1)
    agent_main = re.fullmatch(r"agent:[^:]+:main", key, re.IGNORECASE) is not None
    protected = (str(agent).casefold() in [a.casefold() for a in rules.protect.agents]
                 or any(key.casefold() == p.casefold() or fnmatch.fnmatchcase(key.casefold(), p.casefold())
                        for p in rules.protect.keys)
                 or str(r.get("label")).casefold() in [label.casefold() for label in rules.protect.labels])
    live = any(r.get(flag) not in (None, False) for flag in ("hasActiveRun", "isMain", "pinned", "archived"))
    idle = now - max(times) / 1000
    return (not live and r.get("status") != "running" and key != main_key and not agent_main and not protected
            and idle > rules.agent_idle_after.get(agent, rules.idle_after))


@example(rows=[{"key": "agent:main:x", "sessionId": "s0", "updatedAt": int(NOW * 1000 - 5 * H), "hasActiveRun": 1}],
         rules=Cleanup(idle_after=7200, max_per_run=5))  # a flag that is not plainly false keeps the session
@example(rows=[{"key": "agent:lab:main", "sessionId": "s0", "updatedAt": int(NOW * 1000 - 5 * H)}],
         rules=Cleanup(idle_after=7200, max_per_run=5))
@example(rows=[{"key": "agent:main:dashboard:[C123]", "sessionId": "s0", "updatedAt": int(NOW * 1000 - 5 * H)}],
         rules=Cleanup(idle_after=7200, max_per_run=5, protect=Protect(keys=("agent:main:dashboard:[C123]",))))
@example(rows=[{"key": "agent:main:x", "sessionId": "s0", "updatedAt": int(NOW * 1000 - 5 * H), "endedAt": math.nan}],
         rules=Cleanup(idle_after=7200, max_per_run=5))
@given(rows=STORES, rules=RULES_DRAWN)
def test_no_planned_delete_is_of_a_session_the_rules_keep(rows, rules):
    decisions = plan(rows, rules, NOW, main_key="agent:main:main")
    by_key = {r["key"]: r for r in rows}
    closing = [d.key for d in decisions if d.close]
    assert [k for k in closing if not may_close(by_key[k], rules, NOW, "agent:main:main")] == []
    assert len(closing) <= rules.max_per_run and len(decisions) == len(rows)


def fake_store_rows(rows):
    """The drawn rows as a fake gateway's store holds them: an agent and an integer updatedAt (it sorts by that)."""
    five_hours_ago = int(NOW * 1000 - 5 * H)
    return [{"agentId": "main", **r, "updatedAt": r["updatedAt"] if type(r.get("updatedAt")) is int else five_hours_ago}
            for r in rows]


@pytest.fixture(scope="module")
def both_releases(tmp_path_factory):
    from fake_gateway import FakeGateway

    with FakeGateway("secret") as current, FakeGateway("secret", legacy=True) as legacy:
        current.clock = legacy.clock = lambda: int(NOW * 1000)  # the planner's now: no clock skew to refuse
        yield {"2026.9": current, "2026.4": legacy}, tmp_path_factory.mktemp("state")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the gateways are the module's, reset here
@example(release="2026.9", rows=[row("agent:main:a", 5), row("agent:main:b", 5)], rules=Cleanup(7200, 5), touched=[0])
@example(release="2026.4", rows=[row("agent:main:a", 5), row("agent:main:b", 5)], rules=Cleanup(7200, 5), touched=[1])
@example(release="2026.4", rows=[row("agent:sales:main", 5)], rules=Cleanup(7200, 5), touched=[])
@example(release="2026.9", rows=fake_store_rows([{"key": "", "sessionId": "s0", "hasActiveRun": 1}]),
         rules=Cleanup(60, 1), touched=[])  # found by hypothesis: a 1 is not "no active run"
@given(release=st.sampled_from(["2026.9", "2026.4"]), rows=STORES.map(fake_store_rows), rules=RULES_DRAWN,
       touched=st.lists(st.integers(0, 11), max_size=4))
def test_a_real_cleanup_deletes_only_what_the_rules_allow_and_never_a_session_touched_after_the_listing(
        both_releases, release, rows, rules, touched):
    """Through the client and a fake gateway of each release: the rules hold for the rows as the gateway lists them
    (2026.4 lists only key, sessionId, updatedAt), and a session that wakes up between list and delete stays."""
    from fake_gateway import FakeGateway

    from guardian.adapters.archive_ledger import ArchiveLedger
    from guardian.adapters.identity import IdentityStore
    from guardian.commands.cleanup import clean_host
    from guardian.settings.model import Host
    from guardian.settings.secrets import Secret

    gateways, state = both_releases
    fake = gateways[release]
    fake.sessions = {r["key"]: dict(r) for r in rows}
    woken = {rows[i]["key"] for i in touched if i < len(rows)}
    # what the gateway lists: the fake leaves out a truthy `archived`; 2026.4 sends only a few fields of the rest
    listed = {r["key"]: FakeGateway._legacy_row(r) if fake.legacy else r for r in rows if not r.get("archived")}

    def wake_up(method, params):  # at the first delete: on 2026.4 that is the one refused for its guard fields
        if method == "sessions.delete" and woken:
            for key in woken:
                fake.touch(key)
            woken_at_delete.update(woken)
            woken.clear()

    woken_at_delete = set()
    fake.on_request = wake_up
    host = Host(name=release, url=fake.url, limit=1000, token=Secret("secret", "test"), insecure=True)
    report = clean_host(host, rules, NOW, False, IdentityStore(state), audit.AuditLog(state, "r", "cleanup"),
                        ArchiveLedger(state), clock=lambda: NOW)
    deleted = set(listed) - set(fake.sessions)
    closing = [d.key for d in report.decisions if d.close]
    assert [key for key in closing if not may_close(listed[key], rules, NOW, None)] == []
    assert len(closing) == min(rules.max_per_run, sum(may_close(r, rules, NOW, None) for r in listed.values()))
    assert not deleted & woken_at_delete
    assert deleted == {o.decision.key for o in report.outcomes if o.result == "closed"}


@pytest.mark.parametrize("total", [True, False, -1, 2.5, "3"])
def test_the_count_after_a_cleanup_is_unknown_when_totalcount_is_no_count(total):
    """One reader of sessions.list's totalCount for check and cleanup: true is no count of 1 (issue 13)."""

    class Connection:
        def call(self, method, params):
            return {"totalCount": total, "sessions": []}

    assert count_sessions(Connection()) is None


def test_the_audit_trail_says_each_sessions_priority_and_its_place_in_the_order(fake, write_config, cli, state_dir):
    """A low-priority agent's idle sessions go first, each most idle first: every intent and outcome record says the
    agent's priority and the session's place in the plan, so the trail says why it went when it did."""
    now = int(time.time() * 1000)
    main_idle = fake.add_session("agent:main:x", agent="main", updated_at=now - 9 * H)
    sales = [fake.add_session(f"agent:sales:{i}", agent="sales", updated_at=now - (3 + i) * H) for i in range(2)]
    pinned = fake.add_session("agent:sales:pinned", agent="sales", updated_at=now - 5 * H, pinned=True)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          cleanup={"agents": {"sales": {"priority": "low"}}})
    assert cli("cleanup", "--config", config).exit_code == 0
    expected = {sales[1]["key"]: ("low", 1), sales[0]["key"]: ("low", 2), main_idle["key"]: ("normal", 3)}
    for event in ("intent", "outcome"):
        assert {r["key"]: (r["priority"], r["order"]) for r in records(state_dir, event)} == expected
    assert {r["key"]: (r["priority"], r["order"]) for r in records(state_dir, "kept")} == {pinned["key"]: ("low", None)}
