"""Benchmark issue 14's attribution on a real OpenClaw gateway with three agents: what `check` costs at ok (no rows
listed: the latest split is reused) beside main's check, what it costs at warning (one page of rows a check) on a
store of --sessions sessions, one `sessions.list` page of 1,000 rows, and the guardian's own CPU for a page's share of
the split and for a split of every row.

    .venv/bin/python scripts/bench_attribution.py [--sessions 5000] [--runs 15] [--base main] [--markdown FILE]

main's code is `git archive`d into a temporary directory and run by the same Python (no worktree is touched).
Every case is a new `guardian check` process, the cases interleaved, so each sees the gateway in the same state.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import peer
import yaml
from bench import measured, publish, stats

from guardian.adapters import gateway
from guardian.commands.check import SPLIT_PAGE
from guardian.settings.model import Cleanup, Host
from guardian.settings.secrets import Secret

ROOT = Path(__file__).resolve().parent.parent
AGENTS = {"main": {"name": "Main"}, "sales": {"name": "Sales"}, "support": {"name": "Support"}}
SHARES = {"sales": 0.6, "support": 0.3, "main": 0.1}  # unevenly


def host_of(gw: peer.Gateway, limit: int = 1) -> Host:
    return Host(name=gw.name, url=gw.url, limit=limit, token=Secret(gw.token, "bench"), timeout=120)


def fill(gw: peer.Gateway, count: int) -> None:
    """`count` sessions spread unevenly over the agents, 250 creates in flight at a time."""
    keys = [f"agent:{agent}:bench-{i}" for agent, share in SHARES.items() for i in range(round(count * share))]
    with gateway.connect(host_of(gw), [gateway.WRITE]) as connection:
        for start in range(0, len(keys), 250):
            answers = connection.call_many([("sessions.create", {"key": k}) for k in keys[start:start + 250]])
            failed = [a for a in answers if isinstance(a, gateway.GatewayError)]
            if failed:
                raise SystemExit(f"bench: creating sessions failed: {failed[0]}")


def settle(gw: peer.Gateway) -> int:
    """Wait until the gateway answers reads again after the bulk creates (it refuses them while busy); its count."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with gateway.connect(host_of(gw), [gateway.READ]) as connection:
                return connection.call("sessions.list", {"limit": 1})["totalCount"]
        except gateway.GatewayError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def config(workdir: Path, gw: peer.Gateway, limit: int, name: str, **sections) -> Path:
    token = workdir / "token"
    token.write_text(gw.token)
    token.chmod(0o600)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"hosts": {gw.name: {"url": gw.url, "token_file": str(token), "limit": limit}},
                                    **sections, "state_dir": str(workdir / f"state-{name}")}))
    return path


def checker(code: Path, path: Path):
    def run() -> float:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "guardian", "check", "--config", str(path), "-q"], cwd=code,
                                env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True)
        if result.returncode not in (0, 1, 2):
            raise SystemExit(f"bench: check ({code}) exited {result.returncode}: {result.stderr}")
        return time.perf_counter() - started
    return run


def page_cost(gw: peer.Gateway, runs: int) -> list[float]:
    """One page as a check reads it (every row a listing shows), on a connection already open."""
    from guardian.commands.check import ALL_ROWS

    with gateway.connect(host_of(gw), [gateway.READ]) as connection:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            connection.call("sessions.list", {"limit": SPLIT_PAGE, **ALL_ROWS})
            samples.append(time.perf_counter() - started)
        return samples


def split_cpu(gw: peer.Gateway, runs: int) -> tuple[list[float], list[float], int]:
    """The guardian's own CPU (listing excluded) for one check's page of the split (its tally) and for a split of
    every row at once, and how many rows there are."""
    from guardian.commands.check import ALL_ROWS, _agent_counts
    from guardian.core import attribution

    host = host_of(gw)
    with gateway.connect(host, [gateway.READ]) as connection:
        total = connection.call("sessions.list", {"limit": 1, **ALL_ROWS})["totalCount"]
        pages = connection.call_many([("sessions.list", {"limit": SPLIT_PAGE, "offset": offset, **ALL_ROWS})
                                      for offset in range(0, total, SPLIT_PAGE)])
        rows = list({r["key"]: r for page in pages for r in page["sessions"]}.values())
        agents, _ = _agent_counts(connection.call("status", {}), host)
    page, every = [], []
    for _ in range(runs):
        started = time.process_time()
        attribution.tally(rows[:SPLIT_PAGE], Cleanup(), time.time())
        page.append(time.process_time() - started)
        started = time.process_time()
        attribution.split(rows, agents, Cleanup(), time.time())
        every.append(time.process_time() - started)
    return page, every, len(rows)


def main_code(base: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix="guardian-base-"))
    archive = subprocess.run(["git", "archive", base], cwd=ROOT, capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--base", default="main", help="the code to compare with (a git revision)")
    parser.add_argument("--markdown", help="also write the section to this file, in place of its own")
    args = parser.parse_args()
    base = main_code(args.base)
    workdir = Path(tempfile.mkdtemp(prefix="guardian-bench-attribution-"))
    (gw,) = peer.start_many([{"name": "agents", "extra_config": {"agents": {"entries": AGENTS}}}])
    try:
        started = time.monotonic()
        fill(gw, args.sessions)
        total = settle(gw)
        filled = time.monotonic() - started
        low, high = 100 * total, math.ceil(total / 0.85)  # ok: 1 %; warning: 85 %
        ok_every = {"attribution": {"every": "1h"}}  # the latest split is reused: no rows listed at ok (main too)
        cases = {"main at ok": checker(base, config(workdir, gw, low, "main-ok", **ok_every)),
                 "this at ok": checker(ROOT, config(workdir, gw, low, "ok", **ok_every)),
                 "main at warning": checker(base, config(workdir, gw, high, "main-warning")),
                 "this at warning": checker(ROOT, config(workdir, gw, high, "warning"))}
        samples = {name: [] for name in cases}
        for _ in range(math.ceil(total / SPLIT_PAGE) - 1):  # the first split at ok is a page a check, like any
            cases["this at ok"]()
        for run in range(args.runs + 1):  # the first round warms up (and completes this branch's first split)
            for name, case in cases.items():
                elapsed = case()
                if run:
                    samples[name].append(elapsed)
        pages = page_cost(gw, args.runs)
        page_cpu, cpu, rows = split_cpu(gw, args.runs)
    finally:
        peer.stop_many([gw])
    median = {name: statistics.median(values) for name, values in samples.items()}
    ratio = median["this at ok"] / median["main at ok"]
    # what listing rows adds: the same code at ok lists none (its split reused), at warning one page
    added = 1000 * (median["this at warning"] - median["this at ok"])
    page_ms = 1000 * statistics.median(pages)
    out = ["## attribution (issue 14)", "",
           f"{measured()}; one real OpenClaw {peer.DEFAULT_VERSION} gateway with three agents and {total} sessions "
           f"(sales 60 %, support 30 %, main 10 %; made in {filled:.0f} s). Each case a new `guardian check` "
           f"process, the four interleaved, {args.runs} runs each after one warm-up; `main` is `{args.base}`'s "
           "code, `git archive`d and run by the same Python. Re-run: "
           f"`.venv/bin/python scripts/bench_attribution.py --sessions {args.sessions} --runs {args.runs}`.", "",
           f"- main's check at ok (1 % usage): {stats(samples['main at ok'])}",
           f"- this check at ok (`status` + four `sessions.list {{limit: 1}}` in one round trip; the split "
           f"reused, no rows listed): {stats(samples['this at ok'])}; **{ratio:.3f}x** main's (target <= 1.05x)",
           f"- main's check at warning (85 %; every row listed, {math.ceil(total / 1000)} pages of 1,000, and "
           f"split): {stats(samples['main at warning'])}",
           f"- this check at warning (one page of 1,000 rows a check, the split of {math.ceil(total / 1000)} pages "
           f"assembled over consecutive checks): {stats(samples['this at warning'])}; adds {added:.0f} ms to "
           f"this check at ok (target: no more than one page, {page_ms:.0f} ms here); "
           f"**{median['this at warning'] / median['main at warning']:.3f}x** main's at warning",
           f"- one page, `sessions.list {{limit: 1000, archived: all, includeGlobal, includeUnknown}}`, on this store: "
           f"{stats(pages)}",
           f"- the guardian's CPU for one check's page (attribution.tally of 1,000 rows, listing excluded): "
           f"{stats(page_cpu, 'ms', 1000)} (target < 50 ms)",
           f"- the guardian's CPU for the split of all {rows} rows at once (attribution.split, as main does at "
           f"warning): {stats(cpu, 'ms', 1000)}", ""]
    return publish(out, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
