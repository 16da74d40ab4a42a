"""The demo behind scripts/demo.sh: two real OpenClaw gateways watched by the guardian.

Starts `pc-a` (limit 40) and `t440` (limit 60) on loopback, fills them with real sessions
(27 and 55: notice and critical), writes a config, and runs `guardian check`, `guardian doctor`
and a `guardian cleanup --dry-run`. Stops the gateways at the end, unless --keep.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import peer
import yaml

from guardian.adapters import gateway
from guardian.settings.model import Host
from guardian.settings.secrets import Secret

ROOT = Path(__file__).resolve().parent.parent
GUARDIAN = [sys.executable, "-m", "guardian"]
HOSTS = {"pc-a": (40, 27), "t440": (60, 55)}  # name: (limit, sessions to create)


def fill(gw: peer.Gateway, count: int) -> None:
    host = Host(name=gw.name, url=gw.url, limit=1, token=Secret(gw.token, "demo"), timeout=60)
    with gateway.connect(host, [gateway.WRITE]) as connection:
        for answer in connection.call_many([("sessions.create", {"label": f"demo-{i}"}) for i in range(count)]):
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
    gateways = peer.start_many([{"name": name} for name in HOSTS])
    try:
        for gw in gateways:
            fill(gw, HOSTS[gw.name][1])
            print(f"demo: {gw.name} at {gw.url}: {HOSTS[gw.name][1]} sessions, limit {HOSTS[gw.name][0]}", flush=True)
        config = write_config(workdir, gateways, {name: limit for name, (limit, _) in HOSTS.items()},
                              pools={"shared-key": {"hosts": list(HOSTS), "limit": 90}})
        show("check", config=config)
        show("doctor", config=config)
        show("cleanup", "--dry-run", "--hosts", "pc-a", "--idle-after", "1s", "--max-per-run", "10", config=config)
        print("\nThe check exits 2 (critical: t440 is at 92 %), as a Nagios plugin would. The dry run shows what a\n"
              "cleanup would close if these sessions had been idle: the 10 most idle (the per-run cap), nothing else.")
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
