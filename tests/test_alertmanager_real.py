"""The Alertmanager channel against a real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1.

Alertmanager compares endsAt with its own clock, so these checks run at the real time.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import requests
from conftest import wait_until

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
    assert firing(alertmanager) == {("SessionUsageHigh", "t440", "critical")}
    set_sessions(fake, 50)  # 83 %: warning
    checking.run(config, None, now=time.time())
    assert firing(alertmanager) == {("SessionUsageHigh", "t440", "warning")}
    set_sessions(fake, 10)
    checking.run(config, None, now=time.time())
    assert firing(alertmanager) == set()
