"""The Alertmanager channel against a real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1.

Alertmanager compares endsAt with its own clock, so these checks run at the real time.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest
import requests
from conftest import create_sessions, wait_until

from guardian.commands import check as checking
from guardian.settings.load import load

ALERTMANAGER = shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(ALERTMANAGER is None,
                                reason="prometheus-alertmanager is not installed (scripts/test.sh installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path):
    """A started Alertmanager: no cluster, its own storage, a receiver that sends nothing; stopped after."""
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    base = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address={base.removeprefix('http://')}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def ready() -> bool:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            try:
                return requests.get(f"{base}/-/ready", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(ready, timeout=20)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


def firing(base: str) -> set[tuple[str, str, str]]:
    """(alertname, host, severity) of every alert Alertmanager holds active."""
    alerts = requests.get(f"{base}/api/v2/alerts", timeout=5).json()
    return {(a["labels"]["alertname"], a["labels"].get("host"), a["labels"]["severity"]) for a in alerts}


def set_sessions(gateway, count: int) -> None:
    gateway.sessions.clear()
    for _ in range(count):
        gateway.add_session()


def test_a_drop_from_critical_leaves_warning_firing_at_once(fake, write_config, alertmanager):
    config = load(write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                               alerts={"channels": [{"type": "alertmanager", "urls": [alertmanager]}]}))
    set_sessions(fake, 55)  # 92 %: critical
    checking.run(config, None, now=time.time())
    assert firing(alertmanager) == {("SessionUsageCritical", "t440", "critical")}
    set_sessions(fake, 50)  # 83 %: warning
    checking.run(config, None, now=time.time())
    assert firing(alertmanager) == {("SessionUsageWarning", "t440", "warning")}
    set_sessions(fake, 10)
    checking.run(config, None, now=time.time())
    assert firing(alertmanager) == set()


def guardian_silences(base: str) -> list[dict]:
    """The silences a guardian made that Alertmanager holds, active or expired."""
    return [s for s in requests.get(f"{base}/api/v2/silences", timeout=5).json()
            if s["createdBy"].startswith("guardian@")]


def test_a_guardian_silence_is_one_alertmanager_silence_while_alerts_keep_flowing_and_expires_when_removed(
    fake, write_config, alertmanager, receiver, monkeypatch
):
    from guardian.commands import silence as silences
    from guardian.settings.model import Scope

    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = load(write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                               alerts={"channels": [{"type": "alertmanager", "urls": [alertmanager]},
                                                    {"type": "webhook", "url_env": "HOOK_URL"}]}))
    set_sessions(fake, 55)  # 92 %: critical
    silence, _ = silences.add(config, Scope(hosts=("t440",)), time.time() + 3600, "load test", time.time())
    for _ in range(2):  # the second run finds its silence there: no duplicate
        report = checking.run(config, None, now=time.time())
        assert not [w for w in report.warnings if "Alertmanager" in w], report.warnings
    assert receiver.bodies == []
    assert firing(alertmanager) == {("SessionUsageCritical", "t440", "critical")}  # Alertmanager's view stays true
    (held,) = [s for s in guardian_silences(alertmanager) if s["status"]["state"] == "active"]
    assert held["comment"] == "load test"
    assert {(m["name"], m["value"]) for m in held["matchers"]} == {
        ("alertname", "SessionUsageNotice|SessionUsageWarning|SessionUsageCritical|SessionHostUnreachable"),
        ("host", "t440")}
    silences.remove(config, silence.id, time.time())
    checking.run(config, None, now=time.time())
    checking.run(config, None, now=time.time())
    assert [(b["alerts"][0]["reason"], b["alerts"][0]["level"]) for b in receiver.bodies] == [("escalated", "critical")]
    assert {s["status"]["state"] for s in guardian_silences(alertmanager)} == {"expired"}


def test_after_an_upgrade_the_silences_made_under_the_old_alert_name_are_made_again_under_the_new_ones(
    fake, write_config, alertmanager
):
    """Issue 18 renamed SessionUsageHigh to one alert a level: the first check of an upgraded guardian expires the
    silence its older self made for a guardian silence and makes it again under the new names (nothing to migrate)."""
    from guardian.commands import silence as silences
    from guardian.settings.model import Scope
    from guardian.settings.units import iso_time

    config = load(write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                               alerts={"channels": [{"type": "alertmanager", "urls": [alertmanager]}]}))
    set_sessions(fake, 55)  # 92 %: critical
    silence, _ = silences.add(config, Scope(hosts=("t440",)), time.time() + 3600, "load test", time.time())
    made_before = {"matchers": [{"name": "alertname", "value": "SessionUsageHigh|SessionHostUnreachable",
                                 "isRegex": True, "isEqual": True},
                                {"name": "host", "value": "t440", "isRegex": False, "isEqual": True}],
                   "startsAt": iso_time(time.time()), "endsAt": iso_time(silence.ends),
                   "createdBy": f"guardian@{socket.gethostname()}", "comment": "load test"}
    requests.post(f"{alertmanager}/api/v2/silences", json=made_before, timeout=5).raise_for_status()
    report = checking.run(config, None, now=time.time())
    assert not [w for w in report.warnings if "Alertmanager" in w], report.warnings
    states = {next(m["value"] for m in s["matchers"] if m["name"] == "alertname"): s["status"]["state"]
              for s in guardian_silences(alertmanager)}
    assert states == {"SessionUsageHigh|SessionHostUnreachable": "expired",
                      "SessionUsageNotice|SessionUsageWarning|SessionUsageCritical|SessionHostUnreachable": "active"}
    assert firing(alertmanager) == {("SessionUsageCritical", "t440", "critical")}


@pytest.mark.real_gateway
def test_a_silenced_critical_real_gateway_is_held_from_the_webhook_and_mirrored_in_alertmanager(
    real_gateways, write_config, alertmanager, receiver, monkeypatch, cli
):
    """Issue 16's end to end: a real OpenClaw gateway (2026.9.6), a loopback webhook, a real Alertmanager.
    The host is made critical by a limit at its session count, not by filling it."""
    gw = real_gateways["pc-a"]  # the running gateway; no test stops it
    monkeypatch.setenv("HOOK_URL", receiver.url)

    def config(limit: int) -> str:
        return write_config({"pc-a": {"url": gw.url, "token": gw.token, "limit": limit}},
                            alerts={"channels": [{"type": "alertmanager", "urls": [alertmanager]},
                                                 {"type": "webhook", "url_env": "HOOK_URL"}]})

    count = checking.run(load(config(100_000)), None, now=time.time(), act=False).subjects[0].reading.count
    if count == 0:
        create_sessions(gw, 1)
        count = 1
    path = config(count)  # 100 %: critical

    def check() -> dict:
        result = cli("check", "--config", path, "--json")
        assert result.exit_code == 2, result.stderr  # the truth stays critical whatever holds it
        assert "Alertmanager" not in result.stderr, result.stderr
        return json.loads(result.stdout)["hosts"][0]

    added = cli("silence", "add", "--config", path, "--hosts", "pc-a", "--for", "1h", "--reason", "gateway upgrade")
    assert added.exit_code == 0, added.stderr
    silence_id = added.stdout.strip()
    for _ in range(2):  # the second check finds its Alertmanager silence there: no duplicate
        host = check()
        assert (host["level"], host["silenced_by"]) == ("critical", silence_id)
    assert receiver.bodies == []
    assert firing(alertmanager) == {("SessionUsageCritical", "pc-a", "critical")}
    (held,) = guardian_silences(alertmanager)
    assert held["status"]["state"] == "active" and held["comment"] == "gateway upgrade"
    assert ("host", "pc-a") in {(m["name"], m["value"]) for m in held["matchers"]}

    assert cli("silence", "remove", "--config", path, silence_id).exit_code == 0
    for _ in range(2):  # told critical once: the second check is inside the critical cooldown
        assert check()["silenced_by"] is None
    told = [(a["name"], a["reason"], a["level"]) for body in receiver.bodies for a in body["alerts"]]
    assert told == [("pc-a", "escalated", "critical")]
    assert {s["status"]["state"] for s in guardian_silences(alertmanager)} == {"expired"}
