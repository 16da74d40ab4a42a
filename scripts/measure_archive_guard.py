#!/usr/bin/env python3
"""Measure, on a real 2026.9.6 gateway, what archive mode's live-session guard costs and how long its window is.

    .venv/bin/python scripts/measure_archive_guard.py [--sessions 1000] [--runs 5]

- the re-read before a batch: one `sessions.list` page of 1000 against `sessions.describe` for N candidates
  (pipelined), N = 10, 100, 1000;
- archiving 100 sessions: one `sessions.patchMany` against 100 `sessions.patch` one at a time;
- the window: the guardian's archive mode (guardian.commands.cleanup.archive_chosen) on every idle session,
  each batch's time from its re-read's answer (the gateway's snapshot) to the patchMany's answer (the gateway
  applies the archive somewhere before that answer), on the guardian's own connection.

Also prints the features.methods of a 2026.4.29 gateway that matter (archive is detected from them).
Every gateway started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import peer  # noqa: E402

from guardian.adapters import audit, gateway  # noqa: E402
from guardian.adapters.archive_ledger import ArchiveLedger  # noqa: E402
from guardian.commands import cleanup  # noqa: E402
from guardian.core.planner import plan  # noqa: E402
from guardian.settings.model import Cleanup, Host  # noqa: E402
from guardian.settings.secrets import Secret  # noqa: E402


def connect(gw):
    host = Host(name=gw.name, url=gw.url, limit=100_000, token=Secret(gw.token, "measure"), timeout=120)
    return host, gateway.connect(host, [gateway.READ, gateway.WRITE, gateway.ADMIN])


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def median_ms(times: list[float]) -> str:
    return f"{1000 * statistics.median(times):.1f} ms (min {1000 * min(times):.1f}, max {1000 * max(times):.1f})"


def create(connection, count: int) -> list[dict]:
    for start in range(0, count, 250):
        connection.call_many([("sessions.create", {}) for _ in range(min(250, count - start))])
    return cleanup.list_sessions(connection)


class Timing:
    """Wraps a Connection: when each re-read was sent and each patchMany answered."""

    def __init__(self, connection):
        self.connection, self.marks = connection, []

    def __getattr__(self, name):
        return getattr(self.connection, name)

    def call(self, method, params=None):
        sent = time.perf_counter()
        answer = self.connection.call(method, params)
        if method == "sessions.list":
            self.marks.append(("listed", sent, time.perf_counter()))
        return answer

    def call_many(self, calls, while_waiting=None):
        sent = time.perf_counter()
        answers = self.connection.call_many(calls, while_waiting)
        if calls[0][0] == "sessions.patchMany":
            self.marks.append(("archived", sent, time.perf_counter()))
        return answers

    def windows(self) -> list[tuple[float, float]]:
        """Per batch: (the re-read's last page answered -> the patchMany answered, the patchMany alone)."""
        found, listed = [], None
        for what, sent, answered in self.marks:
            if what == "listed":
                listed = answered
            elif listed is not None:
                found.append((answered - listed, answered - sent))
        return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    gateways = peer.start_many([{"name": "guard"}, {"name": "old", "version": "2026.4.29"}])
    try:
        _, old = connect(gateways[1])
        with old:
            print(f"2026.4.29 hello: sessions.patch {'sessions.patch' in old.hello.methods}, sessions.patchMany "
                  f"{'sessions.patchMany' in old.hello.methods}, sessions.describe "
                  f"{'sessions.describe' in old.hello.methods}; can_archive {old.hello.can_archive}")
        host, connection = connect(gateways[0])
        with connection:
            print(f"2026.9.6 hello: can_archive {connection.hello.can_archive}")
            rows = create(connection, args.sessions)
            print(f"{len(rows)} sessions")
            page = [timed(lambda: connection.call("sessions.list", {"limit": 1000})) for _ in range(args.runs)]
            print(f"re-read, one sessions.list page of 1000: {median_ms(page)}")
            for n in (10, 100, 1000):
                keys = [r["key"] for r in rows[:n]]
                times = [timed(lambda: connection.call_many([("sessions.describe", {"key": k}) for k in keys]))
                         for _ in range(args.runs)]
                print(f"re-read, sessions.describe x{n} pipelined: {median_ms(times)}")
            batch = rows[:200]
            one = [timed(lambda r=r: connection.call("sessions.patch", {"key": r["key"], "archived": True,
                                                                        "expectedSessionId": r["sessionId"]}))
                   for r in batch[:100]]
            print(f"archive 100, sessions.patch one at a time: total {sum(one):.2f} s, each {median_ms(one)}")
            targets = [{"key": r["key"], "expectedSessionId": r["sessionId"]} for r in batch[100:]]
            many = timed(lambda: connection.call("sessions.patchMany", {"targets": targets,
                                                                        "patch": {"archived": True}}))
            print(f"archive 100, one sessions.patchMany: {many:.2f} s")
            settled = timed(lambda: connection.call("sessions.list", {"limit": 1}))
            print(f"first read after: {settled:.2f} s (an overloaded refusal is polled)")
        state = Path(f"/tmp/measure-archive-guard-{time.time_ns()}")
        host, connection = connect(gateways[0])
        with connection:
            timing = Timing(connection)
            log = audit.AuditLog(state, "measure", "cleanup")
            rules = Cleanup(idle_after=1.0, max_per_run=100_000)
            time.sleep(1.1)  # every session idle past idle_after on the gateway's clock
            chosen = [d for d in plan(cleanup.list_sessions(connection), rules, time.time(),
                                              connection.hello.main_session_key) if d.close]
            with log.kept_open():
                entry = lambda *a, **k: cleanup._audit_entry(time.time, host, False, "archive", *a, **k)  # noqa: E731
                start = time.perf_counter()
                outcomes, error = cleanup.archive_chosen(timing, chosen, [], log, entry, rules, ArchiveLedger(state),
                                                         time.time)
                total = time.perf_counter() - start
        windows = timing.windows()
        archived = sum(o.result == "archived" for o in outcomes)
        print(f"guardian archive mode: {archived} of {len(chosen)} archived in {total:.2f} s ({error or 'no error'})")
        print(f"window per batch of {cleanup.ARCHIVE_BATCH} (re-read answered -> patchMany answered): "
              f"{median_ms([w for w, _ in windows])}; the patchMany alone {median_ms([p for _, p in windows])}; "
              f"{len(windows)} batches")
    finally:
        peer.stop_many(gateways)


if __name__ == "__main__":
    main()
