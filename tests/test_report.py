"""`guardian report` over six hours of history made by real `check` runs (fake gateways, moved clock):
its numbers are exactly what the checks saw, and at a glance it says which host is hottest, when it
will fill, and what was done about it. The HTML page is opened in headless Chromium."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from fake_gateway import FakeGateway

from guardian.adapters.audit import AuditLog
from guardian.adapters.history import History
from guardian.commands import check as checking
from guardian.commands import cleanup
from guardian.commands import report as reporting
from guardian.core.forecast import forecast
from guardian.output.render import report_plain
from guardian.settings.load import load

STEP = 600.0  # a check every 10 minutes (cron's 30 s is just more rows)
CHECKS = 36  # 5 h 50 min of history
IDLE_HOURS = 3


def t440_sessions(k: int) -> int:
    """Climbs to warning, a cleanup after check 18 closes 12, it rebounds within 30 min, then creeps to critical."""
    if k <= 18:
        return 30 + k
    if k <= 21:
        return {19: 40, 20: 44, 21: 48}[k]
    return 48 + (k - 21) // 2


def set_sessions(gateway, count: int, at: float, idle: int = 0) -> None:
    with gateway._lock:
        gateway.sessions.clear()
    for index in range(count):
        gateway.add_session(updated_at=int((at - (IDLE_HOURS * 3600 if index < idle else 0)) * 1000))


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Six hours of checks ending now (real time, so `report --since 6h` through the CLI sees them all)."""
    tmp = tmp_path_factory.mktemp("report")
    end = time.time()
    start = end - (CHECKS - 1) * STEP
    os.environ["REPORT_TEST_TOKEN"] = "secret"
    with FakeGateway("secret") as pc_a, FakeGateway("secret") as t440:
        path = tmp / "guardian.yaml"
        path.write_text(yaml.safe_dump({
            "hosts": {"pc-a": {"url": pc_a.url, "token_env": "REPORT_TEST_TOKEN", "limit": 40},
                      "t440": {"url": t440.url, "token_env": "REPORT_TEST_TOKEN", "limit": 60}},
            "pools": {"shared": {"hosts": ["pc-a", "t440"], "limit": 100}},
            "alerts": {"predict": "1h"}, "state_dir": str(tmp / "state")}))
        config = load(str(path))
        reports, cleanups = [], []
        for k in range(CHECKS):
            now = start + k * STEP
            set_sessions(pc_a, 16, now)
            set_sessions(t440, t440_sessions(k), now, idle=12 if k == 18 else 0)
            reports.append(checking.run(config, None, now=now))
            if k == 18:  # cron's cleanup, five minutes after this check
                at = now + 300
                t440.clock = lambda: int(at * 1000)  # the gateway's clock agrees with the moved one
                cleanups = cleanup.run(config, [config.hosts["t440"]], config.cleanup, at,
                                       False, AuditLog(config.state_dir, "cron-cleanup", "cleanup"), clock=lambda: at)
    yield {"config": config, "path": str(path), "start": start, "end": end, "reports": reports, "cleanups": cleanups,
           "dir": tmp}
    del os.environ["REPORT_TEST_TOKEN"]


def test_report_numbers_are_exactly_what_the_checks_saw(history):
    config, start, end = history["config"], history["start"], history["end"]
    built = reporting.run(config, None, start, end)
    t440 = next(s for s in built.subjects if s.name == "t440")
    seen = [100 * t440_sessions(k) / 60 for k in range(CHECKS)]
    assert (t440.samples, t440.usage) == (CHECKS, {"now": seen[-1], "min": min(seen), "max": max(seen),
                                                        "mean": sum(seen) / CHECKS})
    levels = [next(s.level for s in r.subjects if s.id == "host:t440") for r in history["reports"]]
    expected_time = Counter()
    for level in levels[:-1]:
        expected_time[level] += STEP
    assert t440.time_at_level == {
        level: expected_time[level] for level in ("ok", "notice", "warning", "critical", "unknown")
    }
    lines = [line for r in history["reports"] for d in r.deliveries for line in d.lines if line.subject == "host:t440"]
    sent = Counter(
        "unreachable" if line.reason == "unreachable" else line.level for line in lines if line.reason != "resolved"
    )
    assert t440.alerts_sent == {level: sent[level] for level in ("notice", "warning", "critical", "unreachable")}
    assert {line.reason for line in lines} >= {"escalated", "repeat", "growth", "rebound"}
    assert t440.sessions_closed == history["cleanups"][0].closed == 12
    recent = History(config.state_dir).read([("host", "t440")], start, end)
    assert t440.forecast == forecast([(s.time, s.usage) for s in recent], 90, end, 3600)
    assert t440.forecast.rising and t440.forecast.critical_in == 0
    pc_a = next(s for s in built.subjects if s.name == "pc-a")
    assert pc_a.usage == {"now": 40.0, "min": 40.0, "max": 40.0, "mean": 40.0} and not pc_a.forecast.rising
    assert pc_a.time_at_level["ok"] == (CHECKS - 1) * STEP and pc_a.alerts_sent["notice"] == 0
    assert [s.id for s in built.subjects] == ["host:t440", "host:pc-a", "pool:shared"]  # hottest first, pools last


def test_report_since_six_hours_answers_at_a_glance(history, cli):
    result = cli("report", "--config", history["path"], "--since", "6h", "--format", "plain")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    # which host is hottest, when it will fill, what was done about it: the second line says all three
    assert re.fullmatch(r"Hottest: t440 at 92% \(55/60, critical\); critical now, full in \d+h\d*m? \(r² 0\.\d\d\)\. "
                        r"In the period: \d+ alerts sent, 12 sessions closed by 1 cleanup\.", lines[1]), lines[1]
    assert lines[2].startswith("t440 now=92% min=50% mean=") and "closed=12" in lines[2] and "usage=[" in lines[2]
    assert lines[3].startswith("pc-a now=40% min=40% mean=40.0% max=40% ok=5h50m alerts=none closed=0 trend=none")
    assert any(line.startswith("alert ") and " host:t440 notice rebound " in line for line in lines)
    assert any(line.startswith("alert ") and " host:t440 notice growth " in line for line in lines)
    assert [line for line in lines if line.startswith("cleanup ")][0].endswith(" t440 closed=12 by=cleanup")


def test_report_json_has_the_same_numbers(history, cli):
    result = cli("report", "--config", history["path"], "--since", "6h", "--json")
    data = json.loads(result.stdout)
    built = reporting.run(history["config"], None, history["start"], history["end"])
    t440 = built.subjects[0]
    host = data["hosts"][0]
    assert data["hottest"] == "t440" and host["name"] == "t440" and host["samples"] == CHECKS
    assert host["usage"] == {key: round(value, 1) for key, value in t440.usage.items()}
    assert host["time_at_level_seconds"] == {level: round(s) for level, s in t440.time_at_level.items()}
    assert host["alerts_sent"] == t440.alerts_sent and host["sessions_closed"] == 12
    assert host["forecast"]["trend"] == "rising" and host["forecast"]["critical_in_seconds"] == 0
    assert len(host["series"]) == CHECKS and host["series"][-1][1] == 91.7
    assert [c["closed"] for c in data["cleanups"]] == [12] and data["pools"][0]["name"] == "shared"
    assert sum(1 for a in data["alerts"] if a["subject"] == "host:t440" and a["reason"] != "resolved") == sum(
        t440.alerts_sent.values()
    )


def test_report_table_and_options(history, cli, tmp_path):
    table = cli("report", "--config", history["path"], "--since", "6h", "--format", "table", "-o", tmp_path / "r.txt")
    text = (tmp_path / "r.txt").read_text()
    assert table.exit_code == 0 and "Hottest: t440" in text and "Usage over the period" in text and "Cleanups" in text
    only = cli("report", "--config", history["path"], "--hosts", "pc-a", "--since", "1h", "--format", "plain")
    assert "t440" not in only.stdout.split("\n", 2)[2] and "pc-a now=40%" in only.stdout
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(history["start"] - 1))
    assert (
        "t440 now=92% min=50%" in cli("report", "--config", history["path"], "--since", iso, "--format", "plain").stdout
    )
    bad = cli("report", "--config", history["path"], "--since", "yesterday")
    assert bad.exit_code == 2 and "--since: 'yesterday' is neither a duration" in bad.stderr
    cli("report", "--config", history["path"], "--since", "6h", "-o", tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["hottest"] == "t440"  # the format follows the extension


def test_report_without_history_says_so(write_config, cli, fake):
    result = cli("report", "--config", write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}}),
                 "--format", "plain")
    assert result.exit_code == 0 and "No history for these hosts since" in result.stdout
    assert "a now=- min=- mean=- max=-" in result.stdout


def test_report_plain_escapes_what_came_from_the_audit_log(history):
    built = reporting.run(history["config"], None, history["start"], history["end"])
    built.alerts.append(reporting.SentAlert(history["end"], "host:a\x1b[2Jb", "repeat", "notice", 1, 2, 50.0, None,
                                            ("log",), ()))
    assert "\x1b" not in report_plain(built)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args, user_data: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                           f"--user-data-dir={user_data}", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
def test_html_report_renders_in_headless_chromium(history, cli, tmp_path):
    page = tmp_path / "report.html"
    result = cli("report", "--config", history["path"], "--since", "6h", "--format", "html", "-o", page)
    assert result.exit_code == 0
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html  # nothing fetched when viewed
    dom = chromium("--dump-dom", page.as_uri(), user_data=tmp_path / "profile").stdout
    charts = re.findall(r'<svg class="chart" data-subject="([^"]+)"', dom)
    assert charts == ["host:t440", "host:pc-a", "pool:shared"]  # one chart per host (and pool), as rendered
    t440_chart = dom[dom.index('data-subject="host:t440"'):dom.index('data-subject="host:pc-a"')]
    assert t440_chart.count('class="threshold"') == 4 and 'class="usage"' in t440_chart
    assert t440_chart.count('class="cleanup-marker"') == 1 and t440_chart.count('class="alert-marker"') >= 4
    assert 'class="forecast"' in t440_chart and "Hottest: t440 at 92%" in dom
    screenshot = Path(os.environ.get("GUARDIAN_SCREENSHOT_DIR", tmp_path)) / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1400,1500", page.as_uri(), user_data=tmp_path / "profile")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000


def test_html_escapes_names_from_the_config_and_the_audit_log(history):
    from guardian.output.dashboard import page

    built = reporting.run(history["config"], None, history["start"], history["end"])
    built.alerts.append(reporting.SentAlert(history["end"], "host:<script>alert(1)</script>", "repeat", "notice", 1, 2,
                                            50.0, '<img src=x onerror="boom">', ("<b>hook</b>",), ()))
    html = page(built)
    assert "<script>" not in html and "<img" not in html and "<b>hook" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_an_audit_log_that_cannot_be_read_is_one_sentence(write_config, cli, state_dir):
    config = write_config({"a": {"url": "ws://127.0.0.1:1", "token": "secret", "limit": 10}})
    (state_dir / "audit.jsonl").mkdir(parents=True)
    result = cli("report", "--config", config, "--format", "plain")
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr == f"guardian: cannot read {state_dir / 'audit.jsonl'} (Is a directory)\n"


# --- the peak forecast (issue 15) ------------------------------------------------------------------------------


def daily_peaks_csv(days: int, now: float, zone: ZoneInfo) -> str:
    """`days` local days before today, every 5 minutes: a bump at 10:00 whose top grows a point a day."""
    today = datetime.fromtimestamp(now, zone).date()
    rows = ["time,kind,name,sessions,limit"]
    for back in range(days, 0, -1):
        day = today - timedelta(days=back)
        midnight = datetime.combine(day, datetime.min.time(), tzinfo=zone).timestamp()
        for step in range(288):
            hour = step / 12
            usage = 20 + (50 + days - back) * math.exp(-((hour - 10) / 1.5) ** 2 / 2)
            rows.append(f"{midnight + step * 300:.0f},host,a,{round(usage)},100")
    return "\n".join(rows) + "\n"


def minutes_apart(a: str, b: str) -> int:
    return abs((datetime.strptime(a, "%H:%M") - datetime.strptime(b, "%H:%M")).total_seconds()) // 60


def test_report_tells_each_host_its_daily_peak_in_history_tz(write_config, cli, tmp_path):
    zone = ZoneInfo("Pacific/Auckland")  # far from UTC: a day in UTC would put the peak at 21:00 or 22:00
    path = write_config({"a": {"url": "ws://127.0.0.1:9", "token_env": "HOME", "limit": 100}},
                        alerts={"thresholds": {"notice": 50, "warning": 70, "critical": 90}},
                        history={"tz": "Pacific/Auckland"})
    csv_file = tmp_path / "month.csv"
    csv_file.write_text(daily_peaks_csv(10, time.time(), zone))
    assert cli("history", "import", "--config", path, csv_file).exit_code == 0
    report = json.loads(cli("report", "--config", path, "--since", "30d", "--format", "json").stdout)
    peak = report["hosts"][0]["peak"]
    assert set(peak) == {"typical_time", "typical_usage", "p90_usage", "next_at", "next_expected_usage",
                         "growth_points_per_week", "critical_peak_on", "days_of_history"}
    assert peak["days_of_history"] == 10 and minutes_apart(peak["typical_time"], "10:00") <= 5
    assert peak["growth_points_per_week"] == pytest.approx(7, abs=0.3)  # a point a day
    next_at = datetime.fromisoformat(peak["next_at"])
    assert minutes_apart(next_at.strftime("%H:%M"), "10:00") <= 5
    assert next_at.utcoffset() == zone.utcoffset(next_at.replace(tzinfo=None))  # told in history.tz
    assert peak["next_expected_usage"] > 78 and peak["critical_peak_on"] is not None  # 80 then 90 within 2 weeks
    plain = cli("report", "--config", path, "--since", "30d", "--format", "plain").stdout
    line = next(line for line in plain.splitlines() if line.startswith("peak a: "))
    assert re.fullmatch(r"peak a: usual peak (09:30-10:30|09:35-10:35|09:25-10:25) at \d+% \(p90 \d+%\); "
                        r"next (today|tomorrow) (09:5\d|10:0\d), "
                        r"expected \d+%; peaks \+7\.\d points a week, critical peak expected on \d{4}-\d\d-\d\d", line)
    table = cli("report", "--config", path, "--since", "30d", "--format", "table", "-o", tmp_path / "r.txt")
    assert table.exit_code == 0 and "usual peak 09:" in (tmp_path / "r.txt").read_text()


def test_report_without_enough_days_says_why_there_is_no_peak(write_config, cli, tmp_path):
    path = write_config({"a": {"url": "ws://127.0.0.1:9", "token_env": "HOME", "limit": 100}})
    csv_file = tmp_path / "two-days.csv"
    csv_file.write_text(daily_peaks_csv(2, time.time(), ZoneInfo("UTC")))
    cli("history", "import", "--config", path, csv_file)
    report = json.loads(cli("report", "--config", path, "--format", "json").stdout)
    assert report["hosts"][0]["peak"]["typical_time"] is None
    assert report["hosts"][0]["peak"]["days_of_history"] == 2
    plain = cli("report", "--config", path, "--format", "plain").stdout
    assert "peak a: not enough history for a peak forecast: 2 complete days of the 3 needed" in plain


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
def test_html_shows_a_weekday_by_hour_heatmap_and_the_next_peak(write_config, cli, tmp_path):
    path = write_config({"a": {"url": "ws://127.0.0.1:9", "token_env": "HOME", "limit": 100}}, history={"tz": "UTC"})
    csv_file = tmp_path / "month.csv"
    csv_file.write_text(daily_peaks_csv(14, time.time(), ZoneInfo("UTC")))
    cli("history", "import", "--config", path, csv_file)
    page = tmp_path / "report.html"
    assert cli("report", "--config", path, "--since", "3d", "--format", "html", "-o", page).exit_code == 0
    dom = chromium("--dump-dom", page.as_uri(), user_data=tmp_path / "profile").stdout
    assert re.findall(r'<svg class="heatmap" data-subject="([^"]+)"', dom) == ["host:a"]
    assert dom.count('class="heat"') == 7 * 24 and "Mon 10:00: " in dom  # every weekday and hour has data
    assert 'class="next-peak"' in dom and "usual peak " in dom  # the chart runs past now to the next 10:00
    screenshot = Path(os.environ.get("GUARDIAN_SCREENSHOT_DIR", tmp_path)) / "heatmap.png"
    chromium(f"--screenshot={screenshot}", "--window-size=900,800", page.as_uri(), user_data=tmp_path / "profile")
    assert screenshot.stat().st_size > 10_000
