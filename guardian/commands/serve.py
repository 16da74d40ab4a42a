"""`guardian serve`: check and cleanup on their own schedule, served over HTTP for Prometheus and a wall screen.

The passes are the cron commands' own (check.run, cleanup.run) with their state lock, cleanup lock
and audit log, so serve and cron on one state dir never act twice. Every time comes from one clock
function and `run_due(now)` is the whole schedule step: tests drive passes without sleeping.
A pass that raises is logged and counted; the next runs on time.

HTTP (standard library, a thread per request, nothing written): /metrics, / (the live fleet page),
/report?since=7d, /api/v1/status, /healthz. With serve.token set, every path but /healthz needs
`Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import json
import math
import signal
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from guardian.adapters.audit import AuditLog, new_run_id
from guardian.adapters.history import HistoryError
from guardian.commands import check as checking
from guardian.commands import cleanup as cleaning
from guardian.output import fleet_page, metrics
from guardian.output.render import check_json
from guardian.settings.model import Config, ConfigError, is_loopback, listen_address

HEALTHY_INTERVALS = 3  # /healthz answers 503 once the last good check is older than this many check intervals
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def address(config: Config, listen: str | None) -> tuple[str, int]:
    """Where to listen: --listen, else serve.listen. Not loopback only when it is serve.listen, which the
    config accepts only with a token or insecure: true. ValueError with the sentence if not."""
    text = listen or config.serve.listen
    host, port = listen_address(text)
    if not is_loopback(host) and text != config.serve.listen:
        raise ValueError(f"{text} is not loopback: set it as serve.listen in the config, with token_env or "
                         "token_file (or insecure: true), so the fleet's state is not open to anyone who can reach it")
    return host, port


def release_freed_heap() -> None:
    """Give the heap a pass freed back to the system (glibc's malloc_trim; elsewhere nothing).

    Each pass's transient peak (the history read-back, SQLite's pages, the pollers' buffers and stacks) is freed
    when it ends, but glibc keeps the freed pages mapped: without this a daemon's RSS is its highest pass so far,
    which creeps up over hours though nothing is kept (docs/benchmarks.md, the soak).
    """
    import ctypes  # serve only: a check never pays for it

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc (musl, macOS): their allocators return memory their own way
        return
    trim(0)


def next_due(due: float, every: float, now: float) -> float:
    """The first time on the schedule (due + k*every) after now: a pass that ran late skips the slots it missed
    instead of running them back to back."""
    if now < due:
        return due
    following = due + every * (math.floor((now - due) / every) + 1)
    return following if following > now else following + every  # the division rounded a slot down onto now


@dataclass(frozen=True)
class LastCheck:
    """What the last good check left for the HTTP side; replaced whole, never changed."""

    report: checking.CheckReport
    status: dict
    metrics: str


class Service:
    def __init__(self, load, config: Config, clock, log=None):
        self.load = load  # () -> a fresh Config, or ConfigError
        self.config = config
        self.clock = clock
        self.log = log or (lambda line: print(f"guardian serve: {line}", file=sys.stderr, flush=True))
        self.started = clock()
        self.due = {"check": self.started, "cleanup": self.started}
        self.failures = Counter({"check": 0, "cleanup": 0})
        self.last: LastCheck | None = None
        self.warned: set[str] = set()  # the last check's warnings, logged when they first appeared
        self.stopping = False
        self.reload_asked = False
        self.wake = threading.Event()

    # --- the schedule ----------------------------------------------------------------------

    def every(self, name: str) -> float:
        return self.config.serve.check_every if name == "check" else self.config.serve.cleanup_every

    def run_due(self, now: float) -> list[str]:
        """Run each pass that is due at `now` (check first), and schedule its next one; returns the passes run."""
        ran = []
        for name in ("check", "cleanup"):
            if now >= self.due[name] and not self.stopping:  # SIGTERM: the pass in flight ends, no other starts
                try:
                    getattr(self, f"_{name}")(now)
                except Exception as exc:  # one failure never stops the service
                    self.failures[name] += 1
                    self.log(f"the {name} pass failed: {type(exc).__name__}: {exc}; the next one runs on schedule")
                self.due[name] = next_due(self.due[name], self.every(name), now)
                ran.append(name)
        return ran

    def _check(self, now: float) -> None:
        config = self.config
        report = checking.run(config, None, now)
        for warning in report.warnings:  # said once, not on every pass: cron mails each run's, a journal need not
            if warning not in self.warned:
                self.log(f"warning: {warning}")
        self.warned = set(report.warnings)
        for delivery in (d for d in report.deliveries if d.error):
            self.log(f"alert channel {delivery.channel} failed ({delivery.error}); it will be sent again next check")
        if report.error:  # the state dir could not be used: the alerts reached stderr only
            raise RuntimeError(report.error)
        try:
            text = metrics.exposition(report, config.alerts, config.state_dir, config.attribution.top)
        except HistoryError as exc:
            self.log(f"the metrics' counters cannot be kept ({exc}); serving the gauges alone")
            text = metrics.textfile(report, {}, config.alerts, config.attribution.top)
        self.last = LastCheck(report, check_json(report), text)

    def _cleanup(self, now: float) -> None:
        config = self.config
        rules, warnings = config.cleanup, []
        try:
            reports = cleaning.run(config, config.select(None), rules, now, False,
                                   AuditLog(config.state_dir, new_run_id(), "cleanup"), warnings=warnings)
        except cleaning.CleanupBusy as exc:
            self.log(f"{exc}: left to it")
            return
        for warning in warnings:
            self.log(f"warning: {warning}")
        for report in reports:
            if report.error:
                self.log(f"cleanup of {report.host.name} failed: {report.error}")
        closed = sum(r.closed for r in reports if r.closed)
        if closed:
            self.log(f"cleanup closed {closed} idle sessions")

    def reload(self) -> None:
        try:
            config = self.load()
        except ConfigError as exc:
            self.log(f"the config was not reloaded: {exc}; keeping the one loaded before")
            return
        if config.serve.listen != self.config.serve.listen:
            self.log(f"serve.listen is now {config.serve.listen}: restart to listen there")
        self.config = config
        self.log("config reloaded")

    def healthy(self, now: float) -> bool:
        """Checks succeed on schedule: the last good one (or the start) is at most 3 intervals old."""
        since = self.last.report.time if self.last else self.started
        return now - since <= HEALTHY_INTERVALS * self.config.serve.check_every

    # --- the process -----------------------------------------------------------------------

    def serve_forever(self, where: tuple[str, int]) -> None:
        """Listen, run the passes as they come due until SIGTERM (or SIGINT), reload on SIGHUP."""
        server = ThreadingHTTPServer(where, handler(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        handlers = {number: signal.signal(number, handler) for number, handler in
                    ((signal.SIGTERM, self._stop), (signal.SIGINT, self._stop), (signal.SIGHUP, self._ask_reload))}
        host, port = server.server_address[:2]
        self.log(f"listening on http://{host}:{port}; check every {self.config.serve.check_every:g}s, "
                 f"cleanup every {self.config.serve.cleanup_every:g}s")
        try:
            while not self.stopping:
                if self.reload_asked:
                    self.reload_asked = False
                    self.reload()
                if self.run_due(self.clock()):
                    release_freed_heap()
                self.wake.wait(max(0.0, min(self.due.values()) - self.clock()))
                self.wake.clear()
        finally:
            server.shutdown()
            server.server_close()
            for number, previous in handlers.items():
                signal.signal(number, previous)
        self.log("stopped")

    def _stop(self, signum, frame):  # the pass in flight finishes: the loop ends after it
        self.stopping = True
        self.wake.set()

    def _ask_reload(self, signum, frame):
        self.reload_asked = True
        self.wake.set()

    # --- what the HTTP side answers: (status, content type, body) --------------------------

    def authorised(self, header: str | None) -> bool:
        token = self.config.serve.token
        return token is None or hmac.compare_digest((header or "").encode(), f"Bearer {token.reveal()}".encode())

    def answer(self, path: str, query: dict, now: float) -> tuple[int, str, str]:
        if path == "/metrics":
            return 200, METRICS_TYPE, (self.last.metrics if self.last else "") + self._own_metrics()
        if path == "/":
            page = fleet_page.page(self.last and self.last.report, now, self.config.serve.check_every,
                                   self.healthy(now))
            return 200, "text/html; charset=utf-8", page
        if path == "/report":
            return self._report(query.get("since", ["24h"])[-1], now)
        if path == "/api/v1/status":
            if self.last is None:
                return 503, "application/json", json.dumps({"error": "no check has succeeded yet"}) + "\n"
            return 200, "application/json", json.dumps(self.last.status, indent=2) + "\n"
        if path == "/healthz":
            since = self.last.report.time if self.last else None
            said = f"last good check {now - since:.0f}s ago" if since else "no check has succeeded yet"
            return (200, "text/plain", f"ok: {said}\n") if self.healthy(now) else (503, "text/plain", f"late: {said}\n")
        return 404, "text/plain", f"nothing at {path}: try /, /metrics, /report, /api/v1/status or /healthz\n"

    def _report(self, since: str, now: float) -> tuple[int, str, str]:
        from guardian.commands import report as reporting
        from guardian.output.dashboard import page

        try:
            start = reporting.parse_since(since, now)
        except ValueError as exc:
            return 400, "text/plain", f"since: {exc}\n"
        return 200, "text/html; charset=utf-8", page(reporting.run(self.config, None, start, now))

    def _own_metrics(self) -> str:
        samples = [(metrics._labels({"pass": name}), n) for name, n in sorted(self.failures.items())]
        return "\n".join(metrics._family("guardian_serve_pass_failures_total", "counter",
                                         "Passes of guardian serve that failed (logged; the next ran on schedule).",
                                         samples)) + "\n"


def handler(service: Service):
    class Handler(BaseHTTPRequestHandler):
        server_version = "guardian"

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path != "/healthz" and not service.authorised(self.headers.get("Authorization")):
                return self._send(401, "text/plain", "a bearer token is required (serve.token)\n",
                                  {"WWW-Authenticate": "Bearer"})
            try:
                status, kind, body = service.answer(url.path, parse_qs(url.query), service.clock())
            except Exception as exc:  # a request never takes the service down, nor prints a traceback
                status, kind, body = 500, "text/plain", f"unexpected {type(exc).__name__}: {exc}\n"
            self._send(status, kind, body)

        def _send(self, status: int, kind: str, body: str, headers: dict | None = None):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # scrapes every 15 s would drown the log
            pass

    return Handler
