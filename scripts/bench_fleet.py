"""Issue 18's fleet benchmarks: check over 500 gateways, serve holding its schedule at 500, and a soak.

    .venv/bin/python scripts/bench_fleet.py [--runs 5] [--serve-minutes 2] [--minutes 10]
        [--fake-processes 2] [--fake-loop uvloop|asyncio] [--markdown docs/benchmarks.md]

- `guardian check` over 500 fake gateways, each answering after 50 ms, against the same over one:
  wall time, peak memory (the process's own maxrss), peak threads (its /proc status, sampled
  every 2 ms) and CPU, each a new process as from cron; and the fake gateways' CPU meanwhile (when
  it nears the wall time, the fakes are what is measured), and how long the guardian waited for a core.
- `guardian serve` over the same 500 at its default 30 s interval for --serve-minutes: the time of
  each check (from /api/v1/status) and its duration (guardian_check_duration_seconds).
- a soak: `guardian serve` at a 1 s check interval over 50 fake gateways for --minutes (the issue
  asks 120: `--minutes 120`), its RSS sampled every 10 s from its first check served: the mean of
  the first 5 minutes against the last sample.

Fake gateways come from scripts/fake_fleet.py, another process, so the figures are the guardian's.
--markdown replaces this script's "## fleet" section of that file (scripts/bench.py's way); with --only, just
that part's subsection of it.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml
from bench import measured, write_sections
from bench_scale import ROOT, Fleet, guardian

from guardian.settings.model import Check

GATEWAYS, LATENCY, SOAK_GATEWAYS = 500, 0.05, 50
OTHER_CAPS = (64, 128, 256)  # check.concurrency below the default (Check.concurrency), side by side


def config_file(workdir: Path, fleet: Fleet, count: int, **sections) -> Path:
    token_file = workdir / "fleet.token"
    token_file.write_text(fleet.token)
    token_file.chmod(0o600)
    config = {"hosts": {f"gw{i:03d}": {"url": fleet.urls[i], "token_file": str(token_file), "limit": 100}
                        for i in range(count)},
              "state_dir": str(workdir / f"state-{count}"), **sections}
    path = workdir / f"fleet-{count}-{abs(hash(json.dumps(sections, sort_keys=True)))}.yaml"  # one file per case
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def proc_status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (Threads, VmRSS in KiB); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_queue_wait(pid: int) -> float | None:
    """Seconds the process has waited runnable for a core so far (/proc/PID/schedstat), None once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def run_check(config: Path) -> tuple[float, int, int, float, float]:
    """(wall seconds, peak RSS KiB, peak threads, CPU seconds, seconds waiting for a core) of one `guardian check`
    process; the wait as last sampled, up to 2 ms before its end."""
    peak_threads, waited, done = [0], [0.0], threading.Event()
    start = time.perf_counter()
    process = subprocess.Popen(guardian("check", "--config", str(config), "-q"), stderr=subprocess.DEVNULL)

    def sample():
        while not done.is_set():
            peak_threads[0] = max(peak_threads[0], proc_status(process.pid, "Threads"))
            waited[0] = max(waited[0], run_queue_wait(process.pid) or 0.0)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) not in (0, 1, 2):
        raise RuntimeError(f"guardian check over {config} exited {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_maxrss, peak_threads[0], usage.ru_utime + usage.ru_stime, waited[0]


def spread(values: list[float], unit: str, digits: int = 3) -> str:
    return (f"median {statistics.median(values):.{digits}f} {unit} (min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f}, n={len(values)})")


def bench_check(fleet: Fleet, workdir: Path, runs: int, out: list[str]) -> None:
    fleet.set(gateways="all", latency=LATENCY, sessions=10)
    cases = {"one": config_file(workdir, fleet, 1), "many": config_file(workdir, fleet, GATEWAYS),
             **{cap: config_file(workdir, fleet, GATEWAYS, check={"concurrency": cap}) for cap in OTHER_CAPS}}
    samples, load_before = {name: [] for name in cases}, os.getloadavg()[0]
    for round_ in range(runs + 1):  # interleaved; the first round warms caches and is not kept
        for name, config in cases.items():
            fake_cpu = fleet.cpu()
            sample = run_check(config)
            if round_:
                samples[name].append((*sample, fleet.cpu() - fake_cpu))
    wall = {name: [s[0] for s in kept] for name, kept in samples.items()}
    rss = {name: [s[1] / 1024 for s in kept] for name, kept in samples.items()}
    threads = {name: [s[2] for s in kept] for name, kept in samples.items()}
    own_cpu = {name: [s[3] for s in kept] for name, kept in samples.items()}
    waited = {name: [s[4] for s in kept] for name, kept in samples.items()}
    fake_cpu = [s[5] for s in samples["many"]]
    ratio = statistics.median(wall["many"]) / statistics.median(wall["one"])
    paired = [many / one for one, many in zip(wall["one"], wall["many"])]
    out += [f"### check over {GATEWAYS} gateways, each answering after {1000 * LATENCY:.0f} ms "
            f"(check.concurrency {Check.concurrency}, the default)",
            "", f"{measured()}. Load average (1 min): {load_before:.1f} before these runs, {os.getloadavg()[0]:.1f} "
            f"after.", "",
            f"- 1 gateway: {spread(wall['one'], 's')}; peak memory {spread(rss['one'], 'MiB', 0)}",
            f"- {GATEWAYS} gateways: {spread(wall['many'], 's')}; peak memory {spread(rss['many'], 'MiB', 0)} "
            f"(target < 150 MiB)",
            f"- wall time {GATEWAYS} / 1: **{ratio:.2f}x** (target < 3x); round by round (each {GATEWAYS}-gateway "
            f"check against the 1-gateway check just before it): {spread(paired, 'x', 2).replace(' x', 'x')}, "
            f"{sum(r >= 3 for r in paired)} of {len(paired)} at 3x or more",
            f"- CPU of the guardian's process: {spread(own_cpu['one'], 's')} for 1, {spread(own_cpu['many'], 's')} "
            f"for {GATEWAYS}; of the fake gateways (scripts/fake_fleet.py, {fleet.processes} process"
            f"{'es' if fleet.processes > 1 else ''} on {fleet.loop}) during a {GATEWAYS}-gateway check: "
            f"{spread(fake_cpu, 's')}, "
            f"{1000 * statistics.median(fake_cpu) / GATEWAYS:.2f} ms a poll",
            f"- the guardian's process waiting for a core (runnable, both busy: /proc/PID/schedstat): "
            f"{spread(waited['one'], 's')} for 1, {spread(waited['many'], 's')} for {GATEWAYS}",
            *(f"- for comparison, {GATEWAYS} gateways with check.concurrency {cap}: {spread(wall[cap], 's')}, "
              f"**{statistics.median(wall[cap]) / statistics.median(wall['one']):.2f}x**; "
              f"peak memory {spread(rss[cap], 'MiB', 0)}; peak threads {max(threads[cap])}" for cap in OTHER_CAPS),
            f"- peak threads of the process (every thread: the main one and the interpreter's; the polls run on the "
            f"main one): {max(threads['one'])} for 1, **{max(threads['many'])}** for {GATEWAYS} (the cap on threads: "
            f"{Check().threads}, cleanup's)", ""]


class Serving:
    """A `guardian serve` process on a free loopback port."""

    def __init__(self, config: Path, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(guardian("serve", "--config", str(config)), stderr=subprocess.DEVNULL)

    def get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as answer:
                return answer.read().decode()
        except OSError:
            return None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def duration_of(metrics: str | None) -> float | None:
    for line in (metrics or "").splitlines():
        if line.startswith("guardian_check_duration_seconds "):
            return float(line.split()[1])
    return None


def bench_serve(fleet: Fleet, workdir: Path, minutes: float, out: list[str]) -> None:
    port = free_port()
    config = config_file(workdir, fleet, GATEWAYS, serve={"listen": f"127.0.0.1:{port}"})
    serving = Serving(config, port)
    checks: dict[str, float] = {}  # check time -> its duration
    try:
        end = time.monotonic() + 60 * minutes
        while time.monotonic() < end:
            status = serving.get("/api/v1/status")
            if status:
                checks.setdefault(json.loads(status)["time"], duration_of(serving.get("/metrics")))
            time.sleep(1)
    finally:
        serving.stop()
    times = sorted(checks)
    from datetime import datetime

    stamps = [datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in times]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    durations = [d for d in checks.values() if d is not None]
    out += [f"### serve over {GATEWAYS} gateways at its 30 s interval ({minutes:g} minutes)", "", f"{measured()}.", "",
            f"- checks seen: {len(times)}; intervals between them: "
            f"{', '.join(f'{g:.1f}' for g in gaps) or 'none'} s (target: 30 s each)",
            "- each check's duration (guardian_check_duration_seconds): "
            f"{spread(durations, 's') if durations else 'none'}",
            ""]


def bench_soak(fleet: Fleet, workdir: Path, minutes: float, out: list[str]) -> None:
    fleet.set(gateways="all", latency=0.0)
    port = free_port()
    config = config_file(workdir, fleet, SOAK_GATEWAYS, serve={"listen": f"127.0.0.1:{port}", "check_every": "1s"})
    serving = Serving(config, port)
    samples: list[tuple[float, int, int]] = []  # (minutes since its first check, RSS KiB, threads)
    try:
        # the clock starts at the first check served: the process's running life, not its exec and imports
        while serving.get("/api/v1/status") is None:
            if serving.process.poll() is not None:
                raise RuntimeError(f"guardian serve exited {serving.process.returncode} before its first check")
            time.sleep(0.2)
        started, fleet_gone, when = time.monotonic(), None, measured()
        while (elapsed := time.monotonic() - started) < 60 * minutes:
            if fleet.process.poll() is not None:  # serve polling refused connections is not the soak asked for
                fleet_gone = elapsed / 60
                break
            samples.append((elapsed / 60, proc_status(serving.process.pid, "VmRSS"),
                            proc_status(serving.process.pid, "Threads")))
            print(f"soak {samples[-1][0]:6.2f} min: RSS {samples[-1][1] / 1024:.1f} MiB, {samples[-1][2]} threads",
                  file=sys.stderr, flush=True)  # a 2-hour run shows where it is going
            serving.get("/metrics")  # scraped as Prometheus would
            time.sleep(10)
        checks = json.loads(serving.get("/api/v1/status") or "{}")
        failures = [line for line in (serving.get("/metrics") or "").splitlines()
                    if line.startswith("guardian_serve_pass_failures_total{")]
    finally:
        serving.stop()
    first = [rss for at, rss, _ in samples if at <= 5] or [samples[0][1]]
    baseline, last = statistics.mean(first) / 1024, samples[-1][1] / 1024
    out += [f"### soak: serve at a 1 s check interval over {SOAK_GATEWAYS} gateways for {minutes:g} minutes", "",
            f"{when} (its start).", "",
            f"- RSS: mean of the first 5 minutes {baseline:.1f} MiB; at {samples[-1][0]:.1f} minutes {last:.1f} MiB: "
            f"**{100 * (last - baseline) / baseline:+.1f} %** (target within 10 %); "
            f"highest {max(s[1] for s in samples) / 1024:.1f} MiB",
            f"- RSS every minute (MiB): "
            f"{', '.join(f'{rss / 1024:.1f}' for at, rss, _ in samples if round(at * 6) % 6 == 0)}",
            f"- threads of the process, every 10 s: min {min(s[2] for s in samples)}, "
            f"max {max(s[2] for s in samples)}",
            f"- the last check's status: {checks.get('status')}, hosts {len(checks.get('hosts', []))}; "
            f"{'; '.join(failures) or 'no failure counter'}",
            *([f"- **the fake gateways' process stopped at {fleet_gone:.1f} minutes**: the soak ended there"]
              if fleet_gone is not None else []), ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--serve-minutes", type=float, default=2.0)
    parser.add_argument("--minutes", type=float, default=10.0, help="the soak's length (the issue's: 120)")
    parser.add_argument("--only", choices=("check", "serve", "soak"))
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--fake-processes", type=int, default=2,
                        help="spread the fake gateways over this many processes (scripts/fake_fleet.py --processes)")
    parser.add_argument("--fake-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the fake gateways' event loop (scripts/fake_fleet.py --loop): asyncio for comparison")
    args = parser.parse_args()
    # SIGTERM (kill, a CI timeout) ends the run through the `finally`s below: serve and the fakes stopped, not orphaned
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # every check measured starts from compiled modules: without their .pyc files (an edit since the last run, or
    # PYTHONDONTWRITEBYTECODE) each process would compile them, ~0.06 s that flatters the 500 / 1 ratio
    compileall.compile_dir(ROOT / "guardian", quiet=1)
    out = ["## fleet", "", "Regenerate: `.venv/bin/python scripts/bench_fleet.py --markdown docs/benchmarks.md` "
           "(`--minutes 120` for the issue's 2-hour soak; `--only check|serve|soak` rewrites only that part).", ""]
    fleet = Fleet(GATEWAYS, args.fake_processes, args.fake_loop)
    try:
        with tempfile.TemporaryDirectory(prefix="guardian-fleet-") as workdir:
            if args.only in (None, "check"):
                bench_check(fleet, Path(workdir), args.runs, out)
            if args.only in (None, "serve"):
                bench_serve(fleet, Path(workdir), args.serve_minutes, out)
            if args.only in (None, "soak"):
                bench_soak(fleet, Path(workdir), args.minutes, out)
    finally:
        fleet.stop()
    print("\n".join(out))
    if args.markdown and args.only:
        write_part(args.markdown, out)
    elif args.markdown:
        write_sections(args.markdown, out)
    return 0


def write_part(path: Path, out: list[str]) -> None:
    """Put the one part `out` holds (its "### " subsection) in place of the one of the same kind (its heading's first
    two words) within the file's "## fleet" section, the other parts kept: at the section's end when it has none,
    and the whole of `out` as that section when the file has none."""
    lines = path.read_text().splitlines() if path.exists() else []
    if "## fleet" not in lines:
        return write_sections(path, out)
    part = out[next(i for i, line in enumerate(out) if line.startswith("### ")):]
    start = lines.index("## fleet")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    kind = " ".join(part[0].split()[:2]) + " "
    old = next((i for i in range(start, end) if lines[i].startswith(kind)), None)
    if old is None:
        lines[end:end] = part
    else:
        old_end = next((i for i in range(old + 1, end) if lines[i].startswith("### ")), end)
        lines[old:old_end] = part
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


if __name__ == "__main__":
    sys.exit(main())
