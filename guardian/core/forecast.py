"""When will a subject reach critical, and its limit, at the current rate: a pure function.

The slope is a median of slopes between pairs of samples, as Theil-Sen's is: one burst of sessions (or a cleanup's
drop) moves a least-squares line (Prometheus's `predict_linear`) a lot and this one hardly at all. Theil-Sen takes
every pair, O(n²): 7,140 for an hour of 30-second checks, and 50 hosts made that 15 % of a check (issue 15). Here
the pairs are the samples the same number of places from either end of the window (first and last, second and
second to last...): each sample is in one pair, so a burst of a tenth of the samples spoils at most a fifth of the
slopes and the median is one of the others; and the pairs are every distance apart once, so a climb in whole
sessions (a staircase) is not read at one distance only. As accurate as Theil-Sen over 60 of the samples, for a
fifteenth of its cost (scripts/forecast_accuracy.py; docs/benchmarks.md). The line's level and its r² use every
sample. No numpy, nor `statistics` (3 ms to import): cron starts this twice a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from operator import mul
from typing import Iterable

from guardian.settings.model import MIN_SPAN

MIN_SAMPLES = 6


@dataclass(frozen=True)
class Forecast:
    samples: int  # reachable samples in the window
    span: float  # seconds from the first to the last of them
    slope: float | None = None  # usage points per second (None: not enough history)
    r2: float | None = None  # fit quality against the robust line, 0..1 (None: a flat series)
    critical_in: float | None = None  # seconds until usage reaches critical (0: there now); None: no upward trend
    full_in: float | None = None  # seconds until it reaches 100 % of the limit

    @property
    def enough(self) -> bool:
        """Enough history for a fit at all: MIN_SAMPLES spanning MIN_SPAN."""
        return self.slope is not None

    @property
    def rising(self) -> bool:
        return self.critical_in is not None


def forecast(samples: Iterable[tuple[float, float | None]], critical: float, now: float, window: float) -> Forecast:
    """Fit the (time, usage %) samples of the last `window` seconds before `now` (None: unreachable).

    Guards: at least MIN_SAMPLES spanning MIN_SPAN (else not `enough`), and a slope above 0
    (else no ETA: no upward trend).
    An ETA counts from `now` at the fitted slope; a threshold the latest sample already reached
    is reached now (0).
    """
    earliest = now - window
    points = sorted([(t - now, u) for t, u in samples if u is not None and earliest <= t <= now])
    span = points[-1][0] - points[0][0] if points else 0.0
    if len(points) < MIN_SAMPLES or span < MIN_SPAN:
        return Forecast(len(points), span)
    slope = paired_slope(points)
    offsets = [y - slope * x for x, y in points]  # each sample's distance above the line through 0 at this slope
    at_now = median(offsets)  # the line's value at `now` (x = 0)
    fit = Forecast(len(points), span, slope, _r2([y for _, y in points], offsets, at_now))
    if slope <= 0:
        return fit
    latest = points[-1][1]
    # From the lower of the line and the latest reading: sessions a cleanup just closed count at
    # once, while a burst in the latest check does not bring the ETA forward.
    start = min(at_now, latest)

    def eta(threshold: float) -> float:
        return 0.0 if latest >= threshold else (threshold - start) / slope

    return replace(fit, critical_in=eta(critical), full_in=eta(100.0))


def paired_slope(points: list[tuple[float, float]]) -> float:
    """The median slope of the pairs of (x, y) points, in x order, that are the same number of places from either
    end: the first and the last, the second and the second to last, and so on (the middle one of an odd number
    is in none)."""
    return median([(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in zip(points[: len(points) // 2], reversed(points))
                   if x2 != x1])


def _r2(usages: list[float], offsets: list[float], at_now: float) -> float | None:
    """1 - (the squared residuals from the line) / (the squared deviations from the mean), at least 0; None for a
    flat series. A residual is a sample's offset from the line through 0 less the line's value at 0."""
    mean = sum(usages) / len(usages)
    deviations = [y - mean for y in usages]
    # squares as products, not `** 2`: a call to pow(), slower, and off from the product by an ulp at times
    total = sum(map(mul, deviations, deviations))
    if total == 0:
        return None
    residuals = [offset - at_now for offset in offsets]
    return max(0.0, 1 - sum(map(mul, residuals, residuals)) / total)


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
