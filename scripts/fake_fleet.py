"""Serve N fake OpenClaw gateways (tests/fake_gateway.py), for the benchmarks.

    .venv/bin/python scripts/fake_fleet.py --gateways 50 [--processes 4] [--loop asyncio]

A separate process, so the guardian measured against it pays none of the fakes' CPU. All of a process's
gateways share one event loop (one thread); --processes spreads them over that many processes (this one
relays), so that the fakes are not one interpreter's worth of CPU. The loop is uvloop's (0-18 % less of the
fakes' CPU a poll than asyncio's, docs/benchmarks.md "fleet"; `--loop asyncio` for comparison). Prints one
JSON line, {"urls": [...], "token": ...}, then reads one JSON command per line on stdin and answers
each with a line "ok":

    {"gateways": [0, 3] | "all", "latency": 0.05, "delete_latency": 0.005,
     "sessions": 10000, "idle_for": 10800}

`sessions` replaces each named gateway's store with that many sessions, all last active between
`idle_for` seconds and twice that ago (spread, so the planner's sort has work to do). End of input
stops the fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

try:
    import uvloop
    from fake_gateway import FakeGateway, LoopThread  # needs websockets
except ImportError as missing:  # a venv made before a test extra joined them
    sys.exit(f"fake_fleet.py: {missing.name} is missing from this Python; scripts/setup.sh installs the test extras")

TOKEN = "bench-secret"
LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def fill(gateway: FakeGateway, count: int, idle_for: float) -> None:
    now_ms = int(time.time() * 1000)
    with gateway._lock:
        gateway.sessions.clear()
    for index in range(count):
        gateway.add_session(f"agent:main:bench:{index}",
                            updated_at=now_ms - int(1000 * idle_for * (1 + index / max(1, count))))


def apply(fleet: list[FakeGateway], command: dict) -> None:
    chosen = fleet if command.get("gateways", "all") == "all" else [fleet[i] for i in command["gateways"]]
    for gateway in chosen:
        if "latency" in command:
            gateway.latency = command["latency"]
        if "delete_latency" in command:
            gateway.delete_latency = command["delete_latency"]
        if "sessions" in command:
            fill(gateway, command["sessions"], command.get("idle_for", 3 * 3600))


def serve(count: int, loop_name: str) -> None:
    """This process's gateways, on one event loop, commanded by stdin."""
    loop = LoopThread(new_loop=LOOPS[loop_name])
    fleet = [FakeGateway(TOKEN, loop=loop) for _ in range(count)]
    for gateway in fleet:
        gateway.recording = False  # nobody reads the recordings here; they would only grow
        gateway.start()
    try:
        print(json.dumps({"urls": [g.url for g in fleet], "token": TOKEN}), flush=True)
        for line in sys.stdin:
            apply(fleet, json.loads(line))
            print("ok", flush=True)
    finally:
        for gateway in fleet:
            gateway.stop()
        loop.stop()


def relay(count: int, processes: int, loop_name: str) -> None:
    """Gateways 0..count-1 served by `processes` children in consecutive slices; each command goes to the
    children holding its gateways, with their own indices."""
    sizes = [count // processes + (i < count % processes) for i in range(processes)]
    children = [subprocess.Popen([sys.executable, __file__, "--gateways", str(size), "--loop", loop_name],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for size in sizes if size]
    try:
        urls = [url for child in children for url in json.loads(child.stdout.readline())["urls"]]
        print(json.dumps({"urls": urls, "token": TOKEN}), flush=True)
        starts = [sum(sizes[:i]) for i in range(len(children))]
        for line in sys.stdin:
            command = json.loads(line)
            chosen = command.get("gateways", "all")
            targets = [(child, "all" if chosen == "all" else [i - start for i in chosen if start <= i < start + size])
                       for child, start, size in zip(children, starts, sizes)]
            targets = [(child, mine) for child, mine in targets if mine]
            for child, mine in targets:  # all at once: a fill of 10,000 sessions each runs in parallel
                child.stdin.write(json.dumps({**command, "gateways": mine}) + "\n")
                child.stdin.flush()
            if any(child.stdout.readline().strip() != "ok" for child, _ in targets):
                raise RuntimeError("a fake_fleet.py child stopped")
            print("ok", flush=True)
    finally:
        for child in children:
            child.stdin.close()
        for child in children:
            child.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--loop", choices=sorted(LOOPS), default="uvloop")
    args = parser.parse_args()
    if args.processes > 1:
        relay(args.gateways, args.processes, args.loop)
    else:
        serve(args.gateways, args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
