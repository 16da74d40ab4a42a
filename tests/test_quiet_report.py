"""`guardian report` lists the silences, acks and maintenance windows of the period and what each held (issue 16):
from the audit log's `suppressed` records and silences.json, expired and removed ones included."""

from __future__ import annotations

import json

from guardian.adapters.audit import AuditLog
from guardian.adapters.silences import SilenceFile
from guardian.commands import check as checking
from guardian.commands import report as reporting
from guardian.commands import silence as silencing
from guardian.core.quiet import Silence
from guardian.output.render import print_report, report_json, report_plain
from guardian.settings.load import load
from guardian.settings.model import Scope

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC, a Friday
SINCE = T0 - 3600


def checked_with_a_silence(fake, write_config, receiver, monkeypatch):
    """t440 critical from T0; a silence holds it for three checks, is removed, and the next check tells it."""
    monkeypatch.setenv("HOOK_URL", receiver.url)
    monkeypatch.setenv("USER", "alice")
    config = load(write_config({"t440": {"url": fake.url, "token": "secret", "limit": 10}},
                               alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]},
                               maintenance=[{"name": "early", "hosts": ["t440"], "when": "07:00-07:30"},
                                            {"name": "sunday", "hosts": ["t440"], "when": "sun 02:00-04:00"}]))
    for _ in range(10):
        fake.add_session()
    store = SilenceFile(config.state_dir)
    before = [Silence("0ld00000", Scope(hosts=("t440",)), T0 - 3 * 86400, T0 - 2 * 86400, "long ago", "bob"),
              Silence("e5c00000", Scope(hosts=("t440",), alerts=("growth",)), T0 - 1800, T0 - 600, "import", "bob")]
    with store.changing(T0 - 1) as book:
        book.silences += before
    silence, _ = silencing.add(config, Scope(hosts=("t440",)), T0 + 3600, "load test", T0)
    for moment in (T0, T0 + 60, T0 + 400):
        checking.run(config, None, now=moment)
    silencing.remove(config, silence.id, T0 + 500)
    checking.run(config, None, now=T0 + 600)
    # what an entry silences.json dropped long ago held, known from the audit log alone
    AuditLog(config.state_dir, "r0", "check").write(T0 - 100, "suppressed", channel="x", subject="host:t440",
                                                    reason="repeat", level="warning", held_by="ack", id="90ne0000",
                                                    until=None, why="")
    return config, silence


def test_the_report_lists_what_held_in_the_period_and_what_each_held(fake, write_config, receiver, monkeypatch):
    config, silence = checked_with_a_silence(fake, write_config, receiver, monkeypatch)
    assert [(a["reason"], a["level"]) for b in receiver.bodies for a in b["alerts"]] == [("escalated", "critical")]
    report = reporting.run(config, None, SINCE, T0 + 700)
    listed = {q["id"]: q for q in report_json(report)["quiet"]}
    assert set(listed) == {"e5c00000", silence.id, "early", "90ne0000"}  # not the one that ended before
    held = listed[silence.id]
    assert (held["kind"], held["status"], held["by"], held["reason"]) == ("silence", "removed", "alice", "load test")
    assert held["held_alerts"] == 3
    (group,) = held["held"]
    assert (group["subject"], group["level"], group["reason"], group["count"]) == ("host:t440", "critical",
                                                                                   "escalated", 3)
    assert group["channels"] == [config.alerts.channels[0].name]
    assert (listed["e5c00000"]["status"], listed["e5c00000"]["held_alerts"]) == ("expired", 0)
    early = listed["early"]
    assert (early["kind"], early["status"], early["ends"], early["held_alerts"]) == (
        "maintenance", "ended", "2027-01-15T07:30:00+00:00", 0)
    assert (listed["90ne0000"]["kind"], listed["90ne0000"]["status"], listed["90ne0000"]["held_alerts"]) == (
        "ack", "unknown", 1)
    # the stderr line is never held: it told the critical and its repeat; the webhook the critical once at the end
    assert "3 alerts sent, 4 held, 0 sessions closed" in report_json(report)["headline"]

    plain = report_plain(report).splitlines()
    (line,) = [x for x in plain if x.startswith(f"quiet {silence.id}")]
    assert "silence removed" in line and "by alice: load test" in line
    assert line.endswith(f"held 3: host:t440 critical escalated x3 on {config.alerts.channels[0].name}")
    assert any(x.startswith("quiet 90ne0000  ack (no longer in silences.json)") for x in plain)


def test_the_report_s_table_and_html_page_list_them_too(fake, write_config, receiver, monkeypatch, tmp_path):
    config, silence = checked_with_a_silence(fake, write_config, receiver, monkeypatch)
    report = reporting.run(config, None, SINCE, T0 + 700)
    print_report(report, "table", str(tmp_path / "report.txt"))
    table = (tmp_path / "report.txt").read_text()
    assert "Silences, acknowledgements and maintenance windows" in table and silence.id in table
    print_report(report, "html", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Silences, acknowledgements and maintenance windows</h2>" in page
    assert f"<td>{silence.id}</td><td>silence</td><td>removed</td>" in page and "held 3: host:t440" in page


def test_a_report_without_any_says_so_and_an_unreadable_file_is_a_warning(write_config, cli, state_dir):
    config = write_config({"t440": {"url": "ws://127.0.0.1:1", "limit": 10}})
    state_dir.mkdir(mode=0o700)
    assert json.loads(cli("report", "--config", config, "--json").stdout)["quiet"] == []
    (state_dir / "silences.json").mkdir()
    result = cli("report", "--config", config, "--format", "html")
    assert result.exit_code == 0 and "No silence, acknowledgement or maintenance window in the period." in result.stdout
    assert "silences.json" in result.stderr and "alerts go out unsilenced" in result.stderr
