"""OpenClaw gateway client: handshake, device identity, pipelined calls, one error type.

The protocol is in shared/openclaw-gateway.md. The traps it records are handled here once:
no `Origin` header (it silently clears every scope), client `gateway-client`/`backend` (keeps its
scopes on loopback on 2026.4 and 2026.9), `hello-ok.auth.scopes` checked rather than assumed,
unsolicited events skipped while waiting, and deadlines on every wait so a silent gateway costs
at most its timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

from guardian import __version__
from guardian.adapters import wire
from guardian.settings.model import Check, Host

CLIENT = {"id": "gateway-client", "version": __version__, "platform": "linux", "mode": "backend"}
ROLE = "operator"
READ, WRITE, ADMIN = "operator.read", "operator.write", "operator.admin"
UNAVAILABLE_RETRIES = 3
MAX_RETRY_WAIT = 5.0  # seconds; a gateway asking for longer is treated as down for this run
# 2026.9 refuses reads for 0.3-5 s after bulk writes (docs/gateway-measurements.md) with UNAVAILABLE and this
# message, without `retryable`: asked again after each of these waits (the last repeated) until OVERLOAD_PATIENCE
OVERLOADED = "worker task capacity reached"
OVERLOAD_BACKOFF = (0.2, 0.4, 0.8, 1.6)
OVERLOAD_PATIENCE = 6.0  # seconds from the first answer; the longest refusal measured was 4.95 s


class GatewayError(Exception):
    """Anything that went wrong talking to a gateway: the gateway's own error or the client's.

    `code` is the gateway's error.code (INVALID_REQUEST, FORBIDDEN, NOT_PAIRED, UNAVAILABLE, ...)
    or one of the client's: UNREACHABLE, TIMEOUT, CLOSED, TLS, PROTOCOL, MISSING_SCOPE.
    str() is one sentence for the operator.
    """

    def __init__(self, code: str, message: str, details: dict | None = None, *,
                 retryable: bool = False, retry_after_ms: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms

    def __str__(self) -> str:
        return self.message  # the sentence, also after _explain_connect_error has rewritten it

    @property
    def detail_code(self) -> str | None:
        return self.details.get("code") if isinstance(self.details, dict) else None

    @classmethod
    def from_frame(cls, error) -> "GatewayError":
        if not isinstance(error, dict):
            return cls("PROTOCOL", f"the gateway sent a malformed error: {str(error)[:200]}")
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
        retry_after = error.get("retryAfterMs", details.get("retryAfterMs"))
        # a wait is only honoured as a whole, non-negative number of ms (true is no wait; -5 cannot be slept)
        wait_ms = retry_after if type(retry_after) is int and retry_after >= 0 else None
        return cls(str(error.get("code", "UNKNOWN")), str(error.get("message", "no message")), details,
                   retryable=error.get("retryable") is True, retry_after_ms=wait_ms)


@dataclass
class Hello:
    """What `hello-ok` told us about the connection."""

    protocol: int
    server_version: str
    scopes: list[str]
    main_session_key: str | None
    methods: frozenset = frozenset()  # features.methods: what this release answers

    @property
    def can_archive(self) -> bool:
        """Archive in place with an expectedSessionId guard (2026.9). The hello names methods, not their params:
        sessions.patchMany came with the archive patch, and 2026.4.29 has neither (docs/gateway-measurements.md)."""
        return "sessions.patchMany" in self.methods


# --- the steps of a session ------------------------------------------------------------------------
# The session's logic (handshake, pipelined calls, retries) is written once, as generators that yield what they
# need done on the wire and are sent what came of it. `drive` does each step on a blocking socket (one host at a
# time: cleanup, doctor, restore); poller.py does the steps of many hosts at once on one thread (check). The steps
# are not frozen: a 500-host check makes ~7,500, and a frozen dataclass's __init__ costs three times a slotted one's.


@dataclass(slots=True)
class Open:
    """Connect and upgrade (TLS for wss://) by the deadline: sent back the open socket, or thrown what failed."""

    host: Host
    deadline: float


@dataclass(slots=True)
class Send:
    ws: object
    data: bytes  # a JSON text, UTF-8


@dataclass(slots=True)
class Receive:
    """The next message (opcode, payload) or the gateway's CLOSE; thrown TimeoutError at the deadline, OSError or
    wire.WireError when the connection breaks."""

    ws: object
    deadline: float


@dataclass(slots=True)
class Wait:
    seconds: float


@dataclass(slots=True)
class Close:
    """Close as the protocol asks, waiting at most `timeout` s for the gateway's close frame."""

    ws: object
    timeout: float


def drive(steps, sleep: Callable[[float], None] = time.sleep):
    """Run a session's steps on blocking sockets (gateway.WebSocket), one at a time; returns what the steps return."""
    value = error = None
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        value = error = None
        try:
            value = _do(step, sleep)
        except Exception as exc:  # thrown into the steps, which say what it means for this host
            error = exc


def _do(step, sleep: Callable[[float], None]):
    kind = type(step)
    if kind is Receive:
        remaining = step.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        step.ws.settimeout(remaining)
        return step.ws.recv_message()
    if kind is Send:
        return step.ws.send(step.data)
    if kind is Open:
        return _open_socket(step.host, step.deadline)
    if kind is Wait:
        return sleep(step.seconds)
    return step.ws.close(timeout=step.timeout)


@dataclass
class Connection:
    """One open, authenticated socket. `call_many` pipelines requests and matches answers by id."""

    host: Host
    ws: object
    hello: Hello | None  # None until the answer to `connect` is read, when requests went out behind it (`early`)
    timeout: float
    clock: Callable[[], float] = time.monotonic  # for the waits between retries (a test's clock sleeps no one)
    sleep: Callable[[float], None] = time.sleep
    handshake: _Handshake | None = None  # the `connect` whose answer is still to be read

    def call(self, method: str, params: dict | None = None) -> dict:
        return drive(self.call_steps(method, params), self.sleep)

    def call_steps(self, method: str, params: dict | None = None):
        result = (yield from self.call_many_steps([(method, params)]))[0]
        if isinstance(result, GatewayError):
            raise result
        return result

    def call_many(self, calls: list[tuple[str, dict | None]], while_waiting: Callable[[], None] | None = None) -> list:
        return drive(self.call_many_steps(calls, while_waiting), self.sleep)

    def call_many_steps(self, calls: list[tuple[str, dict | None]],
                        while_waiting: Callable[[], None] | None = None):
        """Send every request at once, then read answers until all are in: payloads or GatewayErrors.

        `while_waiting` (which must not raise) runs once, after the requests are sent and before
        the answers are read: work that overlaps the gateway's.
        A retryable UNAVAILABLE is sent again after its retryAfterMs, a bounded number of times; one refused
        because the gateway is overloaded after its backoff, until OVERLOAD_PATIENCE has passed.
        A timeout or a closed socket raises, since the remaining answers will not come.
        """
        results: list = [None] * len(calls)
        pending = list(range(len(calls)))
        retries = overloads = 0
        deadline = None
        while pending:
            answers = yield from self._round_steps([calls[i] for i in pending],
                                                   None if retries or overloads else while_waiting)
            deadline = deadline or self.clock() + OVERLOAD_PATIENCE
            waits = {}
            for index, answer in zip(pending, answers):
                results[index] = answer
                wait = _wait_before_asking_again(answer, retries, overloads)
                if wait is not None:
                    waits[index] = wait
            wait = max(waits.values(), default=0.0)
            overloaded = any(OVERLOADED in results[i].message for i in waits)
            if not waits or wait > MAX_RETRY_WAIT or (overloaded and self.clock() + wait > deadline):
                break
            retries += not overloaded
            overloads += overloaded
            yield Wait(wait)
            pending = sorted(waits)
        return results

    def _round_steps(self, calls: list[tuple[str, dict | None]], while_waiting: Callable[[], None] | None):
        ids = yield from self._send_all_steps(calls)
        if while_waiting:
            while_waiting()
        if self.handshake and not (yield from self._read_hello_steps()):  # no requests behind connect: again, after it
            self._adopt((yield from connect_steps(self.host, self.handshake.scopes, self.handshake.identities)))
            ids = yield from self._send_all_steps(calls)
        answers: dict[str, object] = {}
        deadline = time.monotonic() + self.timeout
        waiting = set(ids)
        while waiting:
            frame = yield from receive_steps(self.ws, deadline, self.host, f"answers to {calls[0][0]}")
            if frame is None:
                continue
            request_id = frame.get("id")
            if frame.get("type") == "res" and isinstance(request_id, str) and request_id in waiting:
                waiting.discard(frame["id"])
                if frame.get("ok") is True:
                    payload = frame.get("payload")
                    answers[frame["id"]] = payload if isinstance(payload, dict) else {}
                else:
                    answers[frame["id"]] = GatewayError.from_frame(frame.get("error"))
            # anything else is an event (tick, health, presence, ...) or a stray answer: skipped
        return [answers[i] for i in ids]

    @property
    def lists_archived(self) -> bool:
        """Whether sessions.list takes `archived` (protocol 4, 2026.9; 2026.4 refuses it). Known before hello-ok is
        read: only a gateway whose challenge lists capabilities (2026.9) is sent requests behind `connect`."""
        return self.hello is None or self.hello.protocol >= 4

    def _send_all_steps(self, calls: list[tuple[str, dict | None]]):
        ids = []
        for method, params in calls:
            request_id = os.urandom(8).hex()
            frame = {"type": "req", "id": request_id, "method": method}
            if params is not None:
                frame["params"] = params
            yield from _send_steps(self.ws, self.host, frame)
            ids.append(request_id)
        return ids

    def _read_hello_steps(self):
        """Read and check the answer to `connect` sent before the first requests: True when it is in; False when
        the gateway refused requests sent so early (an answer to one before hello-ok, a close before it, or a
        gateway still starting up), so they must go again on an ordinary connection. Other refusals raise."""
        handshake = self.handshake
        try:
            hello = yield from handshake.finish_steps(self.ws, self.host, early=True)
        except GatewayError as exc:
            if exc.code == "CLOSED" or (exc.code == "UNAVAILABLE" and exc.retryable):
                yield from self.close_steps()
                return False
            raise
        if hello is None:
            yield from self.close_steps()
            return False
        self.hello, self.handshake = hello, None
        refusal = _missing_scope_error(self.host, handshake.scopes, hello)
        if refusal:
            raise refusal
        return True

    def _adopt(self, other: "Connection") -> None:
        self.ws, self.hello, self.handshake = other.ws, other.hello, None

    def close(self) -> None:
        drive(self.close_steps(), self.sleep)

    def close_steps(self):
        yield from _close_steps(self.ws, 1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _send_steps(ws, host: Host, frame: dict):
    try:
        yield Send(ws, orjson.dumps(frame))
    except Exception as exc:  # the socket is gone: no answer will come
        raise GatewayError("CLOSED", f"{host.name}: the connection dropped while sending ({exc})") from None


def _close_steps(ws, timeout: float):
    try:
        yield Close(ws, timeout)
    except Exception:
        pass  # closing a dead socket: nothing left to do


def _wait_before_asking_again(answer, retries: int, overloads: int) -> float | None:
    """Seconds to wait before sending a refused request again, or None: its answer stands."""
    if not isinstance(answer, GatewayError) or answer.code != "UNAVAILABLE":
        return None
    if answer.retryable:
        return (answer.retry_after_ms or 500) / 1000 if retries < UNAVAILABLE_RETRIES else None
    if OVERLOADED in answer.message:
        return OVERLOAD_BACKOFF[min(overloads, len(OVERLOAD_BACKOFF) - 1)]
    return None


def receive_steps(ws, deadline: float, host: Host, waiting_for: str):
    """Steps to the next JSON frame before the deadline: None for a frame that is not a JSON object."""
    try:
        opcode, data = yield Receive(ws, deadline)
    except TimeoutError:  # socket.timeout, also TLS's
        raise GatewayError("TIMEOUT", f"{host.name}: no {waiting_for} within {host.timeout:g}s") from None
    except (wire.WireError, OSError) as exc:
        raise GatewayError(
            "CLOSED", f"{host.name}: the connection dropped while waiting for {waiting_for} ({exc or 'closed'})"
        ) from None
    if opcode == wire.CLOSE:
        code, reason = _close_reason(data)
        raise GatewayError(
            "CLOSED",
            f"{host.name}: the gateway closed the connection while we waited for "
            f"{waiting_for} (code {code}{': ' + reason if reason else ''})",
            {"closeCode": code, "closeReason": reason},
        )
    try:
        message = orjson.loads(data)
    except ValueError:  # strict JSON only: NaN and Infinity are the json module's, which read them as it always did
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
    return message if isinstance(message, dict) else None


def _close_reason(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return None, ""
    return int.from_bytes(data[:2], "big"), data[2:].decode(errors="replace")


DEVICE_SCOPES = [READ, ADMIN]


def connect(host: Host, scopes: list[str], identities=None, early: bool = False) -> Connection:
    """Open, authenticate and check a connection with `scopes` on a blocking socket (see connect_steps)."""
    return drive(connect_steps(host, scopes, identities, early))


def connect_steps(host: Host, scopes: list[str], identities=None, early: bool = False):
    """Steps to open, authenticate and check a connection with `scopes`; retries a gateway still starting up.

    `identities` (an IdentityStore) is needed when the host uses a device identity. A device always
    asks for every scope the guardian uses: a pairing is approved for the scopes asked, so one
    approval then serves check and cleanup alike (asking less, then more, would need a second one).

    `early` (for reads): when the gateway's challenge lists `capabilities` (2026.9, which queues the requests
    sent behind `connect` until it is answered: a round trip saved), this returns before hello-ok, and the first
    call_many sends its requests at once, then reads and checks hello-ok before their answers. A gateway that
    refuses requests so early (2026.4 closes the connection) gets them again on an ordinary connection.
    """
    if host.device:
        scopes = DEVICE_SCOPES + [s for s in scopes if s not in DEVICE_SCOPES]
    deadline = time.monotonic() + host.timeout
    attempt = 0
    while True:
        try:
            return (yield from _connect_once_steps(host, scopes, identities, deadline, early))
        except GatewayError as exc:
            attempt += 1
            wait = (exc.retry_after_ms or 500) / 1000
            retryable = exc.code == "UNAVAILABLE" and exc.retryable  # a gateway still starting up
            if not retryable or attempt > UNAVAILABLE_RETRIES or time.monotonic() + wait >= deadline:
                raise
            yield Wait(wait)


def _connect_once_steps(host: Host, scopes: list[str], identities, deadline: float, early: bool = False):
    ws = yield from _open_steps(host, deadline)
    try:
        challenge = None
        while challenge is None:
            frame = yield from receive_steps(ws, deadline, host, "connect challenge")
            if frame and frame.get("type") == "event" and frame.get("event") == "connect.challenge":
                challenge = frame.get("payload")
                if not isinstance(challenge, dict) or not isinstance(challenge.get("nonce"), str):
                    raise GatewayError("PROTOCOL", f"{host.name}: the gateway's connect challenge has no nonce")
        identity = identities.identity() if host.device else None
        params, device_token_used = _connect_params(host, scopes, challenge, identity, identities)
        handshake = _Handshake(os.urandom(8).hex(), scopes, identities, identity, device_token_used, deadline)
        yield from _send_steps(ws, host, {"type": "req", "id": handshake.request_id, "method": "connect",
                                          "params": params})
        if early and isinstance(challenge.get("capabilities"), list):
            return Connection(host, ws, None, host.timeout, handshake=handshake)
        hello = yield from handshake.finish_steps(ws, host)
    except Exception:
        yield from _close_steps(ws, 0.2)  # the socket may be broken already; the error being raised says why
        raise
    refusal = _missing_scope_error(host, scopes, hello)
    connection = Connection(host, ws, hello, host.timeout)
    if refusal:
        yield from connection.close_steps()
        raise refusal
    return connection


@dataclass
class _Handshake:
    """A `connect` sent, its answer not yet read."""

    request_id: str
    scopes: list[str]
    identities: object
    identity: object
    device_token_used: bool
    deadline: float

    def finish_steps(self, ws, host: Host, early: bool = False):
        """Steps to read the answer to `connect`: hello-ok (a device token it carries is saved), or raise what was
        refused. `early` (requests were sent behind it): None when one of them is answered first, refused."""
        while True:
            frame = yield from receive_steps(ws, self.deadline, host, "the answer to connect")
            if frame and frame.get("type") == "res":
                if frame.get("id") == self.request_id:
                    break
                if early:
                    return None
        if frame.get("ok") is not True:
            raise _explain_connect_error(host, GatewayError.from_frame(frame.get("error")), self.identity,
                                         self.device_token_used)
        hello = _read_hello(host, frame.get("payload"))
        token = _object(_object(frame["payload"], "auth"), "deviceToken")
        if self.identity and isinstance(token, str) and token:
            self.identities.save_device_token(host.name, self.identity.device_id, token, hello.scopes)
        return hello


def _missing_scope_error(host: Host, scopes: list[str], hello: Hello) -> GatewayError | None:
    missing = [s for s in scopes if s not in hello.scopes and not (s != ADMIN and ADMIN in hello.scopes)]
    if not missing:
        return None
    return GatewayError("MISSING_SCOPE", _missing_scope_sentence(host, missing, hello),
                        {"missing": missing, "granted": hello.scopes, "hello": hello})


def _open_steps(host: Host, deadline: float):
    """Steps to an open socket to `host`, its certificate checked against a pinned fingerprint before anything is
    sent; a failure raised as the GatewayError that says what to do."""
    try:
        ws = yield Open(host, deadline)
    except Exception as exc:
        failure = _open_failure(host, exc, deadline)
        if failure is None:
            raise
        raise failure from None
    if host.fingerprint:
        der = ws.peer_certificate()
        seen = hashlib.sha256(der).hexdigest() if der else "none"
        if seen != host.fingerprint:
            yield from _close_steps(ws, 0.2)
            raise GatewayError("TLS", f"{host.name}: the certificate fingerprint of {urlsplit(host.url).netloc} is "
                                      f"sha256:{seen}, not the pinned sha256:{host.fingerprint}; nothing was sent")
    return ws


def _open_failure(host: Host, exc: Exception, deadline: float) -> GatewayError | None:
    """The sentence for a failure to connect, upgrade or agree TLS (either driver's), or None for anything else."""
    import ssl

    netloc = urlsplit(host.url).netloc
    target = f"{host.name} at {netloc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        presented = _presented_fingerprint(host, deadline)
        pin = (
            (
                f"; it presented sha256 {presented}: if `openssl x509 -noout -fingerprint -sha256 -in <cert>` on "
                f"{host.name} prints the same, pin it with fingerprint: {presented}"
            )
            if presented
            else ""
        )
        return GatewayError(
            "TLS",
            f"{host.name}: the TLS certificate of {netloc} is not trusted "
            f"({exc.verify_message}); set ca_file to the CA that signed it{pin}",
            {"presentedFingerprint": presented},
        )
    if isinstance(exc, ssl.SSLError):
        return GatewayError("TLS", f"{host.name}: TLS with {netloc} failed ({exc.reason or exc})")
    if isinstance(exc, TimeoutError):
        return GatewayError("TIMEOUT", f"{target} did not accept a connection within {host.timeout:g}s")
    if isinstance(exc, ConnectionRefusedError):
        return GatewayError("UNREACHABLE", f"{target} refused the connection (is the gateway running?)")
    if isinstance(exc, wire.BadStatus):
        return GatewayError(
            "UNREACHABLE",
            f"{target} answered HTTP {exc.status} instead of a WebSocket upgrade (is this the gateway's port?)",
        )
    if isinstance(exc, (OSError, wire.WireError)):
        return GatewayError("UNREACHABLE", f"cannot reach {target} ({exc})")
    return None


def _open_socket(host: Host, deadline: float) -> WebSocket:
    return WebSocket.open(host, max(0.1, deadline - time.monotonic()))


@dataclass(frozen=True)
class Upgrade:
    """Where `host`'s URL points and the upgrade request to send there: what either driver opens a gateway with."""

    hostname: str
    port: int
    tls: bool
    request: bytes
    key: str

    @classmethod
    def of(cls, host: Host) -> "Upgrade":
        parts = urlsplit(host.url)
        tls = parts.scheme == "wss"
        key = wire.new_key()
        host_header = parts.netloc.rpartition("@")[2]  # never credentials, should a URL carry them
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls,
                   wire.upgrade_request(host_header, resource, key), key)


class WebSocket:
    """One upgraded connection to a gateway on a blocking socket (wire.py's frames), read in blocks."""

    BLOCK = 65536

    def __init__(self, sock, end: wire.ClientEnd):
        self.sock = sock
        self._end = end

    @classmethod
    def open(cls, host: Host, timeout: float) -> "WebSocket":
        """Connect (TCP, TLS for wss://) and upgrade, within `timeout` seconds for each step."""
        import socket

        upgrade = Upgrade.of(host)
        sock = socket.create_connection((upgrade.hostname, upgrade.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each request goes out at once
            if upgrade.tls:
                sock = tls_context(host).wrap_socket(sock, server_hostname=upgrade.hostname)
            sock.sendall(upgrade.request)
            answer = bytearray()
            while not wire.read_upgrade(answer, upgrade.key):
                block = sock.recv(cls.BLOCK)
                if not block:
                    raise wire.WireError("the connection closed during the WebSocket upgrade")
                answer += block
        except BaseException:
            sock.close()
            raise
        return cls(sock, wire.ClientEnd(bytes(answer)))  # what came behind the upgrade's answer is frames

    def peer_certificate(self) -> bytes | None:
        return self.sock.getpeercert(binary_form=True)

    def settimeout(self, seconds: float) -> None:
        self.sock.settimeout(seconds)

    def send(self, data: bytes) -> None:
        self._end.send_text(data)
        self._flush()

    def recv_message(self) -> tuple[int, bytes]:
        """The next message (TEXT or BINARY, its payload) or the gateway's CLOSE (answered at once); pings are
        answered and skipped. Raises TimeoutError at the socket's timeout, OSError or WireError when it breaks."""
        while (message := self._end.next_message()) is None:
            self._flush()
            block = self.sock.recv(self.BLOCK)
            if not block:
                raise wire.WireError("the connection was closed without a close frame")
            self._end.feed(block)
        self._flush()
        return message

    def close(self, timeout: float = 1.0) -> None:
        """Close as the protocol asks: a close frame, then the gateway's (for at most `timeout` s), then the socket."""
        end = time.monotonic() + timeout
        try:
            self._end.send_close()
            self._flush()
            while not self._end.close_received and (left := end - time.monotonic()) > 0:
                self.sock.settimeout(left)
                self.recv_message()
        except (OSError, wire.WireError):
            pass  # a gateway gone or silent: the socket is closed all the same
        finally:
            self.sock.close()

    def _flush(self) -> None:
        if self._end.outgoing:
            self.sock.sendall(self._end.take_outgoing())


def tls_context(host: Host):
    import ssl

    if host.fingerprint and not host.ca_file:
        # pinned: the fingerprint is the trust anchor, checked in _open_socket before any secret is sent
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=host.ca_file)  # the system's CAs unless ca_file names one


def _presented_fingerprint(host: Host, deadline: float) -> str | None:
    """The sha256 of the certificate a gateway presents (colon form), fetched without trusting it,
    only to tell the operator what to compare and pin. Nothing is sent on that connection."""
    import ssl

    parts = urlsplit(host.url)
    try:
        pem = ssl.get_server_certificate((parts.hostname, parts.port or 443),
                                         timeout=max(0.1, deadline - time.monotonic()))
    except (OSError, ValueError):
        return None
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def _connect_params(host: Host, scopes: list[str], challenge: dict, identity, identities) -> tuple[dict, bool]:
    params = {"minProtocol": 3, "maxProtocol": 4, "client": dict(CLIENT), "role": ROLE, "scopes": list(scopes)}
    device_token = identities.device_token(host.name, identity.device_id) if identity else None
    signed_token = ""
    if host.token:
        signed_token = host.token.reveal()
        params["auth"] = {"token": signed_token}
    elif device_token:
        signed_token = device_token
        params["auth"] = {"deviceToken": device_token}
    if identity:
        from guardian.adapters.identity import signature_payload

        ts = challenge.get("ts")
        signed_at = ts if type(ts) is int and ts > 0 else int(time.time() * 1000)
        nonce = challenge["nonce"]
        payload = signature_payload(identity.device_id, CLIENT["id"], CLIENT["mode"], ROLE, params["scopes"],
                                    signed_at, signed_token, nonce, CLIENT["platform"])
        params["device"] = {"id": identity.device_id, "publicKey": identity.public_key,
                            "signature": identity.sign(payload), "signedAt": signed_at, "nonce": nonce}
    return params, bool(device_token and not host.token)


def _read_hello(host: Host, payload) -> Hello:
    if not isinstance(payload, dict) or payload.get("type") != "hello-ok":
        raise GatewayError("PROTOCOL", f"{host.name}: the gateway's answer to connect is not hello-ok")
    scopes = _object(_object(payload, "auth"), "scopes")
    main_key = _object(_object(_object(payload, "snapshot"), "sessionDefaults"), "mainSessionKey")
    version = _object(_object(payload, "server"), "version")
    methods = _object(_object(payload, "features"), "methods")
    protocol = payload.get("protocol")
    if type(protocol) is not int or protocol not in (3, 4):
        raise GatewayError(
            "PROTOCOL", f"{host.name}: the gateway speaks protocol {str(protocol)[:20]}; the guardian speaks 3 and 4"
        )
    return Hello(protocol=protocol, server_version=version if isinstance(version, str) else "unknown",
                 scopes=[s for s in scopes if isinstance(s, str)] if isinstance(scopes, list) else [],
                 main_session_key=main_key if isinstance(main_key, str) else None,
                 methods=frozenset(m for m in methods if isinstance(m, str)) if isinstance(methods, list)
                 else frozenset())


def _object(value, key: str):
    """value[key] when value is a JSON object, else None: a gateway's answer is read, never trusted."""
    return value.get(key) if isinstance(value, dict) else None


def _missing_scope_sentence(host: Host, missing: list[str], hello: Hello) -> str:
    what = " and ".join(missing)
    if not hello.scopes and not host.device:
        why = ("the gateway granted no scopes at all, which it does to a client without a paired device identity "
               "unless it connects over loopback; set `device: true` on this host and approve the pairing "
               "(`guardian doctor` shows the command)")
    elif not hello.scopes:
        why = "the gateway granted no scopes to this device; approve its pairing on the gateway host"
    else:
        why = (f"it granted only {', '.join(hello.scopes)}; use a gateway token with full operator access, or "
               f"approve the device's scope upgrade on the gateway host (`openclaw devices list`)")
    return f"{host.name}: connected, but without {what}: {why}"


def _explain_connect_error(host: Host, error: GatewayError, identity, device_token_used: bool) -> GatewayError:
    """Turn the connect failures an operator can fix into one sentence saying how."""
    code = error.detail_code
    if code == "PAIRING_REQUIRED":
        request_id = error.details.get("requestId")
        reason = {
            "not-paired": "is not approved yet",
            "scope-upgrade": "asks for more scopes than approved",
            "role-upgrade": "asks for a higher role than approved",
            "metadata-upgrade": "changed and must be approved again",
        }.get(error.details.get("reason"), "needs approval")
        # the command ends the sentence, so a copied request id never carries punctuation with it
        fix = (f"run on {host.name}, then run the guardian again: openclaw devices approve {request_id}" if request_id
               else f"on {host.name} run `openclaw devices list` and approve the guardian's request")
        error.message = (
            f"{host.name}: pairing required: this guardian's device "
            f"({identity.device_id[:12] if identity else '?'}...) {reason}; to approve it, {fix}"
        )
    elif code == "AUTH_TOKEN_MISMATCH":
        source = host.token.source if host.token else "nowhere"
        error.message = f"{host.name}: the gateway rejected the token from {source} (token mismatch)"
    elif code == "AUTH_DEVICE_TOKEN_MISMATCH" or (
        device_token_used and error.code in ("INVALID_REQUEST", "NOT_PAIRED")
    ):
        error.message = (f"{host.name}: the gateway rejected this guardian's stored device token ({error.message}); "
                         "set a gateway token for this host or pair again")
    elif code == "DEVICE_IDENTITY_REQUIRED" or (error.code == "NOT_PAIRED" and not host.token):
        error.message = (f"{host.name}: the gateway wants a token: set token_env or token_file for this host "
                         f"(the gateway's gateway.auth.token)")
    elif code == "PROTOCOL_MISMATCH":
        error.message = (f"{host.name}: protocol mismatch: the gateway speaks protocol "
                         f"{error.details.get('expectedProtocol', '?')}, the guardian speaks 3 and 4")
    else:
        error.message = f"{host.name}: connect refused: {error.message}"
    return error


def total_count(page: dict) -> int | None:
    """sessions.list's totalCount when it is a count (a whole number, 0 or more: true is no count of 1), else None
    (releases before 2026.9 have none)."""
    total = page.get("totalCount")
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def concurrently(work, items: list, cap: int = Check.THREADS) -> list:
    """work(item) for every item, at most `cap` at once; each result is work's value or the exception it raised.

    One item's failure (a dead host, a bug meeting one host's odd reply) never costs the others
    their result. Plain threads, each taking the next item when it is done: the work is waiting on
    sockets, and concurrent.futures would add to the start-up of every cron run.
    """
    results: list = [None] * len(items)
    queue = iter(enumerate(items))
    taking = threading.Lock()

    def worker():
        while True:
            with taking:
                index, item = next(queue, (None, None))
            if index is None:
                return
            try:
                results[index] = work(item)
            except Exception as exc:  # isolated per item, reported by the caller as that item's error
                results[index] = exc

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(cap, len(items)) - 1)]
    for thread in threads:
        thread.start()
    worker()  # this thread is one of the workers: a single host needs no thread at all
    for thread in threads:
        thread.join()
    return results
