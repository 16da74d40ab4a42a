"""The history section of scripts/bench.py: `guardian report` over months of 50 hosts, history.db's size,
and what a year of history beside it costs `check`.

    .venv/bin/python scripts/bench.py --only history [--runs 10] [--markdown docs/benchmarks.md]

history.db is generated straight in SQL (executemany), as a year of checks every 30 s would leave it with the
default windows: raw samples for the last 2 days, 5-minute rollups for 90 days, hourly ones for the year.
A second file holds 30 days of raw samples only (`history.retention: 30d`, what every check kept before
issue 15), for the SQL aggregation without rollups. The guardian runs as a new process each time.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from pathlib import Path

from bench import measured
from bench_scale import PYTHON, Fleet, guardian, interleaved, median, spread, write_config

from guardian.adapters.history import RESOLUTIONS, TIME_LEVELS, History
from guardian.core.records import Sample
from guardian.settings.model import HistorySettings

HOSTS, LIMIT, STEP = 50, 60, 30
DAY = 86400
LEVELS = ((90, "critical"), (80, "warning"), (65, "notice"))
KEEP = HistorySettings()  # the default windows
CHECKED = ("empty", "hour", "year")
CHECK_RUNS = 15  # the least for a check's figures: its CPU medians move by ~30 ms from run to run on a busy machine
BASELINE = "(baseline)"


def usage_at(host: int, when: float) -> float:
    """A working day: a peak around 10:00 UTC, each host at its own height."""
    hour = when % DAY / 3600
    return max(0.0, min(100.0, 20 + host % 30 + 45 * math.exp(-((hour - 10) / 3) ** 2)))


def level(usage: float) -> str:
    return next((name for threshold, name in LEVELS if usage >= threshold), "ok")


def create(state_dir: Path, now: float) -> History:
    """An empty history.db at the current schema."""
    history = History(state_dir)
    history.record([Sample(now, "host", "gw0", 0, LIMIT, 0.0, "ok", 0, True)], now, KEEP)
    with history._transaction(write=True) as db:
        db.execute("DELETE FROM samples")
        db.execute("DELETE FROM rolled")
    return history


def raw_rows(start: float, end: float, noise: random.Random):
    when = start // STEP * STEP
    while when < end:
        for host in range(HOSTS):
            sessions = round(LIMIT * min(100.0, usage_at(host, when) + noise.uniform(-3, 3)) / 100)
            usage = 100 * sessions / LIMIT
            jittered = when + noise.random()  # as cron starts checks
            yield jittered, "host", f"gw{host}", sessions, LIMIT, usage, level(usage), 0, 1
        when += STEP


def rollup_rows(resolution: int, start: float, end: float):
    bucket = start // resolution * resolution
    samples = resolution // STEP
    while bucket < end:
        for host in range(HOSTS):
            usage = usage_at(host, bucket + resolution / 2)
            spent = dict.fromkeys(TIME_LEVELS, 0)
            spent[level(usage)] = resolution
            # times in whole seconds after the bucket's start, as History rolls them up
            yield (resolution, "host", f"gw{host}", int(bucket), LIMIT, samples, samples, max(0.0, usage - 3.3),
                   min(100.0, usage + 3.3), usage * samples, resolution // 3, 0, resolution - STEP,
                   resolution - STEP, usage, round(usage * LIMIT / 100), level(usage), *spent.values())
        bucket += resolution


def year_of_history(state_dir: Path, now: float) -> None:
    history = create(state_dir, now)
    with history._transaction(write=True) as db:
        db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       raw_rows(now - KEEP.retention, now, random.Random(1)))
        for resolution, window in zip(RESOLUTIONS, (KEEP.five_minute, 365 * DAY)):
            finished = now // resolution * resolution
            db.executemany(f"INSERT INTO rollups VALUES ({', '.join('?' * 22)})",
                           rollup_rows(resolution, now - window, finished))
            db.execute("INSERT INTO rolled VALUES (?, ?)", (resolution, finished))
        db.execute("INSERT INTO pruned VALUES (1, ?)", (now - KEEP.retention,))
    checkpoint(history)


def raw_only(state_dir: Path, now: float, seconds: float) -> None:
    history = create(state_dir, now)
    with history._transaction(write=True) as db:
        db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       raw_rows(now - seconds, now, random.Random(1)))
    checkpoint(history)


def checkpoint(history: History) -> None:
    """Fold the WAL into the file, so its size is the history's."""
    with history._transaction(write=False) as db:
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("BEGIN")


def size_mib(state_dir: Path) -> float:
    return sum(path.stat().st_size for path in state_dir.glob("history.db*")) / 2**20


def history_section(runs: int) -> list[str]:
    import time

    out = ["## history", "", f"{measured()}.", "",
           "Regenerate this section alone: `.venv/bin/python scripts/bench.py --only history --markdown "
           "docs/benchmarks.md` (no real gateway). " + __doc__.split("\n\n")[2].replace("\n", " ").strip(), ""]
    with tempfile.TemporaryDirectory(prefix="guardian-history-") as workdir:
        root = Path(workdir)
        fleet = Fleet(HOSTS)
        try:
            fleet.set(gateways=list(range(HOSTS)), latency=0.0, sessions=10)
            configs = {}
            for name in ("year", "month", "hour", "empty"):
                (root / name).mkdir()
                configs[name] = write_config(root / name, fleet, {f"gw{i}": i for i in range(HOSTS)})
            now = time.time()
            started = time.perf_counter()
            year_of_history(root / "year" / "state", now)
            made_year = time.perf_counter() - started
            started = time.perf_counter()
            raw_only(root / "month" / "state", now, 30 * DAY)
            made_month = time.perf_counter() - started
            raw_only(root / "hour" / "state", now, 3600)
            year_mib, month_mib = size_mib(root / "year" / "state"), size_mib(root / "month" / "state")
            # the first round (not kept) leaves peak_forecasts.json, as the checks keep it; "cold" removes it first
            forecasts_file = str(root / "year" / "state" / "peak_forecasts.json")
            reports = interleaved({
                "30d": guardian("report", "--config", str(configs["year"]), "--since", "30d", "--json"),
                "30d cold": ["/bin/sh", "-c", 'rm -f "$0" && exec "$@"', forecasts_file,
                             *guardian("report", "--config", str(configs["year"]), "--since", "30d", "--json")],
                "365d": guardian("report", "--config", str(configs["year"]), "--since", "365d", "--json"),
                "raw 30d": guardian("report", "--config", str(configs["month"]), "--since", "30d", "--json"),
            }, runs)
            checks = interleaved(check_cases(root, fleet, configs), max(runs, CHECK_RUNS))
        finally:
            fleet.stop()
    out += [f"### report over {HOSTS} hosts sampled every {STEP} s", "",
            f"- `report --since 30d --json` (5-minute rollups, then the raw tail; the peak forecasts from their file, "
            f"as the checks keep it): {spread(reports['30d'])}; "
            f"peak memory {spread(reports['30d'], 'rss_kib', 'MiB', 1 / 1024)} (target < 1.5 s, < 80 MiB)",
            f"- the same without peak_forecasts.json (the first report after an import, or where no check runs: four "
            f"weeks of 5-minute rollups read for the peak forecasts): {spread(reports['30d cold'])}; "
            f"peak memory {spread(reports['30d cold'], 'rss_kib', 'MiB', 1 / 1024)}",
            f"- `report --since 365d --json` (hourly rollups): {spread(reports['365d'])}; "
            f"peak memory {spread(reports['365d'], 'rss_kib', 'MiB', 1 / 1024)} (target < 3 s)",
            f"- `report --since 30d --json` over 30 days of raw samples only ({HOSTS * 30 * DAY // STEP:,} rows, "
            f"aggregated in SQLite without rollups): {spread(reports['raw 30d'])}; "
            f"peak memory {spread(reports['raw 30d'], 'rss_kib', 'MiB', 1 / 1024)}",
            "- before issue 15 (every row loaded into Python), 20 hosts over 30 days took 9.3 s and 922 MiB", "",
            f"### history.db for {HOSTS} hosts", "",
            f"- a year with the default windows (2 days raw, 90 days of 5-minute rollups, a year of hourly ones): "
            f"**{year_mib:.0f} MiB** (target < 200 MiB); generated in {made_year:.0f} s",
            f"- 30 days of raw samples only: {month_mib:.0f} MiB; generated in {made_month:.0f} s", "",
            *check_lines(checks)]
    return out


def check_cases(root: Path, fleet: Fleet, configs: dict) -> dict[str, list[str]]:
    """`check` beside each file; and when $GUARDIAN_BASELINE_CODE names a directory holding another `guardian`
    package (`git archive main | tar -x -C /tmp/main-code`), the same checks by that code beside copies of the files
    (each code keeps its own state and peaks.json), interleaved with these. Compile both first (`python -m
    compileall -q DIR/guardian`): under PYTHONDONTWRITEBYTECODE a package without its .pyc files is compiled again
    by every run, ~90 ms of CPU that is no check's."""
    cases = {name: guardian("check", "--config", str(configs[name]), "-q") for name in CHECKED}
    baseline = os.environ.get("GUARDIAN_BASELINE_CODE")
    if baseline:
        for name in CHECKED:
            copy = root / f"{name}-baseline"
            if (root / name / "state").exists():
                shutil.copytree(root / name / "state", copy / "state")
            copy.mkdir(exist_ok=True)
            config = write_config(copy, fleet, {f"gw{i}": i for i in range(HOSTS)})
            # -P: `-m` would put the current directory first on sys.path, ahead of PYTHONPATH
            cases[f"{name} {BASELINE}"] = ["env", f"PYTHONPATH={baseline}", PYTHON, "-P", "-m", "guardian", "check",
                                           "--config", str(config), "-q"]
    return cases


def check_lines(checks: dict) -> list[str]:
    """Wall and CPU (the child's user + system) of each case; the ratios of the CPU medians, which the other
    tenants of a shared machine move less than the wall time."""
    compared = len(checks) > len(CHECKED)
    out = [f"### check over {HOSTS} fake gateways beside a year of history", "",
           f"{len(checks['year'])} runs of each, interleaved; load average {load_average()} at the end."
           + (f" Each file is checked by this code and by the {BASELINE} code ($GUARDIAN_BASELINE_CODE)."
              if compared else ""), ""]
    described = {"empty": "empty history.db", "year": "a year of history",
                 "hour": f"the last hour only (what the forecast and the rebound read back, {HOSTS * 3600 // STEP:,} "
                         "rows)"}
    for code in ("", f" {BASELINE}")[:1 + compared]:
        for name in CHECKED:
            out.append(f"- {described[name]}{code}: CPU {spread(checks[name + code], 'cpu')}; "
                       f"wall {spread(checks[name + code])}")
        cpu = {name: median(checks[name + code], "cpu") for name in CHECKED}
        out.append(f"- CPU{code}: year / empty **{cpu['year'] / cpu['empty']:.3f}x**, hour / empty "
                   f"{cpu['hour'] / cpu['empty']:.3f}x, year / hour **{cpu['year'] / cpu['hour']:.3f}x** "
                   f"(target <= 1.05x of empty)")
    return out + [""]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
