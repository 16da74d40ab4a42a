"""Issue 17's benchmark: closing idle sessions on a real OpenClaw gateway by archiving them, beside deleting them,
and purging what was archived.

    .venv/bin/python scripts/bench_archive.py [--sessions 200] [--rounds 3] [--markdown docs/benchmarks.md]

One real 2026.9.6 gateway (scripts/peer.py). Each round runs the cases in turn, each on the store filled again with
N idle sessions and left to settle, so every case sees the gateway in the same state (fill, close, repeat):
- `guardian cleanup` in archive mode, a new process as from cron: list, plan, re-read, `sessions.patchMany`
  batches, audit records, the ledger;
- `guardian cleanup` again once `purge_after` (1 s here) has passed: it purges the N the first one archived;
- a bare client archiving them (websocket-client, no guardian code: one listing, `sessions.patchMany` batches
  of 100 with `expectedSessionId`), the floor of archiving; what it archived is then deleted, untimed;
- `guardian cleanup` in delete mode: guarded deletes one at a time, transcripts archived (today's path);
- a bare client deleting them one at a time (bench.py's floor of the cleanup section).
Per case: wall time, the client's CPU (a guardian's from its rusage, a bare client's process time) and the
gateway's CPU over the case (utime + stime of its process, its helpers and their reaped children, from /proc).
--markdown replaces this script's "## archive" section of that file (scripts/bench.py's way).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peer
import yaml
from bench import GUARDIAN, bare_connect, bare_serial_deletes, create, list_rows, measured, publish, wait_for
from demo import write_config

from guardian.adapters import audit
from guardian.commands.cleanup import ARCHIVE_BATCH

SETTLE = 2.0  # seconds after filling the store, so the gateway has finished writing the sessions
PURGE_AFTER = "1s"  # the purge case runs after the settle that follows the archive case
# as scripts/bench.py's clients: a gateway busy after bulk writes can take longer than the default 10 s to answer
CALL_TIMEOUT = "60s"
BATCH_SPREAD = 0.1  # seconds: audit records closer than this belong to one batch's write
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes and their reaped children (a helper that ran and ended counts in its
    parent), from /proc/PID/stat; a process gone since counts nothing."""
    total = 0
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0], utime fields[11]
        total += sum(int(value) for value in fields[11:15])
    return total / TICKS


def gateway_cpu(gw: peer.Gateway) -> float:
    return cpu_seconds([gw.pid, *gw.helper_pids()])


class Case:
    """One measured run: wall seconds, the client's CPU seconds, the gateway's CPU seconds; for archive mode, the
    seconds its batches took from intent to outcome (the patchMany) and between them (the re-read before each)."""

    def __init__(self, wall: float, client_cpu: float, gateway_cpu: float):
        self.wall, self.client_cpu, self.gateway_cpu = wall, client_cpu, gateway_cpu
        self.batches, self.between = 0.0, 0.0


def batch_times(state_dir: Path, run_id: str) -> tuple[float, float]:
    """From the run's audit records: (seconds from each batch's intents to its outcomes, seconds from a batch's
    outcomes to the next one's intents). A batch's records are written together: within BATCH_SPREAD of each other."""
    times = {"intent": [], "outcome": []}
    for record in audit.read(state_dir):
        if record.get("run_id") == run_id and record.get("action") == "archive" and record["event"] in times:
            when, seen = audit.timestamp(record), times[record["event"]]
            if not seen or when - seen[-1][1] > BATCH_SPREAD:
                seen.append([when, when])  # a new batch: its first and last record
            seen[-1][1] = when
    intents = [first for first, _ in times["intent"]]
    outcomes = [last for _, last in times["outcome"]]
    return (sum(o - i for i, o in zip(intents, outcomes)),
            sum(i - o for o, i in zip(outcomes, intents[1:])))


def guardian_cleanup(gw: peer.Gateway, config: Path, sessions: int) -> tuple[Case, dict]:
    """`guardian cleanup --json` as a new process: its figures and its host's summary."""
    children_before, cpu_before, start = children_cpu(), gateway_cpu(gw), time.perf_counter()
    result = subprocess.run([*GUARDIAN, "cleanup", "--config", str(config), "--idle-after", "1ms",
                             "--max-per-run", str(sessions), "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    case = Case(wall, children_cpu() - children_before, gateway_cpu(gw) - cpu_before)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"guardian cleanup exited {result.returncode}: {result.stderr}")
    summary = json.loads(result.stdout)
    if summary["hosts"][0].get("archived"):
        case.batches, case.between = batch_times(yaml.safe_load(config.read_text())["state_dir"], summary["run_id"])
    return case, summary["hosts"][0]


def children_cpu() -> float:
    """CPU seconds of this process's reaped children: the guardian runs (the gateway is reaped only at its stop)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare(gw: peer.Gateway, work) -> Case:
    """A bare client's case, timed in this process."""
    cpu_before, own_before, start = gateway_cpu(gw), time.process_time(), time.perf_counter()
    work()
    return Case(time.perf_counter() - start, time.process_time() - own_before, gateway_cpu(gw) - cpu_before)


def bare_archive(gw: peer.Gateway) -> None:
    """The floor of archiving: one listing, then sessions.patchMany batches of ARCHIVE_BATCH, each awaited."""
    ws = bare_connect(gw.url, gw.token, "operator.admin")
    ws.send(json.dumps({"type": "req", "id": "l", "method": "sessions.list", "params": {"limit": 1000}}))
    rows = wait_for(ws, "l")["payload"]["sessions"]
    for start in range(0, len(rows), ARCHIVE_BATCH):
        targets = [{"key": r["key"], "expectedSessionId": r["sessionId"]} for r in rows[start:start + ARCHIVE_BATCH]]
        ws.send(json.dumps({"type": "req", "id": f"p{start}", "method": "sessions.patchMany",
                            "params": {"targets": targets, "patch": {"archived": True}}}))
        wait_for(ws, f"p{start}")
    ws.close()


def drop_archived(gw: peer.Gateway) -> None:
    """Delete every archived session, untimed and fast (no transcript kept), so the next case starts clean."""
    ws = bare_connect(gw.url, gw.token, "operator.admin")
    ws.send(json.dumps({"type": "req", "id": "l", "method": "sessions.list",
                        "params": {"limit": 10000, "archived": True}}))
    keys = [r["key"] for r in wait_for(ws, "l")["payload"]["sessions"]]
    for index, key in enumerate(keys):  # pipelined: the gateway serialises them anyway
        ws.send(json.dumps({"type": "req", "id": str(index), "method": "sessions.delete",
                            "params": {"key": key, "deleteTranscript": False}}))
    for index in range(len(keys)):
        wait_for(ws, str(index))
    ws.close()


def fill(gw: peer.Gateway, sessions: int) -> list[str]:
    """The store topped up to `sessions` idle (non-archived) sessions: the keys a case must close."""
    create(gw, sessions - len(list_rows(gw)))
    time.sleep(SETTLE)
    return [r["key"] for r in list_rows(gw)]


def expect(summary: dict, field: str, wanted: int, what: str) -> None:
    if summary.get(field) != wanted:
        raise RuntimeError(f"{what}: {field} {summary.get(field)} of {wanted} ({summary.get('error')})")


def run_rounds(gw: peer.Gateway, configs: dict[str, Path], sessions: int, rounds: int) -> dict[str, list[Case]]:
    cases: dict[str, list[Case]] = {name: [] for name in ("archive", "purge", "bare archive", "delete", "bare delete")}
    for round_number in range(1, rounds + 1):
        fill(gw, sessions)
        case, summary = guardian_cleanup(gw, configs["archive"], sessions)
        expect(summary, "archived", sessions, "archive mode")
        cases["archive"].append(case)
        time.sleep(SETTLE)  # purge_after passes, and the gateway settles after the archives
        case, summary = guardian_cleanup(gw, configs["archive"], sessions)
        expect(summary, "purged", sessions, "the purge")
        cases["purge"].append(case)
        fill(gw, sessions)
        cases["bare archive"].append(bare(gw, lambda: bare_archive(gw)))
        drop_archived(gw)
        fill(gw, sessions)
        case, summary = guardian_cleanup(gw, configs["delete"], sessions)
        expect(summary, "deleted", sessions, "delete mode")
        cases["delete"].append(case)
        keys = fill(gw, sessions)
        cases["bare delete"].append(bare(gw, lambda: bare_serial_deletes(gw.url, gw.token, keys)))
        print(f"round {round_number}: " + ", ".join(f"{name} {runs[-1].wall:.2f} s" for name, runs in cases.items()),
              file=sys.stderr)
    return cases


def spread(values: list[float], unit: str = "s", digits: int = 2) -> str:
    return (f"median {statistics.median(values):.{digits}f} {unit} (min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f}, n={len(values)})")


def median(runs: list[Case], figure: str) -> float:
    return statistics.median(getattr(run, figure) for run in runs)


def section(cases: dict[str, list[Case]], sessions: int, rounds: int) -> list[str]:
    def line(name: str, what: str) -> str:
        runs = cases[name]
        return (f"- {what}: wall {spread([r.wall for r in runs])}; its own CPU "
                f"{spread([r.client_cpu for r in runs])}; the gateway's CPU {spread([r.gateway_cpu for r in runs])}")

    def share(name: str) -> float:
        return 100 * median(cases[name], "client_cpu") / median(cases[name], "gateway_cpu")

    archive_wall = median(cases["archive"], "wall")
    return [
        "## archive",
        "",
        f"{measured()}, one real OpenClaw {peer.DEFAULT_VERSION} gateway.",
        "",
        f"Closing {sessions} idle sessions, {rounds} rounds; in each the cases run in turn, each on the store filled "
        f"again with {sessions} idle sessions and left to settle {SETTLE:g} s. CPU is user + system time: the "
        "guardian's from its process's rusage (start-up included), a bare client's from its own process time, the "
        "gateway's from /proc (its process, helpers and their reaped children) over the case. The guardian's "
        f"host `timeout` is {CALL_TIMEOUT}, as the bare clients'.",
        "",
        line("archive", f"`guardian cleanup`, archive mode (new process: list, plan, re-read, `sessions.patchMany` "
                        f"batches of {ARCHIVE_BATCH}, audit, ledger)"),
        line("bare archive", f"bare client archiving them: one listing, `sessions.patchMany` batches of "
                             f"{ARCHIVE_BATCH} (the floor)"),
        line("delete", "`guardian cleanup`, delete mode (guarded deletes one at a time, transcripts archived)"),
        line("bare delete", "bare client deleting them one at a time (the gateway's serial cost)"),
        f"- archive mode closes {sessions} in **{archive_wall:.2f} s** (target < 10 s): "
        f"{median(cases['delete'], 'wall') / archive_wall:.1f}x faster than delete mode, "
        f"{median(cases['bare delete'], 'wall') / archive_wall:.1f}x faster than the bare deletes",
        f"- the guardian's CPU against the gateway's: archive mode **{share('archive'):.0f} %** (target < 10 %), "
        f"delete mode {share('delete'):.1f} %; archive mode's wall time over the bare archive floor: "
        f"{archive_wall - median(cases['bare archive'], 'wall'):+.2f} s",
        f"- where archive mode's time goes (its audit records' times): the `sessions.patchMany` batches "
        f"{spread([r.batches for r in cases['archive']])}, the re-reads between two batches "
        f"{spread([r.between for r in cases['archive']])}",
        "",
        f"Purging the {sessions} archived sessions (`guardian cleanup` once `purge_after` passed: "
        "`sessions.delete {archivedOnly, expectedSessionId}` one at a time, transcripts kept), in the same rounds:",
        "",
        line("purge", "`guardian cleanup` purging them"),
        f"- per session: {1000 * median(cases['purge'], 'wall') / sessions:.0f} ms "
        f"(delete mode: {1000 * median(cases['delete'], 'wall') / sessions:.0f} ms)",
        "",
    ]


def bench_config(workdir: Path, gw: peer.Gateway, mode: str) -> Path:
    """A config for this gateway in this cleanup mode, its own state dir; calls wait up to CALL_TIMEOUT."""
    workdir.mkdir()
    path = write_config(workdir, [gw], {gw.name: 10_000}, cleanup={"mode": mode, "purge_after": PURGE_AFTER})
    config = yaml.safe_load(path.read_text())
    config["hosts"][gw.name]["timeout"] = CALL_TIMEOUT
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", help="also write the figures to this file, in place of its archive section")
    args = parser.parse_args()
    if args.sessions > 1000:
        parser.error("--sessions: at most 1000 (the bare clients list one page)")
    gw = peer.start("bench-archive")
    try:
        time.sleep(5)  # the gateway's event loop is busy right after start-up
        workdir = Path(tempfile.mkdtemp(prefix="guardian-bench-archive-"))
        configs = {mode: bench_config(workdir / mode, gw, mode) for mode in ("archive", "delete")}
        cases = run_rounds(gw, configs, args.sessions, args.rounds)
    finally:
        gw.stop()
    out = section(cases, args.sessions, args.rounds)
    return publish(out, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
