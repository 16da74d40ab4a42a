"""Shared fixtures: fake gateways, HTTP and SMTP receivers on 127.0.0.1, a TLS certificate, configs,
and the CLI runner."""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from certs import make_certificate
from click.testing import CliRunner
from fake_gateway import FakeGateway
from hypothesis import settings

from guardian.cli import main

# GUARDIAN_SOAK=1: the reliability suite's long variants (many more trials; see docs/reliability.md)
SOAK = os.environ.get("GUARDIAN_SOAK") == "1"
settings.register_profile("ci", max_examples=100, deadline=None)
settings.register_profile("soak", max_examples=2000, deadline=None)
settings.load_profile("soak" if SOAK else "ci")


def trials(ci: int, soak: int) -> int:
    """How many times a reliability test repeats its fault: a representative number, or the soak's."""
    return soak if SOAK else ci


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
    """An HTTP server on 127.0.0.1 that records every POST: `requests` has each one's path, headers and
    raw body, `bodies` the JSON of those it accepted. It answers `status`, or the next of `script`:
    (status, headers, body) tuples, one used up per request (a 429 with Retry-After, then a 200...).
    """

    def __init__(self):
        self.bodies: list = []
        self.requests: list[dict] = []
        self.status = 200
        self.script: list[tuple[int, dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                status, headers, body = receiver.script.pop(0) if receiver.script else (receiver.status, {}, b"")
                if 200 <= status < 300:
                    receiver.bodies.append(json.loads(raw))
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
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
def receivers():
    """receivers() -> another started Receiver, stopped after the test."""
    started = []

    def make():
        started.append(Receiver())
        return started[-1]

    yield make
    for r in started:
        r.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert file, key file, sha256 of its DER)."""
    return make_certificate(tmp_path_factory.mktemp("tls"), "127.0.0.1")


def server_tls(certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate[0], certificate[1])
    return context


class MailServer:
    """A real SMTP server on 127.0.0.1 (aiosmtpd). `security` is starttls (required, and AUTH only
    after it), tls (implicit) or none. `messages` holds what it accepted (parsed, with its envelope);
    `refusals` are SMTP replies it gives instead, one used up per message (e.g. "451 4.3.0 busy")."""

    def __init__(self, certificate, security: str = "starttls", login=("guardian", "pw")):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list = []
        self.refusals: list[str] = []
        self.logins: list[tuple[str, str]] = []
        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):
                if server.refusals:
                    return server.refusals.pop(0)
                import email
                from email import policy

                content = envelope.content.replace(b"\r\n", b"\n")  # as a mail program would store it
                message = email.message_from_bytes(content, policy=policy.default)
                server.messages.append({"from": envelope.mail_from, "to": envelope.rcpt_tos, "message": message})
                return "250 2.0.0 accepted"

        def authenticate(smtp, session, envelope, mechanism, auth_data):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            server.logins.append((user, password))
            return AuthResult(success=(user, password) == login, handled=False)  # aiosmtpd answers 535

        class LoopbackController(Controller):
            def _trigger_server(self):
                self.port = self.server.sockets[0].getsockname()[1]  # bound to port 0: learn which one
                super()._trigger_server()

        context = server_tls(certificate)
        options = {"starttls": {"tls_context": context, "require_starttls": True},
                   "tls": {"ssl_context": context}, "none": {"auth_require_tls": False}}[security]
        self.controller = LoopbackController(Handler(), hostname="127.0.0.1", port=0, authenticator=authenticate,
                                             **options)
        self.controller.start()
        self.port = self.controller.port

    def stop(self):
        self.controller.stop()


@pytest.fixture
def mail_servers(certificate):
    """mail_servers(security="starttls") -> a started MailServer, stopped after the test."""
    started = []

    def make(security: str = "starttls", **kwargs):
        started.append(MailServer(certificate, security, **kwargs))
        return started[-1]

    yield make
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def waits(monkeypatch):
    """No test sleeps for a retry: every wait the delivery backoff asks for is recorded here instead."""
    from guardian.alerts import transports as channels

    recorded: list[float] = []
    monkeypatch.setattr(channels, "DEFAULT_BACKOFF", channels.Backoff(sleep=recorded.append))
    return recorded


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


@pytest.fixture(scope="session")
def agents_gateway(tmp_path_factory):
    """A real gateway with several agents (`agents.entries`: main, sales, support, ops; `main` must be among them),
    started once for the tests that need agents; each leaves the store as it found it."""
    import peer

    agents = {name: {"name": name.title()} for name in ("main", "sales", "support", "ops")}
    gw = peer.start("agents", state_root=tmp_path_factory.mktemp("gateway-state"),
                    extra_config={"agents": {"entries": agents}})
    yield gw
    gw.stop()


def rpc(gw, scopes=("operator.read", "operator.write", "operator.admin"), identities=None):
    """An admin connection to a real gateway through the guardian's own client (a paired device
    identity when `identities` is given: a remote gateway clears the scopes of anything else)."""
    from guardian.adapters import gateway
    from guardian.settings.model import Host
    from guardian.settings.secrets import Secret

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
