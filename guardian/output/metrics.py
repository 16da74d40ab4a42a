"""`guardian check --prom-file`: this check's numbers in the Prometheus textfile-collector format.

Gauges come from the check itself. The counters (alerts sent; sessions closed, archived, purged, restored) are
derived from the audit log, the one record of alerts and cleanups: history.db keeps their running totals and where
in the log it stopped, so each check reads only the lines appended since (see History.audit_counters).
The file is replaced atomically, mode 0644, for node_exporter's textfile collector to read.

The thresholds are written too, for contrib/prometheus/guardian-rules.yml to decide on, already as
the ratios the rules compare: c/l >= t/100 decides as the guardian's 100*c/l >= t does, while a rule
computing t/100 - m/100 itself would not always.
A collector error is a host this check could not read (connect, auth, timeout, protocol: one per host
per check); its counter is kept with the audit counters, so only the checks that write this file count.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from guardian.adapters.files import write_atomic
from guardian.adapters.history import History
from guardian.core import attribution
from guardian.core.records import CheckReport
from guardian.settings.levels import RANK
from guardian.settings.model import Alerts, Attribution

GAUGES = [  # name, help, value of a subject (None: no sample)
    ("guardian_sessions", "Non-archived sessions at this check.", lambda s: s.reading and s.reading.count),
    ("guardian_limit", "Configured session limit.", lambda s: s.limit),
    ("guardian_usage_ratio", "Sessions divided by the limit.", lambda s: s.reading and s.reading.count / s.limit),
    ("guardian_level", "Alert level: 0 ok, 1 notice, 2 warning, 3 critical (the last known one when unreachable).",
     lambda s: RANK[s.level]),
    ("guardian_idle_sessions", "Sessions idle past cleanup.idle_after.", lambda s: s.reading and s.reading.idle),
    ("guardian_reachable", "1 when this check read the subject, else 0.", lambda s: int(s.reading is not None)),
    ("guardian_last_success_timestamp_seconds", "When the subject was last read successfully.",
     lambda s: s.last_success),
    ("guardian_unreachable_members", "A pool's members this check could not read: its sessions and usage are then "
     "a lower bound, from the others.", lambda s: len(s.unreachable_members) if s.kind == "pool" else None),
    ("guardian_forecast_critical_seconds", "Seconds until usage is forecast to reach critical (rising trend only).",
     lambda s: s.forecast.critical_in if s.forecast and s.forecast.rising else None),
    ("guardian_silenced", "1 while a silence or maintenance window holds the subject's alerts, else 0.",
     lambda s: int(s.quiet is not None and s.quiet.kind in ("silence", "maintenance"))),
    ("guardian_acknowledged", "1 while an acknowledgement holds the subject's alerts, else 0.",
     lambda s: int(s.quiet is not None and s.quiet.kind == "ack")),
]
COLLECTOR_ERRORS = "guardian_collector_errors_total"  # not from the audit log: from this check's polls
COUNTERS = [
    ("guardian_alerts_sent_total", "Alert lines a channel accepted (Alertmanager: what changed), from the audit log."),
    ("guardian_sessions_closed_total", "Sessions cleanup closed (archived or deleted), from the audit log."),
    ("guardian_sessions_archived_total", "Sessions cleanup archived (restore brings them back), from the audit log."),
    ("guardian_sessions_purged_total", "Sessions the guardian archived and later purged, from the audit log."),
    ("guardian_sessions_restored_total", "Sessions guardian restore brought back, from the audit log."),
    (COLLECTOR_ERRORS, "Polls of a host that failed (connect, auth, timeout, protocol)."),
]
# a host's counters by the result of a cleanup or restore outcome: an archived session is closed too (it left the usage)
OUTCOME_COUNTERS = {"closed": ("guardian_sessions_closed_total",),
                    "archived": ("guardian_sessions_closed_total", "guardian_sessions_archived_total"),
                    "purged": ("guardian_sessions_purged_total",),
                    "restored": ("guardian_sessions_restored_total",)}


def count(records: list[dict]) -> Counter:
    """Counter increments in these audit records: {(metric, labels json): n}."""
    increments = Counter()
    for record in records:
        if record.get("event") == "alert" and record.get("result") == "delivered":
            for line in record.get("alerts") or []:
                kind, _, name = str(line.get("subject")).partition(":")
                labels = {"channel": record.get("channel"), "kind": kind, "name": name, "level": line.get("level"),
                          "reason": line.get("reason")}
                increments["guardian_alerts_sent_total", json.dumps(labels, sort_keys=True)] += 1
        elif record.get("event") == "outcome":
            labels = json.dumps({"kind": "host", "name": record.get("host")}, sort_keys=True)
            for metric in OUTCOME_COUNTERS.get(str(record.get("result")), ()):  # str: the log may hold anything
                increments[metric, labels] += 1
    return increments


def collector_errors(report: CheckReport) -> Counter:
    """This check's counter increments for its failed polls, and a 0 for every host it read, so the
    series exists before its first error (a rule's increase() then sees that first one)."""
    increments = Counter()
    for host in (s for s in report.subjects if s.kind == "host"):
        labels = json.dumps({"kind": "host", "name": host.name}, sort_keys=True)
        increments[COLLECTOR_ERRORS, labels] = int(host.reading is None)
    return increments


AGENT_GAUGES = [  # name, help, value of an agent's share (None: not known)
    ("guardian_agent_sessions", "Sessions an agent holds (status's count; the agents past attribution.top together "
     "as agent=\"other\").", lambda share: share.sessions),
    ("guardian_agent_closable_sessions", "Sessions of an agent cleanup would close, before its per-run cap, as of the "
     "latest split (guardian_attribution_timestamp_seconds).", lambda share: share.closable),
]


def agent_families(report: CheckReport, top: int) -> list[str]:
    """Per host, the `top` agents holding most sessions and `other` for the rest: a bounded label set."""
    hosts = [s for s in report.subjects if s.kind == "host" and s.holders is not None]
    shares = [(s, attribution.top(s.holders.agents, top)) for s in hosts]
    lines = []
    for name, help_text, value in AGENT_GAUGES:
        lines += _family(name, "gauge", help_text, [(_labels({"name": s.name, "agent": share.name}), value(share))
                                                    for s, top_shares in shares for share in top_shares
                                                    if value(share) is not None])
    lines += _family("guardian_attribution_timestamp_seconds", "gauge",
                     "When the idle and closable figures per agent and kind were counted (rows listed).",
                     [(_labels({"name": s.name}), s.holders.as_of) for s in hosts if s.holders.as_of is not None])
    return lines


def textfile(report: CheckReport, counters: dict, alerts: Alerts, top: int = Attribution().top) -> str:
    lines = []
    for name, help_text, value in GAUGES:
        samples = [(_labels({"kind": s.kind, "name": s.name}), value(s)) for s in report.subjects]
        lines += _family(name, "gauge", help_text, [(labels, v) for labels, v in samples if v is not None])
    for name, help_text in COUNTERS:
        samples = [
            (_labels(json.loads(labels)), v) for (metric, labels), v in sorted(counters.items()) if metric == name
        ]
        lines += _family(name, "counter", help_text, samples)
    lines += agent_families(report, top)
    lines += _family("guardian_level_threshold_ratio", "gauge",
                     "Usage ratio at which a level is reached (alerts.thresholds).",
                     [(_labels({"level": level}), threshold / 100) for level, threshold in alerts.thresholds.items()])
    lines += _family("guardian_level_hold_ratio", "gauge",
                     "Usage ratio above which a level already reached is kept (its threshold minus alerts.margin).",
                     [(_labels({"level": level}), (threshold - alerts.margin) / 100)
                      for level, threshold in alerts.thresholds.items()])
    lines += _family("guardian_check_timestamp_seconds", "gauge", "When this check ran.", [("", report.time)])
    if report.duration is not None:
        lines += _family("guardian_check_duration_seconds", "gauge", "How long this check took, polls to state saved.",
                         [("", report.duration)])
    return "\n".join(lines) + "\n"


def exposition(report: CheckReport, alerts: Alerts, state_dir: Path, top: int = Attribution().top) -> str:
    """Bring the counters up to date and give the metrics text: once per check (its polls are counted
    once). HistoryError if the counters cannot be kept."""
    def increments(audit_records):
        found = count(audit_records)
        found.update(collector_errors(report))  # update, not +: a Counter sum drops the zeros
        return found

    counters = History(state_dir).audit_counters(Path(state_dir) / "audit.jsonl", increments)
    return textfile(report, counters, alerts, top)


def write(path: str, report: CheckReport, alerts: Alerts, state_dir: Path, top: int = Attribution().top) -> None:
    """Replace the metrics file. OSError or HistoryError if it cannot."""
    write_atomic(Path(path), exposition(report, alerts, state_dir, top), 0o644)


def _family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
            *(f"{name}{labels} {_number(value)}" for labels, value in samples)]


def _labels(labels: dict) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def _escape(value) -> str:
    """A label value as the exposition format wants it (a channel name comes from the config)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
