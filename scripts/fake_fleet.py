"""Serve N fake OpenClaw gateways (tests/fake_gateway.py) from this process, for the benchmarks.

    .venv/bin/python scripts/fake_fleet.py --gateways 50

A separate process, so the guardian measured against it pays none of the fakes' CPU. Prints one
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
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_gateway import FakeGateway  # noqa: E402

TOKEN = "bench-secret"


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
        gateway.requests.clear()  # nobody reads them here; they would only grow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateways", type=int, default=1)
    args = parser.parse_args()
    fleet = [FakeGateway(TOKEN).start() for _ in range(args.gateways)]
    try:
        print(json.dumps({"urls": [g.url for g in fleet], "token": TOKEN}), flush=True)
        for line in sys.stdin:
            apply(fleet, json.loads(line))
            print("ok", flush=True)
    finally:
        for gateway in fleet:
            gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
