"""Tests of the fake OpenClaw gateway, driven by websocket-client (the guardian's client)."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import uvloop
import websocket
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

try:
    from fake_gateway import FakeGateway, LoopThread
except ImportError:  # tests/ imported as a package
    from tests.fake_gateway import FakeGateway, LoopThread

READ, WRITE, ADMIN = "operator.read", "operator.write", "operator.admin"
ALL = [READ, WRITE, ADMIN]
CLOSED = (websocket.WebSocketConnectionClosedException, ConnectionError)


# --- client helpers -------------------------------------------------------------------------

def close_all(sockets):
    for ws in sockets:
        ws.close(timeout=0.5)
        ws.shutdown()  # also after a server-initiated close, which leaves the socket open


@pytest.fixture
def opened():
    """Sockets opened by a test; closed before the gateway fixtures stop, so that stop()
    does not have to wait for clients that never answer its close frame."""
    sockets: list[websocket.WebSocket] = []
    yield sockets
    close_all(sockets)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request):
    """Every test of a gateway runs on asyncio's loop (the gateway's own, as the tests use it) and on a shared
    uvloop (scripts/fake_fleet.py's): the same frames, byte for byte, on either."""
    if request.param == "asyncio":
        yield None
        return
    shared = LoopThread(new_loop=uvloop.new_event_loop)
    yield shared
    shared.stop()


def _gateway_fixture(opened, loop, **kwargs):
    with FakeGateway(**kwargs, loop=loop) as gateway:
        yield gateway
        close_all(opened)


@pytest.fixture
def gw(opened, loop):
    yield from _gateway_fixture(opened, loop)


@pytest.fixture
def legacy_gw(opened, loop):
    yield from _gateway_fixture(opened, loop, version="2026.4.29", legacy=True)


@pytest.fixture
def remote_gw(opened, loop):
    yield from _gateway_fixture(opened, loop, remote=True)


def open_ws(gateway, opened=None, origin=None):
    if origin:
        ws = websocket.create_connection(gateway.url, timeout=5, origin=origin)
    else:
        ws = websocket.create_connection(gateway.url, timeout=5, suppress_origin=True)
    if opened is not None:
        opened.append(ws)
    return ws


def recv_json(ws):
    return json.loads(ws.recv())


def read_challenge(ws):
    frame = recv_json(ws)
    assert frame["event"] == "connect.challenge"
    return frame["payload"]


def send_req(ws, method, params=None):
    rid = str(uuid.uuid4())
    frame = {"type": "req", "id": rid, "method": method}
    if params is not None:
        frame["params"] = params
    ws.send(json.dumps(frame))
    return rid


def wait_response(ws, rid):
    """The response with this id, skipping events and non-JSON frames like a client must."""
    while True:
        raw = ws.recv()
        try:
            frame = json.loads(raw)
        except ValueError:
            continue
        if frame.get("type") == "res" and frame.get("id") == rid:
            return frame


def call(ws, method, params=None):
    return wait_response(ws, send_req(ws, method, params))


def connect_params(token="secret", *, client_id="gateway-client", mode="backend", scopes=ALL,
                   min_protocol=3, max_protocol=4, **extra):
    params = {"minProtocol": min_protocol, "maxProtocol": max_protocol,
              "client": {"id": client_id, "version": "0.1.0", "platform": "linux", "mode": mode},
              "role": "operator", "scopes": list(scopes)}
    if token is not None:
        params["auth"] = {"token": token}
    params.update(extra)
    return params


def handshake(gateway, opened, params=None, origin=None):
    ws = open_ws(gateway, opened, origin=origin)
    read_challenge(ws)
    return ws, call(ws, "connect", connect_params() if params is None else params)


def connected(gateway, opened, **kwargs):
    ws, res = handshake(gateway, opened, connect_params(**kwargs))
    assert res["ok"], res
    return ws


def read_close(ws):
    """(code, reason) of the server's close frame, skipping data frames before it."""
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", frame.data[:2])[0], frame.data[2:].decode()


def assert_dropped(ws):
    """The TCP connection ends with no close frame (the client's 1006)."""
    with pytest.raises(CLOSED):
        while True:
            opcode, _ = ws.recv_data_frame(True)
            assert opcode != websocket.ABNF.OPCODE_CLOSE, "got a close frame, not a drop"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Device:
    """An Ed25519 device identity, signing like an OpenClaw client."""

    def __init__(self):
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = b64url(raw)
        self.id = hashlib.sha256(raw).hexdigest()

    def block(self, params, nonce, *, signed_at=None, version="v3", sign_nonce=None):
        signed_at = int(time.time() * 1000) if signed_at is None else signed_at
        client, auth = params["client"], params.get("auth", {})
        fields = [version, self.id, client["id"], client["mode"], params["role"],
                  ",".join(params["scopes"]), str(signed_at),
                  auth.get("token") or auth.get("deviceToken") or "", sign_nonce or nonce]
        if version == "v3":
            fields += [client["platform"].lower(), client.get("deviceFamily", "").lower()]
        signature = self.key.sign("|".join(fields).encode())
        return {"id": self.id, "publicKey": self.public_key, "signature": b64url(signature),
                "signedAt": signed_at, "nonce": nonce}


def device_connect(gateway, opened, device, *, origin=None, tamper=None, **kwargs):
    """Connect with a device identity; ``tamper(params)`` may spoil it after signing."""
    sign_kwargs = {k: kwargs.pop(k) for k in ("signed_at", "version", "sign_nonce")
                   if k in kwargs}
    device_token = kwargs.pop("device_token", None)
    params = connect_params(**kwargs)
    if device_token is not None:
        params.setdefault("auth", {})["deviceToken"] = device_token
    ws = open_ws(gateway, opened, origin=origin)
    nonce = read_challenge(ws)["nonce"]
    params["device"] = device.block(params, nonce, **sign_kwargs)
    if tamper:
        tamper(params)
    return ws, call(ws, "connect", params)


# --- handshake ------------------------------------------------------------------------------

def test_challenge_shape(gw, opened):
    ws = open_ws(gw, opened)
    frame = recv_json(ws)
    assert set(frame) == {"type", "event", "payload"}
    assert frame["type"] == "event" and frame["event"] == "connect.challenge"
    uuid.UUID(frame["payload"]["nonce"])
    assert abs(frame["payload"]["ts"] - time.time() * 1000) < 5000


@pytest.mark.parametrize("client_id, mode", [("gateway-client", "backend"), ("cli", "cli")])
def test_connect_grants_requested_scopes(gw, opened, client_id, mode):
    ws, res = handshake(gw, opened, connect_params(client_id=client_id, mode=mode))
    assert res["ok"] and res["type"] == "res"
    hello = res["payload"]
    assert hello["type"] == "hello-ok" and hello["protocol"] == 4
    assert hello["server"]["version"] == "2026.9.6"
    assert hello["auth"] == {"role": "operator", "scopes": ALL, "method": "token"}
    assert hello["policy"] == {"maxPayload": 26214400, "tickIntervalMs": 30000}
    assert hello["snapshot"]["sessionDefaults"]["mainSessionKey"] == "agent:main:main"
    assert {"health", "sessions.list", "sessions.delete"} <= set(hello["features"]["methods"])
    assert "shutdown" in hello["features"]["events"]
    record = gw.connects[-1]
    assert record["ok"] and record["granted_scopes"] == ALL
    assert record["params"]["client"]["id"] == client_id and "origin" not in record["headers"]
    assert call(ws, "sessions.list", {})["ok"]


def test_origin_header_clears_scopes(gw, opened):
    ws, res = handshake(gw, opened, origin="http://127.0.0.1:18789")
    assert res["ok"] and res["payload"]["auth"]["scopes"] == []
    assert gw.connects[-1]["headers"]["Origin"] == "http://127.0.0.1:18789"
    err = call(ws, "sessions.list", {})["error"]
    assert err["code"] == "FORBIDDEN" and err["details"]["missingScope"] == READ
    assert call(ws, "health")["ok"]  # no scope needed; the socket stayed open


def test_other_client_ids_lose_scopes(gw, legacy_gw, opened):
    _, res = handshake(gw, opened, connect_params(client_id="test", mode="test"))
    assert res["ok"] and res["payload"]["auth"]["scopes"] == []
    _, res = handshake(legacy_gw, opened, connect_params(client_id="cli", mode="cli"))
    assert res["ok"] and res["payload"]["auth"]["scopes"] == []
    _, res = handshake(legacy_gw, opened)
    assert res["payload"]["auth"]["scopes"] == ALL


def test_wrong_token_is_refused_and_closed(gw, opened):
    ws, res = handshake(gw, opened, connect_params(token="wrong"))
    assert res["error"] == {
        "code": "INVALID_REQUEST",
        "message": "unauthorized: gateway token mismatch (provide gateway auth token)",
        "details": {"code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch",
                    "canRetryWithDeviceToken": False,
                    "recommendedNextStep": "update_auth_credentials"}}
    assert read_close(ws)[0] == 1008
    assert gw.connects[-1]["ok"] is False


def test_no_token_and_no_device(gw, opened):
    ws, res = handshake(gw, opened, connect_params(token=None))
    assert res["error"] == {"code": "NOT_PAIRED", "message": "device identity required",
                            "details": {"code": "DEVICE_IDENTITY_REQUIRED"}}
    assert read_close(ws)[0] == 1008


def test_webchat_mode_is_refused(gw, opened):
    ws, res = handshake(gw, opened, connect_params(client_id="webchat", mode="webchat"))
    assert res["error"]["details"] == {"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED"}
    assert res["error"]["message"].startswith("origin not allowed")
    assert read_close(ws)[0] == 1008


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.update(x=1), "at root: unexpected property 'x'"),
    (lambda p: p["client"].update(extra="y"), "at /client: unexpected property 'extra'"),
    (lambda p: p["client"].update(id="guardian"), "at /client/id: must be equal to one of"),
    (lambda p: p.pop("client"), "at root: must have required property 'client'"),
    (lambda p: p.update(minProtocol="3"), "at /minProtocol: must be integer"),
])
def test_connect_schema_is_closed(gw, opened, mutate, message):
    params = connect_params()
    mutate(params)
    ws, res = handshake(gw, opened, params)
    assert res["error"]["code"] == "INVALID_REQUEST"
    assert res["error"]["message"].startswith(f"invalid connect params: {message}")
    assert read_close(ws)[0] == 1008


def test_first_request_must_be_connect(gw, opened):
    ws = open_ws(gw, opened)
    read_challenge(ws)
    res = call(ws, "health")
    assert res["error"]["code"] == "INVALID_REQUEST"
    assert read_close(ws)[0] == 1008


@pytest.mark.parametrize("legacy, min_p, max_p, expected", [
    (False, 3, 3, 4), (True, 4, 4, 3)])
def test_protocol_mismatch(opened, legacy, min_p, max_p, expected):
    with FakeGateway(legacy=legacy) as gateway:
        ws, res = handshake(gateway, opened,
                            connect_params(min_protocol=min_p, max_protocol=max_p))
        assert res["error"] == {"code": "INVALID_REQUEST", "message": "protocol mismatch",
                                "details": {"code": "PROTOCOL_MISMATCH",
                                            "expectedProtocol": expected}}
        assert read_close(ws)[0] == 1002
        _, res = handshake(gateway, opened)  # min 3 / max 4 works on both
        assert res["payload"]["protocol"] == expected
        close_all(opened)


# --- frames and methods ---------------------------------------------------------------------

def test_bad_frames_and_non_json(gw, opened):
    ws = connected(gw, opened)
    ws.send("not json at all")  # ignored
    ws.send(json.dumps({"type": "req", "id": 7, "method": "health"}))
    res = recv_json(ws)
    assert res["id"] == "invalid" and res["error"]["code"] == "INVALID_REQUEST"
    ws.send(json.dumps({"type": "req", "id": "a", "method": "health", "extra": 1}))
    res = recv_json(ws)
    assert res["id"] == "a" and "unexpected property 'extra'" in res["error"]["message"]
    ws.send(json.dumps([1, 2]))
    assert recv_json(ws)["error"]["code"] == "INVALID_REQUEST"
    assert call(ws, "health")["ok"]
    assert [r["method"] for r in gw.requests] == ["health"]  # only valid request frames


def test_unknown_method_and_params(gw, opened):
    ws = connected(gw, opened)
    assert call(ws, "nope.nope")["error"] == {"code": "INVALID_REQUEST",
                                              "message": "unknown method: nope.nope"}
    err = call(ws, "sessions.list", {"x": 1})["error"]
    assert err == {"code": "INVALID_REQUEST",
                   "message": "invalid sessions.list params: at root: unexpected property 'x'"}
    reader = connected(gw, opened, scopes=[READ])
    assert call(reader, "nope.nope")["error"]["details"]["missingScope"] == ADMIN


def test_missing_scope_shapes(gw, legacy_gw, opened):
    ws = connected(gw, opened, scopes=[READ])
    err = call(ws, "sessions.delete", {"key": "k"})["error"]
    assert err == {"code": "FORBIDDEN", "message": "missing scope: operator.admin",
                   "details": {"code": "MISSING_SCOPE", "missingScope": ADMIN,
                               "requiredScopes": [ADMIN]}}
    assert call(ws, "sessions.list", {})["ok"]  # the socket stays open
    old = connected(legacy_gw, opened, scopes=[])
    assert call(old, "sessions.list", {})["error"] == {
        "code": "INVALID_REQUEST", "message": "missing scope: operator.read"}
    admin_only = connected(gw, opened, scopes=[ADMIN])
    assert call(admin_only, "sessions.list", {})["ok"]  # admin implies read and write


def test_health_and_status(gw, opened):
    gw.add_session(agent="main")
    gw.add_session(agent="ops", archived=True)
    ws = connected(gw, opened)
    health = call(ws, "health")["payload"]
    assert health["ok"] and health["sessions"]["count"] == 2  # archived included
    assert {a["agentId"]: a["sessions"]["count"] for a in health["agents"]} == {"main": 1,
                                                                                "ops": 1}
    status = call(ws, "status")["payload"]
    assert status["runtimeVersion"] == "2026.9.6"
    assert status["sessions"]["byAgent"] == [{"agentId": "main", "count": 1},
                                             {"agentId": "ops", "count": 1}]


def test_sessions_list_paging(gw, opened):
    now = int(time.time() * 1000)
    keys = [gw.add_session(updated_at=now - i * 1000)["key"] for i in range(5)]
    ws = connected(gw, opened)
    seen, offset, pages = [], 0, []
    while offset is not None:
        page = call(ws, "sessions.list", {"limit": 2, "offset": offset})["payload"]
        pages.append(page)
        seen += [row["key"] for row in page["sessions"]]
        offset = page["nextOffset"]
    assert seen == keys  # newest first
    assert [(p["count"], p["totalCount"], p["hasMore"], p["nextOffset"]) for p in pages] == [
        (2, 5, True, 2), (2, 5, True, 4), (1, 5, False, None)]
    assert pages[0]["limitApplied"] == 2 and pages[0]["path"] == "(multiple)"
    row = pages[0]["sessions"][0]
    assert row["kind"] == "direct" and row["activeRunIds"] == [] and row["hasActiveRun"] is False
    for _ in range(101):
        gw.add_session()
    page = call(ws, "sessions.list", {})["payload"]
    assert (page["count"], page["totalCount"], page["limitApplied"]) == (100, 106, 100)


def test_sessions_list_filters(gw, opened):
    now = int(time.time() * 1000)
    fresh = gw.add_session(updated_at=now - 60_000, label="fresh")["key"]
    stale = gw.add_session(updated_at=now - 3 * 3600_000)["key"]
    archived = gw.add_session(archived=True)["key"]
    running = gw.add_session(agent="ops", has_active_run=True)["key"]
    ws = connected(gw, opened)

    def keys(**params):
        return {r["key"] for r in call(ws, "sessions.list", params)["payload"]["sessions"]}

    assert keys() == {fresh, stale, running}
    assert keys(activeMinutes=10) == {fresh, running}
    assert keys(archived=True) == {archived}
    assert keys(archived="all") == {fresh, stale, archived, running}
    assert keys(agentId="ops") == keys(activeOnly=True) == {running}
    assert keys(label="fresh") == keys(search="FRE") == {fresh}
    rows = call(ws, "sessions.list", {"activeOnly": True})["payload"]["sessions"]
    assert rows[0]["status"] == "running" and "activeRunIds" not in rows[0]


def test_sessions_delete(gw, opened):
    row = gw.add_session()
    running = gw.add_session(has_active_run=True)
    gw.add_session("agent:main:main")
    ws = connected(gw, opened)
    res = call(ws, "sessions.delete", {"key": row["key"], "expectedSessionId": row["sessionId"],
                                       "expectedSessionUpdatedAt": row["updatedAt"]})["payload"]
    assert res["ok"] and res["deleted"] and res["key"] == row["key"]
    assert res["archived"][0].startswith(f"/state/agents/main/sessions/{row['sessionId']}.jsonl"
                                         ".deleted.")
    assert row["key"] not in gw.sessions
    assert call(ws, "sessions.delete", {"key": "gone"})["payload"] == {
        "ok": True, "key": "gone", "deleted": False, "archived": []}
    assert call(ws, "sessions.delete", {"key": "agent:main:main"})["error"] == {
        "code": "INVALID_REQUEST", "message": "Cannot delete the main session (agent:main:main)."}
    assert call(ws, "sessions.delete", {"key": running["key"]})["payload"]["deleted"]


def test_delete_guard_refuses_a_touched_session(gw, opened):
    row = gw.add_session()
    ws = connected(gw, opened)
    listed = call(ws, "sessions.list", {})["payload"]["sessions"][0]
    gw.touch(row["key"])  # it woke up after the listing
    err = call(ws, "sessions.delete", {"key": listed["key"],
                                       "expectedSessionId": listed["sessionId"],
                                       "expectedSessionUpdatedAt": listed["updatedAt"]})["error"]
    assert err == {"code": "INVALID_REQUEST",
                   "message": f"Session {row['key']} changed before deletion. Retry.",
                   "details": {"reason": "session-changed"}}
    err = call(ws, "sessions.delete", {"key": row["key"], "expectedSessionId": "other"})["error"]
    assert err["details"] == {"reason": "session-changed"}
    assert row["key"] in gw.sessions


def test_fail_deletes_and_delete_latency(gw, opened):
    bad, good = gw.add_session()["key"], gw.add_session()["key"]
    gw.fail_deletes.add(bad)
    ws = connected(gw, opened)
    assert call(ws, "sessions.delete", {"key": bad})["error"] == {
        "code": "UNAVAILABLE", "message": "delete failed", "retryable": False}
    gw.delete_latency = 0.05
    others = [connected(gw, opened) for _ in range(3)]
    started = time.monotonic()
    rids = [send_req(o, "sessions.delete", {"key": k})
            for o, k in zip(others, [good, "x", "y"])]
    assert [wait_response(o, r)["ok"] for o, r in zip(others, rids)] == [True] * 3
    assert time.monotonic() - started >= 0.15  # one delete at a time


def test_sessions_create_patch_abort(gw, opened):
    ws = connected(gw, opened)
    res = call(ws, "sessions.create", {"label": "t1"})["payload"]
    assert res["ok"] and res["entry"]["label"] == "t1" and res["key"] in gw.sessions
    assert call(ws, "sessions.patch", {"key": res["key"], "archived": True})["ok"]
    assert call(ws, "sessions.list", {})["payload"]["totalCount"] == 0
    running = gw.add_session(has_active_run=True)["key"]
    assert call(ws, "sessions.abort", {"key": running})["payload"]["aborted"]
    assert gw.sessions[running]["status"] == "killed"
    assert gw.sessions[running]["hasActiveRun"] is False


def test_legacy_list_and_delete(legacy_gw, opened):
    rows = [legacy_gw.add_session() for _ in range(120)]
    ws = connected(legacy_gw, opened)
    hello = legacy_gw.connects[-1]
    assert hello["ok"]
    page = call(ws, "sessions.list", {})["payload"]
    assert set(page) == {"ts", "path", "count", "defaults", "sessions"}
    assert page["count"] == 120  # no default page limit
    assert set(page["sessions"][0]) == {"key", "kind", "sessionId", "updatedAt", "model",
                                        "modelProvider", "totalTokensFresh"}
    assert call(ws, "sessions.list", {"limit": 7})["payload"]["count"] == 7
    err = call(ws, "sessions.delete", {"key": rows[0]["key"],
                                       "expectedSessionId": rows[0]["sessionId"]})["error"]
    assert err["message"] == ("invalid sessions.delete params: at root: unexpected property "
                              "'expectedSessionId'")
    assert call(ws, "sessions.delete", {"key": rows[0]["key"]})["payload"]["deleted"]


# --- device identity and pairing ------------------------------------------------------------

def test_loopback_device_is_paired_silently(gw, opened):
    device = Device()
    # With a device the Origin header does not matter: the device is paired.
    ws, res = device_connect(gw, opened, device, origin="http://localhost")
    auth = res["payload"]["auth"]
    assert auth["scopes"] == ALL and auth["deviceToken"]
    assert gw.paired_devices[device.id]["deviceToken"] == auth["deviceToken"]
    _, res = device_connect(gw, opened, device, version="v2")
    assert res["ok"] and res["payload"]["auth"]["deviceToken"] == auth["deviceToken"]


@pytest.mark.parametrize("kwargs, code", [
    ({"tamper": lambda p: p["scopes"].pop()}, "DEVICE_AUTH_SIGNATURE_INVALID"),
    ({"tamper": lambda p: p["device"].update(id="0" * 64)}, "DEVICE_AUTH_DEVICE_ID_MISMATCH"),
    ({"tamper": lambda p: p["device"].update(nonce="n")}, "DEVICE_AUTH_NONCE_MISMATCH"),
    ({"sign_nonce": "other"}, "DEVICE_AUTH_SIGNATURE_INVALID"),
    ({"signed_at": int(time.time() * 1000) - 180_000}, "DEVICE_AUTH_SIGNATURE_EXPIRED"),
])
def test_device_identity_failures(gw, opened, kwargs, code):
    ws, res = device_connect(gw, opened, Device(), **kwargs)
    assert res["error"]["code"] == "INVALID_REQUEST"
    assert res["error"]["details"]["code"] == code
    assert read_close(ws)[0] == 1008


def test_remote_pairing_flow(remote_gw, opened):
    gw = remote_gw
    _, res = handshake(gw, opened)  # token only, from "another host": scopes cleared
    assert res["ok"] and res["payload"]["auth"]["scopes"] == []

    device = Device()
    ws, res = device_connect(gw, opened, device)
    err = res["error"]
    assert err["code"] == "NOT_PAIRED"
    assert err["message"] == "pairing required: device is not approved yet"
    details = err["details"]
    request_id = details["requestId"]
    assert details == {"code": "PAIRING_REQUIRED", "reason": "not-paired",
                       "requestId": request_id,
                       "remediationHint": "Approve this device from the pending pairing requests.",
                       "deviceId": device.id, "requestedRole": "operator",
                       "requestedScopes": ALL}
    assert read_close(ws) == (
        1008, f"pairing required: device is not approved yet (requestId: {request_id})")
    _, res = device_connect(gw, opened, device)
    assert res["error"]["details"]["requestId"] == request_id  # same pending request
    assert gw.pending_pairings[request_id]["deviceId"] == device.id

    gw.approve(request_id)
    _, res = device_connect(gw, opened, device)
    auth = res["payload"]["auth"]
    assert auth["scopes"] == ALL and auth["method"] == "token"
    token = auth["deviceToken"]
    _, res = device_connect(gw, opened, device)
    assert res["payload"]["auth"]["deviceToken"] == token

    ws, res = device_connect(gw, opened, device, token=None, device_token=token)
    assert res["payload"]["auth"]["method"] == "device-token"
    assert res["payload"]["auth"]["scopes"] == ALL
    assert call(ws, "sessions.delete", {"key": "k"})["ok"]
    _, res = device_connect(gw, opened, device, token=None, device_token="wrong")
    assert res["error"]["details"]["code"] == "AUTH_DEVICE_TOKEN_MISMATCH"


def test_remote_scope_upgrade_needs_approval(remote_gw, opened):
    device = Device()
    _, res = device_connect(remote_gw, opened, device, scopes=[READ])
    remote_gw.approve(res["error"]["details"]["requestId"])
    assert device_connect(remote_gw, opened, device, scopes=[READ])[1]["ok"]
    ws, res = device_connect(remote_gw, opened, device, scopes=ALL)
    assert res["error"]["message"] == ("pairing required: device is asking for more scopes "
                                       "than currently approved")
    assert res["error"]["details"]["reason"] == "scope-upgrade"
    assert read_close(ws)[0] == 1008
    remote_gw.approve(res["error"]["details"]["requestId"])
    assert device_connect(remote_gw, opened, device, scopes=ALL)[1]["payload"]["auth"][
        "scopes"] == ALL


# --- knobs ----------------------------------------------------------------------------------

def test_silent(gw, opened):
    gw.silent = True
    ws = open_ws(gw, opened)
    ws.settimeout(0.1)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()


def test_challenge_timeout(gw, opened):
    gw.challenge_timeout = 0.05
    ws = open_ws(gw, opened)
    read_challenge(ws)
    assert read_close(ws)[0] == 1000


def test_close_after_challenge(gw, opened):
    gw.close_after_challenge = True
    ws = open_ws(gw, opened)
    read_challenge(ws)
    assert_dropped(ws)


def test_garbage_before_response(gw, opened):
    gw.garbage_before_response = True
    ws = connected(gw, opened)  # the helper skips the garbage before hello-ok
    send_req(ws, "health")
    assert ws.recv() == "\x00garbage{"
    assert recv_json(ws)["ok"]


def test_events_before_response(gw, opened):
    ws = connected(gw, opened)
    gw.events_before_response = 3
    rid = send_req(ws, "health")
    frames = [recv_json(ws) for _ in range(4)]
    assert [(f["event"], f["seq"]) for f in frames[:3]] == [("tick", 1), ("health", 2),
                                                            ("presence", 3)]
    assert frames[3]["id"] == rid
    send_req(ws, "health")
    assert recv_json(ws)["seq"] == 4


def test_unavailable_connects(gw, opened):
    gw.unavailable_connects = 2
    for _ in range(2):
        ws, res = handshake(gw, opened)
        assert res["error"]["code"] == "UNAVAILABLE"
        assert res["error"]["retryable"] is True and res["error"]["retryAfterMs"] == 50
        assert read_close(ws)[0] == 1013
    assert handshake(gw, opened)[1]["ok"] and gw.unavailable_connects == 0


def test_drop_after_requests(gw, opened):
    gw.drop_after_requests = 2
    ws = connected(gw, opened)
    assert call(ws, "health")["ok"] and call(ws, "health")["ok"]
    assert_dropped(ws)
    gw.drop_after_requests = 0
    assert_dropped(connected(gw, opened))


def test_latency_overlaps_across_connections(gw, opened):
    gw.latency = 0.1
    results = []

    def client():
        ws = connected(gw, opened)
        results.append(call(ws, "health")["ok"])

    threads = [threading.Thread(target=client) for _ in range(5)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 5
    assert time.monotonic() - started < 0.8  # 5 x (connect + health) sequentially = 1 s


def test_latency_overlaps_for_requests_pipelined_on_one_connection(gw, opened):
    # A real 2026.9.6 answers a `health` sent behind a slow `status` first (measured): pipelined requests
    # are handled at once, so each answer comes `latency` after its own request arrived, not after the one before.
    ws = connected(gw, opened)
    gw.latency = 0.2
    started = time.monotonic()
    ids = [send_req(ws, "health") for _ in range(3)]
    assert all(wait_response(ws, rid)["ok"] for rid in ids)
    assert time.monotonic() - started < 0.4  # one after another: 0.6 s


def _data_segments_in(sock) -> int:
    """TCP data segments this socket has received (Linux's tcp_info.tcpi_data_segs_in)."""
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160), 152)[0]


@pytest.mark.parametrize("latency", [0.0, 0.05])
def test_answers_due_in_one_turn_leave_in_one_write(gw, opened, latency):
    # The fleet's fakes (scripts/fake_fleet.py) answer a check's pipelined round with one loopback send: the
    # benchmark measures the guardian, not the fake's syscalls. The frames are the same, in order; the segments fewer.
    ws = connected(gw, opened)
    gw.latency = latency
    before = _data_segments_in(ws.sock)
    ws.sock.sendall(b"".join(websocket.ABNF.create_frame(json.dumps({"type": "req", "id": f"r{i}", "method": "health"}),
                                                         websocket.ABNF.OPCODE_TEXT).format() for i in range(3)))
    assert [(a["id"], a["ok"]) for a in (recv_json(ws) for _ in range(3))] == [("r0", True), ("r1", True),
                                                                                 ("r2", True)]
    assert _data_segments_in(ws.sock) - before == 1


# --- lifecycle ------------------------------------------------------------------------------

def test_stop_sends_shutdown_then_1012_and_releases_the_port():
    gateway = FakeGateway().start()
    ws = connected(gateway, None)
    busy = connected(gateway, None)
    gateway.latency = 5.0
    send_req(busy, "health")  # a response stuck in latency must not hold stop()
    silent_conn = open_ws(gateway)  # never sends connect
    port = gateway.port
    started = time.monotonic()
    gateway.stop()
    assert time.monotonic() - started < 2
    event = recv_json(ws)
    assert event["event"] == "shutdown" and event["seq"] == 1
    assert read_close(ws)[0] == 1012
    read_challenge(silent_conn)
    assert read_close(silent_conn)[0] == 1012
    close_all([ws, busy, silent_conn])
    gateway.stop()  # idempotent
    # The port is free again: a gateway "restarted" on it serves new connections.
    with FakeGateway(port=port) as again:
        ws = connected(again, None)
        assert call(ws, "health")["ok"]
        close_all([ws])


def test_gateways_are_independent(opened):
    with FakeGateway("a") as a, FakeGateway("b", legacy=True) as b:
        a.add_session()
        assert a.url != b.url
        wa = connected(a, opened, token="a")
        wb = connected(b, opened, token="b")
        assert call(wa, "health")["payload"]["sessions"]["count"] == 1
        assert call(wb, "health")["payload"]["sessions"]["count"] == 0
        assert handshake(b, opened, connect_params(token="a"))[1]["ok"] is False
        close_all(opened)


def test_gateways_on_one_loop_are_independent_and_stop_alone(opened):
    """scripts/fake_fleet.py serves its gateways from one event loop: each keeps its own store, and one stopping
    (its port released) leaves the others and the loop serving."""
    loop = LoopThread()
    try:
        a, b = FakeGateway("a", loop=loop).start(), FakeGateway("b", loop=loop).start()
        a.add_session()
        wa, wb = connected(a, opened, token="a"), connected(b, opened, token="b")
        assert [call(ws, "health")["payload"]["sessions"]["count"] for ws in (wa, wb)] == [1, 0]
        a.stop()
        assert read_close(wa)[0] == 1012
        with pytest.raises(ConnectionRefusedError):
            open_ws(a)
        assert call(wb, "health")["ok"]
        assert call(connected(b, opened, token="b"), "health")["ok"]
        b.stop()
    finally:
        close_all(opened)
        loop.stop()


def test_a_gateway_not_recording_answers_the_same_and_keeps_nothing(gw, opened):
    gw.add_session("agent:main:a")
    answers = []
    for recording in (True, False):
        gw.recording = recording
        ws = connected(gw, opened)
        answers.append(call(ws, "sessions.list", {"limit": 1})["payload"]["totalCount"])
    assert answers == [1, 1]
    assert len(gw.requests) == 1 and len(gw.connects) == 1


def test_fake_fleet_over_processes_commands_the_gateways_it_names(opened):
    """scripts/fake_fleet.py --processes: gateways numbered across its children, a command reaching those named."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "fake_fleet.py"
    fleet = subprocess.Popen([sys.executable, str(script), "--gateways", "3", "--processes", "2"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(fleet.stdout.readline())
        fleet.stdin.write(json.dumps({"gateways": [1, 2], "sessions": 2}) + "\n")
        fleet.stdin.flush()
        assert fleet.stdout.readline().strip() == "ok"
        counts = []
        for url in started["urls"]:
            ws = websocket.create_connection(url, timeout=5, suppress_origin=True)
            opened.append(ws)
            read_challenge(ws)
            assert call(ws, "connect", connect_params(started["token"]))["ok"]
            counts.append(call(ws, "health")["payload"]["sessions"]["count"])
        assert counts == [0, 2, 2]
        assert len({url.rsplit(":", 1)[1] for url in started["urls"]}) == 3
    finally:
        close_all(opened)
        fleet.stdin.close()
        assert fleet.wait(timeout=30) == 0


@pytest.mark.parametrize("missing", ["uvloop", "websockets"])
def test_fake_fleet_without_a_test_extra_says_which_in_one_sentence(missing):
    """A venv made before a test extra joined (the soak's, once) gets one sentence naming the module and the fix,
    not a traceback, and the benches stop on that sentence instead of reading its empty first line as JSON."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "fake_fleet.py"
    without = (f"import runpy, sys; sys.modules[{missing!r}] = None; sys.argv = [{str(script)!r}, '--gateways', '1']; "
               f"runpy.run_path({str(script)!r}, run_name='__main__')")
    ran = subprocess.run([sys.executable, "-c", without], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1 and ran.stdout == ""
    assert "Traceback" not in ran.stderr and len(ran.stderr.strip().splitlines()) == 1
    assert missing in ran.stderr and "scripts/setup.sh" in ran.stderr


def test_legacy_list_rejects_offset_like_2026_4_29():
    from fake_gateway import FakeGateway

    with FakeGateway(legacy=True) as gateway:
        ws = websocket.create_connection(gateway.url, timeout=5, suppress_origin=True)
        json.loads(ws.recv())
        ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": {
            "minProtocol": 3, "maxProtocol": 4, "role": "operator", "scopes": ["operator.read"],
            "client": {"id": "gateway-client", "version": "t", "platform": "linux", "mode": "backend"},
            "auth": {"token": "secret"}}}))
        json.loads(ws.recv())
        ws.send(json.dumps({"type": "req", "id": "l", "method": "sessions.list", "params": {"limit": 5, "offset": 0}}))
        reply = json.loads(ws.recv())
        ws.close()
    assert reply["error"]["message"] == "invalid sessions.list params: at root: unexpected property 'offset'"
