"""`guardian serve` (issue 18): the schedule step run_due(now), the HTTP answers, signals in a real process,
and the live fleet page in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import wait_until
from hypothesis import example, given
from hypothesis import strategies as st
from test_contrib import PROMTOOL
from test_report import CHROMIUM, chromium

from guardian.commands import check as checking
from guardian.commands import cleanup as cleaning
from guardian.commands.serve import HEALTHY_INTERVALS, Service, address, next_due
from guardian.core.records import CheckReport, Reading, Subject
from guardian.output import fleet_page
from guardian.settings.load import load
from guardian.settings.model import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def fill(fake, count, idle=0):
    now_ms = int(time.time() * 1000)
    for index in range(count):
        fake.add_session(updated_at=now_ms - 3 * 3600 * 1000 if index < idle else now_ms)


def live(fake) -> int:
    return sum(not row["archived"] for row in fake.sessions.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service(config_path, log=None, start=1_000_000.0):
    lines = [] if log is None else log
    return Service(lambda: load(config_path), load(config_path), lambda: start, lines.append)


# --- the schedule ---------------------------------------------------------------------------------------


@given(due=st.floats(0, 1e6), every=st.floats(0.5, 1e4), late=st.floats(0, 1e5))
@example(due=131071.0, every=1.3231503050917581, late=1.3231503050917581)  # (now - due) / every rounds below 1
def test_next_due_is_the_first_slot_after_now_on_the_schedule(due, every, late):
    now = due + late
    following = next_due(due, every, now)
    slots = (following - due) / every
    assert following > now and following - every <= now + 1e-6 * max(1.0, now)
    assert abs(slots - round(slots)) < 1e-6 * max(1.0, slots)


def test_run_due_runs_check_every_interval_and_cleanup_every_its_own(fake, write_config):
    fill(fake, 10, idle=3)
    config = write_config({"gw": {"url": fake.url, "token": "secret", "limit": 20}},
                          serve={"check_every": "30s", "cleanup_every": "15m"})
    t0 = time.time()  # cleanup reads the gateway's timestamps against it
    svc = service(config, start=t0)
    assert svc.run_due(t0) == ["check", "cleanup"]
    assert svc.last.status["hosts"][0]["sessions"] == 10  # counted before the cleanup closed the 3 idle ones
    assert svc.run_due(t0 + 29) == []
    assert svc.run_due(t0 + 30) == ["check"]
    assert svc.last.status["hosts"][0]["sessions"] == 7
    assert svc.run_due(t0 + 95) == ["check"]  # late: runs once, and the next is back on the 30 s grid
    assert svc.due["check"] == t0 + 120
    assert svc.run_due(t0 + 900) == ["check", "cleanup"]
    assert svc.failures == {"check": 0, "cleanup": 0}


def test_a_check_that_raises_is_logged_and_counted_and_the_next_runs_on_time(fake, write_config, monkeypatch):
    fill(fake, 5)
    config = write_config({"gw": {"url": fake.url, "token": "secret", "limit": 20}})
    log, t0 = [], 1_000_000.0
    svc = service(config, log)
    real_run = checking.run

    def broken(*args, **kwargs):
        raise RuntimeError("a bug met an odd reply")

    monkeypatch.setattr(checking, "run", broken)
    assert svc.run_due(t0) == ["check", "cleanup"]
    assert svc.failures["check"] == 1 and any("a bug met an odd reply" in line for line in log)
    assert svc.due["check"] == t0 + 30 and svc.last is None
    assert 'guardian_serve_pass_failures_total{pass="check"} 1' in svc.answer("/metrics", {}, t0)[2]
    monkeypatch.setattr(checking, "run", real_run)
    assert svc.run_due(t0 + 30) == ["check"]
    assert svc.last.status["hosts"][0]["sessions"] == 5


def test_the_cleanup_pass_logs_what_the_archive_ledger_warns_of(fake, write_config, state_dir):
    """A corrupt archived.json moved aside is said in serve's log as in `guardian cleanup`'s stderr: never lost."""
    fill(fake, 4)
    config = write_config({"gw": {"url": fake.url, "token": "secret", "limit": 20}})
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "archived.json").write_text("{not json")
    log = []
    service(config, log, start=time.time()).run_due(time.time())
    assert any("moved the corrupt archived.json" in line for line in log), log
    assert list(state_dir.glob("archived.json.corrupt-*"))


def test_sigterm_lets_the_pass_in_flight_finish_and_starts_no_other(fake, write_config, monkeypatch):
    fill(fake, 3)
    config = write_config({"gw": {"url": fake.url, "token": "secret", "limit": 20}})
    log = []
    svc = service(config, log, start=time.time())
    real_run = checking.run

    def terminated_midway(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # to serve_forever's handler, while this check is in flight
        return real_run(*args, **kwargs)

    monkeypatch.setattr(checking, "run", terminated_midway)
    svc.serve_forever(("127.0.0.1", 0))
    assert svc.last.status["hosts"][0]["sessions"] == 3  # the check finished and was kept
    assert svc.due["cleanup"] == svc.started  # the cleanup due with it did not start
    assert log[-1] == "stopped"
    assert signal.getsignal(signal.SIGTERM) is not svc._stop  # the handlers before it are back


def test_healthz_is_503_once_the_last_good_check_is_older_than_three_intervals(fake, write_config, monkeypatch):
    config = write_config({"gw": {"url": fake.url, "token": "secret", "limit": 20}}, serve={"check_every": "10s"})
    svc, t0 = service(config), 1_000_000.0
    svc.run_due(t0)
    assert svc.answer("/healthz", {}, t0 + HEALTHY_INTERVALS * 10)[0] == 200
    monkeypatch.setattr(checking, "run", lambda *a, **k: 1 / 0)
    for step in (1, 2, 3):
        svc.run_due(t0 + 10 * step)
    assert svc.answer("/healthz", {}, t0 + 30)[0] == 200
    assert svc.answer("/healthz", {}, t0 + 30.5)[0] == 503
    assert svc.failures["check"] == 3


def test_serve_and_cron_never_act_twice_the_cleanup_lock_is_shared(fake, write_config, state_dir):
    fill(fake, 6, idle=6)
    config = write_config({"gw": {"url": fake.url, "token": "secret", "limit": 20}})
    log, now = [], time.time()
    svc = service(config, log, start=now)
    with cleaning.lock(state_dir):  # a cron `guardian cleanup` in flight
        svc.run_due(now)
    assert live(fake) == 6 and any("another guardian cleanup is running" in line for line in log)
    assert svc.failures["cleanup"] == 0
    service(config, log, start=time.time()).run_due(time.time())  # the lock free again: this pass does the work
    assert live(fake) == 0


def test_endpoints_answer_what_the_cron_commands_print(fake, write_config, cli):
    fill(fake, 18, idle=2)
    config = write_config({"gw": {"url": fake.url, "token": "secret", "limit": 20}},
                          cleanup={"idle_after": "10h"})
    svc, now = service(config), time.time()
    assert svc.answer("/api/v1/status", {}, now)[0] == 503  # before the first check
    svc.run_due(now)
    status, kind, body = svc.answer("/api/v1/status", {}, now)
    printed = json.loads(cli("check", "--config", config, "--json", "--no-notify").stdout)
    served = json.loads(body)
    assert (status, kind) == (200, "application/json")
    assert served.keys() == printed.keys() and served["hosts"][0].keys() == printed["hosts"][0].keys()
    assert [(h["sessions"], h["usage"], h["level"]) for h in (served["hosts"][0], printed["hosts"][0])] == \
        [(18, 90.0, "critical")] * 2
    assert served["status"] == printed["status"] == "critical"
    metrics_text = svc.answer("/metrics", {}, now)[2]
    assert 'guardian_sessions{kind="host",name="gw"} 18' in metrics_text
    assert 'guardian_level{kind="host",name="gw"} 3' in metrics_text
    if PROMTOOL:
        linted = subprocess.run([PROMTOOL, "check", "metrics"], input=metrics_text, capture_output=True, text=True)
        assert linted.returncode == 0, linted.stdout + linted.stderr
    assert svc.answer("/", {}, now)[2].count('class="tile"') == 1
    assert "<svg" in svc.answer("/report", {"since": ["7d"]}, now)[2]
    assert svc.answer("/report", {"since": ["soon"]}, now)[0] == 400
    assert svc.answer("/nothing", {}, now)[0] == 404


def test_reload_keeps_the_old_config_when_the_new_one_is_bad(fake, write_config):
    config = write_config({"gw": {"url": fake.url, "token": "secret", "limit": 20}})
    log = []
    svc = service(config, log)
    Path(config).write_text("hosts: {gw: {url: nope}}\n")
    svc.reload()
    assert svc.config.hosts["gw"].limit == 20
    assert any("not reloaded" in line and "url" in line for line in log)


# --- listening --------------------------------------------------------------------------------------------


def test_another_address_than_loopback_needs_serve_listen_and_a_token_or_insecure(fake, write_config, monkeypatch):
    hosts = {"gw": {"url": fake.url, "token": "secret", "limit": 20}}
    assert address(load(write_config(hosts)), None) == ("127.0.0.1", 9877)
    with pytest.raises(ValueError, match="serve.listen"):
        address(load(write_config(hosts)), "0.0.0.0:9877")
    with pytest.raises(ConfigError, match="serve.listen.*not loopback.*token_env"):
        load(write_config(hosts, serve={"listen": "0.0.0.0:9877"}))
    monkeypatch.setenv("SERVE_TOKEN", "t0ken")
    config = load(write_config(hosts, serve={"listen": "0.0.0.0:9877", "token_env": "SERVE_TOKEN"}))
    assert address(config, None) == ("0.0.0.0", 9877)
    assert load(write_config(hosts, serve={"listen": "0.0.0.0:9", "insecure": True})).serve.insecure
    with pytest.raises(ConfigError, match="HOST:PORT"):
        load(write_config(hosts, serve={"listen": "9877"}))


def get(url, token=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_process_serves_reloads_on_sighup_and_exits_on_sigterm(fake, write_config, tmp_path, monkeypatch):
    """The one real-time test: a `guardian serve` process, its HTTP endpoints, its signals."""
    fill(fake, 4)
    monkeypatch.setenv("SERVE_TOKEN", "t0ken")
    port = free_port()
    hosts = {"gw": {"url": fake.url, "token": "secret", "limit": 20}}
    config = write_config(hosts, serve={"listen": f"127.0.0.1:{port}", "check_every": "1s", "token_env": "SERVE_TOKEN"})
    stderr = tmp_path / "serve.err"
    base = f"http://127.0.0.1:{port}"
    with serving(config, stderr) as process:
        wait_until(lambda: answers(f"{base}/healthz"), what="serve to answer /healthz")
        assert get(f"{base}/metrics")[0] == 401
        wait_until(lambda: get(f"{base}/api/v1/status", "t0ken")[0] == 200, what="a first check")
        assert json.loads(get(f"{base}/api/v1/status", "t0ken")[1])["hosts"][0]["sessions"] == 4
        fake.add_session()
        wait_until(lambda: 'guardian_sessions{kind="host",name="gw"} 5' in get(f"{base}/metrics", "t0ken")[1],
                   what="the next check's numbers")
        request = urllib.request.Request(f"{base}/metrics", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 501
        Path(config).write_text(Path(config).read_text() + "nonsense: 1\n")
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: "not reloaded" in stderr.read_text(), what="the bad reload to be reported")
        assert get(f"{base}/healthz")[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert "nonsense" in stderr.read_text() and "stopped" in stderr.read_text()


@contextmanager
def serving(config: str, stderr: Path):
    """A `guardian serve --config config` process, its stderr to a file; killed after if still running."""
    with open(stderr, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "guardian", "serve", "--config", config],
                                   stderr=err, env=os.environ.copy(), cwd=ROOT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def answers(url) -> bool:
    try:
        return get(url)[0] == 200
    except OSError:
        return False


# --- the live page ----------------------------------------------------------------------------------------


def fleet_report(count: int, now: float) -> CheckReport:
    subjects = []
    for index in range(count):
        used = (index * 37) % 100
        reading = None if index % 17 == 5 else Reading(count=used, limit=100, idle=index % 4)
        level = "critical" if used >= 90 else "warning" if used >= 80 else "notice" if used >= 65 else "ok"
        subjects.append(Subject(kind="host", name=f"gateway-{index:02d}.fleet.example", limit=100, reading=reading,
                                error=None if reading else "connect refused", level=level, previous_count=None))
    return CheckReport(time=now - 12, subjects=subjects)


def test_the_page_is_hottest_first():
    ordered = fleet_page.order(fleet_report(20, 0).subjects)
    levels = [s.level for s in ordered]
    assert levels == sorted(levels, key=["critical", "warning", "notice", "ok"].index)
    reached = [s.reading.usage for s in ordered if s.reading and s.level == "ok"]
    assert reached == sorted(reached, reverse=True)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
def test_fifty_hosts_fit_one_1080p_screen_in_headless_chromium(tmp_path):
    now = time.time()
    html = fleet_page.page(fleet_report(50, now), now, 30, healthy=True)
    measure = ("<script>const t=[...document.querySelectorAll('.tile')];document.body.dataset.bottom="
               "Math.max(...t.map(e=>e.getBoundingClientRect().bottom));document.body.dataset.tiles=t.length;</script>")
    page = tmp_path / "fleet.html"
    page.write_text(html.replace("</body>", measure + "</body>"))
    dom = chromium("--window-size=1920,1080", "--dump-dom", page.as_uri(), user_data=tmp_path / "profile").stdout
    assert 'data-tiles="50"' in dom
    bottom = float(dom.split('data-bottom="')[1].split('"')[0])
    assert bottom <= 1080, f"the 50th tile ends at {bottom}px, below a 1080p screen"
    screenshot = tmp_path / "fleet.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1920,1080", page.as_uri(), user_data=tmp_path / "profile")
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("GUARDIAN_KEEP_SCREENSHOT"):
        screenshot.replace(os.environ["GUARDIAN_KEEP_SCREENSHOT"])
