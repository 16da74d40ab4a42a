"""`check --prom-file`: the file parses with prometheus_client's own parser and holds the right numbers."""

from __future__ import annotations

import os
import time

from prometheus_client.parser import text_string_to_metric_families

from guardian import check as checking
from guardian import cleanup, metrics
from guardian.audit import AuditLog
from guardian.config import load

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
    assert first["guardian_reachable", host("b")] == 1 and first["guardian_last_success_timestamp_seconds", host("b")] > 0
    critical_log = frozenset({"channel": "log", "kind": "host", "name": "a", "level": "critical", "reason": "escalated"}.items())
    assert first["guardian_alerts_sent_total", critical_log] == 1
    assert prom.stat().st_mode & 0o777 == 0o644
    assert not [p for p in prom.parent.iterdir() if p != prom]  # no temp file left behind

    config = load(path)
    cleanup.run(config, [config.hosts["a"]], cleanup.Rules.from_config(config.cleanup), now, False,
                AuditLog(state_dir, "c1", "cleanup"))
    cli("check", "--config", path, "--prom-file", prom, "-q")
    second = parse(prom)
    assert second["guardian_sessions", host("a")] == 6 and second["guardian_idle_sessions", host("a")] == 0
    assert second["guardian_sessions_closed_total", host("a")] == 3
    assert second["guardian_alerts_sent_total", critical_log] == 1  # counted once, not again on each run
    assert second["guardian_check_timestamp_seconds", frozenset()] >= first["guardian_check_timestamp_seconds", frozenset()]


def test_unreachable_host_keeps_its_last_success_and_has_no_session_sample(fake, write_config, state_dir, tmp_path):
    fake.add_session()
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}}))
    checking.run(config, None, now=T0)
    fake.stop()
    report = checking.run(config, None, now=T0 + 30)
    metrics.write(str(tmp_path / "g.prom"), report, state_dir)
    samples = parse(tmp_path / "g.prom")
    assert samples["guardian_reachable", host("a")] == 0 and ("guardian_sessions", host("a")) not in samples
    assert samples["guardian_last_success_timestamp_seconds", host("a")] == T0


def test_counters_follow_a_replaced_audit_log_and_are_written_whatever_the_umask(fake, write_config, state_dir, tmp_path):
    fake.add_session()
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}}))
    report = checking.run(config, None, now=T0)
    log = AuditLog(state_dir, "r", "cleanup")
    for result in ("closed", "closed", "failed"):
        log.write(T0, "outcome", host="a", result=result)
    prom = tmp_path / "g.prom"
    old_umask = os.umask(0o077)
    try:
        metrics.write(str(prom), report, state_dir)
    finally:
        os.umask(old_umask)
    assert parse(prom)["guardian_sessions_closed_total", host("a")] == 2 and prom.stat().st_mode & 0o777 == 0o644
    os.replace(state_dir / "audit.jsonl", state_dir / "audit.jsonl.1")  # rotated away
    AuditLog(state_dir, "r2", "cleanup").write(T0 + 60, "outcome", host="a", result="closed")
    metrics.write(str(prom), report, state_dir)
    assert parse(prom)["guardian_sessions_closed_total", host("a")] == 3


def test_channel_names_are_escaped_as_label_values():
    counters = metrics.count([{"event": "alert", "result": "delivered", "channel": 'we"b\\hook\n',
                               "alerts": [{"subject": "host:a", "level": "notice", "reason": "growth"}]}])
    report = checking.CheckReport(time=T0, subjects=[])
    families = list(text_string_to_metric_families(metrics.textfile(report, counters)))
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
