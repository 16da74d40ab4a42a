"""`guardian report --json` over the history bench's 50-host year, another checkout's guardian against this one's,
side by side: the same file, rounds interleaved (the first not kept), the load average printed.

    .venv/bin/python scripts/bench_report_against.py /work/main/.venv/bin/python [--runs 7]

Each interpreter runs its own installed `guardian` (`python -P -m guardian`: never the one in the current
directory). "cold" removes peak_forecasts.json before each run, for either checkout (the first report after an
import, or where no check runs): the forecasts computed; the other runs find it as the checks keep it (as the last
run wrote it; a checkout that does not read it computes them every time).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_history import HOSTS, year_of_history
from bench_scale import interleaved, median, spread

PERIODS = ("30d", "365d")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="the other checkout's Python, with its guardian installed")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guardian-report-against-") as workdir:
        root = Path(workdir)
        year_of_history(root / "state", time.time())
        config = root / "year.yaml"
        (root / "token").write_text("x" * 32)
        config.write_text(yaml.safe_dump({"state_dir": str(root / "state"), "hosts": {
            f"gw{i}": {"url": f"ws://127.0.0.1:9/{i}", "token_file": str(root / "token"), "limit": 100_000}
            for i in range(HOSTS)}}))
        forecasts = str(root / "state" / "peak_forecasts.json")
        cases = {}
        for since in PERIODS:
            argv = ["-P", "-m", "guardian", "report", "--config", str(config), "--since", since, "--json"]
            for who, python in (("baseline", args.baseline), ("here", sys.executable)):
                cases[f"{who} {since}"] = [python, *argv]
                cases[f"{who} {since} cold"] = ["/bin/sh", "-c", 'rm -f "$0" && exec "$@"', forecasts, python, *argv]
        before = os.getloadavg()[0]
        samples = interleaved(cases, args.runs)
        after = os.getloadavg()[0]
    print(f"load average (1 min): {before:.1f} before, {after:.1f} after")
    for name, runs in samples.items():
        print(f"- {name}: {spread(runs)}; CPU {spread(runs, 'cpu')}; "
              f"peak memory {spread(runs, 'rss_kib', 'MiB', 1 / 1024)}")
    for since in PERIODS:
        for kind in ("", " cold"):
            base, case = samples[f"baseline {since}{kind}"], samples[f"here {since}{kind}"]
            print(f"- here {since}{kind} / baseline {since}{kind}: wall {median(case) / median(base):.2f}x, "
                  f"CPU {median(case, 'cpu') / median(base, 'cpu'):.2f}x")


if __name__ == "__main__":
    main()
