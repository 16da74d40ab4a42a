"""Issue 17: cleanup archives in place, purges what it archived `purge_after` later, and `guardian restore` undoes it.

Against the fake gateway in archive mode (2026.9.6's archive, restore and purge as measured), with `now` passed
and a moved clock: no sleeps.
"""

from __future__ import annotations

import json
import time

import pytest
from fake_gateway import FakeGateway
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from guardian.adapters import audit
from guardian.adapters.archive_ledger import ArchiveLedger
from guardian.commands import cleanup as cleaning
from guardian.core.planner import changed_since_plan, plan
from guardian.settings.load import load
from guardian.settings.model import Cleanup

NOW = 1_800_000_000.0
H = 3600 * 1000
DAY = 86400.0


@pytest.fixture
def gw():
    with FakeGateway("secret") as fake:
        fake.archive = True
        fake.clock = lambda: int(NOW * 1000)
        yield fake


def seed(fake, idle: int, busy: int = 1, now: float = NOW) -> tuple[list[str], list[str]]:
    """`idle` sessions idle 5 hours and `busy` ones used a minute ago: (idle keys, busy keys)."""
    idle_keys = [fake.add_session(f"agent:main:idle-{i}", updated_at=int(now * 1000 - 5 * H))["key"]
                 for i in range(idle)]
    busy_keys = [fake.add_session(f"agent:main:busy-{i}", updated_at=int(now * 1000 - 60_000))["key"]
                 for i in range(busy)]
    return idle_keys, busy_keys


def config_for(fake, write_config, **cleanup):
    return load(write_config({"lab": {"url": fake.url, "token": "secret", "limit": 100}}, cleanup=cleanup))


def clean(config, now=NOW, dry_run=False, run_id="run-1"):
    log = audit.AuditLog(config.state_dir, run_id, "cleanup")
    warnings: list[str] = []
    (report,) = cleaning.run(config, list(config.hosts.values()), config.cleanup, now, dry_run, log,
                             clock=lambda: now, warnings=warnings)
    return report, warnings


def archived(fake) -> set[str]:
    return {key for key, row in fake.sessions.items() if row.get("archived")}


def outcomes(state_dir, action=None) -> list[dict]:
    return [r for r in audit.read(state_dir) if r["event"] == "outcome" and action in (None, r["action"])]


def test_cleanup_archives_the_idle_sessions_records_them_and_counts_them(gw, write_config, state_dir):
    idle, busy = seed(gw, idle=3)
    report, _ = clean(config_for(gw, write_config))
    assert archived(gw) == set(idle) and set(gw.sessions) == set(idle + busy)  # archived in place, not deleted
    assert (report.mode, report.closed, report.after, report.status) == ("archive", 3, 1, "cleaned")
    ledger = ArchiveLedger(state_dir).read()["hosts"]["lab"]
    assert set(ledger) == set(idle)
    assert all(e == {"session_id": gw.sessions[k]["sessionId"], "archived_at": NOW, "run_id": "run-1"}
               for k, e in ledger.items())
    assert ArchiveLedger(state_dir).waiting() == {"lab": 3}
    records = [r for r in audit.read(state_dir) if r["event"] in ("intent", "outcome")]
    assert [(r["event"], r["action"]) for r in records] == [("intent", "archive")] * 3 + [("outcome", "archive")] * 3
    assert {r["result"] for r in outcomes(state_dir)} == {"archived"}
    patch_many = [r for r in gw.requests if r["method"] == "sessions.patchMany"]
    assert len(patch_many) == 1 and not [r for r in gw.requests if r["method"] == "sessions.delete"]


def test_batches_hold_at_most_fifty_targets_each_re_read_before_it_is_sent(gw, write_config, state_dir):
    seed(gw, idle=130, busy=0)
    report, _ = clean(config_for(gw, write_config, max_per_run=500))
    methods = [r["method"] for r in gw.requests if r["method"] in ("sessions.list", "sessions.patchMany")]
    assert methods == ["sessions.list", *(["sessions.list", "sessions.patchMany"] * 3), "sessions.list"]
    sizes = [len(r["params"]["targets"]) for r in gw.requests if r["method"] == "sessions.patchMany"]
    assert sizes == [50, 50, 30] and report.closed == 130 and len(archived(gw)) == 130


@pytest.mark.parametrize("change", ["touch", "run", "status", "pin", "new id", "gone"])
def test_a_session_changed_between_the_plan_and_its_archive_is_skipped(gw, write_config, state_dir, change):
    (victim, other), _ = seed(gw, idle=2)
    lists = []

    def change_at_the_re_read(method, params):
        if method == "sessions.list":
            lists.append(params)
            if len(lists) == 2:  # the first is the plan's listing, the second the re-read before the batch
                row = gw.sessions[victim]
                {"touch": lambda: gw.touch(victim), "run": lambda: row.update(hasActiveRun=True),
                 "status": lambda: row.update(status="done"), "pin": lambda: row.update(pinned=True),
                 "new id": lambda: row.update(sessionId="another"), "gone": lambda: gw.sessions.pop(victim)}[change]()

    gw.on_request = change_at_the_re_read
    report, _ = clean(config_for(gw, write_config))
    assert archived(gw) == {other}
    results = {o.decision.key: o.result for o in report.outcomes}
    assert results == {victim: "already gone" if change == "gone" else "skipped: changed", other: "archived"}
    assert set(ArchiveLedger(state_dir).host("lab")) == {other}
    assert {r["key"] for r in audit.read(state_dir) if r["event"] == "intent"} == {victim, other}


def test_a_re_read_that_fails_archives_nothing_and_records_why(gw, write_config, state_dir):
    from fake_gateway import GatewayError

    idle, _ = seed(gw, idle=2)
    lists = []

    def refuse_the_re_read(method, params):
        if method == "sessions.list":
            lists.append(params)
            if len(lists) == 2:
                raise GatewayError("UNAVAILABLE", "store busy", retryable=False)

    gw.on_request = refuse_the_re_read
    report, _ = clean(config_for(gw, write_config))
    assert not archived(gw) and report.status == "partly cleaned" and "re-read before archiving" in report.error
    assert [o.result for o in report.outcomes] == ["failed", "failed"]
    assert {r["key"] for r in outcomes(state_dir)} == set(idle) and cleaning.exit_code([report], 0, False) == 1


def test_with_nothing_to_archive_the_kept_records_are_still_written(gw, write_config, state_dir):
    gw.add_session("agent:main:pinned", updated_at=int(NOW * 1000 - 5 * H), pinned=True)
    report, _ = clean(config_for(gw, write_config))
    assert report.closed == 0
    assert [(r["event"], r["reason"]) for r in audit.read(state_dir)] == [("kept", "pinned")]


def test_the_dry_run_says_would_archive_and_changes_nothing(gw, write_config, state_dir, cli):
    idle, _ = seed(gw, idle=2, now=time.time())  # the CLI's own now
    path = write_config({"lab": {"url": gw.url, "token": "secret", "limit": 100}})
    gw.clock = lambda: int(time.time() * 1000)
    result = cli("cleanup", "--config", path, "--dry-run", "--format", "plain")
    assert result.exit_code == 0, result.stderr
    assert f"lab archive {idle[0]}" in result.stdout and "would archive 2" in result.stdout
    assert not archived(gw) and not (state_dir / "archived.json").exists()
    answer = json.loads(cli("cleanup", "--config", path, "--json").stdout)
    host = answer["hosts"][0]
    assert (host["mode"], host["archived"], host["closed"], host["purged"], host["skipped_changed"]) == \
        ("archive", 2, 2, 0, 0)
    assert answer["run_id"] == audit.read(state_dir)[-1]["run_id"]


def test_delete_mode_keeps_deleting(gw, write_config, state_dir):
    idle, busy = seed(gw, idle=2)
    report, _ = clean(config_for(gw, write_config, mode="delete"))
    assert set(gw.sessions) == set(busy) and (report.mode, report.closed) == ("delete", 2)
    assert {(r["action"], r["result"]) for r in outcomes(state_dir)} == {("delete", "closed")}
    assert not (state_dir / "archived.json").exists()


def test_an_unknown_mode_is_one_sentence(write_config, cli):
    path = write_config({"lab": {"url": "ws://127.0.0.1:1", "limit": 10}}, cleanup={"mode": "shred"})
    result = cli("cleanup", "--config", path)
    assert result.exit_code == 2 and "cleanup.mode" in result.stderr and "archive, delete" in result.stderr


def test_without_archive_on_2026_4_the_cleanup_deletes_and_says_why(write_config, state_dir, cli):
    with FakeGateway("secret", legacy=True) as old:
        old.add_session("agent:main:old", updated_at=int((NOW - 5 * 3600) * 1000))
        old.clock = lambda: int(NOW * 1000)
        report, _ = clean(config_for(old, write_config))
        assert (report.mode, report.fallback, report.closed, old.sessions) == \
            ("delete", "2026.4.29 has no archive", 1, {})
        old.add_session("agent:main:old-2", updated_at=int((time.time() - 5 * 3600) * 1000))
        old.clock = lambda: int(time.time() * 1000)
        path = write_config({"lab": {"url": old.url, "token": "secret", "limit": 100}})
        dry = cli("cleanup", "--config", path, "--dry-run", "--format", "plain").stdout
        assert "lab close agent:main:old-2" in dry and "would close 1;" in dry
        assert "would delete, not archived: 2026.4.29 has no archive" in dry
    assert {(r["action"], r["result"]) for r in outcomes(state_dir)} == {("delete", "closed")}


# --- purge -----------------------------------------------------------------------------------------------------


def test_a_later_cleanup_purges_exactly_the_guardians_archived_sessions_once_purge_after_has_passed(
        gw, write_config, state_dir):
    idle, busy = seed(gw, idle=3)
    by_hand = gw.add_session("agent:main:by-hand", updated_at=int(NOW * 1000 - 5 * H), archived=True)["key"]
    config = config_for(gw, write_config, purge_after="24h")
    clean(config)
    assert archived(gw) == {*idle, by_hand}
    report, _ = clean(config, now=NOW + DAY - 1, run_id="run-2")  # not yet
    assert report.purges == [] and archived(gw) == {*idle, by_hand}
    gw.clock = lambda: int((NOW + DAY) * 1000)
    report, _ = clean(config, now=NOW + DAY, run_id="run-3")
    assert set(gw.sessions) == {*busy, by_hand} and report.purged == 3  # the one archived by hand stays
    # what is left in the ledger: the session that has since become idle, archived by this run
    assert {k: e["run_id"] for k, e in ArchiveLedger(state_dir).host("lab").items()} == {busy[0]: "run-3"}
    purges = [r for r in gw.requests if r["method"] == "sessions.delete"]
    assert all(r["params"]["archivedOnly"] is True and r["params"]["expectedSessionId"] for r in purges)
    assert {(r["result"], r["run_id"]) for r in outcomes(state_dir, "purge")} == {("purged", "run-3")}


def test_a_session_restored_or_reused_before_its_purge_is_kept_and_forgotten(gw, write_config, state_dir):
    (restored, reused, due), _ = seed(gw, idle=3)
    config = config_for(gw, write_config)
    clean(config)
    gw.sessions[restored].update(archived=False)  # someone restored it
    gw.sessions[reused].update(sessionId="a-new-one")  # the key now holds a new session (archived too)
    gw.clock = lambda: int((NOW + DAY) * 1000)
    report, _ = clean(config, now=NOW + DAY, run_id="run-2")
    results = {o.decision.key: o.result for o in report.purges}
    assert results == {restored: "kept: no longer archived", reused: "skipped: changed", due: "purged"}
    assert set(gw.sessions) >= {restored, reused} and due not in gw.sessions
    # neither is the guardian's to purge any more (what run-2 archived itself is its own)
    assert [e for e in ArchiveLedger(state_dir).host("lab").values() if e["run_id"] == "run-1"] == []


def test_a_purge_that_fails_stays_in_the_ledger_for_the_next_run(gw, write_config, state_dir):
    (key,), _ = seed(gw, idle=1)
    config = config_for(gw, write_config)
    clean(config)
    gw.fail_deletes = {key}
    gw.clock = lambda: int((NOW + DAY) * 1000)
    report, _ = clean(config, now=NOW + DAY)
    assert [o.result for o in report.purges] == ["failed"] and key in ArchiveLedger(state_dir).host("lab")
    assert cleaning.exit_code([report], 0, False) == 1


def test_a_corrupt_ledger_is_moved_aside_with_a_warning_and_nothing_is_purged(gw, write_config, state_dir):
    (key,), _ = seed(gw, idle=1)
    config = config_for(gw, write_config)
    clean(config)
    (state_dir / "archived.json").write_text('{"version": 1, "hosts": {"lab": []}}')
    gw.clock = lambda: int((NOW + DAY) * 1000)
    report, warnings = clean(config, now=NOW + DAY)
    assert report.purges == [] and gw.sessions[key]["archived"]
    assert "is corrupt" in warnings[0] and "moved the corrupt archived.json" in warnings[1]
    assert list(state_dir.glob("archived.json.corrupt-*"))
    assert key not in ArchiveLedger(state_dir).host("lab")  # the new ledger has only what this run archived


def test_the_dry_run_shows_what_would_be_purged(gw, write_config, state_dir):
    seed(gw, idle=2)
    config = config_for(gw, write_config)
    clean(config)
    gw.clock = lambda: int((NOW + DAY) * 1000)
    report, _ = clean(config, now=NOW + DAY, dry_run=True)
    assert [o.result for o in report.purges] == ["planned"] * 2 and len(archived(gw)) == 2


# --- the promise: nothing touched since the plan is archived or purged -----------------------------------------

CHANGES = {
    "touch": lambda row: row.update(updatedAt=row["updatedAt"] + 1),
    "run": lambda row: row.update(hasActiveRun=True),
    "running": lambda row: row.update(status="running"),
    "pin": lambda row: row.update(pinned=True),
    "new id": lambda row: row.update(sessionId=row["sessionId"] + "-2"),
    "main": lambda row: row.update(isMain=True),
}


@example(row={"key": "agent:main:a", "sessionId": "s", "updatedAt": int(NOW * 1000 - 5 * H), "status": "done"},
         change="running")
@given(row=st.fixed_dictionaries({"key": st.just("agent:main:a"), "sessionId": st.text(max_size=3),
                                  "updatedAt": st.integers(int(NOW * 1000 - 9 * H), int(NOW * 1000 - 3 * H))},
                                 optional={"status": st.sampled_from(["done", "killed", "failed"]),
                                           "label": st.text(max_size=3)}),
       change=st.sampled_from(sorted(CHANGES)))
def test_any_change_to_a_planned_row_stops_its_archive(row, change):
    (decision,) = plan([row], Cleanup(idle_after=7200), NOW)
    assert decision.close and changed_since_plan(decision, dict(row), Cleanup(), None) is None
    changed = dict(row)
    CHANGES[change](changed)
    assert changed_since_plan(decision, changed, Cleanup(), None) is not None


@pytest.fixture(scope="module")
def archiving_gateway(tmp_path_factory):
    with FakeGateway("secret") as fake:
        fake.archive = True
        fake.clock = lambda: int(NOW * 1000)
        yield fake, tmp_path_factory.mktemp("state")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(idle=[5, 6], touched={0: "run"}, purged_later=True)
@given(idle=st.lists(st.integers(3, 30), min_size=1, max_size=8),
       touched=st.dictionaries(st.integers(0, 7), st.sampled_from(sorted(CHANGES)), max_size=4),
       purged_later=st.booleans())
def test_no_session_changed_after_the_plan_is_archived_or_purged(archiving_gateway, write_config, idle, touched,
                                                                 purged_later):
    """Whatever changes between the plan's listing and the re-read before the batch, the changed sessions stay as
    they are: not archived, not in the ledger, so never purged; every other idle session is archived."""
    fake, state = archiving_gateway
    fake.sessions.clear()
    fake.requests.clear()
    (state / "archived.json").unlink(missing_ok=True)
    keys = [fake.add_session(f"agent:main:s{i}", updated_at=int(NOW * 1000 - hours * H))["key"]
            for i, hours in enumerate(idle)]
    changed = {keys[i] for i in touched if i < len(keys)}
    lists = []

    def change_at_the_re_read(method, params):
        if method == "sessions.list":
            lists.append(params)
            if len(lists) == 2:
                for i, change in touched.items():
                    if i < len(keys):
                        CHANGES[change](fake.sessions[keys[i]])

    fake.on_request = change_at_the_re_read
    config = load(write_config({"lab": {"url": fake.url, "token": "secret", "limit": 100}},
                               state_dir=str(state)))
    clean(config)
    fake.on_request = None
    assert archived(fake) == set(keys) - changed
    if purged_later:
        fake.clock = lambda: int((NOW + DAY) * 1000)
        clean(config, now=NOW + DAY)
        fake.clock = lambda: int(NOW * 1000)
        assert set(fake.sessions) == changed


# --- restore ---------------------------------------------------------------------------------------------------


def restore(config, dry_run=False, **selection):
    from guardian.commands import restore as restoring

    log = audit.AuditLog(config.state_dir, "restore-1", "restore")
    reports = restoring.run(config, list(config.hosts.values()), restoring.Selection(**selection), dry_run, log,
                            clock=lambda: NOW)
    return {(i.host, i.key): i.result for r in reports for i in r.results}, reports


def test_restore_last_brings_back_every_session_of_the_last_run_and_a_cleanup_archives_them_again(
        gw, write_config, state_dir):
    idle, _ = seed(gw, idle=3)
    config = config_for(gw, write_config)
    clean(config, run_id="run-1")
    results, reports = restore(config, last=True)
    assert results == {("lab", key): "restored" for key in idle} and not archived(gw)
    assert ArchiveLedger(state_dir).host("lab") == {}
    restores = [r for r in audit.read(state_dir) if r["command"] == "restore"]
    assert [(r["event"], r["action"]) for r in restores] == [("intent", "restore")] * 3 + [("outcome", "restore")] * 3
    assert {r["result"] for r in restores if r["event"] == "outcome"} == {"restored"}
    gw.clock = lambda: int((NOW + 6 * 3600) * 1000)
    clean(config, now=NOW + 6 * 3600, run_id="run-2")  # idle again later: archived again
    assert archived(gw) >= set(idle)


def test_restore_says_per_key_what_became_of_it(gw, write_config, state_dir):
    (restored, active, purged, changed), _ = seed(gw, idle=4)
    stranger = gw.add_session("agent:main:stranger", updated_at=int(NOW * 1000 - 5 * H), archived=True)["key"]
    config = config_for(gw, write_config, purge_after="1h")
    clean(config, run_id="run-1")
    gw.sessions[active].update(archived=False)  # restored by hand
    gw.sessions[changed].update(sessionId="reused")  # another session under the key, archived
    ArchiveLedger(state_dir).drop("lab", [purged])  # as if purged by a cleanup (its record follows)
    log = audit.AuditLog(state_dir, "run-2", "cleanup")
    log.write(NOW + 1, "outcome", host="lab", action="purge", result="purged", key=purged, dry_run=False)
    gw.sessions.pop(purged)
    results, _ = restore(config, keys=(restored, active, purged, changed, stranger))
    assert results == {("lab", restored): "restored", ("lab", active): "already active", ("lab", purged): "purged",
                       ("lab", changed): "refused: session id changed", ("lab", stranger): "not the guardian's"}
    assert gw.sessions[changed]["archived"] and gw.sessions[stranger]["archived"]


def test_restore_dry_run_changes_nothing(gw, write_config, state_dir, cli):
    idle, _ = seed(gw, idle=2)
    config = config_for(gw, write_config)
    clean(config)
    results, _ = restore(config, dry_run=True, since=NOW - 60)
    assert set(results.values()) == {"planned"} and archived(gw) == set(idle)
    assert set(ArchiveLedger(state_dir).host("lab")) == set(idle)


def test_restore_cli_needs_exactly_one_selection_and_reports_json(gw, write_config, state_dir, cli):
    path = write_config({"lab": {"url": gw.url, "token": "secret", "limit": 100}})
    for args in ([], ["--last", "--key", "x"]):
        result = cli("restore", "--config", path, *args)
        assert result.exit_code == 2 and "exactly one of --last, --run, --key or --since" in result.stderr
    idle, _ = seed(gw, idle=1, now=time.time())
    gw.clock = lambda: int(time.time() * 1000)
    cleaned = json.loads(cli("cleanup", "--config", path, "--json").stdout)
    result = cli("restore", "--config", path, "--run", cleaned["run_id"], "--json")
    assert result.exit_code == 0, result.stderr
    host = json.loads(result.stdout)["hosts"][0]
    assert (host["restored"], host["results"][0]["key"]) == (1, idle[0]) and not archived(gw)
    again = cli("restore", "--config", path, "--last")
    assert again.exit_code == 0 and f"lab already active {idle[0]}" in again.stdout


def test_restore_on_2026_4_explains_that_deleted_sessions_cannot_be_restored(write_config, state_dir, cli):
    with FakeGateway("secret", legacy=True) as old:
        key = old.add_session("agent:main:old", updated_at=int((time.time() - 5 * 3600) * 1000))["key"]
        path = write_config({"lab": {"url": old.url, "token": "secret", "limit": 100}})
        assert cli("cleanup", "--config", path).exit_code == 0
        result = cli("restore", "--config", path, "--last")
    assert result.exit_code == 0, result.stderr
    assert f"lab purged {key} (deleted by a cleanup" in result.stdout and "cannot be restored" in result.stdout
    assert "lab: 2026.4.29 has no archive" in result.stdout


def test_cleanup_runs_count_archives_as_closed_and_each_result_of_purges_and_restores(gw, write_config, state_dir):
    (first, second), _ = seed(gw, idle=2)
    config = config_for(gw, write_config)
    clean(config, run_id="run-1")
    restore(config, keys=(first,))
    gw.clock = lambda: int((NOW + DAY) * 1000)
    clean(config, now=NOW + DAY, run_id="run-2")
    runs = {(run.run_id, run.command): run for run in audit.cleanup_runs(audit.read(state_dir))}
    assert (runs["run-1", "cleanup"].closed, runs["run-1", "cleanup"].results) == (2, {"archived": 2})
    assert runs["restore-1", "restore"].results == {"restored": 1} and runs["restore-1", "restore"].closed == 0
    # run-2 purges the one left archived, and archives what is idle by then (the restored one among them)
    assert runs["run-2", "cleanup"].results["purged"] == 1 and runs["run-2", "cleanup"].closed >= 1


@pytest.mark.parametrize("since", ["pinned", "protected label"])
def test_an_archived_session_pinned_or_protected_since_is_not_purged(gw, write_config, state_dir, since):
    (key, other), _ = seed(gw, idle=2)
    clean(config_for(gw, write_config))
    protect = {}
    if since == "pinned":
        gw.sessions[key]["pinned"] = True
    else:
        gw.sessions[key]["label"] = "keep-me"
        protect = {"protect": {"labels": ["keep-me"]}}
    gw.clock = lambda: int((NOW + DAY) * 1000)
    report, _ = clean(config_for(gw, write_config, agents={"main": {"priority": "low"}}, **protect), now=NOW + DAY)
    assert [(o.decision.key, o.result) for o in report.purges] == [(other, "purged")]
    # a purge's records say its agent's priority too; it has no place in a plan (purges go first, all of them)
    assert [(r["key"], r["priority"], r["order"]) for r in audit.read(state_dir)
            if r["event"] == "outcome" and r["action"] == "purge"] == [(other, "low", None)]
    assert gw.sessions[key]["archived"] and key in ArchiveLedger(state_dir).host("lab")  # purged once it may be
    assert [(r["key"], r["reason"]) for r in audit.read(state_dir) if r["event"] == "kept" and r["action"] == "purge"] \
        == [(key, since)]
