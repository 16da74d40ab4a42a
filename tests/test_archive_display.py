"""Issue 17, where archive mode shows: the report (plain, JSON, table, HTML) and the metrics count per host what
cleanup archived, purged and restore restored, from the audit records as cleanup and restore write them
(adapters/audit.py: `outcome` events with `action` and `result`, restore runs under the command "restore"); check
shows per host the sessions waiting for purge, from the ledger cleanup keeps (adapters/archive_ledger.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
from test_metrics import PROMTOOL, host, parse

from guardian.adapters.archive_ledger import ArchiveLedger
from guardian.adapters.audit import AuditLog
from guardian.commands import check as checking
from guardian.commands import report as reporting
from guardian.output import metrics
from guardian.output.dashboard import page
from guardian.settings.load import load

# host a: archive mode (one session deleted too: a release without archive, or mode delete for a while); b: delete
CLEANUP = [("a", "archive", "archived"), ("a", "archive", "archived"), ("a", "archive", "archived"),
           ("a", "delete", "closed"), ("a", "archive", "skipped: changed"), ("b", "delete", "closed"),
           ("b", "delete", "closed")]
PURGE = [("a", "purge", "purged"), ("a", "purge", "purged"), ("a", "purge", "already gone")]
RESTORE = [("a", "restore", "restored"), ("a", "restore", "already active"), ("a", "restore", "not the guardian's")]


def write_runs(state_dir, at: float) -> None:
    """A cleanup that archives, a later one that purges, a restore: each outcome after its intent, as they write."""
    for run_id, command, when, outcomes in (("c1", "cleanup", at, CLEANUP), ("c2", "cleanup", at + 900, PURGE),
                                            ("r1", "restore", at + 1800, RESTORE)):
        log = AuditLog(state_dir, run_id, command)
        for index, (name, action, result) in enumerate(outcomes):
            fields = {"host": name, "key": f"agent:main:s{index}", "session_id": f"id-{index}", "agent": "main",
                      "idle_seconds": 9000, "decision": action, "reason": "idle", "dry_run": False, "action": action}
            log.write(when, "intent", **fields)
            log.write(when + 1, "outcome", **fields, result=result, error=None)


@pytest.fixture
def archived(write_config, state_dir, fakes):
    """Two hosts whose audit log holds an archive-mode cleanup, a purge and a restore on a, a delete on b."""
    a, b = fakes(), fakes()
    for gateway in (a, b):
        gateway.add_session()
    path = write_config({"a": {"url": a.url, "token": "secret", "limit": 10},
                         "b": {"url": b.url, "token": "secret", "limit": 10}})
    write_runs(state_dir, time.time() - 3600)
    return {"path": path, "config": load(path), "a": a, "b": b}


def test_report_json_counts_archived_purged_and_restored_per_host(archived, cli):
    data = json.loads(cli("report", "--config", archived["path"], "--json").stdout)
    hosts = {h["name"]: h for h in data["hosts"]}
    # closed: left the usage, archived or deleted; a purge removes only what already left it, a restore brings back
    assert {key: hosts["a"][key] for key in ("sessions_closed", "sessions_archived", "sessions_purged",
                                             "sessions_restored")} == {
        "sessions_closed": 4, "sessions_archived": 3, "sessions_purged": 2, "sessions_restored": 1}
    assert [hosts["b"][key] for key in ("sessions_closed", "sessions_archived", "sessions_purged",
                                        "sessions_restored")] == [2, 0, 0, 0]
    runs = {(c["host"], c["run_id"]): c for c in data["cleanups"]}
    assert runs["a", "c1"]["results"] == {"archived": 3, "closed": 1, "skipped: changed": 1}
    assert runs["a", "c2"]["results"] == {"purged": 2, "already gone": 1} and runs["a", "c2"]["closed"] == 0
    assert runs["a", "r1"]["command"] == "restore"
    assert runs["a", "r1"]["results"] == {"restored": 1, "already active": 1, "not the guardian's": 1}
    # a restore is no cleanup; the headline says what can still be undone and what was
    assert data["headline"].endswith("0 alerts sent, 6 sessions closed by 3 cleanups (3 archived), "
                                     "2 purged, 1 restored.")  # runs per host: c1 on a and b, c2 on a


def test_report_plain_and_table_show_them(archived, cli, tmp_path):
    plain = cli("report", "--config", archived["path"], "--format", "plain").stdout.splitlines()
    a_line = next(line for line in plain if line.startswith("a now="))
    assert "closed=4 archived=3 purged=2 restored=1" in a_line
    b_line = next(line for line in plain if line.startswith("b now="))
    assert "closed=2" in b_line and not re.search("archived=|purged=|restored=", b_line)  # none of it there
    restore = [line for line in plain if line.startswith("cleanup ") and line.endswith("by=restore")]
    assert len(restore) == 1 and "restored=1 already_active=1" in restore[0]

    cli("report", "--config", archived["path"], "--format", "table", "-o", tmp_path / "r.txt")
    text = (tmp_path / "r.txt").read_text()
    hosts_table = text[:text.index("Daily peaks")]
    header = next(line for line in hosts_table.splitlines() if "Closed" in line)
    assert re.search(r"Closed\W+Archived\W+Purged\W+Restored", header), header
    row = next(line for line in hosts_table.splitlines() if re.match(r"\W*a\W", line))
    assert re.search(r"\b4\W+3\W+2\W+1\b", row), row
    cleanups = text[text.index("Cleanups"):]
    restore_row = next(line for line in cleanups.splitlines() if "restore" in line and "│ a " in line)
    assert re.search(r"\b0\W+0\W+0\W+1\W+1 already active", restore_row), restore_row


def test_report_without_archive_mode_has_no_archive_columns(write_config, cli, state_dir, fake, tmp_path):
    """Delete mode's report reads as before: no column that is always 0."""
    path = write_config({"b": {"url": fake.url, "token": "secret", "limit": 10}})
    write_runs(state_dir, time.time() - 3600)
    cli("report", "--config", path, "--hosts", "b", "--format", "table", "-o", tmp_path / "r.txt")
    text = (tmp_path / "r.txt").read_text()
    assert "Closed" in text and not re.search("Archived|Purged|Restored", text)


def test_html_page_shows_them_per_host_and_marks_a_restore(archived):
    config, now = archived["config"], time.time()
    html = page(reporting.run(config, None, now - 86400, now))
    card = html[html.index('<span class="name">a<'):html.index('<span class="name">b<')]
    for shown in ("closed <b>4</b>", "archived <b>3</b>", "purged <b>2</b>", "restored <b>1</b>"):
        assert shown in card
    assert card.count('class="cleanup-marker"') == 2 and card.count('class="restore-marker"') == 1
    assert ">+1</text>" in card and ">−4</text>" in card and ">−0</text>" in card
    titles = re.findall(r"<title>[^<]*: (cleanup|restore) ([^<]*)</title>", card)  # each marker says its own run
    assert sorted(titles) == [("cleanup", "(cleanup) closed 0, 2 purged; 1 already gone"),
                              ("cleanup", "(cleanup) closed 4 (3 archived); 1 skipped: changed"),
                              ("restore", "restored 1; 1 already active, 1 not the guardian&#x27;s")]
    table = html[html.index("<h2>Cleanups</h2>"):html.index("<h2>Alerts</h2>")]
    assert "<th>Archived</th><th>Purged</th><th>Restored</th>" in table
    assert "<td>a</td><td>0</td><td>0</td><td>0</td><td>1</td><td>1 already active, 1 not the guardian&#x27;s</td>" \
           "<td>restore</td>" in table


def test_metrics_count_archived_purged_restored_and_closed_includes_archived(archived, state_dir, tmp_path):
    config = archived["config"]
    report = checking.run(config, None, now=time.time())
    metrics.write(str(tmp_path / "g.prom"), report, config.alerts, state_dir)
    samples = parse(tmp_path / "g.prom")
    assert [samples[f"guardian_sessions_{name}_total", host("a")] for name in ("closed", "archived", "purged",
                                                                                "restored")] == [4, 3, 2, 1]
    assert samples["guardian_sessions_closed_total", host("b")] == 2
    assert ("guardian_sessions_archived_total", host("b")) not in samples  # delete mode never archives
    write_runs(state_dir, time.time())  # the next runs add to the totals; what was counted is not counted again
    metrics.write(str(tmp_path / "g.prom"), report, config.alerts, state_dir)
    again = parse(tmp_path / "g.prom")
    assert [again[f"guardian_sessions_{name}_total", host("a")] for name in ("closed", "archived", "purged",
                                                                              "restored")] == [8, 6, 4, 2]


def test_metrics_ignore_an_outcome_result_that_is_not_text():
    counted = metrics.count([{"event": "outcome", "host": "a", "result": ["archived"]},
                             {"event": "outcome", "host": "a", "result": None}])
    assert not counted


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/test.sh installs Debian's prometheus)")
def test_metrics_with_archive_counters_pass_promtool(archived, state_dir, tmp_path):
    config = archived["config"]
    metrics.write(str(tmp_path / "g.prom"), checking.run(config, None, now=time.time()), config.alerts, state_dir)
    linted = subprocess.run([shutil.which("promtool"), "check", "metrics"], stdin=open(tmp_path / "g.prom"),
                            capture_output=True, text=True, timeout=60)
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")


def test_check_shows_the_sessions_waiting_for_purge_per_host(archived, state_dir, cli):
    ArchiveLedger(state_dir).add("a", {f"agent:main:s{i}": {"session_id": f"id-{i}", "archived_at": time.time(),
                                                            "run_id": "c1"} for i in range(3)})
    data = json.loads(cli("check", "--config", archived["path"], "--json").stdout)
    assert {h["name"]: h["waiting_for_purge"] for h in data["hosts"]} == {"a": 3, "b": 0}
    plain = cli("check", "--config", archived["path"], "--format", "plain").stdout.splitlines()
    assert "waiting_for_purge=3" in plain[0] and "waiting_for_purge" not in plain[1]
    table = cli("check", "--config", archived["path"], "--format", "table")
    rows = {line.split()[1]: line for line in table.stdout.splitlines() if line.startswith("│")}
    assert re.search(r"\bTo\b", table.stdout) and re.search(r"\bpurge\b", table.stdout)  # its header (in 80 columns)
    assert re.search(r"│\s+0 │\s+3 │", rows["a"]) and re.search(r"│\s+0 │\s+0 │", rows["b"])  # idle, to purge


def test_check_without_a_ledger_has_none_waiting_and_no_purge_column(archived, state_dir, cli):
    data = json.loads(cli("check", "--config", archived["path"], "--json").stdout)
    assert [h["waiting_for_purge"] for h in data["hosts"]] == [0, 0] and not (state_dir / "archived.json").exists()
    assert "purge" not in cli("check", "--config", archived["path"], "--format", "table").stdout


def test_check_with_a_corrupt_ledger_says_so_and_does_not_know(archived, state_dir, cli):
    (state_dir / "archived.json").write_text("{not json")
    result = cli("check", "--config", archived["path"], "--json")
    data = json.loads(result.stdout)
    assert [h["waiting_for_purge"] for h in data["hosts"]] == [None, None]
    assert any("archived.json is corrupt" in w for w in data["warnings"])
    assert (state_dir / "archived.json").read_text() == "{not json"  # check moves nothing: cleanup does, locked
