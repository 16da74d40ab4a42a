"""A fake OpenClaw gateway for the guardian's tests.

``FakeGateway`` is a real WebSocket server on 127.0.0.1 (``websockets``, asyncio) whose event
loop runs in a daemon thread (its own, or a ``LoopThread`` shared by many gateways), so plain
synchronous pytest tests can start it, talk to it with any client, and change its state while it
runs. It speaks the frames of a real OpenClaw 2026.9.6 gateway (protocol 4), or, with
``legacy=True``, of 2026.4.29 (protocol 3; the default version string follows), as described in
/work/shared/openclaw-gateway.md:

* handshake: ``connect.challenge`` event, a closed ``connect`` schema, protocol negotiation,
  shared-token auth, Ed25519 device identities (v3 and v2 signatures), device pairing with
  ``approve()`` and device tokens;
* the scope trap: a token-only connection keeps its scopes only from loopback, without an
  ``Origin`` header, as ``gateway-client``/``backend`` (or ``cli``/``cli`` on 2026.9); anything
  else is accepted with ``scopes: []``;
* methods ``health``, ``status``, ``sessions.list`` / ``.delete`` / ``.create`` / ``.patch`` /
  ``.abort`` over an in-memory session store, with scope checks and closed param schemas;
* ``stop()`` behaves like SIGTERM: a ``shutdown`` event, then close code 1012.

Knobs (plain attributes, settable at any time; read when the situation arises):

=========================  =================================================================
``latency``                seconds from each request's arrival to its response: connections
                           overlap, and so do requests pipelined on one connection (a real
                           gateway handles them at once: measured, a ``health`` sent behind a
                           slow ``status`` is answered first)
``delete_latency``         seconds each ``sessions.delete`` takes, from its request's arrival
                           (or the end of the delete queued before it) to its answer, to within
                           microseconds; deletes run one at a time per gateway, like the real one
``silent``                 accept the WebSocket, then never send anything (a hung gateway)
``challenge_timeout``      seconds a client may take to send ``connect`` (15 s, close 1000)
``close_after_challenge``  send the challenge, then drop the TCP connection (no close frame)
``garbage_before_response``  send a non-JSON text frame before every response
``events_before_response``   send that many unsolicited events (tick/health/presence) first
``drop_after_requests``    drop the TCP connection (no close frame: the client sees 1006) once
                           N requests after ``connect`` were answered on it (0 = right after
                           hello-ok)
``unavailable_connects``   the next N ``connect`` requests get a retryable ``UNAVAILABLE``
``early_requests_refused``  a request that arrives before ``connect`` is answered gets
                           "invalid handshake: first request must be connect" and close 1008, as on
                           2026.4.29 (the default with ``legacy``); 2026.9.6 queues such requests
                           behind ``connect`` (and says so with ``capabilities`` in its challenge)
``overloaded_requests``    the next N requests after ``connect`` get 2026.9's refusal after bulk
                           writes: ``UNAVAILABLE`` "worker task capacity reached", no ``retryable``
``retry_after_ms``         the ``retryAfterMs`` of that error
``fail_deletes``           keys whose ``sessions.delete`` fails with a non-retryable
                           ``UNAVAILABLE``
``clock``                  the gateway's own clock (epoch ms): ``sessions.list``'s ``ts`` and
                           its ``activeMinutes`` cutoff (a gateway whose clock is off)
``truncate_responses``     send only the first half of every response frame (a torn frame;
                           the whole one never comes)
``archive``                answer as 2026.9.6 does to archive, restore and purge
                           (docs/gateway-measurements.md section 4): ``sessions.patchMany`` in the
                           hello, the archive patch guarded by ``expectedSessionId``, archiving
                           cancels a run, restoring bumps ``updatedAt``, ``archivedOnly`` refuses a
                           session not archived. Off (the default), the fake is the 2026.9.6 of
                           the tests written before archive mode: no ``patchMany``, so the guardian
                           deletes
=========================  =================================================================

Recordings for assertions: ``requests`` (every request after ``connect``, in order) and
``connects`` (one entry per ``connect`` request: params, HTTP headers, granted scopes, ok, and ``queued``: the
requests that reached the gateway before its answer to that ``connect`` was sent). ``recording = False`` keeps
neither (scripts/fake_fleet.py: nobody reads them there, and over a soak they would only grow).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

READ = "operator.read"
WRITE = "operator.write"
ADMIN = "operator.admin"

MAIN_KEY = "agent:main:main"
GARBAGE_FRAME = "\x00garbage{"
SIGNATURE_MAX_SKEW_MS = 120_000

CLIENT_IDS = ("cli", "gateway-client", "openclaw-linux", "test", "webchat",
              "openclaw-control-ui", "openclaw-probe", "node-host", "openclaw-tui")
CLIENT_MODES = ("backend", "cli", "node", "probe", "test", "ui", "webchat", "worker")
EVENTS = ["tick", "health", "presence", "sessions.changed", "shutdown"]
# when the request being handled reached the socket (time.perf_counter()); one per connection's task
_ARRIVED: ContextVar[float] = ContextVar("arrived")
# asyncio's timers wake up to a millisecond late (epoll rounds its timeout up to whole ms)
_TIMER_SLACK = 0.0015

# Scope each method needs; None = no scope. A method missing here needs admin (the real
# gateway's default-deny), which is why an unknown method is FORBIDDEN for a non-admin.
METHOD_SCOPES: dict[str, str | None] = {
    "health": None,
    "status": READ,
    "sessions.list": READ,
    "sessions.create": WRITE,
    "sessions.patch": WRITE,
    "sessions.abort": WRITE,
    "sessions.delete": ADMIN,
}


async def _sleep_until(deadline: float) -> None:
    """Wake at `deadline` (time.perf_counter()): sleep short of it, then yield to the loop until it."""
    while (remaining := deadline - time.perf_counter()) > _TIMER_SLACK:
        await asyncio.sleep(remaining - _TIMER_SLACK)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0)


def _json_or_none(raw) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _close_reason(text: str) -> str:
    """WebSocket close reasons are limited to 123 bytes."""
    return text.encode()[:123].decode(errors="ignore")


def _scopes_allow(granted, required: str) -> bool:
    """The real gateway's rule: admin allows everything, write also allows read."""
    granted = set(granted)
    if ADMIN in granted or required in granted:
        return True
    return required == READ and WRITE in granted


# --- closed-schema validation (messages shaped like the gateway's AJV output) ----------------

@dataclass(frozen=True)
class _Obj:
    """A closed object schema: any property not in ``props`` is an error."""
    props: dict[str, Any]
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class _List:
    """An array of 1 to ``most`` items, each of schema ``items``."""
    items: Any
    most: int


_Type = tuple[str, Callable[[Any], bool]]  # (what "must be ..." says, predicate)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


STRING: _Type = ("string", lambda v: isinstance(v, str))
NONEMPTY: _Type = ("a non-empty string", lambda v: isinstance(v, str) and v != "")
BOOLEAN: _Type = ("boolean", lambda v: isinstance(v, bool))
INTEGER: _Type = ("integer", _is_int)
NUMBER: _Type = ("number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
STRINGS: _Type = ("array of strings", lambda v: isinstance(v, list)
                  and all(isinstance(x, str) for x in v))
ANY: _Type = ("anything", lambda v: True)


def _at_least(minimum: int) -> _Type:
    return (f"integer >= {minimum}", lambda v: _is_int(v) and v >= minimum)


def _one_of(*values: Any) -> _Type:
    # Compare types too: in Python True == 1.
    return ("equal to one of the allowed values",
            lambda v: any(type(v) is type(x) and v == x for x in values))


def _schema_error(value: Any, schema: Any, path: str = "") -> str | None:
    """First violation of ``schema`` by ``value``, e.g. "at /client: unexpected property 'x'"."""
    where = path or "root"
    if isinstance(schema, _Obj):
        if not isinstance(value, dict):
            return f"at {where}: must be object"
        for name in value:
            if name not in schema.props:
                return f"at {where}: unexpected property '{name}'"
        for name in schema.required:
            if name not in value:
                return f"at {where}: must have required property '{name}'"
        for name, sub in schema.props.items():
            if name in value:
                # a leaf's predicate at once, its path made only for an error: a request's few params cost the
                # fleet's fakes (scripts/fake_fleet.py) a tenth of their CPU when each was a call
                if type(sub) is tuple:
                    if not sub[1](value[name]):
                        return f"at {path}/{name}: must be {sub[0]}"
                    continue
                error = _schema_error(value[name], sub, f"{path}/{name}")
                if error:
                    return error
        return None
    if isinstance(schema, _List):
        if not isinstance(value, list) or not value:
            return f"at {where}: must be a non-empty array"
        if len(value) > schema.most:
            return f"at {where}: must not have more than {schema.most} items"
        return next((e for i, item in enumerate(value) if (e := _schema_error(item, schema.items, f"{path}/{i}"))),
                    None)
    what, ok = schema
    return None if ok(value) else f"at {where}: must be {what}"


REQUEST_FRAME = _Obj({"type": _one_of("req"), "id": NONEMPTY, "method": NONEMPTY, "params": ANY},
                     required=("type", "id", "method"))

CONNECT_PARAMS = _Obj({
    "minProtocol": INTEGER,
    "maxProtocol": INTEGER,
    "client": _Obj({
        "id": _one_of(*CLIENT_IDS),
        "displayName": STRING,
        "version": STRING,
        "platform": STRING,
        "deviceFamily": STRING,
        "modelIdentifier": STRING,
        "mode": _one_of(*CLIENT_MODES),
        "instanceId": STRING,
    }, required=("id", "version", "platform", "mode")),
    "caps": STRINGS,
    "role": NONEMPTY,
    "scopes": STRINGS,
    "device": _Obj({"id": NONEMPTY, "publicKey": NONEMPTY, "signature": NONEMPTY,
                    "signedAt": INTEGER, "nonce": NONEMPTY},
                   required=("id", "publicKey", "signature", "signedAt", "nonce")),
    "auth": _Obj({"token": STRING, "deviceToken": STRING, "password": STRING,
                  "bootstrapToken": STRING}),
    "locale": STRING,
    "userAgent": STRING,
}, required=("minProtocol", "maxProtocol", "client"))

LIST_PARAMS = _Obj({
    "limit": _at_least(1),
    "offset": _at_least(0),
    "activeMinutes": _at_least(1),
    "activeOnly": BOOLEAN,
    "sortBy": _one_of("updatedAt", "lastInteractionAt", "activity"),
    "archived": _one_of(True, False, "all"),
    "agentId": NONEMPTY,
    "search": STRING,
    "label": STRING,
    "includeGlobal": BOOLEAN,
    "includeUnknown": BOOLEAN,
})

# 2026.4.29 rejects `offset` (measured): it has no paging at all.
LEGACY_LIST_PARAMS = _Obj({k: v for k, v in LIST_PARAMS.props.items() if k not in ("offset", "archived")})

_DELETE_COMMON = {"key": NONEMPTY, "agentId": NONEMPTY, "deleteTranscript": BOOLEAN,
                  "archivedOnly": BOOLEAN}
DELETE_PARAMS = _Obj({**_DELETE_COMMON, "expectedSessionId": STRING,
                      "expectedSessionUpdatedAt": NUMBER}, required=("key",))
# 2026.4.29 has no guard against a session that changed since it was listed, and no archive.
LEGACY_DELETE_PARAMS = _Obj({k: v for k, v in _DELETE_COMMON.items() if k != "archivedOnly"}, required=("key",))
PATCH_PARAMS = _Obj({"key": NONEMPTY, "archived": BOOLEAN, "pinned": BOOLEAN, "label": STRING,
                     "expectedSessionId": STRING}, required=("key",))
LEGACY_PATCH_PARAMS = _Obj({"key": NONEMPTY, "pinned": BOOLEAN, "label": STRING}, required=("key",))
PATCH_MANY_PARAMS = _Obj({"targets": _List(_Obj({"key": NONEMPTY, "expectedSessionId": STRING}, required=("key",)),
                                           most=100),
                          "patch": _Obj({"archived": BOOLEAN, "pinned": BOOLEAN, "label": STRING})},
                         required=("targets", "patch"))

METHOD_PARAMS = {
    "health": _Obj({"probe": BOOLEAN}),
    "status": _Obj({}),
    "sessions.list": LIST_PARAMS,
    "sessions.delete": DELETE_PARAMS,
    "sessions.create": _Obj({"key": NONEMPTY, "label": STRING, "agentId": NONEMPTY}),
    "sessions.patch": PATCH_PARAMS,
    "sessions.patchMany": PATCH_MANY_PARAMS,
    "sessions.abort": _Obj({"key": NONEMPTY}, required=("key",)),
}


# --- errors ---------------------------------------------------------------------------------

class GatewayError(Exception):
    """An error response; ``close`` = (code, reason) when the gateway then closes the socket."""

    def __init__(self, code: str, message: str, details: dict | None = None, *,
                 retryable: bool | None = None, retry_after_ms: int | None = None,
                 close: tuple[int, str] | None = None):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self.retryable, self.retry_after_ms, self.close = retryable, retry_after_ms, close

    def shape(self) -> dict:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        if self.retryable is not None:
            error["retryable"] = self.retryable
        if self.retry_after_ms is not None:
            error["retryAfterMs"] = self.retry_after_ms
        return error


def _invalid(message: str, details: dict | None = None, *, close: bool = False) -> GatewayError:
    return GatewayError("INVALID_REQUEST", message, details,
                        close=(1008, _close_reason(message)) if close else None)


def _device_error(code: str, message: str) -> GatewayError:
    return _invalid(message, {"code": code}, close=True)


# --- per-connection state -------------------------------------------------------------------

class _HeaderDict(dict):
    """HTTP request headers; keys are stored lower-case and looked up case-insensitively."""

    def __init__(self, items=()):
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def __contains__(self, key):
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key, default=None):
        return super().get(key.lower(), default)


class _TimedConnection(ServerConnection):
    """Notes when bytes last reached the socket: a request's cost is timed from there. What it sends in one turn
    of the event loop leaves in one write (_OneWriteATurn)."""

    received_at = 0.0

    def connection_made(self, transport) -> None:
        super().connection_made(_OneWriteATurn(transport, asyncio.get_running_loop()))

    def data_received(self, data: bytes) -> None:
        self.received_at = time.perf_counter()
        super().data_received(data)


class _OneWriteATurn:
    """A transport whose writes in one turn of the event loop leave together at its end, as one send: the answers
    to requests pipelined on a connection (a check's five) cost the fake one loopback send, not five. The frames
    are the same; only their TCP segments are fewer. Anything else done to the transport sends what waits first
    (an abort drops it, as abort does)."""

    def __init__(self, transport, loop: asyncio.AbstractEventLoop):
        self._transport, self._loop, self._waiting = transport, loop, []

    def write(self, data: bytes) -> None:
        if not self._waiting:
            self._loop.call_soon(self._send)
        self._waiting.append(data)

    def _send(self) -> None:
        if self._waiting:
            data, self._waiting = b"".join(self._waiting), []
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_eof(self) -> None:
        self._send()
        self._transport.write_eof()

    def close(self) -> None:
        self._send()
        self._transport.close()

    def abort(self) -> None:
        self._waiting = []
        self._transport.abort()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


@dataclass(eq=False)  # hashable by identity: kept in a set
class _Conn:
    ws: ServerConnection
    headers: _HeaderDict
    loopback: bool
    nonce: str = ""
    seq: int = 0
    scopes: list[str] = field(default_factory=list)
    connected: bool = False
    record: dict = field(default_factory=dict)  # its entry in ``connects``
    answered_connect_at: float = 0.0  # time.perf_counter()


# --- what a key says a session is (as the real gateway classifies it, measured on 2026.9.6) ------------------


def is_cron_run(key: str) -> bool:
    """agent:<id>:cron:<job>:run:<run>: status counts it, no sessions.list ever shows it."""
    parts = key.split(":")
    return len(parts) >= 6 and parts[0] == "agent" and parts[2] == "cron" and parts[4] == "run"


def classified(key: str) -> dict:
    """A row's `kind` and `classification` by the shape of its key."""
    if key in ("global", "unknown"):
        return {"kind": key, "classification": key}
    parts = key.split(":")
    rest = parts[2:] if parts[0] == "agent" else parts
    if "thread" in rest:
        return {"kind": "group", "classification": "thread"}
    for shape in ("group", "channel"):
        if shape in rest:
            return {"kind": "group", "classification": shape}
    for shape in ("subagent", "cron", "hook", "acp"):
        if rest[:1] == [shape]:
            return {"kind": "direct", "classification": shape}
    return {"kind": "direct", "classification": "main" if rest == ["main"] else "custom"}


# --- the gateway ----------------------------------------------------------------------------

class LoopThread:
    """An asyncio event loop running in a daemon thread. Each FakeGateway has its own unless given one: many
    gateways on one loop (scripts/fake_fleet.py) cost one thread, not one each waking up in turn for the GIL.
    `new_loop` makes the loop: asyncio's, or uvloop's (scripts/fake_fleet.py: less CPU a poll)."""

    def __init__(self, name: str = "FakeGateway-loop", new_loop: Callable[[], asyncio.AbstractEventLoop] =
                 asyncio.new_event_loop):
        self.loop = new_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)
        self._thread.start()

    def run(self, coro, timeout: float = 10):
        """Run a coroutine on the loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


class FakeGateway:
    """A fake OpenClaw gateway; see the module docstring."""

    def __init__(self, token: str = "secret", *, version: str = "2026.9.6", legacy: bool = False,
                 remote: bool = False, port: int = 0, ssl_context=None, loop: LoopThread | None = None):
        self.token = token
        self.ssl_context = ssl_context  # an ssl.SSLContext: serve wss:// (TLS) instead of ws://
        if legacy and version == "2026.9.6":
            version = "2026.4.29"  # the legacy release that was measured
        self.version = version
        self.legacy = legacy
        self.remote = remote  # True: behave as a gateway on another host (peer not loopback)
        self.port = port
        self.url = ""

        self.sessions: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.recording = True
        self.connects: list[dict] = []
        self.pending_pairings: dict[str, dict] = {}
        self.paired_devices: dict[str, dict] = {}

        self.latency = 0.0
        self.delete_latency = 0.0
        self.silent = False
        self.challenge_timeout = 15.0
        self.close_after_challenge = False
        self.garbage_before_response = False
        self.drop_after_requests: int | None = None
        self.events_before_response = 0
        self.unavailable_connects = 0
        self.overloaded_requests = 0
        self.early_requests_refused = legacy
        self.retry_after_ms = 50
        self.fail_deletes: set[str] = set()
        self.clock: Callable[[], int] = _now_ms
        self.truncate_responses = False
        self.archive = False
        # called as on_request(method, params) before each request after connect is handled
        # (runs on the server's thread): lets a test change the store between two calls
        self.on_request: Callable[[str, Any], None] | None = None

        # Guards the stores above that tests mutate from their own thread.
        self._lock = threading.RLock()
        self._loop = loop  # None: its own, made by start()
        self._own_loop: LoopThread | None = None
        self._server: Server | None = None
        self._conns: set[_Conn] = set()
        self._delete_lock: asyncio.Lock | None = None
        self._handlers: dict[str, Callable[[dict], Any]] = {
            "health": self._health,
            "status": self._status,
            "sessions.list": self._sessions_list,
            "sessions.delete": self._sessions_delete,
            "sessions.create": self._sessions_create,
            "sessions.patch": self._sessions_patch,
            "sessions.abort": self._sessions_abort,
            "sessions.patchMany": self._sessions_patch_many,
        }

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FakeGateway":
        if self._server is not None:
            return self
        if self._loop is None:
            self._loop = self._own_loop = LoopThread(f"FakeGateway-{id(self):x}")
        self._loop.run(self._start_server())
        self.url = f"{'wss' if self.ssl_context else 'ws'}://127.0.0.1:{self.port}"
        return self

    async def _start_server(self) -> None:
        self._delete_lock = asyncio.Lock()
        self._server = await serve(
            self._serve_connection, "127.0.0.1", self.port,
            ping_interval=None,        # the real gateway sends ticks, not pings
            max_size=26_214_400,       # policy.maxPayload
            close_timeout=1.0,
            ssl=self.ssl_context,
            create_connection=_TimedConnection,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is None:
            return
        try:
            self._loop.run(self._shutdown())
        finally:
            self._server = None
            if self._own_loop is not None:
                self._own_loop.stop()
                self._loop = self._own_loop = None

    async def _shutdown(self) -> None:
        """Like SIGTERM on the real gateway: ``shutdown`` event, close 1012, exit."""
        server = self._server
        server.close(close_connections=False)  # stop listening now; connections are ours
        conns = list(self._conns)
        for conn in conns:
            if conn.connected:
                try:
                    await self._send_event(conn, "shutdown",
                                           {"reason": "gateway stopping", "restartExpectedMs": None})
                except ConnectionClosed:
                    pass
        closing = [asyncio.create_task(c.ws.close(1012, "service restart")) for c in conns]
        if closing:
            # A reading client answers the close frame at once; one that is not reading never
            # does: then end the TCP connection gracefully (FIN after the frames already sent,
            # unlike abort(), so they still arrive) instead of waiting for close_timeout.
            await asyncio.wait(closing, timeout=0.1)
            for conn in conns:
                conn.ws.transport.close()
            await asyncio.wait(closing, timeout=1.0)
        # Handlers still asleep (latency, delete_latency) have nobody left to answer.
        waiter = asyncio.ensure_future(server.wait_closed())
        _, pending = await asyncio.wait([waiter], timeout=0.1)
        if pending:
            for task in list(server.handler_tasks):
                task.cancel()
            for connection in list(server.all_connections):
                connection.transport.abort()
            await asyncio.wait([waiter], timeout=1.0)
        waiter.cancel()

    def __enter__(self) -> "FakeGateway":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- session store (called from test code) ----------------------------------------------

    def add_session(self, key: str | None = None, *, agent: str = "main",
                    updated_at: int | None = None, label: str | None = None,
                    status: str | None = None, has_active_run: bool = False,
                    pinned: bool = False, archived: bool = False, is_main: bool = False,
                    last_interaction_at: int | None = None, ended_at: int | None = None,
                    session_id: str | None = None) -> dict:
        """Add a session row (times in epoch ms) and return it (the stored dict)."""
        key = key or f"agent:{agent}:dashboard:{uuid.uuid4()}"
        updated_at = _now_ms() if updated_at is None else updated_at
        if status is None and has_active_run:
            status = "running"
        row: dict[str, Any] = {
            "key": key,
            "sessionId": session_id or str(uuid.uuid4()),
            "agentId": agent,
            **classified(key),
        }
        if label is not None:
            row["label"] = label
        row.update({
            "isMain": is_main or key == MAIN_KEY,
            "pinned": pinned,
            "archived": archived,
            "createdAt": updated_at,
            "updatedAt": updated_at,
        })
        if last_interaction_at is not None:
            row["lastInteractionAt"] = last_interaction_at
        if status is not None:
            row["status"] = status
            row["startedAt"] = updated_at
        if ended_at is not None:
            row["endedAt"] = ended_at
        row["hasActiveRun"] = has_active_run
        if not has_active_run:
            row["activeRunIds"] = []  # absent while running: "active, ids unknown"
        with self._lock:
            self.sessions[key] = row
        return row

    def touch(self, key: str, at_ms: int | None = None) -> None:
        """Bump a session's updatedAt, as when it wakes up."""
        with self._lock:
            row = self.sessions[key]
            # Strictly later, even within the same millisecond, so expected* guards see it.
            row["updatedAt"] = at_ms if at_ms is not None else max(_now_ms(), row["updatedAt"] + 1)

    def approve(self, request_id: str) -> None:
        """What ``openclaw devices approve <requestId>`` does. KeyError for an unknown id."""
        with self._lock:
            request = self.pending_pairings.pop(request_id)
            device = self.paired_devices.get(request["deviceId"])
            if device is None:
                self.paired_devices[request["deviceId"]] = {
                    "publicKey": request["publicKey"],
                    "scopes": list(request["scopes"]),
                    "deviceToken": secrets.token_urlsafe(32),
                }
            else:
                device["scopes"] = device["scopes"] + [
                    s for s in request["scopes"] if s not in device["scopes"]]

    # --- connection handling -----------------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        peer = ws.remote_address[0] if ws.remote_address else ""
        conn = _Conn(ws=ws, headers=_HeaderDict(ws.request.headers.raw_items()),
                     loopback=peer in ("127.0.0.1", "::1") and not self.remote)
        self._conns.add(conn)
        try:
            if self.silent:
                async for _ in ws:  # swallow everything, answer nothing
                    pass
                return
            conn.nonce = str(uuid.uuid4())
            challenge = {"nonce": conn.nonce, "ts": _now_ms()}
            if not self.legacy:
                challenge["capabilities"] = ["model-catalog-snapshot"]
            await ws.send(json.dumps({"type": "event", "event": "connect.challenge", "payload": challenge}))
            if self.close_after_challenge:
                await self._drop(ws)
                return
            if await self._handshake(conn):
                await self._serve_requests(conn)
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)

    @staticmethod
    async def _drop(ws: ServerConnection) -> None:
        """End the TCP connection without a close frame (the client sees 1006)."""
        ws.transport.close()  # FIN after flushing, unlike abort(), so sent frames arrive
        await ws.wait_closed()

    async def _handshake(self, conn: _Conn) -> bool:
        ws = conn.ws
        deadline = asyncio.get_running_loop().time() + self.challenge_timeout
        try:
            async with asyncio.timeout_at(deadline):
                raw = await ws.recv()
            _ARRIVED.set(ws.received_at)
        except TimeoutError:
            await ws.close(1000, "handshake timeout")
            return False
        try:
            frame = json.loads(raw)
        except ValueError:
            await ws.close(1008, "invalid handshake")
            return False
        request_id = self._response_id(frame)
        try:
            method, params = self._parse_request(frame)
            if method != "connect":
                raise _invalid("invalid handshake: first request must be connect", close=True)
            hello = self._connect(conn, params)
        except GatewayError as error:
            await self._respond(conn, request_id, error=error)
            await ws.close(*(error.close or (1008, _close_reason(error.message))))
            return False
        if self.early_requests_refused and await self._refused_early_request(ws):
            return False
        await self._respond(conn, request_id, payload=hello)
        conn.connected = True
        return True

    async def _refused_early_request(self, ws: ServerConnection) -> bool:
        """2026.4.29's answer to a request sent while `connect` is being handled (a few ms here, or the latency)."""
        try:
            async with asyncio.timeout(max(self.latency, 0.005)):
                raw = await ws.recv()
        except TimeoutError:
            return False
        error = _invalid("invalid handshake: first request must be connect")
        frame = {"type": "res", "id": self._response_id(_json_or_none(raw)), "ok": False, "error": error.shape()}
        await ws.send(json.dumps(frame))
        await ws.close(1008, "invalid handshake")
        return True

    async def _serve_requests(self, conn: _Conn) -> None:
        answered = 0
        if self._should_drop(answered):
            await self._drop(conn.ws)
            return
        async for raw in conn.ws:
            _ARRIVED.set(conn.ws.received_at)
            if conn.ws.received_at < conn.answered_connect_at:
                conn.record["queued"] += 1
            try:
                frame = json.loads(raw)
            except ValueError:
                continue  # non-JSON after connect is ignored
            request_id = self._response_id(frame)
            try:
                method, params = self._parse_request(frame)
                if self.recording:
                    self.requests.append({"method": method, "params": params, "id": request_id})
                if self.on_request:
                    self.on_request(method, params)
                if self.overloaded_requests > 0:
                    self.overloaded_requests -= 1
                    raise GatewayError("UNAVAILABLE", "WorkerTaskError: worker task capacity reached: code=overloaded")
                payload = await self._dispatch(conn, method, params)
            except GatewayError as error:
                await self._respond(conn, request_id, error=error)
            else:
                await self._respond(conn, request_id, payload=payload)
            answered += 1
            if self._should_drop(answered):
                await self._drop(conn.ws)
                return

    def _should_drop(self, answered: int) -> bool:
        return self.drop_after_requests is not None and answered >= self.drop_after_requests

    @staticmethod
    def _response_id(frame: Any) -> str:
        # An id that is not a string cannot be echoed: the gateway answers with "invalid".
        if isinstance(frame, dict) and isinstance(frame.get("id"), str):
            return frame["id"]
        return "invalid"

    @staticmethod
    def _parse_request(frame: Any) -> tuple[str, Any]:
        error = _schema_error(frame, REQUEST_FRAME)
        if error:
            raise _invalid(f"invalid request frame: {error}")
        return frame["method"], frame.get("params")

    async def _respond(self, conn: _Conn, request_id: str, *, payload: Any = None,
                       error: GatewayError | None = None) -> None:
        # asyncio.sleep, not _sleep_until: 500 connections spinning out the last ms cost CPU; none at all once the
        # answer is due (a pipelined request behind one answered): its answer leaves in the same write
        if self.latency > 0 and (delay := _ARRIVED.get(time.perf_counter()) + self.latency - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        for i in range(self.events_before_response):
            await self._send_event(conn, *self._sample_event(i))
        if self.garbage_before_response:
            await conn.ws.send(GARBAGE_FRAME)
        frame: dict[str, Any] = {"type": "res", "id": request_id, "ok": error is None}
        if error is None:
            frame["payload"] = payload
        else:
            frame["error"] = error.shape()
        text = json.dumps(frame)
        if not conn.connected:  # the answer to connect
            conn.answered_connect_at = time.perf_counter()
        await conn.ws.send(text[:len(text) // 2] if self.truncate_responses else text)

    async def _send_event(self, conn: _Conn, event: str, payload: dict) -> None:
        conn.seq += 1
        await conn.ws.send(json.dumps({"type": "event", "event": event, "payload": payload,
                                       "seq": conn.seq}))

    def _sample_event(self, i: int) -> tuple[str, dict]:
        kind = ("tick", "health", "presence")[i % 3]
        if kind == "tick":
            return kind, {"ts": _now_ms()}
        if kind == "health":
            return kind, self._health({})
        return kind, {"presence": [{"host": "fake-gateway", "mode": "gateway",
                                    "ts": _now_ms()}]}

    # --- connect -----------------------------------------------------------------------------

    def _connect(self, conn: _Conn, params: Any) -> dict:
        record = {"params": params, "headers": conn.headers, "granted_scopes": [], "ok": False, "queued": 0}
        if self.recording:
            self.connects.append(record)
        conn.record = record
        if self.unavailable_connects > 0:
            self.unavailable_connects -= 1
            raise GatewayError("UNAVAILABLE", "gateway starting; retry shortly",
                               {"reason": "startup-sidecars"}, retryable=True,
                               retry_after_ms=self.retry_after_ms,
                               close=(1013, "gateway starting"))
        params = {} if params is None else params
        error = _schema_error(params, CONNECT_PARAMS)
        if error:
            raise _invalid(f"invalid connect params: {error}", close=True)

        protocol = 3 if self.legacy else 4
        if params["maxProtocol"] < protocol or params["minProtocol"] > protocol:
            raise GatewayError("INVALID_REQUEST", "protocol mismatch",
                               {"code": "PROTOCOL_MISMATCH", "expectedProtocol": protocol},
                               close=(1002, "protocol mismatch"))
        client = params["client"]
        if client["mode"] == "webchat":
            raise _invalid("origin not allowed (open the Control UI from the gateway host or "
                           "allow it in gateway.controlUi.allowedOrigins)",
                           {"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED"}, close=True)

        auth = params.get("auth") or {}
        token, device_token = auth.get("token"), auth.get("deviceToken")
        device = params.get("device")
        role = params.get("role", "operator")
        requested = list(params.get("scopes") or [])

        if token is not None and token != self.token:
            raise _invalid("unauthorized: gateway token mismatch (provide gateway auth token)", {
                "code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch",
                "canRetryWithDeviceToken": False,
                "recommendedNextStep": "update_auth_credentials"}, close=True)

        auth_method, issued_token = "token", None
        if device is None:
            if token is None:
                raise GatewayError("NOT_PAIRED", "device identity required",
                                   {"code": "DEVICE_IDENTITY_REQUIRED"},
                                   close=(1008, "device identity required"))
            trusted = self._trusted_without_device(conn, client)
        else:
            self._verify_device(conn, params)
            if token is None:
                if device_token is None:
                    raise _invalid("unauthorized: gateway token missing (provide gateway auth "
                                   "token)", {"code": "AUTH_TOKEN_MISSING"}, close=True)
                with self._lock:
                    paired = self.paired_devices.get(device["id"])
                if paired is None or paired["deviceToken"] != device_token:
                    raise _invalid("unauthorized: device token mismatch (rotate/reissue device "
                                   "token)", {"code": "AUTH_DEVICE_TOKEN_MISMATCH"}, close=True)
                auth_method = "device-token"
            issued_token = self._pair(conn, device, role, requested)
            trusted = True

        granted = requested if trusted else []
        conn.scopes = granted
        record.update(granted_scopes=list(granted), ok=True)
        hello_auth: dict[str, Any] = {"role": role, "scopes": list(granted),
                                      "method": auth_method}
        if issued_token is not None:
            hello_auth["deviceToken"] = issued_token
        return {
            "type": "hello-ok",
            "protocol": protocol,
            "server": {"version": self.version, "connId": str(uuid.uuid4())},
            "features": {"methods": self._methods(), "events": list(EVENTS)},
            "snapshot": {"sessionDefaults": {"defaultAgentId": "main", "mainKey": "main",
                                             "mainSessionKey": MAIN_KEY,
                                             "scope": "per-sender"}},
            "auth": hello_auth,
            "policy": {"maxPayload": 26_214_400, "tickIntervalMs": 30_000},
        }

    def _trusted_without_device(self, conn: _Conn, client: dict) -> bool:
        """The scope trap: who keeps their scopes with a shared token and no device."""
        if not conn.loopback or "origin" in conn.headers:
            return False
        trusted_clients = {("gateway-client", "backend")}
        if not self.legacy:
            trusted_clients.add(("cli", "cli"))
        return (client["id"], client["mode"]) in trusted_clients

    def _verify_device(self, conn: _Conn, params: dict) -> None:
        device, client, auth = params["device"], params["client"], params.get("auth") or {}
        try:
            raw_key = _b64url_decode(device["publicKey"])
            public_key = Ed25519PublicKey.from_public_bytes(raw_key)
        except ValueError:
            raise _device_error("DEVICE_AUTH_PUBLIC_KEY_INVALID", "device public key invalid") from None
        if hashlib.sha256(raw_key).hexdigest() != device["id"]:
            raise _device_error("DEVICE_AUTH_DEVICE_ID_MISMATCH", "device identity mismatch")
        if abs(_now_ms() - device["signedAt"]) > SIGNATURE_MAX_SKEW_MS:
            raise _device_error("DEVICE_AUTH_SIGNATURE_EXPIRED", "device signature expired")
        if device["nonce"] != conn.nonce:
            raise _device_error("DEVICE_AUTH_NONCE_MISMATCH", "device nonce mismatch")
        signed_token = auth.get("token") or auth.get("deviceToken") or ""
        fields = [device["id"], client["id"], client["mode"], params.get("role", "operator"),
                  ",".join(params.get("scopes") or []), str(device["signedAt"]), signed_token,
                  device["nonce"]]
        v3 = "|".join(["v3", *fields, client["platform"].lower(),
                       client.get("deviceFamily", "").lower()])
        v2 = "|".join(["v2", *fields])
        try:
            signature = _b64url_decode(device["signature"])
        except ValueError:
            signature = b""
        for candidate in (v3, v2):
            try:
                public_key.verify(signature, candidate.encode())
                return
            except InvalidSignature:
                continue
        raise _device_error("DEVICE_AUTH_SIGNATURE_INVALID", "device signature invalid")

    def _pair(self, conn: _Conn, device: dict, role: str, scopes: list[str]) -> str:
        """Return the device token of a paired device, pairing it silently on loopback;
        otherwise open (or reuse) a pending pairing request and refuse the connect."""
        device_id = device["id"]
        with self._lock:
            paired = self.paired_devices.get(device_id)
            if paired and all(_scopes_allow(paired["scopes"], s) for s in scopes):
                return paired["deviceToken"]
            if conn.loopback:  # local devices are approved without asking
                if paired is None:
                    paired = self.paired_devices[device_id] = {
                        "publicKey": device["publicKey"], "scopes": [],
                        "deviceToken": secrets.token_urlsafe(32)}
                paired["scopes"] = paired["scopes"] + [
                    s for s in scopes if s not in paired["scopes"]]
                return paired["deviceToken"]
            reason = "scope-upgrade" if paired else "not-paired"
            request_id = next((rid for rid, r in self.pending_pairings.items()
                               if r["deviceId"] == device_id), None) or str(uuid.uuid4())
            self.pending_pairings[request_id] = {
                "deviceId": device_id, "publicKey": device["publicKey"],
                "scopes": list(scopes), "role": role, "reason": reason}
        message = ("pairing required: device is asking for more scopes than currently approved"
                   if paired else "pairing required: device is not approved yet")
        raise GatewayError("NOT_PAIRED", message, {
            "code": "PAIRING_REQUIRED", "reason": reason, "requestId": request_id,
            "remediationHint": "Approve this device from the pending pairing requests.",
            "deviceId": device_id, "requestedRole": role, "requestedScopes": list(scopes),
        }, close=(1008, _close_reason(f"{message} (requestId: {request_id})")))

    # --- methods -----------------------------------------------------------------------------

    async def _dispatch(self, conn: _Conn, method: str, params: Any) -> Any:
        if method == "connect":
            raise _invalid("connect already completed")
        required = METHOD_SCOPES.get(method, ADMIN)
        if (method == "sessions.delete" and isinstance(params, dict)
                and params.get("archivedOnly") is True):
            required = WRITE  # deleting an already archived session needs only write
        if required is not None and not _scopes_allow(conn.scopes, required):
            raise self._missing_scope(required)
        handler = self._handlers.get(method) if method in self._methods() else None
        if handler is None:
            raise _invalid(f"unknown method: {method}")
        params = {} if params is None else params
        schema = METHOD_PARAMS[method]
        if self.legacy:
            schema = {"sessions.delete": LEGACY_DELETE_PARAMS, "sessions.list": LEGACY_LIST_PARAMS,
                      "sessions.patch": LEGACY_PATCH_PARAMS}.get(method, schema)
        error = _schema_error(params, schema)
        if error:
            raise _invalid(f"invalid {method} params: {error}")
        result = handler(params)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    def _missing_scope(self, scope: str) -> GatewayError:
        if self.legacy:
            return GatewayError("INVALID_REQUEST", f"missing scope: {scope}")
        return GatewayError("FORBIDDEN", f"missing scope: {scope}", {
            "code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]})

    def _rows(self) -> list[dict]:
        with self._lock:
            return [dict(row) for row in self.sessions.values()]

    def _health(self, params: dict) -> dict:
        rows = self._rows()
        per_agent = Counter(row["agentId"] for row in rows)
        return {
            "ok": True,
            "ts": _now_ms(),
            "sessions": {"count": len(rows)},  # archived sessions included
            "agents": [{"agentId": agent, "sessions": {"count": per_agent[agent]}}
                       for agent in sorted(set(per_agent) | {"main"})],
        }

    def _status(self, params: dict) -> dict:
        rows = self._rows()
        per_agent = Counter(row["agentId"] for row in rows)
        return {
            "runtimeVersion": self.version,
            "sessions": {"count": len(rows),
                         "byAgent": [{"agentId": a, "count": n}
                                     for a, n in sorted(per_agent.items())]},
        }

    def _sessions_list(self, params: dict) -> dict:
        now = self.clock()
        # cron runs are never listed; `global` and `unknown` only when asked for (measured on 2026.9.6)
        rows = [r for r in self._rows() if not is_cron_run(str(r.get("key")))
                and (r.get("kind") != "global" or params.get("includeGlobal"))
                and (r.get("kind") != "unknown" or params.get("includeUnknown"))]
        archived = params.get("archived", False)
        if archived != "all":
            rows = [r for r in rows if bool(r.get("archived")) == archived]
        if "agentId" in params:
            rows = [r for r in rows if r["agentId"] == params["agentId"]]
        if "activeMinutes" in params:
            cutoff = now - params["activeMinutes"] * 60_000
            rows = [r for r in rows if r["updatedAt"] >= cutoff]
        if params.get("activeOnly"):
            rows = [r for r in rows if r.get("hasActiveRun")]
        if "search" in params:
            needle = params["search"].lower()
            rows = [r for r in rows
                    if needle in r["key"].lower() or needle in r.get("label", "").lower()]
        if "label" in params:
            rows = [r for r in rows if r.get("label") == params["label"]]

        sort_by = params.get("sortBy", "updatedAt")

        def sort_key(row: dict) -> tuple:
            if sort_by == "lastInteractionAt":
                value = row.get("lastInteractionAt", row["updatedAt"])
            elif sort_by == "activity":
                value = max(row["updatedAt"], row.get("lastInteractionAt", 0))
            else:
                value = row["updatedAt"]
            return (-value, row["key"])

        rows.sort(key=sort_key)
        total = len(rows)
        offset = params.get("offset", 0)
        limit = params.get("limit", None if self.legacy else 100)
        page = rows[offset:] if limit is None else rows[offset:offset + limit]

        if self.legacy:
            return {"ts": now, "path": "/state/agents/main/sessions/sessions.json",
                    "count": len(page), "defaults": {},
                    "sessions": [self._legacy_row(r) for r in page]}
        end = offset + len(page)
        return {
            "ts": now,
            "path": "(multiple)",
            "count": len(page),
            "totalCount": total,
            "limitApplied": limit,
            "nextOffset": end if end < total else None,
            "hasMore": end < total,
            "sessions": [self._list_row(r) for r in page],
        }

    @staticmethod
    def _list_row(row: dict) -> dict:
        out = dict(row)
        if out.get("hasActiveRun"):
            out.pop("activeRunIds", None)
        else:
            out["activeRunIds"] = []
        return out

    @staticmethod
    def _legacy_row(row: dict) -> dict:
        return {"key": row["key"], "kind": row.get("kind", "direct"),
                "sessionId": row["sessionId"], "updatedAt": row["updatedAt"],
                "model": "fake-model", "modelProvider": "fake", "totalTokensFresh": False}

    async def _sessions_delete(self, params: dict) -> dict:
        key = params["key"]
        # The real gateway serialises deletes: one at a time per gateway.
        queued = self._delete_lock.locked()
        async with self._delete_lock:
            if self.delete_latency > 0:  # a fixed cost: the parsing above is part of it
                started = time.perf_counter() if queued else _ARRIVED.get()
                await _sleep_until(started + self.delete_latency)
            if key in self.fail_deletes:
                raise GatewayError("UNAVAILABLE", "delete failed", retryable=False)
            with self._lock:
                row = self.sessions.get(key)
                if key == MAIN_KEY or (row is not None and row.get("isMain")):
                    raise _invalid(f"Cannot delete the main session ({key}).")
                if row is None:
                    return {"ok": True, "key": key, "deleted": False, "archived": []}
                changed = (
                    ("expectedSessionId" in params
                     and params["expectedSessionId"] != row["sessionId"])
                    or ("expectedSessionUpdatedAt" in params
                        and params["expectedSessionUpdatedAt"] != row["updatedAt"]))
                if changed:
                    raise _invalid(f"Session {key} changed before deletion. Retry.",
                                   {"reason": "session-changed"})
                if params.get("archivedOnly") and not row.get("archived"):
                    raise _invalid(f"Session {key} is not archived. Archive it first, then delete it.")
                if row.get("hasActiveRun"):
                    self._abort_row(row)  # the real gateway aborts a running run, then deletes
                del self.sessions[key]
            archived = []
            if params.get("deleteTranscript", True):
                stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3] + "Z"
                archived.append(f"/state/agents/{row['agentId']}/sessions/"
                                f"{row['sessionId']}.jsonl.deleted.{stamp}.zst")
            return {"ok": True, "key": key, "deleted": True, "archived": archived}

    def _sessions_create(self, params: dict) -> dict:
        agent = params.get("agentId", "main")
        key = params.get("key") or f"agent:{agent}:dashboard:{uuid.uuid4()}"
        with self._lock:
            if key in self.sessions:
                raise _invalid(f"Session {key} already exists.")
            row = self.add_session(key, agent=agent, label=params.get("label"))
        entry = {"sessionId": row["sessionId"], "updatedAt": row["updatedAt"]}
        if "label" in row:
            entry["label"] = row["label"]
        entry["createdAt"] = row["createdAt"]
        return {"ok": True, "key": key, "sessionId": row["sessionId"], "entry": entry}

    def _methods(self) -> list[str]:
        return [m for m in self._handlers if self.archive or m != "sessions.patchMany"]

    def _sessions_patch(self, params: dict) -> dict:
        if self.archive and "archived" in params:
            return self._lifecycle_patch(params["key"], params.get("expectedSessionId"), params["archived"])
        key = params["key"]
        with self._lock:
            row = self.sessions.get(key)
            if row is None:
                raise _invalid(f"Session {key} not found.")
            if ("expectedSessionId" in params
                    and params["expectedSessionId"] != row["sessionId"]):
                raise _invalid(f"Session {key} changed before patch. Retry.",
                               {"reason": "session-changed"})
            for name in ("archived", "pinned", "label"):
                if name in params:
                    row[name] = params[name]
            return {"ok": True, "key": key, "entry": self._list_row(row)}

    def _lifecycle_patch(self, key: str, expected: str | None, archived: bool) -> dict:
        """Archive or restore as 2026.9.6 does (docs/gateway-measurements.md sections 4 and 5)."""
        if expected is None:
            raise _invalid(f"expectedSessionId required for session lifecycle patch: {key}")
        with self._lock:
            row = self.sessions.get(key)
            if row is not None and archived and (key == MAIN_KEY or row.get("isMain")):
                raise _invalid("Cannot archive an agent's main session.")
            if row is None or row["sessionId"] != expected:  # a missing key answers the same
                raise _invalid(f"Session {key} changed before patch. Retry.", {"reason": "session-changed"})
            if archived and not row.get("archived"):
                if row.get("hasActiveRun"):
                    self._abort_row(row)  # the archive cancels the session's work first
                row.update(archived=True, archivedAt=_now_ms(), updatedAt=max(_now_ms(), row["updatedAt"] + 1))
            elif not archived and row.get("archived"):
                row["archived"] = False
                row.pop("archivedAt", None)
                row["updatedAt"] = max(_now_ms(), row["updatedAt"] + 1)  # a restore bumps updatedAt
            return {"ok": True, "key": key, "entry": self._list_row(row)}

    def _sessions_patch_many(self, params: dict) -> dict:
        outcomes = []
        for target in params["targets"]:
            key = target["key"]
            try:
                if set(params["patch"]) != {"archived"}:
                    raise _invalid("the fake patches many only to archive or restore")
                self._lifecycle_patch(key, target.get("expectedSessionId"), params["patch"]["archived"])
                outcomes.append({"ok": True, "key": key})
            except GatewayError as exc:
                outcomes.append({"ok": False, "key": key, "error": exc.shape()})
        return {"ok": True, "outcomes": outcomes}

    def _sessions_abort(self, params: dict) -> dict:
        key = params["key"]
        with self._lock:
            row = self.sessions.get(key)
            if row is None or not row.get("hasActiveRun"):
                return {"ok": True, "key": key, "aborted": False}
            self._abort_row(row)
        return {"ok": True, "key": key, "aborted": True}

    @staticmethod
    def _abort_row(row: dict) -> None:
        row.update(hasActiveRun=False, status="killed", endedAt=_now_ms(), activeRunIds=[])
