"""`check --prom-file`: the file parses with prometheus_client's own parser and holds the right numbers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from guardian.adapters.audit import AuditLog
from guardian.commands import check as checking
from guardian.commands import cleanup
from guardian.core.records import CheckReport, Reading, Subject
from guardian.output import metrics
from guardian.settings.load import load
from guardian.settings.model import Alerts

PROMTOOL = shutil.which("promtool")

T0 = 1_800_000_000.0


def parse(path) -> dict:
    """{(sample name, frozenset of labels): value} of every sample in the file."""
    text = open(path).read()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def host(name, kind="host"):
    return frozenset({"kind": kind, "name": name}.items())


def test_metrics_file_parses_and_holds_gauges_and_counters(fakes, write_config, cli, state_dir, tmp_path):
    a, b = fakes(), fakes()
    now = time.time()  # the CLI's clock: this test runs `check` through it
    for index in range(9):
        a.add_session(updated_at=int((now - 3 * 3600) * 1000) if index < 3 else None)
    for _ in range(4):
        b.add_session()
    path = write_config({"a": {"url": a.url, "token": "secret", "limit": 10},
                         "b": {"url": b.url, "token": "secret", "limit": 8}},
                        pools={"ab": {"hosts": ["a", "b"], "limit": 20}})
    prom = tmp_path / "textfile" / "guardian.prom"
    prom.parent.mkdir()
    assert cli("check", "--config", path, "--prom-file", prom, "-q").exit_code == 2
    first = parse(prom)
    assert first["guardian_sessions", host("a")] == 9 and first["guardian_limit", host("a")] == 10
    assert first["guardian_usage_ratio", host("a")] == 0.9 and first["guardian_level", host("a")] == 3
    assert first["guardian_sessions", host("ab", "pool")] == 13 and first["guardian_level", host("b")] == 0
    assert (
        first["guardian_reachable", host("b")] == 1 and first["guardian_last_success_timestamp_seconds", host("b")] > 0
    )
    critical_log = frozenset(
        {"channel": "log", "kind": "host", "name": "a", "level": "critical", "reason": "escalated"}.items()
    )
    assert first["guardian_alerts_sent_total", critical_log] == 1
    assert prom.stat().st_mode & 0o777 == 0o644
    assert not [p for p in prom.parent.iterdir() if p != prom]  # no temp file left behind

    config = load(path)
    cleanup.run(config, [config.hosts["a"]], config.cleanup, now, False,
                AuditLog(state_dir, "c1", "cleanup"))
    cli("check", "--config", path, "--prom-file", prom, "-q")
    second = parse(prom)
    assert second["guardian_sessions", host("a")] == 6 and second["guardian_idle_sessions", host("a")] == 0
    assert second["guardian_sessions_closed_total", host("a")] == 3
    assert second["guardian_alerts_sent_total", critical_log] == 1  # counted once, not again on each run
    assert (
        second["guardian_check_timestamp_seconds", frozenset()]
        >= first["guardian_check_timestamp_seconds", frozenset()]
    )


def test_unreachable_host_keeps_its_last_success_and_has_no_session_sample(fake, write_config, state_dir, tmp_path):
    fake.add_session()
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}}))
    checking.run(config, None, now=T0)
    fake.stop()
    report = checking.run(config, None, now=T0 + 30)
    metrics.write(str(tmp_path / "g.prom"), report, config.alerts, state_dir)
    samples = parse(tmp_path / "g.prom")
    assert samples["guardian_reachable", host("a")] == 0 and ("guardian_sessions", host("a")) not in samples
    assert samples["guardian_last_success_timestamp_seconds", host("a")] == T0


def test_counters_follow_a_replaced_audit_log_and_are_written_whatever_the_umask(
    fake, write_config, state_dir, tmp_path
):
    fake.add_session()
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}}))
    report = checking.run(config, None, now=T0)
    log = AuditLog(state_dir, "r", "cleanup")
    for result in ("closed", "closed", "failed"):
        log.write(T0, "outcome", host="a", result=result)
    prom = tmp_path / "g.prom"
    old_umask = os.umask(0o077)
    try:
        metrics.write(str(prom), report, config.alerts, state_dir)
    finally:
        os.umask(old_umask)
    assert parse(prom)["guardian_sessions_closed_total", host("a")] == 2 and prom.stat().st_mode & 0o777 == 0o644
    os.replace(state_dir / "audit.jsonl", state_dir / "audit.jsonl.1")  # rotated away
    AuditLog(state_dir, "r2", "cleanup").write(T0 + 60, "outcome", host="a", result="closed")
    metrics.write(str(prom), report, config.alerts, state_dir)
    assert parse(prom)["guardian_sessions_closed_total", host("a")] == 3


def test_channel_names_are_escaped_as_label_values():
    counters = metrics.count([{"event": "alert", "result": "delivered", "channel": 'we"b\\hook\n',
                               "alerts": [{"subject": "host:a", "level": "notice", "reason": "growth"}]}])
    report = CheckReport(time=T0, subjects=[])
    families = list(text_string_to_metric_families(metrics.textfile(report, counters, Alerts())))
    (sample,) = [s for f in families for s in f.samples if s.name == "guardian_alerts_sent_total"]
    assert sample.labels["channel"] == 'we"b\\hook\n' and sample.value == 1


def test_an_audit_log_that_cannot_be_read_costs_the_metrics_file_nothing(fake, write_config, cli, state_dir, tmp_path):
    """The counters stand where they were; the gauges are this check's; the check's one audit warning says why."""
    for _ in range(9):
        fake.add_session()
    path = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}})
    prom = tmp_path / "guardian.prom"
    assert cli("check", "--config", path, "--prom-file", prom, "-q").exit_code == 2
    told = frozenset({"channel": "log", "kind": "host", "name": "a", "level": "critical",
                      "reason": "escalated"}.items())
    counted = parse(prom)["guardian_alerts_sent_total", told]
    (state_dir / "audit.jsonl").rename(state_dir / "audit.jsonl.moved")
    (state_dir / "audit.jsonl").mkdir()
    fake.add_session()
    result = cli("check", "--config", path, "--prom-file", prom, "-q")
    assert result.exit_code == 2
    assert [line for line in result.stderr.splitlines() if not line.startswith("guardian alert: ")] == [
        f"guardian: warning: cannot use the audit log {state_dir / 'audit.jsonl'} (Is a directory): rebound notices "
        f"wait until it can be read"]  # nothing to tell in this run: only the reading failed
    again = parse(prom)
    assert again["guardian_sessions", host("a")] == 10 and again["guardian_alerts_sent_total", told] == counted == 1


def test_failed_polls_are_collector_errors_from_zero_and_leave_a_pool_a_lower_bound(fakes, write_config, state_dir,
                                                                                    tmp_path):
    up, down = fakes(), fakes()
    config = load(write_config({"up": {"url": up.url, "token": "secret", "limit": 10},
                                "down": {"url": down.url, "token": "secret", "limit": 10}},
                               pools={"both": {"hosts": ["up", "down"], "limit": 20}}))
    prom = tmp_path / "g.prom"
    metrics.write(str(prom), checking.run(config, None, now=T0), config.alerts, state_dir)
    first = parse(prom)
    assert first["guardian_collector_errors_total", host("down")] == 0  # there before the first error
    assert first["guardian_unreachable_members", host("both", "pool")] == 0
    down.stop()
    for run in range(1, 3):
        metrics.write(str(prom), checking.run(config, None, now=T0 + 30 * run), config.alerts, state_dir)
    samples = parse(prom)
    assert samples["guardian_collector_errors_total", host("down")] == 2
    assert samples["guardian_collector_errors_total", host("up")] == 0
    assert ("guardian_collector_errors_total", host("both", "pool")) not in samples  # a pool is not polled
    assert samples["guardian_unreachable_members", host("both", "pool")] == 1  # its usage: a lower bound
    assert ("guardian_unreachable_members", host("up")) not in samples


def test_thresholds_margin_and_duration_are_written(fake, write_config, state_dir, tmp_path):
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}},
                               alerts={"thresholds": {"notice": 50, "warning": 70, "critical": 85}, "margin": 3}))
    report = checking.run(config, None, now=T0)
    metrics.write(str(tmp_path / "g.prom"), report, config.alerts, state_dir)
    samples = parse(tmp_path / "g.prom")
    level = lambda name: frozenset({"level": name}.items())  # noqa: E731
    thresholds = [samples["guardian_level_threshold_ratio", level(n)] for n in ("notice", "warning", "critical")]
    assert thresholds == [0.5, 0.7, 0.85]
    assert samples["guardian_level_hold_ratio", level("critical")] == 0.82
    assert samples["guardian_check_duration_seconds", frozenset()] == report.duration > 0


@given(count=st.integers(0, 100_000), limit=st.integers(1, 100_000), threshold=st.floats(1, 99),
       margin=st.floats(0, 20))
@example(count=4, limit=5, threshold=85.0, margin=5.0)  # 0.85 - 0.05 < 0.8: the file holds (85 - 5) / 100 instead
@example(count=2, limit=3, threshold=66.668, margin=5.0)  # 2/3 rounded to 4 places (0.6667) would reach it
def test_the_written_ratios_decide_levels_as_the_guardian_does(count, limit, threshold, margin):
    """The rules compare guardian_usage_ratio with these ratios: the same verdict as policy's percentages."""
    alerts = Alerts(thresholds={"notice": threshold, "warning": 99.5, "critical": 99.9}, margin=margin)
    subject = Subject("host", "a", limit, Reading(count, limit), None, "ok", None)
    text = metrics.textfile(CheckReport(time=T0, subjects=[subject]), {}, alerts)
    written = {(s.name, s.labels.get("level")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    usage, ratio = Reading(count, limit).usage, written["guardian_usage_ratio", None]  # the guardian's; the file's
    assert (ratio >= written["guardian_level_threshold_ratio", "notice"]) == (usage >= threshold)
    assert (ratio > written["guardian_level_hold_ratio", "notice"]) == (usage > threshold - margin)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/test.sh installs Debian's prometheus)")
def test_metrics_file_passes_promtool_check_metrics(fakes, write_config, state_dir, tmp_path):
    up, down = fakes(), fakes()
    up.add_session()
    config = load(write_config({"up": {"url": up.url, "token": "secret", "limit": 10},
                                "down": {"url": down.url, "token": "secret", "limit": 10}},
                               pools={"both": {"hosts": ["up", "down"], "limit": 20}}))
    checking.run(config, None, now=T0)
    down.stop()
    report = checking.run(config, None, now=T0 + 30)
    metrics.write(str(tmp_path / "g.prom"), report, config.alerts, state_dir)
    linted = subprocess.run([PROMTOOL, "check", "metrics"], stdin=open(tmp_path / "g.prom"), capture_output=True,
                            text=True, timeout=60)
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")
