"""Hostile and bad input: any frame a gateway sends and any config file text give a valid result or
one clear error, never a traceback; hostile names are rendered inert everywhere.

The property tests run a representative number of examples by default and many more with
GUARDIAN_SOAK=1 (see the `soak` profile in conftest.py).
"""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websocket import ABNF, WebSocketTimeoutException

from guardian import gateway
from guardian.config import ConfigError, Host, Secret, parse

HOST = Host(name="h", url="ws://127.0.0.1:1", limit=10, token=Secret("tok", "test"), timeout=5)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)


def shaped(keys: dict) -> st.SearchStrategy:
    """Objects with the keys a parser looks for (each present or not) holding arbitrary values."""
    return st.fixed_dictionaries({}, optional={k: v for k, v in keys.items()})


hello_payloads = shaped({
    "type": st.sampled_from(["hello-ok", "hello"]) | json_values,
    "protocol": st.sampled_from([3, 4, 5, "4", 4.0, True]) | json_values,
    "auth": shaped({"scopes": st.lists(st.text(max_size=20) | json_values, max_size=3) | json_values,
                    "deviceToken": json_values, "method": json_values}) | json_values,
    "policy": shaped({"maxPayload": json_values}) | json_values,
    "snapshot": shaped({"sessionDefaults": shaped({"mainSessionKey": json_values}) | json_values}) | json_values,
    "features": shaped({"methods": json_values}) | json_values,
    "server": shaped({"version": json_values}) | json_values,
}) | json_values
error_objects = shaped({"code": json_values, "message": json_values, "retryable": json_values,
                        "retryAfterMs": json_values,
                        "details": shaped({"code": json_values, "retryAfterMs": json_values,
                                           "missingScope": json_values, "requestId": json_values}) | json_values}) | json_values


class Frame:
    def __init__(self, data: bytes):
        self.data = data


class ScriptedSocket:
    """Stands in for a websocket-client socket: plays `frames` ((opcode, bytes); "$ID" in them is
    replaced by the id of the last request sent), then times out as a silent gateway would."""

    def __init__(self, frames):
        self.frames = list(frames)
        self.last_id = ""

    def settimeout(self, seconds):
        pass

    def send(self, text):
        self.last_id = json.loads(text)["id"]

    def recv_data_frame(self):
        if not self.frames:
            raise WebSocketTimeoutException("timed out")
        opcode, data = self.frames.pop(0)
        return opcode, Frame(data.replace(b"$ID", self.last_id.encode()))

    def close(self, timeout=None):
        pass


def text_frame(value) -> tuple[int, bytes]:
    return ABNF.OPCODE_TEXT, json.dumps(value).encode()


raw_frames = st.tuples(st.sampled_from([ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CLOSE]), st.binary(max_size=64))
any_frames = st.lists(raw_frames | json_values.map(text_frame), max_size=6)


@given(raw_frames)
def test_receive_gives_an_object_none_or_a_gateway_error(frame):
    try:
        message = gateway.receive(ScriptedSocket([frame]), float("inf"), HOST, "anything")
    except gateway.GatewayError as exc:
        assert exc.code == "CLOSED" and str(exc).startswith("h: ")
    else:
        assert message is None or isinstance(message, dict)


@given(error_objects)
def test_an_error_frame_always_becomes_one_gateway_error(error):
    exc = gateway.GatewayError.from_frame(error)
    assert isinstance(exc.code, str) and isinstance(str(exc), str) and isinstance(exc.details, dict)
    assert exc.retry_after_ms is None or type(exc.retry_after_ms) is int
    exc.missing_scope  # noqa: B018 - reading it must not raise either


def answer(ok, body) -> dict:
    return {"type": "res", "id": "$ID", "ok": ok, ("payload" if ok else "error"): body}


@given(noise=any_frames, challenge=json_values | shaped({"nonce": json_values, "ts": json_values}),
       ok=json_values, body=hello_payloads | error_objects, device=st.booleans())
# the patched socket and the identity dir are the same for every example: sharing them is intended
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_any_handshake_gives_a_connection_or_one_gateway_error(monkeypatch, tmp_path, noise, challenge, ok, body, device):
    from guardian.identity import IdentityStore

    frames = [*noise, text_frame({"type": "event", "event": "connect.challenge", "payload": challenge}),
              *noise, text_frame(answer(ok, body))]
    monkeypatch.setattr(gateway, "_open_socket", lambda host, deadline: ScriptedSocket(frames))
    host = Host(name="h", url="ws://127.0.0.1:1", limit=10, token=Secret("tok", "test"), device=device)
    try:
        connection = gateway._connect_once(host, [gateway.READ], IdentityStore(tmp_path), float("inf"))
    except gateway.GatewayError as exc:
        assert str(exc).startswith("h") and "\n" not in str(exc)[:1]
    else:
        assert connection.hello.protocol in (3, 4) and all(isinstance(s, str) for s in connection.hello.scopes)


@given(noise=any_frames, answers=st.lists(st.tuples(json_values, json_values | error_objects), min_size=1, max_size=3))
def test_any_answers_to_calls_give_payloads_errors_or_one_gateway_error(noise, answers):
    frames = [*noise, *[text_frame(answer(ok, body)) for ok, body in answers]]
    connection = gateway.Connection(HOST, ScriptedSocket(frames), hello=None, timeout=5)
    try:
        results = connection.call_many([("sessions.list", {})])
    except gateway.GatewayError as exc:
        assert exc.code in ("TIMEOUT", "CLOSED")
    else:
        assert all(isinstance(r, (dict, gateway.GatewayError)) for r in results)


# --- the config loader -------------------------------------------------------------------------

KNOWN_KEYS = ["hosts", "pools", "alerts", "cleanup", "history", "state_dir", "url", "limit", "token_env", "token_file",
              "insecure", "device", "ca_file", "fingerprint", "timeout", "thresholds", "cooldown", "notice", "warning",
              "critical", "margin", "channels", "type", "name", "url_env", "idle_after", "max_per_run", "reserve",
              "protect", "agents", "keys", "labels", "retention", "forecast_window", "min_level", "predict", "rebound"]
config_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats() | st.text(max_size=12)
    | st.sampled_from(["ws://127.0.0.1:1", "wss://h.lan", "ws://10.0.0.1:1", "2h", "30m", "-1s", "webhook", "slack"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), inner, max_size=4),
    max_leaves=16)


def check_parse(text: str) -> None:
    try:
        config = parse(text, "g.yaml")
    except ConfigError as exc:
        message = str(exc)
        assert message and "Traceback" not in message
    else:
        assert config.hosts and all(h.limit > 0 for h in config.hosts.values())


@given(st.text(max_size=300))
def test_any_text_is_a_config_or_one_config_error(text):
    check_parse(text)


@given(st.dictionaries(st.sampled_from(KNOWN_KEYS), config_values, max_size=5),
       st.dictionaries(st.text(max_size=10), st.dictionaries(st.sampled_from(KNOWN_KEYS), config_values, max_size=5), max_size=2))
def test_any_config_shaped_yaml_is_a_config_or_one_config_error(root, hosts):
    check_parse(yaml.safe_dump({**root, "hosts": hosts}))


@pytest.mark.parametrize("text", [
    "a: &x [*x]\nhosts: {h: {url: 'ws://127.0.0.1:1', limit: 1}}",  # a recursive alias
    "hosts: " + "[" * 2000 + "]" * 2000,  # nesting deeper than the parser's recursion
    "hosts: {h: {url: 'ws://127.0.0.1:1', limit: 1, timeout: .inf}}",
    "hosts: {h: {url: 'ws://127.0.0.1:1\x00', limit: 1}}",
    "hosts: {h: {url: 'ws://[::1', limit: 1}}",
    "hosts: {h: {url: 'ws://127.0.0.1:99999', limit: 1}}",
    "hosts: !!python/object:os.system {}",
    "\ufeffhosts: {h: {url: 'ws://127.0.0.1:1', limit: 1}}",
])
def test_awkward_files(text):
    check_parse(text)
