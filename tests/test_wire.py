"""guardian/adapters/wire.py: the WebSocket upgrade and frames, fed in any pieces, and anything else refused with
one WireError."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardian.adapters import wire


def server_frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    """A frame as a gateway sends it: unmasked."""
    size = len(payload)
    first = (0x80 if final else 0) | opcode
    if size < 126:
        return struct.pack("!BB", first, size) + payload
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def decoded(chunks: list[bytes]) -> list[tuple[int, bytes]]:
    decoder, out = wire.Decoder(), []
    for chunk in chunks:
        decoder.feed(chunk)
        while (message := decoder.next()) is not None:
            out.append(message)
    return out


messages = st.lists(st.tuples(st.sampled_from([wire.TEXT, wire.BINARY]),
                              st.binary(max_size=300) | st.sampled_from([b"x" * 125, b"x" * 126, b"y" * 65536]),
                              st.integers(min_value=1, max_value=3)), max_size=5)


@given(messages, st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_messages_come_whole_and_in_order_however_the_bytes_arrive(sent, cuts, pings):
    """Fragments are joined, a ping between them comes on its own, and the cut points of the stream never matter."""
    stream, expected = b"", []
    for opcode, payload, parts in sent:
        chunks = pieces(payload, list(range(1, parts))) if payload else [b""]
        for i, chunk in enumerate(chunks):
            stream += server_frame(opcode if i == 0 else wire.CONTINUATION, chunk, final=i == len(chunks) - 1)
            if pings and i == 0 and len(chunks) > 1:  # between a message's fragments: it comes first
                stream += server_frame(wire.PING, b"p")
                expected.append((wire.PING, b"p"))
        expected.append((opcode, payload))
    assert decoded(pieces(stream, cuts)) == expected


@given(st.binary(max_size=70000).filter(lambda b: len(b) in range(0, 200) or len(b) > 65535) | st.binary(max_size=200))
def test_a_client_frame_is_masked_and_reads_back_the_same(payload):
    data = wire.frame(wire.TEXT, payload)
    assert data[1] & 0x80  # masked, as a client's frames must be
    assert decoded([data]) == [(wire.TEXT, payload)]


@given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=4))
def test_any_bytes_give_messages_or_one_wire_error(data, cuts):
    try:
        out = decoded(pieces(data, cuts))
    except wire.WireError:
        return
    assert all(isinstance(opcode, int) and isinstance(payload, bytes) for opcode, payload in out)


@pytest.mark.parametrize("data, what", [
    (server_frame(wire.TEXT, b"a") .replace(b"\x81", b"\xc1", 1), "reserved bits"),
    (bytes([0x83, 0]), "unknown opcode"),
    (server_frame(wire.CONTINUATION, b"a"), "no message to continue"),
    (server_frame(wire.TEXT, b"a", final=False) + server_frame(wire.TEXT, b"b"), "inside a fragmented"),
    (server_frame(wire.PING, b"p" * 126), "control frame"),
    (struct.pack("!BBQ", 0x81, 127, wire.MAX_MESSAGE + 1), "over"),
])
def test_protocol_errors_are_refused(data, what):
    with pytest.raises(wire.WireError, match=what):
        decoded([data])


def accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()


def test_the_upgrade_names_no_origin():
    request = wire.upgrade_request("127.0.0.1:18789", "/", "k").decode()
    assert request.startswith("GET / HTTP/1.1\r\n") and request.endswith("\r\n\r\n")
    assert "origin" not in request.lower() and "Host: 127.0.0.1:18789\r\n" in request


@given(st.lists(st.integers(min_value=0), max_size=6))
def test_the_upgrade_answer_is_read_in_any_pieces_and_what_follows_is_kept(cuts):
    key = wire.new_key()
    answer = (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Accept: {accept(key)}\r\n\r\n").encode() + server_frame(wire.TEXT, b"{}")
    buffer, done = bytearray(), False
    for chunk in pieces(answer, cuts):
        buffer += chunk
        done = done or wire.read_upgrade(buffer, key)
        assert done or b"\r\n\r\n" not in buffer  # complete as soon as the blank line is in
    assert done and decoded([bytes(buffer)]) == [(wire.TEXT, b"{}")]


def test_an_upgrade_refused_or_not_for_this_key_raises():
    with pytest.raises(wire.BadStatus) as refused:
        wire.read_upgrade(bytearray(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), "k")
    assert refused.value.status == 404
    wrong = f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept('other')}\r\n\r\n"
    with pytest.raises(wire.WireError, match="not a WebSocket handshake"):
        wire.read_upgrade(bytearray(wrong.encode()), "k")
    with pytest.raises(wire.WireError, match="not an HTTP answer"):
        wire.read_upgrade(bytearray(b"SSH-2.0-OpenSSH\r\n\r\n"), "k")
