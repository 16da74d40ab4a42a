"""The scale section of scripts/bench.py: start-up, 50 gateways, 10,000 sessions, 1,000 deletes.

    .venv/bin/python scripts/bench.py --only scale [--runs 10] [--markdown docs/benchmarks.md]

The guardian runs as a new process (`python -m guardian ...`, as cron starts it) against fake
gateways served by another process (scripts/fake_fleet.py), so its CPU and memory figures are its
own. Each case runs several times, interleaved with what it is compared with; median and spread
are printed, then the ratio against its target.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench import bare_serial_deletes, measured, timed

from guardian.adapters import gateway
from guardian.commands import cleanup as cleaning
from guardian.core.planner import plan
from guardian.settings.model import Cleanup, Host, Protect
from guardian.settings.secrets import Secret

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUARDIAN_SCRIPT = str(Path(sys.executable).parent / "guardian")
FLEET = 50
LATENCY = 0.05  # seconds before each answer of the 50-gateway case
BIG, SMALL = 10_000, 10
DELETES, DELETE_LATENCY = 1_000, 0.005
# gateways of the fleet: 0..FLEET-1 for the fleet case, then one each for these cases
SMALL_GW, BIG_GW, DELETE_GW = FLEET, FLEET + 1, FLEET + 2


class Fleet:
    """scripts/fake_fleet.py in a subprocess."""

    def __init__(self, count: int, processes: int = 1, loop: str = "uvloop"):
        self.processes, self.loop = processes, loop
        self.process = subprocess.Popen([PYTHON, str(ROOT / "scripts" / "fake_fleet.py"), "--gateways", str(count),
                                         "--processes", str(processes), "--loop", loop],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line:
            sys.exit("the fake gateways did not start: fake_fleet.py's reason is above")
        started = json.loads(line)
        self.urls, self.token = started["urls"], started["token"]

    def set(self, **command) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "ok":
            raise RuntimeError("fake_fleet.py stopped")

    def cpu(self) -> float:
        """Seconds of CPU (user + system) the fleet's processes used so far: fake_fleet.py and its children."""
        pid = self.process.pid
        pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
        ticks = 0
        for each in pids:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


class Sample:
    """One run of a new process: wall time, its own CPU (user + system), its peak memory."""

    def __init__(self, wall: float, cpu: float, rss_kib: int):
        self.wall, self.cpu, self.rss_kib = wall, cpu, rss_kib


def run_process(argv: list[str]) -> Sample:
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"}
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {stderr}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def interleaved(cases: dict, runs: int) -> dict[str, list[Sample]]:
    """Each case once per round, round after round; the first round warms caches and is not kept."""
    samples = {name: [] for name in cases}
    for round_ in range(runs + 1):
        for name, argv in cases.items():
            sample = run_process(argv)
            if round_:
                samples[name].append(sample)
    return samples


def median(samples: list[Sample], what: str = "wall") -> float:
    return statistics.median(getattr(s, what) for s in samples)


def spread(samples: list[Sample], what: str = "wall", unit: str = "s", scale: float = 1.0) -> str:
    values = [getattr(s, what) * scale for s in samples]
    digits = {"MiB": 0, "ms": 2}.get(unit, 3)
    return (f"median {statistics.median(values):.{digits}f} {unit} (min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f}, n={len(values)})")


def write_config(workdir: Path, fleet: Fleet, hosts: dict[str, int]) -> Path:
    """A config watching the fleet's gateways named in `hosts` (name -> gateway index)."""
    token_file = workdir / "fleet.token"
    token_file.write_text(fleet.token)
    token_file.chmod(0o600)
    config = {"hosts": {name: {"url": fleet.urls[index], "token_file": str(token_file), "limit": 100_000}
                        for name, index in hosts.items()},
              "state_dir": str(workdir / "state")}
    path = workdir / f"{'-'.join(hosts)[:40]}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def guardian(*args: str) -> list[str]:
    return [PYTHON, "-m", "guardian", *args]


def bench_startup(runs: int, out: list[str]) -> None:
    samples = interleaved({"baseline": [PYTHON, "-c", "import click"],
                           "version": [GUARDIAN_SCRIPT, "--version"],
                           "help": [GUARDIAN_SCRIPT, "check", "--help"]}, runs)
    base = median(samples["baseline"])
    out += ["### start-up", "",
            f"- `python -c 'import click'` (the floor): {spread(samples['baseline'])}",
            f"- `guardian --version`: {spread(samples['version'])}; "
            f"**{median(samples['version']) / base:.2f}x** the floor (target <= 1.5x)",
            f"- `guardian check --help`: {spread(samples['help'])}; "
            f"**{median(samples['help']) / base:.2f}x** the floor (target <= 1.5x)", ""]


def bench_fleet(fleet: Fleet, workdir: Path, runs: int, out: list[str]) -> None:
    fleet.set(gateways=list(range(FLEET)), latency=LATENCY, sessions=SMALL)
    one = write_config(workdir, fleet, {"gw0": 0})
    many = write_config(workdir, fleet, {f"gw{i}": i for i in range(FLEET)})
    samples = interleaved({"one": guardian("check", "--config", str(one), "-q"),
                           "many": guardian("check", "--config", str(many), "-q")}, runs)
    fleet.set(gateways=list(range(FLEET)), latency=0.0)
    one_s, many_s = samples["one"], samples["many"]
    out += [f"### check over {FLEET} gateways, each answering after {1000 * LATENCY:.0f} ms", "",
            f"- 1 gateway: {spread(one_s)}; peak memory {spread(one_s, 'rss_kib', 'MiB', 1 / 1024)}",
            f"- {FLEET} gateways: {spread(many_s)}; peak memory {spread(many_s, 'rss_kib', 'MiB', 1 / 1024)}",
            f"- wall time {FLEET} / 1: **{median(many_s) / median(one_s):.2f}x** (target <= 2x); "
            f"peak memory {FLEET} / 1: **{median(many_s, 'rss_kib') / median(one_s, 'rss_kib'):.2f}x**",
            f"- the guardian's CPU: {spread(one_s, 'cpu')} for 1, {spread(many_s, 'cpu')} for {FLEET}", ""]


def bench_big_check(fleet: Fleet, workdir: Path, runs: int, out: list[str]) -> None:
    fleet.set(gateways=[SMALL_GW], sessions=SMALL)
    fleet.set(gateways=[BIG_GW], sessions=BIG)
    small = write_config(workdir, fleet, {"small": SMALL_GW})
    big = write_config(workdir, fleet, {"big": BIG_GW})
    samples = interleaved({"small": guardian("check", "--config", str(small), "-q"),
                           "big": guardian("check", "--config", str(big), "-q")}, runs)
    answer = {
        name: counts_time(fleet.urls[index], fleet.token) for name, index in (("small", SMALL_GW), ("big", BIG_GW))
    }
    out += [f"### check against one gateway with {BIG:,} sessions", "",
            f"- {SMALL} sessions: {spread(samples['small'])}; guardian CPU {spread(samples['small'], 'cpu')}",
            f"- {BIG:,} sessions: {spread(samples['big'])}; guardian CPU {spread(samples['big'], 'cpu')}",
            f"- ratio {BIG:,} / {SMALL}: wall **{median(samples['big']) / median(samples['small']):.2f}x**, "
            f"guardian CPU **{median(samples['big'], 'cpu') / median(samples['small'], 'cpu'):.2f}x** "
            f"(target: the same cost; counts come from `totalCount` with `limit: 1`)",
            f"- the fake gateway's own time to answer the check's two `sessions.list {{limit: 1}}` calls "
            f"(it copies and sorts its whole store for each): {1000 * answer['small']:.1f} ms with {SMALL}, "
            f"{1000 * answer['big']:.1f} ms with {BIG:,}", ""]


def counts_time(url: str, token: str) -> float:
    """The gateway's answer time to the two counting calls of a check, on an open connection."""
    with gateway.connect(bench_host(url, token), [gateway.READ]) as connection:
        calls = [("sessions.list", {"limit": 1}), ("sessions.list", {"limit": 1, "activeMinutes": 120})]
        return statistics.median(timed(lambda: connection.call_many(calls)) for _ in range(5))


def bench_host(url: str, token: str) -> Host:
    return Host(name="bench", url=url, limit=100_000, token=Secret(token, "bench"), timeout=60)


def bench_dry_run(fleet: Fleet, workdir: Path, runs: int, out: list[str]) -> None:
    small = write_config(workdir, fleet, {"small": SMALL_GW})
    big = write_config(workdir, fleet, {"big": BIG_GW})
    flags = ["cleanup", "--dry-run", "--idle-after", "2h", "--max-per-run", str(BIG), "--json"]
    samples = interleaved({"small": guardian(*flags, "--config", str(small)),
                           "big": guardian(*flags, "--config", str(big))}, runs)
    extra = median(samples["big"], "cpu") - median(samples["small"], "cpu")
    out += [f"### cleanup --dry-run on {BIG:,} sessions (all idle, all pages fetched, all planned, JSON plan)", "",
            f"- {SMALL} sessions: wall {spread(samples['small'])}; guardian CPU {spread(samples['small'], 'cpu')}",
            f"- {BIG:,} sessions: wall {spread(samples['big'])}; guardian CPU {spread(samples['big'], 'cpu')}",
            f"- the guardian's own CPU for the {BIG - SMALL:,} more sessions: **{extra:.3f} s** (target < 1 s)", ""]
    out += ["The planner alone, in-process (best of 5), to show it is linear:", ""]
    rules = Cleanup(idle_after=7200, max_per_run=50, protect=Protect(keys=("agent:*:telegram:*",)))
    now = time.time()
    for count in (1_000, 10_000, 100_000):
        rows = [{"key": f"agent:main:bench:{i}", "sessionId": str(i), "agentId": "main",
                 "updatedAt": int(1000 * (now - 3600 - (i * 7919) % 86400))} for i in range(count)]
        best = min(timed(lambda: plan(rows, rules, now)) for _ in range(5))
        out.append(f"- {count:,} sessions: {1000 * best:.1f} ms, {1e6 * best / count:.2f} us per session")
    out.append("")


def listing_time(url: str, token: str) -> float:
    """One connect and a full listing of the sessions, the way cleanup lists them."""
    def listing():
        with gateway.connect(bench_host(url, token), [gateway.READ]) as connection:
            cleaning.list_sessions(connection)
    return statistics.median(timed(listing) for _ in range(5))


def bench_deletes(fleet: Fleet, workdir: Path, runs: int, out: list[str]) -> None:
    fleet.set(gateways=[DELETE_GW], sessions=DELETES, delete_latency=DELETE_LATENCY)
    url = fleet.urls[DELETE_GW]
    config = write_config(workdir, fleet, {"deletes": DELETE_GW})
    # the same run with its state dir on tmpfs, where fsync returns at once: what the fsyncs cost
    in_memory = write_config(
        Path(tempfile.mkdtemp(prefix="guardian-scale-", dir="/dev/shm")), fleet, {"deletes": DELETE_GW}
    )
    listing = listing_time(url, fleet.token)
    nominal = DELETES * DELETE_LATENCY + listing
    keys = [f"agent:main:bench:{i}" for i in range(DELETES)]
    flags = ["--idle-after", "2h", "--max-per-run", str(DELETES), "-q"]
    bare, cleanup, no_fsync, no_delete, fsyncs = [], [], [], [], []
    for round_ in range(runs + 1):  # interleaved; the first round warms up and is not kept
        fleet.set(gateways=[DELETE_GW], sessions=DELETES)
        bare_time = timed(lambda: bare_serial_deletes(url, fleet.token, keys)) + listing
        fleet.set(gateways=[DELETE_GW], sessions=DELETES)
        sample = run_process(guardian("cleanup", "--config", str(config), *flags))
        fleet.set(gateways=[DELETE_GW], sessions=DELETES)
        tmpfs_sample = run_process(guardian("cleanup", "--config", str(in_memory), *flags))
        # start-up, connect, listing, plan and the closing count: the run without its deletes
        fixed_sample = run_process(guardian("cleanup", "--config", str(config), "--idle-after", "1000d", "-q"))
        if round_:
            bare.append(Sample(bare_time, 0.0, 0))
            cleanup.append(sample)
            no_fsync.append(tmpfs_sample)
            no_delete.append(fixed_sample)
            fsyncs += fsync_times(workdir / "fsync-probe", DELETES)
    shutil.rmtree(in_memory.parent)
    serial_floor, fixed = median(bare), median(no_delete)
    per_delete = (median(cleanup) - fixed) / DELETES
    bare_per_delete = (serial_floor - listing) / DELETES
    out += [
        f"### cleanup closing {DELETES:,} idle sessions, each delete costing the gateway "
        f"{1000 * DELETE_LATENCY:.0f} ms",
        "",
        f"The fake times each delete from the moment its request reaches the socket, so the "
        f"{1000 * DELETE_LATENCY:.0f} ms include its own parsing; sending the answer back is transport.",
        "",
        f"- nominal floor: {DELETES:,} x {1000 * DELETE_LATENCY:.0f} ms + one listing ({1000 * listing:.0f} ms) "
        f"= {nominal:.3f} s",
        f"- measured floor, the fake's real serial cost: a minimal client (no guardian code, no process start-up) "
        f"deleting the {DELETES:,} one at a time, plus the listing: {spread(bare)}; "
        f"{1000 * bare_per_delete:.2f} ms per delete",
        f"- `guardian cleanup` (new process: list, plan, {DELETES:,} guarded deletes, each intent fsynced before its "
        f"request, each outcome written before the next): {spread(cleanup)}; guardian CPU {spread(cleanup, 'cpu')}",
        f"- ratio to the nominal floor: **{median(cleanup) / nominal:.3f}x** (target <= 1.15x); "
        f"the minimal client's: {serial_floor / nominal:.3f}x",
        f"- ratio to the measured floor: **{median(cleanup) / serial_floor:.3f}x**",
        f"- the same run without deletes (process start-up, connect, listing, plan, closing count): "
        f"{spread(no_delete)}; so each delete took {1000 * per_delete:.2f} ms in the guardian against "
        f"{1000 * bare_per_delete:.2f} ms for the minimal client: **{1000 * (per_delete - bare_per_delete):.2f} ms** "
        "of the guardian's own per delete",
        f"- the same `guardian cleanup` with its state dir on tmpfs (fsync costs nothing there; not for real use): "
        f"{spread(no_fsync)}, **{median(no_fsync) / nominal:.3f}x** the nominal floor, "
        f"{median(no_fsync) / median(cleanup):.3f}x the run on disk",
        f"- an fsync of an appended line on this disk, {DELETES:,} in a row after each round (as many as the run "
        f"makes): median {1000 * statistics.median(fsyncs):.2f} ms, 99th percentile "
        f"{1000 * sorted(fsyncs)[int(0.99 * (len(fsyncs) - 1))]:.2f} ms, max {1000 * max(fsyncs):.1f} ms; "
        f"{sum(1 for f in fsyncs if f > DELETE_LATENCY) / len(fsyncs):.1%} take longer than a delete and cannot "
        f"hide behind it",
        "",
    ]


def fsync_times(path: Path, count: int) -> list[float]:
    """This disk's cost of `count` appended lines each made durable, as the audit log makes them."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        return [timed(lambda: (os.write(fd, b"x" * 300 + b"\n"), os.fsync(fd))) for _ in range(count)]
    finally:
        os.close(fd)


def scale_section(runs: int) -> list[str]:
    out = ["## scale", "",
           f"{measured()}; spreads are wide when the other tenant is busy, so each ratio compares cases "
           f"run interleaved, round by round. Fake gateways (tests/fake_gateway.py) served from another "
           f"process (scripts/fake_fleet.py); the guardian a new process each run, as from cron.", "",
           "Regenerate this section alone: `.venv/bin/python scripts/bench.py --only scale --markdown "
           "docs/benchmarks.md` (about 6 minutes, no real gateway).", ""]
    load_before = os.getloadavg()[0]
    bench_startup(runs, out)
    fleet = Fleet(FLEET + 3)
    try:
        with tempfile.TemporaryDirectory(prefix="guardian-scale-") as workdir:
            bench_fleet(fleet, Path(workdir), runs, out)
            bench_big_check(fleet, Path(workdir), runs, out)
            bench_dry_run(fleet, Path(workdir), runs, out)
            bench_deletes(fleet, Path(workdir), runs, out)
    finally:
        fleet.stop()
    out[2] += f" Load average (1 min): {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end."
    return out
