#!/usr/bin/env python3
"""A tiny OpenAI-compatible model server on 127.0.0.1, used as an OpenClaw model provider.

Standard library only.  Serves ``GET /v1/models`` (one model) and ``POST /v1/chat/completions``
(SSE chunks when ``"stream": true``, one JSON completion otherwise).  Real agent runs on a
peer gateway (``scripts/peer.py``) can then happen offline::

    fm = FakeModel(trickle_seconds=0).start()
    gw = peer.start("pc-a", extra_config=fm.provider_config())
    fm.hold.clear()          # from now on, replies keep streaming: runs stay active
    ...                      # sessions.list shows hasActiveRun: true / status: "running"
    fm.hold.set()            # let the reply finish: the run ends
    fm.stop()

Knobs
    ``trickle_seconds``: spread the reply's chunks over that many seconds (default 0).
    ``hold``: a ``threading.Event``, set by default.  While it is NOT set a streaming reply
    keeps trickling (an empty ``delta`` chunk every ``keepalive_seconds``) and does not finish;
    a non-streaming reply waits.  ``hold.set()`` releases every held reply.
    ``reply``: the text answered.

``requests`` records every request received (method, path, parsed JSON body, time).

CLI: ``python scripts/fake_model.py [--port P] [--trickle S]`` serves until Ctrl-C and prints
the provider config as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeModel:
    def __init__(self, *, model_id: str = "fake-model-1", provider: str = "fake",
                 reply: str = "Hello from the fake model. This is a short reply.",
                 trickle_seconds: float = 0.0, keepalive_seconds: float = 0.5,
                 host: str = "127.0.0.1", port: int = 0,
                 context_window: int = 128000, max_tokens: int = 4096) -> None:
        self.model_id = model_id
        self.provider = provider
        self.reply = reply
        self.trickle_seconds = trickle_seconds
        self.keepalive_seconds = keepalive_seconds
        self.host = host
        self.port = port
        self.context_window = context_window
        self.max_tokens = max_tokens
        self.hold = threading.Event()
        self.hold.set()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "FakeModel":
        if self._server is not None:
            return self
        handler = type("FakeModelHandler", (_Handler,), {"model": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._closing.clear()
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-model",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._closing.set()  # held streams finish at once
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "FakeModel":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- info -----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model_ref(self) -> str:
        return f"{self.provider}/{self.model_id}"

    def provider_config(self) -> dict:
        """The part of ``openclaw.json`` that makes this server the default model."""
        return {
            "models": {"providers": {self.provider: {
                "baseUrl": self.base_url,
                "apiKey": "any",
                "api": "openai-completions",
                "models": [{
                    "id": self.model_id,
                    "name": f"Fake model {self.model_id}",
                    "reasoning": False,
                    "input": ["text"],
                    "contextWindow": self.context_window,
                    "maxTokens": self.max_tokens,
                    "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                }],
            }}},
            "agents": {"defaults": {"model": {"primary": self.model_ref}}},
        }

    def chat_requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    # -- internals ------------------------------------------------------------------------------
    def _record(self, method: str, path: str, body: Any) -> None:
        with self.lock:
            self.requests.append({"method": method, "path": path, "body": body, "time": time.time()})

    def _pieces(self) -> list[str]:
        words = self.reply.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    def _held(self) -> bool:
        return not self.hold.is_set() and not self._closing.is_set()


class _Handler(BaseHTTPRequestHandler):
    model: FakeModel
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # GET -----------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        m = self.model
        m._record("GET", self.path, None)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{
                "id": m.model_id, "object": "model", "created": 1700000000, "owned_by": m.provider}]})
        elif path.startswith("/v1/models/"):
            self._json(200, {"id": m.model_id, "object": "model", "created": 1700000000,
                             "owned_by": m.provider})
        elif path in ("", "/health", "/v1"):
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": {"message": f"not found: {self.path}", "type": "not_found"}})

    # POST ----------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        m = self.model
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        m._record("POST", self.path, body)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"message": f"not found: {self.path}", "type": "not_found"}})
            return
        try:
            if isinstance(body, dict) and body.get("stream"):
                self._stream(body)
            else:
                self._complete(body if isinstance(body, dict) else {})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the gateway gave up on the reply (an aborted run)

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _usage(self, body: dict) -> dict:
        prompt = len(json.dumps(body.get("messages", []))) // 4
        completion = max(1, len(self.model.reply) // 4)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def _complete(self, body: dict) -> None:
        m = self.model
        if m.trickle_seconds:
            time.sleep(m.trickle_seconds)
        while m._held():
            time.sleep(0.1)
        self._json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": int(time.time()), "model": m.model_id,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": m.reply}}],
            "usage": self._usage(body)})

    def _stream(self, body: dict) -> None:
        m = self.model
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
            payload: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                       "model": m.model_id,
                                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                payload["choices"] = []
                payload["usage"] = usage
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        def send(data: bytes) -> None:
            # chunked transfer encoding: one HTTP chunk per SSE event
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        send(chunk({"role": "assistant", "content": ""}))
        pieces = m._pieces()
        pause = (m.trickle_seconds / len(pieces)) if m.trickle_seconds and pieces else 0
        for piece in pieces:
            if pause:
                time.sleep(pause)
            send(chunk({"content": piece}))
        last = time.monotonic()
        while m._held():
            time.sleep(0.05)
            if time.monotonic() - last >= m.keepalive_seconds:
                send(chunk({"content": ""}))
                last = time.monotonic()
        send(chunk({}, finish="stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            send(chunk({}, usage=self._usage(body)))
        send(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="OpenAI-compatible fake model server")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--trickle", type=float, default=0.0)
    args = p.parse_args(argv)
    fm = FakeModel(port=args.port, trickle_seconds=args.trickle).start()
    print(json.dumps(fm.provider_config()), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
