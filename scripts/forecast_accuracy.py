"""How far the forecast's slope (guardian/core/forecast.py) is from the true one, against Theil-Sen's, and its cost.

Two kinds of synthetic hours of 30-second checks (121 samples): a noisy line (a slope of 0.05 to 1 point a minute,
noise of +-2 points, 5 % of the checks a burst of +20), and a climb in whole sessions (a staircase: limits of 20,
32 and 50, 17 to 40 points an hour, checked every 30 s, 1 or 2 minutes). Each method's error in points a minute
(median, p90), relative to the true slope (p90; the staircases' worst), and its CPU per fit. Deterministic: seeded.

    .venv/bin/python scripts/forecast_accuracy.py [--hours 2000] [--seed 15]
"""

from __future__ import annotations

import argparse
import random
import time
from statistics import median, quantiles

from guardian.core.forecast import paired_slope


def noisy_hour(draw: random.Random) -> tuple[float, list[tuple[float, float]]]:
    slope, base = draw.uniform(0.05, 1.0), draw.uniform(10, 60)  # points a minute; usage now
    points = []
    for k in range(121):
        at = -3600 + 30 * k + draw.random()  # as cron starts checks
        points.append((at, base + slope * at / 60 + draw.uniform(-2, 2) + (20 if draw.random() < 0.05 else 0)))
    return slope, points


def staircases() -> list[tuple[float, list[tuple[float, float]]]]:
    hours = []
    for limit in (20, 32, 50):
        for per_hour in (17.0, 25.0, 30.0, 40.0):
            for every in (0.5, 1, 2):
                checks = int(60 / every)
                sessions = [int((50 - per_hour * (checks - i) / checks) / 100 * limit) for i in range(checks + 1)]
                hours.append((per_hour / 60, [(i * every * 60.0, 100 * n / limit) for i, n in enumerate(sessions)]))
    return hours


def theil_sen(points: list[tuple[float, float]]) -> float:
    return median((y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:] if x2 != x1)


def thinned(points: list, most: int) -> list:
    """`most` of `points`, the ends among them, evenly spaced by position (the forecast's input before this one)."""
    if len(points) <= most:
        return points
    step = (len(points) - 1) / (most - 1)
    return [points[round(k * step)] for k in range(most)]


METHODS = {
    "Theil-Sen, every pair of the 120": theil_sen,
    "Theil-Sen over 60 of them (before)": lambda points: theil_sen(thinned(points, 60)),
    "Theil-Sen over 40 of them": lambda points: theil_sen(thinned(points, 40)),
    "pairs as far from either end (now)": paired_slope,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    draw = random.Random(args.seed)
    noisy, stairs = [noisy_hour(draw) for _ in range(args.hours)], staircases()
    print(f"{args.hours} noisy hours and {len(stairs)} staircases of 30-second checks, seed {args.seed}")
    print(f"{'method':36} {'error pt/min p50':>16} {'p90':>7} {'rel p90':>8} {'stairs worst':>12} {'CPU a fit':>10}")
    for name, slope_of in METHODS.items():
        started = time.process_time()
        errors = [abs(slope_of(points) * 60 - slope) for slope, points in noisy]
        cpu = (time.process_time() - started) / len(noisy)
        relative = [error / slope for error, (slope, _) in zip(errors, noisy)]
        worst = max(abs(slope_of(points) * 60 - slope) / slope for slope, points in stairs)
        print(f"{name:36} {median(errors):16.4f} {quantiles(errors, n=10)[8]:7.4f} "
              f"{100 * quantiles(relative, n=10)[8]:7.1f}% {100 * worst:11.1f}% {1000 * cpu:7.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
