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

from guardian.adapters import gateway, wire
from guardian.settings.load import parse
from guardian.settings.model import ConfigError, Host
from guardian.settings.secrets import Secret

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
error_objects = (
    shaped(
        {
            "code": json_values,
            "message": json_values,
            "retryable": json_values,
            "retryAfterMs": json_values,
            "details": shaped(
                {
                    "code": json_values,
                    "retryAfterMs": json_values,
                    "missingScope": json_values,
                    "requestId": json_values,
                }
            )
            | json_values,
        }
    )
    | json_values
)


class ScriptedSocket:
    """Stands in for gateway.WebSocket: plays `frames` ((opcode, bytes); "$ID" in them is
    replaced by the id of the last request sent), then times out as a silent gateway would."""

    def __init__(self, frames):
        self.frames = list(frames)
        self.last_id = ""

    def settimeout(self, seconds):
        pass

    def send(self, text):
        self.last_id = json.loads(text)["id"]

    def recv_message(self):
        if not self.frames:
            raise TimeoutError("timed out")
        opcode, data = self.frames.pop(0)
        return opcode, data.replace(b"$ID", self.last_id.encode())

    def close(self, timeout=None):
        pass


def text_frame(value) -> tuple[int, bytes]:
    return wire.TEXT, json.dumps(value).encode()


raw_frames = st.tuples(
    st.sampled_from([wire.TEXT, wire.BINARY, wire.CLOSE]), st.binary(max_size=64)
)
frame_like = shaped({"type": st.sampled_from(["res", "event"]) | json_values, "id": st.just("$ID") | json_values,
                     "ok": json_values, "payload": json_values, "error": json_values, "event": json_values})
any_frames = st.lists(raw_frames | (json_values | frame_like).map(text_frame), max_size=6)


@given(raw_frames)
def test_receive_gives_an_object_none_or_a_gateway_error(frame):
    try:
        message = gateway.drive(gateway.receive_steps(ScriptedSocket([frame]), float("inf"), HOST, "anything"))
    except gateway.GatewayError as exc:
        assert exc.code == "CLOSED" and str(exc).startswith("h: ")
    else:
        assert message is None or isinstance(message, dict)


@given(error_objects)
def test_an_error_frame_always_becomes_one_gateway_error(error):
    exc = gateway.GatewayError.from_frame(error)
    assert isinstance(exc.code, str) and isinstance(str(exc), str) and isinstance(exc.details, dict)
    assert exc.retry_after_ms is None or type(exc.retry_after_ms) is int


def answer(ok, body) -> dict:
    return {"type": "res", "id": "$ID", "ok": ok, ("payload" if ok else "error"): body}


@given(noise=any_frames, challenge=json_values | shaped({"nonce": json_values, "ts": json_values}),
       ok=json_values, body=hello_payloads | error_objects, device=st.booleans())
# the patched socket and the identity dir are the same for every example: sharing them is intended
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_any_handshake_gives_a_connection_or_one_gateway_error(
    monkeypatch, tmp_path, noise, challenge, ok, body, device
):
    from guardian.adapters.identity import IdentityStore

    frames = [*noise, text_frame({"type": "event", "event": "connect.challenge", "payload": challenge}),
              *noise, text_frame(answer(ok, body))]
    monkeypatch.setattr(gateway, "_open_socket", lambda host, deadline: ScriptedSocket(frames))
    host = Host(name="h", url="ws://127.0.0.1:1", limit=10, token=Secret("tok", "test"), device=device)
    try:
        steps = gateway._connect_once_steps(host, [gateway.READ], IdentityStore(tmp_path), float("inf"))
        connection = gateway.drive(steps)
    except gateway.GatewayError as exc:
        assert str(exc).startswith("h") and "\n" not in str(exc)[:1]
    else:
        assert connection.hello.protocol in (3, 4) and all(isinstance(s, str) for s in connection.hello.scopes)


class BrokenPipe(ScriptedSocket):
    def send(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_connection_that_breaks_as_connect_is_sent_is_one_closed_sentence(monkeypatch):
    """The gateway dropped the connection right after its challenge: our `connect` cannot be sent."""
    challenge = text_frame({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1}})
    monkeypatch.setattr(gateway, "_open_socket", lambda host, deadline: BrokenPipe([challenge]))
    with pytest.raises(gateway.GatewayError) as raised:
        gateway.connect(HOST, [gateway.READ])
    assert raised.value.code == "CLOSED" and str(raised.value).startswith("h: the connection dropped while sending")


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
    st.none()
    | st.booleans()
    | st.integers(-5, 200)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["ws://127.0.0.1:1", "wss://h.lan", "ws://10.0.0.1:1", "2h", "30m", "-1s", "webhook", "slack"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)


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


@given(
    st.dictionaries(st.sampled_from(KNOWN_KEYS), config_values, max_size=5),
    st.dictionaries(
        st.text(max_size=10), st.dictionaries(st.sampled_from(KNOWN_KEYS), config_values, max_size=5), max_size=2
    ),
)
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


# --- state.json and identity files edited by hand or by accident -------------------------------------


def state_file(version: int, channel_fields: dict, **subject_fields) -> st.SearchStrategy:
    """state.json of `version` with subjects and channel memories of these fields, each present or not."""
    channels = st.dictionaries(st.text(max_size=6), shaped(channel_fields) | json_values, max_size=2) | json_values
    subject = shaped({"level": st.sampled_from(["ok", "notice", "warning", "critical"]) | json_values,
                      "failures": json_values, "count": json_values, "checked_at": json_values, **subject_fields,
                      "channels": channels}) | json_values
    return st.builds(lambda subjects: {"version": version, "subjects": subjects},
                     st.dictionaries(st.text(max_size=12), subject, max_size=3))


@given(state_file(1, {"level": st.sampled_from(["ok", "critical"]) | json_values, "repeat_after": json_values,
                      "unreachable": json_values, "unreachable_repeat_after": json_values})
       | state_file(2, {"level": st.sampled_from(["ok", "warning"]) | json_values, "unreachable": json_values,
                        "told_at": st.dictionaries(st.sampled_from(["critical", "unreachable", "growth"])
                                                   | st.text(max_size=8), st.floats() | json_values, max_size=3)
                        | json_values}, since=json_values))
def test_a_state_file_is_used_only_when_every_field_is_what_we_write(data):
    from guardian.adapters.state import State
    from guardian.core import policy
    from guardian.settings.model import Alerts

    try:
        state = State.from_json(json.dumps(data))
    except (ValueError, TypeError, AttributeError):
        return  # moved aside with a warning by StateFile
    for (subject_id, _), memory in state.memories.items():  # the decisions run on whatever was accepted
        policy.decide(memory, state.subject(subject_id), Alerts(), 1_800_000_000.0, "warning")
        policy.decide_anomaly(memory, "growth", Alerts(), 1_800_000_000.0)


def states() -> st.SearchStrategy:
    """Any State the guardian itself could hold: its own records, every field of its own types."""
    from guardian.adapters.state import State
    from guardian.core.plan import Posted
    from guardian.core.records import ChannelMemory, SubjectState

    times, levels = st.floats(0, 2e9), st.sampled_from(["ok", "notice", "warning", "critical"])
    subject_ids = st.sampled_from(["host:a", "pool:p", "agent:a/sales", "host:a/growth", "host:\u00e9"])
    channels = st.sampled_from(["slack", "mail", "am"])
    return st.builds(
        State,
        st.dictionaries(subject_ids, st.builds(SubjectState, levels, st.integers(0, 9), st.none() | st.integers(0),
                                               st.none() | times, st.none() | times), max_size=4),
        st.dictionaries(st.tuples(subject_ids, channels),
                        st.builds(ChannelMemory, levels, st.dictionaries(
                            st.sampled_from(["notice", "warning", "critical", "unreachable", "growth"]), times,
                            max_size=3), st.booleans()), max_size=4),
        st.dictionaries(st.tuples(subject_ids, channels), st.builds(Posted, levels, st.booleans()), max_size=3),
        st.dictionaries(st.sampled_from(["host:gone", "channel:old"]), times, max_size=2))


@given(states())
def test_a_state_is_read_back_as_it_was_written(state):
    from guardian.adapters.state import State
    from guardian.core.records import SubjectState

    # a channel's memory is kept under its subject: one never checked is written with a fresh SubjectState
    subjects = {**{sid: SubjectState() for sid, _ in [*state.memories, *state.posted]}, **state.subjects}
    assert State.from_json(state.to_json()) == State(subjects, state.memories, state.posted, state.departed)


# --- hostile names end to end -----------------------------------------------------------------------

HOSTILE_KEYS = ["agent:main:\x1b[2J\x1b[31mred", "agent:main:forged\nguardian alert: CRITICAL fake 99%",
                "agent:main:<script>alert(1)</script>", "agent:main:<!channel> @everyone <@U1>",
                "agent:main:" + "x" * 5000, "agent:main:\u202eevil\u200b\x00"]
HOSTILE_ERROR = "<!channel> @everyone \x1b[2J\nguardian alert: forged <b>x</b> **y** [z](http://evil) " + "w" * 3000


def printable_lines(text: str) -> list[str]:
    lines = text.splitlines()
    assert all(ch.isprintable() for line in lines for ch in line), [line for line in lines if not line.isprintable()][
        :1
    ]
    return lines


def test_hostile_session_keys_are_inert_in_every_cleanup_output(fake, write_config, cli, state_dir):
    import time as clock

    for key in HOSTILE_KEYS:
        fake.add_session(key, updated_at=int(clock.time() * 1000) - 3 * 3600 * 1000)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}})
    for fmt in ("plain", "table"):
        plan = cli("cleanup", "--config", config, "--dry-run", "--format", fmt)
        assert not any(line.startswith("guardian alert:") for line in printable_lines(plan.stdout))
    as_json = json.loads(cli("cleanup", "--config", config, "--dry-run", "--json").stdout)
    assert sorted(p["key"] for p in as_json["hosts"][0]["plan"]) == sorted(HOSTILE_KEYS)  # exact, escaped by JSON
    fake.fail_deletes = set(HOSTILE_KEYS)
    failed = cli("cleanup", "--config", config, "--format", "plain")
    assert failed.exit_code == 1 and len(printable_lines(failed.stdout)) == 1 + len(HOSTILE_KEYS)
    records = (state_dir / "audit.jsonl").read_text().splitlines()
    assert all(line.isascii() and line.isprintable() for line in records)  # one line per record, whatever the key
    assert {json.loads(line)["key"] for line in records if '"outcome"' in line} == set(HOSTILE_KEYS)


def test_a_hostile_gateway_error_is_inert_in_every_output_and_channel(fake, write_config, cli, receivers, monkeypatch,
                                                                       state_dir):
    from fake_gateway import GatewayError as Refusal

    def refuse(method, params):
        raise Refusal("UNAVAILABLE", HOSTILE_ERROR)

    fake.on_request = refuse
    slack, discord, telegram, hook = receivers(), receivers(), receivers(), receivers()
    telegram.script = [(200, {"Content-Type": "application/json"}, b'{"ok": true, "result": {"message_id": 1}}')]
    monkeypatch.setenv("SLACK_URL", slack.url)
    monkeypatch.setenv("DISCORD_URL", discord.url)
    monkeypatch.setenv("BOT_TOKEN", "123:abc")
    monkeypatch.setenv("HOOK_URL", hook.url)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          alerts={"unreachable_after": 1, "channels": [
                              {"type": "slack", "url_env": "SLACK_URL"}, {"type": "discord", "url_env": "DISCORD_URL"},
                              {"type": "telegram", "token_env": "BOT_TOKEN", "chat_id": 1, "api_url": telegram.base},
                              {"type": "webhook", "url_env": "HOOK_URL"}]})
    plain = cli("check", "--config", config, "--format", "plain")
    assert plain.exit_code == 3
    assert len(printable_lines(plain.stdout)) == 1
    assert [line for line in printable_lines(plain.stderr) if line.startswith("guardian alert:")] == [
        next(line for line in plain.stderr.splitlines() if line.startswith("guardian alert: UNREACHABLE a"))]
    slack_text = json.loads(slack.requests[0]["body"])["blocks"][0]["text"]["text"]
    discord_text = json.loads(discord.requests[0]["body"])["content"]
    telegram_text = json.loads(telegram.requests[0]["body"])["text"]
    assert "<!channel>" not in slack_text and "@everyone" not in slack_text
    assert "@everyone" not in discord_text and "[z](" not in discord_text
    assert "<b>x</b>" not in telegram_text and "@everyone" not in telegram_text
    for text in (slack_text, discord_text, telegram_text):
        assert "\x1b" not in text and "\nguardian alert: forged" not in text
    (alert,) = hook.bodies[0]["alerts"]  # the webhook carries it as JSON data, exactly, for its receiver to escape
    assert HOSTILE_ERROR.splitlines()[0] in alert["error"]


# --- secrets ----------------------------------------------------------------------------------------

GATEWAY_TOKEN = "zq-gateway-token-6f1d9a"


def test_the_gateway_token_appears_nowhere(fakes, write_config, cli, state_dir, tmp_path):
    good, rejecting = fakes(token=GATEWAY_TOKEN), fakes(token="other")
    good.add_session(updated_at=0)
    config = write_config({"good": {"url": good.url, "token": GATEWAY_TOKEN, "limit": 10},
                           "rejecting": {"url": rejecting.url, "token": GATEWAY_TOKEN, "limit": 10}})
    outputs = [
        cli("check", "--config", config, *fmt) for fmt in (["--json"], ["--format", "plain"], ["--format", "nagios"])
    ]
    outputs += [cli("cleanup", "--config", config, "--json"), cli("doctor", "--config", config),
                cli("report", "--config", config, "--json")]
    everything = "".join(r.stdout + r.stderr for r in outputs)
    everything += "".join(
        p.read_text(errors="replace") for p in state_dir.rglob("*") if p.is_file() and p.suffix != ".db"
    )
    assert "token mismatch" in everything and GATEWAY_TOKEN not in everything


def test_a_device_key_readable_by_others_is_warned_about(tmp_path):
    """(A loose token file, and ws:// to a remote host, are in test_config.py.)"""
    from guardian.adapters.identity import IdentityStore

    store = IdentityStore(tmp_path)
    store.identity()
    store.key_file.chmod(0o644)
    fresh = IdentityStore(tmp_path)
    fresh.identity()
    assert fresh.warnings == [
        f"the device key {fresh.key_file} is readable by other users; run: chmod 600 {fresh.key_file}"
    ]
