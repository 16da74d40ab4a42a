"""Benchmarks: figures measured side by side in one run (never timed assertions in tests).

    .venv/bin/python scripts/bench.py [--runs N] [--sessions 100] [--only check|cleanup|scale|history]
                                      [--markdown docs/benchmarks.md]

Starts two real OpenClaw gateways (scripts/peer.py) and prints, with median and spread:
- check: `guardian check` over both gateways beside `openclaw gateway call health --json` against
  one, and a bare Python client doing connect + health (the floor).
- cleanup: closing N idle sessions with `guardian cleanup`, against the gateway's own serial cost
  (the same number of bare one-at-a-time `sessions.delete` calls from a minimal client) and
  `openclaw sessions delete <keys> --yes --json`; plus the guardian's delete window measured at
  1, 2 and 4 deletes in flight, which is how its default was chosen.
- scale (scripts/bench_scale.py, fake gateways only): start-up, 50 gateways, 10,000 sessions,
  1,000 deletes.
- history (scripts/bench_history.py, fake gateways only): `report` over 30 and 365 days of 50 hosts,
  history.db's size, and `check` beside a year of history.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import peer
from demo import write_config

from guardian.adapters import gateway
from guardian.adapters.audit import AuditLog
from guardian.commands import cleanup as cleaning
from guardian.settings.load import load
from guardian.settings.model import Cleanup, Host
from guardian.settings.secrets import Secret

GUARDIAN = [sys.executable, "-m", "guardian"]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stats(samples: list[float], unit: str = "s", scale: float = 1.0) -> str:
    values = [scale * sample for sample in samples]
    digits = 0 if unit == "ms" else 3
    return (f"median {statistics.median(values):.{digits}f} {unit} (min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f}, n={len(values)})")


def host_of(gw: peer.Gateway) -> Host:
    return Host(name=gw.name, url=gw.url, limit=1000, token=Secret(gw.token, "bench"), timeout=60)


def bare_connect(url: str, token: str, scope: str):
    """A minimal client (websocket-client, no guardian code): challenge, then connect."""
    import websocket

    # no pure-Python UTF-8 scan of every frame: the guardian skips it too (guardian/adapters/gateway.py)
    ws = websocket.create_connection(url, timeout=60, suppress_origin=True, skip_utf8_validation=True)
    json.loads(ws.recv())
    ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": {
        "minProtocol": 3, "maxProtocol": 4, "role": "operator", "scopes": [scope],
        "client": {"id": "gateway-client", "version": "bench", "platform": "linux", "mode": "backend"},
        "auth": {"token": token}}}))
    wait_for(ws, "c")
    return ws


def bare_health(gw: peer.Gateway) -> None:
    """The floor: a minimal client doing challenge, connect, health."""
    ws = bare_connect(gw.url, gw.token, "operator.read")
    ws.send(json.dumps({"type": "req", "id": "h", "method": "health", "params": {}}))
    wait_for(ws, "h")
    ws.close()


def wait_for(ws, request_id: str) -> dict:
    while True:
        frame = json.loads(ws.recv())
        if frame.get("type") == "res" and frame.get("id") == request_id:
            if not frame.get("ok"):
                raise RuntimeError(frame.get("error"))
            return frame


def create(gw: peer.Gateway, count: int) -> list[str]:
    with gateway.connect(host_of(gw), [gateway.WRITE]) as connection:
        return [a["key"] for a in connection.call_many([("sessions.create", {}) for _ in range(count)])]


def bare_serial_deletes(url: str, token: str, keys: list[str]) -> None:
    """The gateway's own cost: one sessions.delete at a time, each awaited, from a minimal client."""
    ws = bare_connect(url, token, "operator.admin")
    for index, key in enumerate(keys):
        ws.send(json.dumps({"type": "req", "id": str(index), "method": "sessions.delete", "params": {"key": key}}))
        wait_for(ws, str(index))
    ws.close()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*GUARDIAN, *args], capture_output=True, text=True)
    if result.returncode not in (0, 1, 2):
        raise RuntimeError(f"guardian {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def bench_check(gateways, config: Path, runs: int, out: list[str]) -> None:
    pc_a = gateways[0]
    cases = {"guardian": lambda: run_cli("check", "--config", str(config), "-q"),
             "openclaw": lambda: pc_a.openclaw("gateway", "call", "health", "--json"),
             "bare": lambda: bare_health(pc_a)}
    samples = {name: [] for name in cases}
    for run in range(runs + 1):  # interleaved, so every case sees the gateways in the same state
        for name, case in cases.items():
            elapsed = timed(case)
            if run:  # the first round warms caches on both sides and is not counted
                samples[name].append(elapsed)
    guardian, openclaw, bare = samples["guardian"], samples["openclaw"], samples["bare"]
    ratio = statistics.median(guardian) / statistics.median(openclaw)
    out += ["## check", "", f"{measured()}, two real OpenClaw {peer.DEFAULT_VERSION} gateways.", "",
            f"- `guardian check` over 2 real gateways (new process each time): {stats(guardian)}",
            f"- `openclaw gateway call health --json` against 1 gateway: {stats(openclaw)}",
            f"- bare Python client, connect + health, in-process (the floor): {stats(bare)}",
            f"- ratio guardian check (2 hosts) / openclaw CLI (1 host): **{ratio:.3f}** (target <= 0.15)", ""]


CLEANUP_ROUNDS = 3  # a real delete takes ~0.3 s: a few rounds of N, interleaved, median per case
SETTLE = 2.0  # seconds after creating sessions, so the gateway has finished writing them


def bench_cleanup(gw: peer.Gateway, config: Path, sessions: int, out: list[str]) -> None:
    base = load(str(config))
    rules = Cleanup(idle_after=0.001, max_per_run=sessions)

    def store_of(count: int) -> list[str]:
        """The gateway's store topped up to `count` idle sessions: the keys a case must close."""
        create(gw, count - len(list_rows(gw)))
        time.sleep(SETTLE)
        return [r["key"] for r in list_rows(gw)]

    def guardian_cleanup(keys):
        closed = json.loads(run_cli("cleanup", "--config", str(config), "--hosts", gw.name, "--idle-after", "1ms",
                                    "--max-per-run", str(sessions), "--json").stdout)["hosts"][0]["closed"]
        if closed != len(keys):
            raise RuntimeError(f"guardian cleanup closed {closed} of {len(keys)}")

    cases = {"guardian": guardian_cleanup,
             "bare": lambda keys: bare_serial_deletes(gw.url, gw.token, keys),
             "openclaw": lambda keys: gw.openclaw("sessions", "delete", *keys, "--yes", "--json", timeout=1800)}
    per_delete = {name: [] for name in cases}
    for _ in range(CLEANUP_ROUNDS):
        for name, case in cases.items():
            keys = store_of(sessions)
            per_delete[name].append(timed(lambda: case(keys)) / len(keys))
    guardian, bare, openclaw = (statistics.median(per_delete[name]) for name in cases)
    out += [
        "## cleanup",
        "",
        f"{measured()}, one real OpenClaw {peer.DEFAULT_VERSION} gateway.",
        "",
        f"{sessions} idle sessions on one real gateway, deleted with transcript archiving (the default); "
        f"{CLEANUP_ROUNDS} rounds, the cases interleaved in each, the store refilled and left to settle "
        f"{SETTLE:g} s before every case. Per session:",
        "",
        f"- `guardian cleanup` (new process: list, plan, {sessions} guarded deletes, audit fsyncs): "
        f"{stats(per_delete['guardian'], 'ms', 1000)}",
        f"- the gateway's own serial cost, bare one-at-a-time deletes from a minimal client: "
        f"{stats(per_delete['bare'], 'ms', 1000)}",
        f"- `openclaw sessions delete <{sessions} keys> --yes --json`: {stats(per_delete['openclaw'], 'ms', 1000)}",
        f"- guardian overhead over the gateway's serial cost: **{100 * (guardian / bare - 1):+.1f} %** "
        f"(target < 10 %); the OpenClaw CLI's: {100 * (openclaw / bare - 1):+.1f} %",
        "",
    ]
    out += ["Delete window (deletes in flight at once), in-process library runs:", ""]
    for window in (1, 2, 4):
        keys = store_of(sessions)
        cleaning.DELETE_WINDOW = window
        audit = AuditLog(Path(base.state_dir), f"bench-w{window}", "cleanup")
        reports = []
        elapsed = timed(
            lambda: reports.extend(cleaning.run(base, [base.hosts[gw.name]], rules, time.time(), False, audit))
        )
        if reports[0].closed != len(keys):
            raise RuntimeError(f"window {window}: closed {reports[0].closed} of {len(keys)} ({reports[0].error})")
        out.append(f"- window {window}: {elapsed:.2f} s, {1000 * elapsed / len(keys):.0f} ms per session")
    cleaning.DELETE_WINDOW = 1
    out.append("")


def list_rows(gw: peer.Gateway) -> list[dict]:
    with gateway.connect(host_of(gw), [gateway.READ]) as connection:
        return connection.call("sessions.list", {"limit": 10000})["sessions"]


def machine() -> str:
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {memory} memory, Python {platform.python_version()}"


def measured() -> str:
    return f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()} (a VM whose 2 cores are shared)"


def publish(out: list[str], markdown: str | None) -> int:
    """Print the figures, and put their sections in `markdown` (docs/benchmarks.md) when given: a script's end."""
    print("\n".join(out))
    if markdown:
        write_sections(Path(markdown), out)
    return 0


def write_sections(path: Path, out: list[str]) -> None:
    """Put each "## name" section of `out` in place of the file's section of that name (a heading
    "## name" or "## name (...)"), or at its end; the file's other sections stay as they are."""
    lines = path.read_text().splitlines() if path.exists() else ["# Benchmarks", ""]
    starts = [i for i, line in enumerate(out) if line.startswith("## ")] + [len(out)]
    for start, end in zip(starts, starts[1:]):
        section, name = out[start:end], out[start].split()[1]
        ours = [i for i, line in enumerate(lines) if line.startswith("## ") and line.split()[1] == name]
        if ours:
            after = next((i for i in range(ours[0] + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
            lines[ours[0]:after] = section
        else:
            lines += section
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--only", choices=("check", "cleanup", "scale", "history"),
                        help="run one part (cleanup ~10 minutes, scale ~6 minutes; scale and history need no real "
                             "gateway)")
    parser.add_argument("--markdown", help="also write the figures to this file, each section in place of its own")
    args = parser.parse_args()
    out = []
    if args.only not in ("scale", "history"):
        bench_real(args, out)
    if args.only in (None, "scale"):
        from bench_scale import scale_section  # here: bench_scale imports from this module

        out += scale_section(args.runs)
    if args.only in (None, "history"):
        from bench_history import history_section  # here: bench_history imports from this module

        out += history_section(args.runs)
    return publish(out, args.markdown)


def bench_real(args, out: list[str]) -> None:
    """The check and cleanup sections, against two real OpenClaw gateways."""
    gateways = peer.start_many([{"name": "pc-a"}, {"name": "t440"}])
    try:
        for gw, count in zip(gateways, (16, 55)):
            create(gw, count)
        time.sleep(5)  # let the gateways settle after start-up and the creates (their event loop is busy)
        config = write_config(Path(tempfile.mkdtemp(prefix="guardian-bench-")), gateways,
                              {gw.name: 1000 for gw in gateways})
        if args.only != "cleanup":
            bench_check(gateways, config, args.runs, out)
        if args.only != "check":
            bench_cleanup(gateways[1], config, args.sessions, out)
    finally:
        peer.stop_many(gateways)


if __name__ == "__main__":
    sys.exit(main())
