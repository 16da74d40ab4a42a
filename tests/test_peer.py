"""Real OpenClaw gateways started by scripts/peer.py (no mocks).

Needs the cached install (``python scripts/peer.py install``; the first run installs it, ~45 s)
and ~2 GB of RAM.  Two gateways (``pc-a``, ``t440``) are started concurrently; ``pc-a`` uses
``scripts/fake_model.py`` as its model provider so a real agent run can be held open.
Takes ~55 s on 2 cores (three gateways start at once: ~25 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import wait_until

websocket = pytest.importorskip("websocket")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import fake_model  # noqa: E402
import peer  # noqa: E402

pytestmark = pytest.mark.real_gateway

SCOPES = ["operator.read", "operator.write", "operator.admin"]


class Client:
    """Minimal gateway client: challenge, connect, then request/response by id."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
            challenge = json.loads(self.ws.recv())
            assert challenge["type"] == "event" and challenge["event"] == "connect.challenge", challenge
            res = self.call("connect", {
                "minProtocol": 3, "maxProtocol": 4,
                "client": {"id": "gateway-client", "version": "0.1", "platform": "linux",
                           "mode": "backend"},
                "role": "operator", "scopes": SCOPES, "auth": {"token": token}})
            err = res.get("error") or {}
            if res["ok"] or not err.get("retryable") or time.monotonic() > deadline:
                break
            self.ws.close()
            time.sleep(min(2.0, (err.get("retryAfterMs") or 500) / 1000))
        assert res["ok"], res
        self.hello = res["payload"]

    def call(self, method: str, params: dict | None = None) -> dict:
        rid = str(uuid.uuid4())
        frame: dict = {"type": "req", "id": rid, "method": method}
        if params is not None:
            frame["params"] = params
        self.ws.send(json.dumps(frame))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("type") == "res" and msg.get("id") == rid:
                return msg

    def ok(self, method: str, params: dict | None = None) -> dict:
        res = self.call(method, params)
        assert res["ok"], (method, res)
        return res["payload"]

    def close(self) -> None:
        self.ws.close()


def _row(client: Client, key: str) -> dict | None:
    rows = client.ok("sessions.list", {"limit": 1000})["sessions"]
    return next((r for r in rows if r["key"] == key), None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def model():
    fm = fake_model.FakeModel().start()
    yield fm
    fm.hold.set()
    fm.stop()


@pytest.fixture(scope="module")
def cli_run():
    """``peer.py run`` launched early so its start-up overlaps the other gateways' (2 cores)."""
    port = peer.free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "peer.py"), "run", "--name", "cli-gw",
         "--port", str(port), "--token", "cli-token"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield proc, port
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def gateways(model, cli_run):
    t0 = time.monotonic()
    gws = peer.start_many([
        {"name": "pc-a", "extra_config": model.provider_config()},
        {"name": "t440"},
    ])
    print(f"start_many(pc-a, t440) ready in {time.monotonic() - t0:.1f} s")
    yield {gw.name: gw for gw in gws}
    peer.stop_many(gws)


# ------------------------------------------------------------------------------------------
# no gateway needed


def test_hand_installed_release_is_detected_without_reinstall():
    folder = peer.install_dir(peer.DEFAULT_VERSION)
    t0 = time.monotonic()
    assert peer.install() == folder
    assert time.monotonic() - t0 < 1.0
    assert peer.is_installed(peer.DEFAULT_VERSION)
    assert (peer.node_bin_dir(folder) / "node").is_file()


def test_config_and_env_are_isolated(tmp_path, monkeypatch):
    new = peer.minimal_config(version="2026.9.6", port=1234, bind="loopback", token="t")
    old = peer.minimal_config(version="2026.4.29", port=1234, bind="loopback", token="t")
    assert new["models"] == {"catalogRefresh": {"enabled": False}}
    assert "models" not in old
    merged = peer.deep_merge(new, {"gateway": {"tls": {"enabled": True}}, "models": {"providers": {}}})
    assert merged["gateway"]["port"] == 1234 and merged["gateway"]["tls"] == {"enabled": True}
    assert merged["models"] == {"catalogRefresh": {"enabled": False}, "providers": {}}
    assert "tls" not in new["gateway"]  # inputs untouched

    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", "leak")
    env = peer.gateway_env(peer.install_dir(), tmp_path)
    assert "OPENCLAW_GATEWAY_TOKEN" not in env
    assert env["HOME"] == env["OPENCLAW_HOME"] == str(tmp_path)
    assert env["OPENCLAW_CONFIG_PATH"] == str(tmp_path / ".openclaw" / "openclaw.json")
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["OPENCLAW_OFFLINE"] == env["OPENCLAW_NO_AUTO_UPDATE"] == env["OPENCLAW_DISABLE_BONJOUR"] == "1"
    assert env["PATH"].split(os.pathsep)[0] == str(peer.node_bin_dir(peer.install_dir()))


def test_failed_npm_install_is_one_clear_line(tmp_path):
    env = dict(os.environ, GUARDIAN_PEER_CACHE=str(tmp_path / "cache"),
               npm_config_offline="true", npm_config_cache=str(tmp_path / "npm-cache"))
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "peer.py"), "install"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("peer: installing OpenClaw 2026.9.6 failed")
    log = tmp_path / "cache" / "openclaw-2026.9.6.install.log"
    assert str(log) in last and "ENOTCACHED" in log.read_text()
    assert not (tmp_path / "cache" / "openclaw-2026.9.6").exists()  # nothing that looks installed
    assert not any(p.name.startswith(".openclaw-2026.9.6.tmp") for p in (tmp_path / "cache").iterdir())


def test_fake_model_streams_and_holds(model):
    import http.client

    def post(body: dict) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", model.port, timeout=10)
        conn.request("POST", "/v1/chat/completions", json.dumps(body),
                     {"Content-Type": "application/json"})
        return conn.getresponse().read().decode()

    conn = http.client.HTTPConnection("127.0.0.1", model.port, timeout=10)
    conn.request("GET", "/v1/models")
    assert json.loads(conn.getresponse().read())["data"][0]["id"] == model.model_id
    plain = json.loads(post({"model": model.model_id, "messages": [{"role": "user", "content": "hi"}]}))
    assert plain["choices"][0]["message"]["content"] == model.reply
    model.hold.clear()
    t0 = time.monotonic()
    import threading
    threading.Timer(1.0, model.hold.set).start()
    sse = post({"model": model.model_id, "stream": True, "messages": []})
    assert time.monotonic() - t0 >= 0.9  # held until released
    datas = [line[6:] for line in sse.splitlines() if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    text = "".join((json.loads(d)["choices"][0]["delta"].get("content") or "")
                   for d in datas[:-1] if json.loads(d)["choices"])
    assert text == model.reply


def test_start_failure_raises_peer_error_with_log_tail():
    with pytest.raises(peer.PeerError) as exc:
        peer.start("broken", extra_config={"notAConfigKey": True}, timeout=60)
    assert "exited with code" in str(exc.value)
    assert "notAConfigKey" in str(exc.value)
    assert not [g for g in peer.running() if g.name == "broken"]


# ------------------------------------------------------------------------------------------
# two real gateways


def test_two_gateways_answer_and_keep_separate_sessions(gateways):
    pc_a, t440 = gateways["pc-a"], gateways["t440"]
    assert pc_a.port != t440.port and pc_a.token != t440.token
    assert pc_a.url == f"ws://127.0.0.1:{pc_a.port}"
    for gw in (pc_a, t440):
        status, body = gw.http_get("/healthz")
        assert status == 200 and json.loads(body)["ok"] is True

    key = f"agent:main:peer-test-{uuid.uuid4().hex[:8]}"
    a, t = Client(pc_a.url, pc_a.token), Client(t440.url, t440.token)
    try:
        for c in (a, t):
            assert c.hello["type"] == "hello-ok"
            assert set(SCOPES) <= set(c.hello["auth"]["scopes"])
        assert a.hello["server"]["version"] == peer.DEFAULT_VERSION
        created = a.ok("sessions.create", {"key": key, "label": "peer test"})
        assert created["key"] == key
        row = _row(a, key)
        assert row is not None and row["hasActiveRun"] is False
        assert _row(t, key) is None  # separate state roots
    finally:
        a.close()
        t.close()


def test_openclaw_cli_talks_to_its_own_gateway(gateways):
    res = gateways["t440"].openclaw("gateway", "call", "health", "--json", timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["ok"] is True


def test_real_agent_run_is_active_while_model_holds(gateways, model):
    gw = gateways["pc-a"]
    key = f"agent:main:peer-run-{uuid.uuid4().hex[:8]}"
    c = Client(gw.url, gw.token)
    try:
        model.hold.clear()
        before = len(model.chat_requests())
        idem = str(uuid.uuid4())
        sent = c.ok("chat.send", {"sessionKey": key, "message": "Say hello.", "idempotencyKey": idem})
        assert sent["status"] == "started" and sent["runId"]

        row = wait_until(lambda: (r := _row(c, key)) and r.get("hasActiveRun") and r, 30,
                         "hasActiveRun on the new session")
        assert row["status"] == "running"
        # the run really reached the model and is held there
        wait_until(lambda: len(model.chat_requests()) > before, 60, "a chat completion request")
        request = model.chat_requests()[-1]["body"]
        assert request["model"] == model.model_id and request.get("stream") is True
        # the model holds its reply now: the run must still be active on the gateway
        row = _row(c, key)
        assert row["hasActiveRun"] is True and row["status"] == "running"

        model.hold.set()
        row = wait_until(lambda: (r := _row(c, key)) and not r.get("hasActiveRun") and r, 60,
                         "the run to end after hold.set()")
        assert row["status"] == "done"
        history = c.ok("chat.history", {"sessionKey": key, "limit": 20})
        assert model.reply in json.dumps(history)
    finally:
        model.hold.set()
        c.close()


def test_stop_leaves_nothing_running(gateways):
    gws = [gateways["pc-a"], gateways["t440"]]
    roots = [gw.state_root for gw in gws]
    helpers = [gw.helper_pids() for gw in gws]
    assert all(helpers)  # workers + spawn broker (the broker is in a session of its own)
    locks = Path("/tmp") / f"openclaw-state-locks-{os.getuid()}"
    digests = [hashlib.sha256(os.path.realpath(r / ".openclaw/state/openclaw.sqlite").encode())
               .hexdigest()[:8] for r in roots]
    peer.stop_many(gws)
    for gw, root, pids, digest in zip(gws, roots, helpers, digests):
        assert not gw.running()
        assert not _pid_alive(gw.pid)
        with pytest.raises(ProcessLookupError):
            os.killpg(gw.pid, 0)  # nothing left in its process group
        assert not peer._alive_helpers(gw._helpers), pids
        assert not list(locks.glob(f"*.{digest}.lock.sqlite*"))
        assert peer._port_free(gw.port)
        assert not root.exists()  # temp state root removed
        gw.stop()  # idempotent
    assert not [g for g in peer.running() if g in gws]


# ------------------------------------------------------------------------------------------
# CLI


def test_cli_run_prints_json_and_stops_on_sigterm(cli_run):
    proc, port = cli_run
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    info = json.loads(line)
    assert info["name"] == "cli-gw" and info["port"] == port
    assert info["url"] == f"ws://127.0.0.1:{port}"
    assert _pid_alive(info["pid"])
    c = Client(info["url"], "cli-token")
    c.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not _pid_alive(info["pid"])
    assert peer._port_free(port)
    assert not Path(info["state_root"]).exists()


def test_gateways_started_together_get_distinct_ports_even_when_the_kernel_offers_one_twice(monkeypatch):
    """start_many picks every port before any gateway listens: a port offered again by the kernel (it is free until
    its gateway binds it) must not go to a second gateway, which would then answer with the first's token."""
    offered = iter([40100, 40100, 40100, 40101, 40101, 40102])
    monkeypatch.setattr(peer, "_ephemeral_port", lambda host: next(offered))
    monkeypatch.setattr(peer, "_port_free", lambda port, host="127.0.0.1": True)
    monkeypatch.setattr(peer, "install", lambda version: None)
    launched = []
    monkeypatch.setattr(peer, "_launch", lambda name, **spec: launched.append((name, spec["port"])) or name)
    assert peer.start_many([{"name": "a"}, {"name": "b"}, {"name": "c"}], wait=False) == ["a", "b", "c"]
    assert launched == [("a", 40100), ("b", 40101), ("c", 40102)]
