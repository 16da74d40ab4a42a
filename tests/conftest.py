"""Shared fixtures: fake gateways, a webhook receiver on 127.0.0.1, configs, and the CLI runner."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fake_gateway import FakeGateway
from guardian.cli import main


def pytest_configure(config):
    config.addinivalue_line("markers", "real_gateway: runs against real OpenClaw gateways (scripts/peer.py)")


@pytest.fixture
def fake():
    """A started fake gateway with token 'secret'; more via the `fakes` factory."""
    with FakeGateway("secret") as gateway:
        yield gateway


@pytest.fixture
def fakes():
    started = []

    def make(**kwargs):
        gateway = FakeGateway(kwargs.pop("token", "secret"), **kwargs).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POSTed JSON body; `status` is what it answers."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.requests: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                if receiver.status == 200:
                    receiver.bodies.append(json.loads(raw))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def state_dir(tmp_path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def write_config(tmp_path, state_dir, monkeypatch):
    """write_config(hosts={name: {url, limit, ...}}, **top-level sections) -> path; tokens via env."""

    def write(hosts: dict, **sections) -> str:
        entries = {}
        for name, host in hosts.items():
            host = dict(host)
            if "token" in host:
                env_name = f"TOKEN_{name.upper().replace('-', '_').replace('.', '_')}"
                monkeypatch.setenv(env_name, host.pop("token"))
                host["token_env"] = env_name
            entries[name] = host
        path = tmp_path / "guardian.yaml"
        path.write_text(yaml.safe_dump({"hosts": entries, "state_dir": str(state_dir), **sections}, sort_keys=False))
        return str(path)

    return write


@pytest.fixture
def cli():
    """cli(*args) -> click Result with .exit_code, .stdout, .stderr."""

    def run(*args, env=None):
        return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)

    return run


def read_state(state_dir: Path) -> dict:
    return json.loads((state_dir / "state.json").read_text())


# --- real OpenClaw gateways (scripts/peer.py) -------------------------------------------------


@pytest.fixture(scope="session")
def fake_model():
    from fake_model import FakeModel

    with FakeModel(trickle_seconds=0.2) as model:
        yield model


@pytest.fixture(scope="session")
def real_gateways(fake_model):
    """Three real gateways started at once: pc-a and t440 for check, lab (with a model) for cleanup."""
    import peer

    specs = [{"name": "pc-a"}, {"name": "t440"}, {"name": "lab", "extra_config": fake_model.provider_config()}]
    gateways = peer.start_many(specs)
    yield {gw.name: gw for gw in gateways}
    peer.stop_many(gateways)


def rpc(gw, scopes=("operator.read", "operator.write", "operator.admin"), identities=None):
    """An admin connection to a real gateway through the guardian's own client (a paired device
    identity when `identities` is given: a remote gateway clears the scopes of anything else)."""
    from guardian import gateway
    from guardian.config import Host, Secret

    host = Host(name=gw.name, url=gw.url, limit=1, token=Secret(gw.token, "test"), timeout=30,
                device=identities is not None, insecure=True)
    return gateway.connect(host, list(scopes), identities)


def create_sessions(gw, count, identities=None, **params) -> list[str]:
    with rpc(gw, identities=identities) as connection:
        answers = connection.call_many([("sessions.create", dict(params)) for _ in range(count)])
    return [a["key"] for a in answers]


def list_rows(gw, identities=None) -> list[dict]:
    with rpc(gw, identities=identities) as connection:
        return connection.call("sessions.list", {"limit": 1000})["sessions"]


def wait_until(condition, timeout=60.0, what="condition"):
    """Poll a condition (a real gateway's state), never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def idle_after_between(gw, make_recent, identities=None, gap_ms=3000) -> int:
    """An idle threshold (ms) that separates the sessions on `gw` now from those `make_recent()` makes.

    Real time must pass for a real session to be idle: this waits until the gateway's own clock
    is `gap_ms` past the newest existing session, then makes the recent ones.
    """
    old = max(r["updatedAt"] for r in list_rows(gw, identities) if not r.get("hasActiveRun"))

    def gateway_clock():
        with rpc(gw, identities=identities) as connection:
            return connection.call("sessions.list", {"limit": 1})["ts"]

    wait_until(lambda: gateway_clock() > old + gap_ms, what=f"{gap_ms} ms on the gateway clock")
    recent = make_recent()
    fresh = min(r["updatedAt"] for r in list_rows(gw, identities) if r["key"] in recent)
    return int(time.time() * 1000 - (old + fresh) / 2)
