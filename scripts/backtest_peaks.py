"""Backtest of the peak forecast (guardian/core/peaks.py) on synthetic months with known daily peaks.

Each month: 30-second checks in a real zone (some months cross a DST change), a weekday peak at a
month's own time with a day-to-day jitter, a second smaller bump in the afternoon, noise, session
counts rounded to whole sessions of the limit, weekends (most months: lower and later), growth of
the peaks week over week, and a holiday (a weekday that looks like a weekend) in weeks 1-3.
Fit on weeks 1-3 (`now` is the midnight that starts week 4), predict the daily peaks of week 4,
and compare with the true (noise-free) peaks: error in peak time (minutes) and height (points),
median and p90 over every predicted day. Deterministic: seeded.

    .venv/bin/python scripts/backtest_peaks.py [--months 40] [--seed 15]
"""

from __future__ import annotations

import argparse
import math
import random
import time as clock
from datetime import date, datetime, timedelta
from statistics import median
from zoneinfo import ZoneInfo

from guardian.core import peaks
from guardian.core.peaks import (
    DAY,
    EPOCH_DAY,
    PeakModel,
    circular_distance,
    circular_median,
    daily_peaks,
    fit,
    local_days,
    quantile,
    theil_sen,
)

ZONES = ["Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo", "Australia/Sydney"]
STEP = 30.0  # seconds between checks
CRITICAL = 90.0


class Month:
    """A synthetic month: its parameters, its samples for weeks 1-3 and the true peaks of week 4."""

    def __init__(self, rng: random.Random):
        self.zone = ZoneInfo(rng.choice(ZONES))
        # a Monday in 2026 (2026-01-05 is one)
        self.start = date(2026, 1, 5) + timedelta(weeks=rng.randrange(48))
        self.base = rng.uniform(10, 30)
        self.amplitude = rng.uniform(30, 50)
        self.peak_hour = rng.uniform(8.5, 15)
        self.width = rng.uniform(1.5, 3)  # hours (standard deviation of the bump)
        self.second = rng.uniform(0.55, 0.85)  # the afternoon bump, as a share of the main one
        self.second_after = rng.uniform(3, 5)  # hours after the main peak
        self.weekend_differs = rng.random() < 0.7
        self.weekend_share = rng.uniform(0.3, 0.6) if self.weekend_differs else 1.0
        self.weekend_shift = rng.uniform(-1, 3) if self.weekend_differs else 0.0
        self.growth = rng.uniform(-1, 3)  # points a week
        self.noise = rng.uniform(1, 3)  # points, per check
        self.limit = rng.choice([20, 50, 100])
        self.holiday = self.start + timedelta(days=rng.choice([d for d in range(21) if d % 7 < 5]))
        # per day: (peak hour, height jitter), so each day's true peak is its own
        self.days = [self.start + timedelta(days=d) for d in range(28)]
        self.jitter = {day: (rng.gauss(0, 1 / 3), rng.gauss(0, 2)) for day in self.days}
        self.rng = rng

    def usage(self, day: date, hour: float, jittered: bool = True) -> float:
        """The noise-free usage at a wall-clock hour of a local day (without its day's jitter: the month's rule)."""
        weekendish = day.weekday() >= 5 or day == self.holiday
        share = self.weekend_share if weekendish else 1.0
        hour_jitter, height_jitter = self.jitter[day] if jittered else (0.0, 0.0)
        centre = self.peak_hour + (self.weekend_shift if weekendish else 0.0) + hour_jitter
        grown = self.amplitude + height_jitter + self.growth * (day - self.start).days / 7
        bumps = math.exp(-((hour - centre) / self.width) ** 2 / 2) + self.second * math.exp(
            -((hour - centre - self.second_after) / (self.width * 0.7)) ** 2 / 2)
        return self.base + share * grown * bumps

    def true_peak(self, day: date, jittered: bool = True) -> tuple[float, float]:
        """(wall-clock seconds, usage) of the day's noise-free peak, to the minute."""
        minute = max(range(1440), key=lambda m: self.usage(day, m / 60, jittered))
        return minute * 60.0, self.usage(day, minute / 60, jittered)

    def samples(self) -> tuple[list[tuple[float, float]], float]:
        """The checks of weeks 1-3, and `now` (the midnight that starts week 4)."""
        first = datetime.combine(self.start, datetime.min.time(), tzinfo=self.zone).timestamp()
        now = datetime.combine(self.start + timedelta(weeks=3), datetime.min.time(), tzinfo=self.zone).timestamp()
        out = []
        t = first
        while t < now:
            local = datetime.fromtimestamp(t, self.zone)
            value = self.usage(local.date(), local.hour + local.minute / 60 + local.second / 3600)
            sessions = round((value + self.rng.gauss(0, self.noise)) * self.limit / 100)
            out.append((t, min(100.0, max(0.0, sessions * 100 / self.limit))))
            t += STEP
        return out, now


def hour_of_week(days: dict[date, peaks.DayBins]):
    """The baseline: per weekday and hour, the median over the weeks of that hour's highest smoothed bin;
    a day's peak is its weekday's highest hour (at its middle), moved along a Theil-Sen line of all
    daily peaks from the middle of the fitted days of that weekday."""
    per_hour = 3600 // peaks.BIN
    cells = [[[] for _ in range(24)] for _ in range(7)]
    for day, bins in days.items():
        smoothed = bins.smoothed()
        for hour in range(24):
            values = [point[1] for point in smoothed[hour * per_hour:(hour + 1) * per_hour] if point]
            if values:
                cells[day.weekday()][hour].append(max(values))
    slope = theil_sen([[((p.day - EPOCH_DAY).days, p.usage) for p in daily_peaks(days)]])

    def predict(day: date) -> tuple[float, float]:
        row = [median(cell) if cell else -1.0 for cell in cells[day.weekday()]]
        hour = max(range(24), key=lambda h: row[h])
        fitted = [d for d in days if d.weekday() == day.weekday()]
        middle = sum((d - day).days for d in fitted) / len(fitted)
        return hour * 3600 + 1800.0, row[hour] - slope * middle
    return predict


def per_weekday(days: dict[date, peaks.DayBins]):
    """Daily peaks by weekday (Monday with Mondays): median time and a Theil-Sen line per weekday."""
    by_weekday = {w: [p for p in daily_peaks(days) if p.day.weekday() == w] for w in range(7)}
    slope = theil_sen([[((p.day - EPOCH_DAY).days, p.usage) for p in group] for group in by_weekday.values()])

    def predict(day: date) -> tuple[float, float]:
        group = by_weekday[day.weekday()]
        level = median(p.usage - slope * (p.day - EPOCH_DAY).days for p in group)
        return circular_median([p.seconds for p in group]), level + slope * (day - EPOCH_DAY).days
    return predict


def day_kinds(days: dict[date, peaks.DayBins]):
    """guardian/core/peaks.py's model."""
    return fit(daily_peaks(days))[0].expected


def day_kinds_flat(days: dict[date, peaks.DayBins]):
    """The same without growth: each kind's median peak."""
    model, groups = fit(daily_peaks(days))
    flat = PeakModel(0.0, {kind: (model.kinds[kind][0], median(p.usage for p in group))
                           for kind, group in groups.items()})
    return flat.expected


METHODS = {
    "the month's rule, known (the floor: each day's jitter)": None,
    "hour-of-week p50 + Theil-Sen (baseline)": hour_of_week,
    "per-weekday daily peaks + Theil-Sen": per_weekday,
    "weekday/weekend daily peaks + Theil-Sen (guardian)": day_kinds,
    "weekday/weekend daily peaks, no growth": day_kinds_flat,
}


def backtest(months: int, seed: int) -> None:
    rng = random.Random(seed)
    errors = {name: ([], []) for name in METHODS}
    for _ in range(months):
        month = Month(rng)
        samples, now = month.samples()
        days = local_days(samples, now, month.zone)
        for name, method in METHODS.items():
            predict = method(days) if method else lambda day: month.true_peak(day, jittered=False)
            for day in month.days[21:]:
                (seconds, usage), (true_seconds, true_usage) = predict(day), month.true_peak(day)
                errors[name][0].append(circular_distance(seconds, true_seconds) / 60)
                errors[name][1].append(abs(usage - true_usage))
    print(f"{months} synthetic months, seed {seed}: fit on weeks 1-3, predict the {months * 7} daily peaks of week 4")
    print(f"{'method':54} {'time min p50':>12} {'p90':>6} {'height pt p50':>13} {'p90':>6}")
    for name, (times, heights) in errors.items():
        print(f"{name:54} {quantile(times, 0.5):12.1f} {quantile(times, 0.9):6.1f} "
              f"{quantile(heights, 0.5):13.2f} {quantile(heights, 0.9):6.2f}")


def speed(seed: int) -> None:
    """CPU of one peak_forecast over 30 days of 30-second checks (86 400 samples), best of 5."""
    rng = random.Random(seed)
    zone = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 11, 20, 12, tzinfo=zone).timestamp()
    samples = [(now - i * STEP, 40 + 30 * math.sin(i * STEP * 2 * math.pi / DAY) + rng.gauss(0, 2))
               for i in range(int(30 * DAY / STEP), 0, -1)]
    best = math.inf
    for _ in range(5):
        started = clock.process_time()
        peaks.peak_forecast(samples, now, zone, CRITICAL)
        best = min(best, clock.process_time() - started)
    print(f"peak_forecast over {len(samples)} samples (30 days at 30 s): {best * 1000:.0f} ms CPU (best of 5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=40)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    backtest(args.months, args.seed)
    speed(args.seed)


if __name__ == "__main__":
    main()
