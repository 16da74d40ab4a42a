"""The demo behind scripts/demo.sh: two real OpenClaw gateways watched by the guardian.

Starts `pc-a` (limit 40) and `t440` (limit 60) on loopback, each with several agents, fills them unevenly with
real sessions (27 and 55, cron runs included: notice and critical), writes a config, and runs `guardian check`,
`guardian doctor` and a `guardian cleanup --dry-run`. Stops the gateways at the end, unless --keep.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import peer
import yaml

from guardian.adapters import gateway
from guardian.settings.model import Host
from guardian.settings.secrets import Secret

ROOT = Path(__file__).resolve().parent.parent
GUARDIAN = [sys.executable, "-m", "guardian"]
HOSTS = {"pc-a": (40, 27), "t440": (60, 55)}  # name: (limit, sessions to create)
# name: {agent: sessions} (the "cron-run" entry: that many runs of a nightly job of the agent before it), summing to
# the sessions above, so the holders show: main is named too (once agents.entries is set, only those agents exist)
AGENTS = {"pc-a": {"main": 15, "research": 12},
          "t440": {"main": 8, "sales": 26, "cron-run": 9, "support": 12}}
# name: (share of the limit in use overnight, at the usual daily peak, the peak's growth in points a week)
PEAKS = {"pc-a": (0.15, 0.55, 0.5), "t440": (0.20, 0.82, 2.0)}
MONTH = 30 * 86400
POOL, POOL_LIMIT = "shared-key", 90  # both hosts share one key


def keys(agents: dict) -> list[str]:
    """The session keys of a host's agents, cron runs as agent:<id>:cron:nightly:run:<n> of the agent before them."""
    made, previous = [], "main"
    for agent, count in agents.items():
        if agent == "cron-run":
            made += [f"agent:{previous}:cron:nightly:run:r{i}" for i in range(count)]
        else:
            made += [f"agent:{agent}:demo-{i}" for i in range(count)]
            previous = agent
    return made


def agents_config(agents: dict) -> dict:
    return {"agents": {"entries": {agent: {"name": agent.title()} for agent in agents if agent != "cron-run"}}}


def fill(gw: peer.Gateway, count: int) -> None:
    host = Host(name=gw.name, url=gw.url, limit=1, token=Secret(gw.token, "demo"), timeout=60)
    made = keys(AGENTS[gw.name])
    assert len(made) == count, (gw.name, len(made), count)
    with gateway.connect(host, [gateway.WRITE]) as connection:
        for answer in connection.call_many([("sessions.create", {"key": key, "label": f"demo-{i}"})
                                            for i, key in enumerate(made)]):
            if isinstance(answer, gateway.GatewayError):
                raise SystemExit(f"demo: creating sessions on {gw.name} failed: {answer}")


def write_config(workdir: Path, gateways: list[peer.Gateway], limits: dict, **sections) -> Path:
    """A guardian config for these gateways, tokens in 0600 files, state under workdir."""
    hosts = {}
    for gw in gateways:
        token_file = workdir / f"{gw.name}.token"
        token_file.write_text(gw.token)
        token_file.chmod(0o600)
        hosts[gw.name] = {"url": gw.url, "token_file": str(token_file), "limit": limits[gw.name]}
    path = workdir / "guardian.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts, **sections, "state_dir": str(workdir / "state")}, sort_keys=False))
    return path


def month_of_history(path: Path, now: float) -> None:
    """A CSV (guardian history import) of the last 30 days before now, a sample every 5 minutes per host and for
    the pool: busy
    weekdays peaking around 10:00 local time and again after lunch, quiet weekends, peaks growing week by week."""
    rows = ["time,kind,name,sessions,limit"]
    for t in range(int(now - MONTH) // 300 * 300, int(now) - 300, 300):
        local = datetime.fromtimestamp(t)
        hour = local.hour + local.minute / 60
        busy = 0.35 if local.weekday() >= 5 else 1.0
        bumps = math.exp(-((hour - 10) / 1.6) ** 2 / 2) + 0.6 * math.exp(-((hour - 14.5) / 1.2) ** 2 / 2)
        pooled = 0
        for name, (limit, _) in HOSTS.items():
            low, high, growth = PEAKS[name]
            top = high + growth / 100 * (t - now) / (7 * 86400)  # lower further back
            usage = low + busy * (top - low) * bumps + 0.02 * math.sin(t / 997 + len(name))  # a little noise
            sessions = max(0, min(limit, round(usage * limit)))
            pooled += sessions
            rows.append(f"{t},host,{name},{sessions},{limit}")
        rows.append(f"{t},pool,{POOL},{pooled},{POOL_LIMIT}")
    path.write_text("\n".join(rows) + "\n")


def show(*args: str, config: Path) -> int:
    command = ["guardian", *args, "--config", str(config)]
    print(f"\n$ {' '.join(command)}", flush=True)
    code = subprocess.call([*GUARDIAN, *args, "--config", str(config)], cwd=ROOT)
    print(f"(exit code {code})", flush=True)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the gateways running until Ctrl-C")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="guardian-demo-"))
    print("demo: starting two real OpenClaw gateways (pc-a, t440); this takes 10-20 s ...", flush=True)
    gateways = peer.start_many([{"name": name, "extra_config": agents_config(AGENTS[name])} for name in HOSTS])
    try:
        for gw in gateways:
            fill(gw, HOSTS[gw.name][1])
            held = ", ".join(f"{agent} {n}" for agent, n in AGENTS[gw.name].items())
            print(f"demo: {gw.name} at {gw.url}: {HOSTS[gw.name][1]} sessions ({held}), limit {HOSTS[gw.name][0]}",
                  flush=True)
        config = write_config(workdir, gateways, {name: limit for name, (limit, _) in HOSTS.items()},
                              pools={POOL: {"hosts": list(HOSTS), "limit": POOL_LIMIT}})
        history_csv = workdir / "last-month.csv"
        month_of_history(history_csv, time.time())
        show("history", "import", str(history_csv), config=config)
        show("check", config=config)
        show("doctor", config=config)
        show("cleanup", "--dry-run", "--hosts", "pc-a", "--idle-after", "1s", "--max-per-run", "10", config=config)
        show("report", "--since", "30d", "--format", "plain", config=config)
        page = workdir / "report.html"
        show("report", "--since", "7d", "--format", "html", "-o", str(page), config=config)
        print(f"demo: the HTML report (a weekday x hour heatmap per host, the next peak on each chart): {page}")
        print("\nThe check exits 2 (critical: t440 is at 92 %), as a Nagios plugin would; its Holders column and the\n"
              "alert line say who holds t440's sessions (sales, with its nightly job's cron runs, which no listing\n"
              "shows and cleanup cannot close: doctor's note). The dry run shows what a\n"
              "cleanup would close if these sessions had been idle: the 10 most idle (the per-run cap), nothing else.\n"
              "The month imported (guardian history import) gives each host a peak forecast from day one: the\n"
              "'peak' lines of the report, the usual daily peak and when t440's peaks are expected to reach critical.")
        if args.keep:
            print(f"\ndemo: gateways left running. Try: GUARDIAN_CONFIG={config} {sys.executable} -m guardian check\n"
                  "demo: press Ctrl-C to stop them.", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        peer.stop_many(gateways)
        print("demo: gateways stopped.", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
