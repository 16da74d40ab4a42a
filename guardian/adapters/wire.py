"""The WebSocket wire (RFC 6455) as the guardian speaks it to a gateway, without sockets.

The upgrade request (no `Origin` header: a gateway that sees one clears every scope) and its answer, the client's
masked frames, and an incremental decoder of the gateway's. gateway.py drives it on a blocking socket, reading in
blocks: websocket-client, used before, read the upgrade's answer a byte at a time in Python, the largest part of
a poll's CPU (docs/benchmarks.md "fleet"). Nothing here blocks, so the poller of many connections on one thread
(poller.py) drives the same code.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
CONTINUATION = 0x0
MAX_MESSAGE = 64 * 1024 * 1024  # bytes; a gateway's own cap is 25 MiB (policy.maxPayload)
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_HEADERS_MAX = 65536  # an upgrade answer longer than this is not a gateway's


class WireError(Exception):
    """The peer broke the protocol: a bad upgrade answer or a malformed frame. str() says what, briefly."""


class BadStatus(WireError):
    """The upgrade was answered with an HTTP status other than 101."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(host_header: str, resource: str, key: str) -> bytes:
    return (f"GET {resource} HTTP/1.1\r\nUpgrade: websocket\r\nHost: {host_header}\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n\r\n").encode()


def read_upgrade(buffer: bytearray, key: str) -> bool:
    """True once the whole answer to the upgrade is in `buffer` and accepts it (removed from the buffer: what follows
    is frames); False while it is still incomplete. A refusal or a malformed answer raises."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > _HEADERS_MAX:
            raise WireError("the upgrade's answer has no end")
        return False
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[:end + 4]
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
        raise WireError(f"not an HTTP answer: {lines[0][:80]!r}")
    if int(status[1]) != 101:
        raise BadStatus(int(status[1]))
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    accept = base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_GUID).digest()).decode()
    if headers.get("upgrade", "").lower() != "websocket" or headers.get("sec-websocket-accept") != accept:
        raise WireError("the upgrade's answer is not a WebSocket handshake for this request")
    return True


def frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked (a client's frames must be)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    mask = os.urandom(4)
    return head + mask + _masked(payload, mask)


def close_frame(code: int = 1000) -> bytes:
    return frame(CLOSE, struct.pack("!H", code))


def _masked(payload: bytes, mask: bytes) -> bytes:
    # XOR as one big integer: a Python loop over the bytes would cost ~100x more
    size = len(payload)
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(size, "little")


class Decoder:
    """The gateway's frames from bytes fed in any pieces: whole messages (text or binary, fragments joined) and
    control frames (close, ping, pong), in order."""

    def __init__(self, data: bytes = b""):
        self._buffer = bytearray(data)
        self._fragments: list[bytes] = []
        self._fragmented_opcode: int | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> tuple[int, bytes] | None:
        """The next message or control frame (opcode, payload), or None until more bytes are fed."""
        while True:
            parsed = self._frame()
            if parsed is None:
                return None
            final, opcode, payload = parsed
            if opcode >= CLOSE:  # control frames come whole, also between a message's fragments
                if not final or len(payload) > 125:
                    raise WireError("a fragmented or oversized control frame")
                return opcode, payload
            if opcode == CONTINUATION:
                if self._fragmented_opcode is None:
                    raise WireError("a continuation frame with no message to continue")
            elif self._fragmented_opcode is not None:
                raise WireError("a new message inside a fragmented one")
            else:
                self._fragmented_opcode = opcode
            self._fragments.append(payload)
            if sum(map(len, self._fragments)) > MAX_MESSAGE:
                raise WireError(f"a message over {MAX_MESSAGE} bytes")
            if final:
                message, opcode = b"".join(self._fragments), self._fragmented_opcode
                self._fragments, self._fragmented_opcode = [], None
                return opcode, message

    def _frame(self) -> tuple[bool, int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise WireError("a frame with reserved bits set (no extension was agreed)")
        opcode = first & 0x0F
        if opcode not in (CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG):
            raise WireError(f"a frame with the unknown opcode {opcode}")
        size, at = second & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                return None
            size, at = struct.unpack_from("!H", buffer, 2)[0], 4
        elif size == 127:
            if len(buffer) < 10:
                return None
            size, at = struct.unpack_from("!Q", buffer, 2)[0], 10
        if size > MAX_MESSAGE:
            raise WireError(f"a frame over {MAX_MESSAGE} bytes")
        mask = None
        if second & 0x80:  # a server must not mask; read it anyway rather than refuse
            if len(buffer) < at + 4:
                return None
            mask, at = bytes(buffer[at:at + 4]), at + 4
        if len(buffer) < at + size:
            return None
        payload = bytes(buffer[at:at + size])
        del buffer[:at + size]
        return bool(first & 0x80), opcode, _masked(payload, mask) if mask else payload


class ClientEnd:
    """The client's end of one upgraded WebSocket, without a socket: bytes read are fed in, messages come out, and
    what must be sent (text, the answers to pings and to a close, our close) waits in `outgoing` for the socket."""

    def __init__(self, data: bytes = b""):
        self._decoder = Decoder(data)
        self.outgoing = bytearray()
        self.close_sent = self.close_received = False

    def feed(self, data: bytes) -> None:
        self._decoder.feed(data)

    def send_text(self, data: bytes) -> None:
        """A text message: `data` is its UTF-8."""
        self.outgoing += frame(TEXT, data)

    def send_close(self) -> None:
        if not self.close_sent:
            self.close_sent = True
            self.outgoing += close_frame()

    def next_message(self) -> tuple[int, bytes] | None:
        """The next message (TEXT or BINARY, its payload) or the gateway's CLOSE (answered: the protocol asks it), or
        None until more bytes are fed; pings are answered and skipped, pongs skipped. A malformed frame raises."""
        while (message := self._decoder.next()) is not None:
            opcode, payload = message
            if opcode == PING:
                self.outgoing += frame(PONG, payload)
            elif opcode == CLOSE:
                self.close_received = True
                self.send_close()
                return message
            elif opcode != PONG:
                return message
        return None

    def take_outgoing(self) -> bytes:
        data, self.outgoing = bytes(self.outgoing), bytearray()
        return data
