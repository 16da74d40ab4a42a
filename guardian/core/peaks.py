"""When does a subject's usage peak each day, how high, and where are its peaks heading: a pure function.

Days are the operator's: wall-clock days in an IANA zone, so a 23- or 25-hour day (DST) is one day
and "10:00" stays 10:00 across the change. Each complete day before today gives one daily peak:
the highest 15-minute average of its 5-minute bins (one noisy check is not a peak). From the peaks
of the last four weeks:

- the typical peak: the (circular) median time of day, and the p50 and p90 of the peak heights;
  weekdays and weekends apart when their peaks differ (a weekend has no agents at work);
- the growth: Theil-Sen's slope of peak height over days, from pairs of days of the same kind, so
  the weekend dip is not read as a trend and one odd day (a holiday) moves it hardly at all;
- the expected peak of a day: its kind's median time, at its kind's level on the growth line.

This beat hour-of-week quantiles (the straightforward baseline) on the backtest,
scripts/backtest_peaks.py; docs/benchmarks.md has the figures. Standard library only, no I/O, no
clock: `now` and the zone are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from operator import add, itemgetter
from statistics import median
from typing import Iterable

DAY = 86400
WEEK = 7 * DAY
BIN = 300  # seconds of wall-clock time per bin of a day's profile
BINS = DAY // BIN
SMOOTH = 1  # bins each side of a bin averaged with it to find a day's peak: a 15-minute window
MIN_DAYS = 3
MIN_HOURS = 18  # wall-clock hours of a day that must have samples for the day to count
LOOKBACK_DAYS = 28
# Weekday and weekend peaks are told apart when their medians differ by this much:
DIFFER_POINTS = 5.0
DIFFER_SECONDS = 3600
HORIZON_DAYS = 366  # how far ahead a critical peak is looked for
# Every zone in use changes its UTC offset on a quarter-hour of UTC, so one offset per quarter-hour
# of samples is exact, and 86 400 samples cost ~3 000 zone look-ups instead of 86 400.
OFFSET_SLOT = 900
EPOCH_DAY = date(1970, 1, 1)


@dataclass(frozen=True)
class DailyPeak:
    day: date  # the local date
    seconds: float  # wall-clock seconds after local midnight
    usage: float  # percent of the limit

    @property
    def weekend(self) -> bool:
        return self.day.weekday() >= 5


@dataclass(frozen=True)
class Profile:
    """The typical peak of a kind of day (all, weekday or weekend)."""
    typical_time: time
    typical_usage: float  # p50 of the daily peak heights
    p90_usage: float
    days: int


@dataclass(frozen=True)
class PeakForecast:
    days_of_history: int  # complete local days with samples, in the last LOOKBACK_DAYS
    typical: Profile | None = None  # None: not enough history
    # "weekday" and "weekend" when their peaks differ; empty when one profile fits every day
    profiles: dict[str, Profile] = field(default_factory=dict)
    next_at: datetime | None = None  # in the zone asked for
    next_expected_usage: float | None = None
    growth_points_per_week: float | None = None
    critical_peak_on: date | None = None  # None: no expected peak reaches critical within HORIZON_DAYS
    # usage by local weekday (0 Monday) x wall-clock hour: the median over days of that hour's mean
    heatmap: tuple[tuple[float | None, ...], ...] = ()

    @property
    def enough(self) -> bool:
        return self.typical is not None

    @property
    def reason(self) -> str | None:
        """Why there is no forecast, as one sentence (None: there is one)."""
        if self.enough:
            return None
        return f"not enough history for a peak forecast: {self.days_of_history} complete days of the {MIN_DAYS} needed"

    def as_json(self) -> dict:
        """The `peak` object of issue 15's report."""
        typical = self.typical
        return {
            "typical_time": typical.typical_time.strftime("%H:%M") if typical else None,
            "typical_usage": round(typical.typical_usage, 1) if typical else None,
            "p90_usage": round(typical.p90_usage, 1) if typical else None,
            "next_at": self.next_at.isoformat(timespec="minutes") if self.next_at else None,
            "next_expected_usage": None if self.next_expected_usage is None else round(self.next_expected_usage, 1),
            "growth_points_per_week": None if self.growth_points_per_week is None
            else round(self.growth_points_per_week, 2),
            "critical_peak_on": self.critical_peak_on.isoformat() if self.critical_peak_on else None,
            "days_of_history": self.days_of_history,
        }

    def stored(self) -> dict:
        """All of it as JSON values, for peaks.json: floats whole (JSON keeps them exactly), next_at as epoch
        seconds (`restored` puts it back in the zone)."""
        return {"days_of_history": self.days_of_history, "typical": _stored_profile(self.typical),
                "profiles": {kind: _stored_profile(profile) for kind, profile in self.profiles.items()},
                "next_at": self.next_at.timestamp() if self.next_at else None,
                "next_expected_usage": self.next_expected_usage, "growth_points_per_week": self.growth_points_per_week,
                "critical_peak_on": self.critical_peak_on.isoformat() if self.critical_peak_on else None,
                "heatmap": [list(row) for row in self.heatmap]}

    @classmethod
    def restored(cls, data: dict, zone: tzinfo) -> PeakForecast:
        """The forecast `stored` gave, equal to it (ValueError, KeyError or TypeError when `data` is not one)."""
        return cls(days_of_history=int(data["days_of_history"]), typical=_restored_profile(data["typical"]),
                   profiles={str(kind): _restored_profile(profile) for kind, profile in data["profiles"].items()},
                   next_at=None if data["next_at"] is None else datetime.fromtimestamp(data["next_at"], zone),
                   next_expected_usage=data["next_expected_usage"],
                   growth_points_per_week=data["growth_points_per_week"],
                   critical_peak_on=data["critical_peak_on"] and date.fromisoformat(data["critical_peak_on"]),
                   heatmap=tuple(tuple(row) for row in data["heatmap"]))


def _stored_profile(profile: Profile | None) -> dict | None:
    return profile and {"typical_time": profile.typical_time.isoformat(), "typical_usage": profile.typical_usage,
                        "p90_usage": profile.p90_usage, "days": profile.days}


def _restored_profile(data: dict | None) -> Profile | None:
    return data and Profile(time.fromisoformat(data["typical_time"]), data["typical_usage"], data["p90_usage"],
                            int(data["days"]))


class DayBins:
    """One local day's samples, summed into BIN-second bins of wall-clock time."""
    __slots__ = ("count", "usage", "seconds")

    def __init__(self):
        self.count = [0] * BINS
        self.usage = [0.0] * BINS
        self.seconds = [0.0] * BINS

    def complete(self) -> bool:
        per_hour = 3600 // BIN
        hours = sum(1 for h in range(24) if any(self.count[h * per_hour:(h + 1) * per_hour]))
        return hours >= MIN_HOURS

    def _window_sums(self) -> tuple[list, list, list]:
        """Each bin's count, usage and seconds summed over the bins within SMOOTH of it (none past the day's ends),
        added left to right from 0, as sum() would: a map over whole shifted lists rather than a sum per bin, for
        the 8,000 bins of four weeks (400,000 in a report over 50 hosts)."""
        pad = [0] * SMOOTH
        sums = []
        for values in (self.count, self.usage, self.seconds):
            padded, total = pad + values + pad, [0] * BINS
            for k in range(2 * SMOOTH + 1):
                total = list(map(add, total, padded[k:k + BINS]))
            sums.append(total)
        return tuple(sums)

    def smoothed(self) -> list[tuple[float, float] | None]:
        """Per bin with samples: (mean wall-clock seconds, mean usage) of the samples within SMOOTH bins of it."""
        count, usage, seconds = self._window_sums()
        return [(s / n, u / n) if own else None for own, n, u, s in zip(self.count, count, usage, seconds)]

    def peak(self) -> tuple[float, float]:
        """(wall-clock seconds, usage) of the highest smoothed bin (the first of equals)."""
        return max(filter(None, self.smoothed()), key=itemgetter(1))

    def hour_means(self) -> list[float | None]:
        per_hour = 3600 // BIN
        means = []
        for h in range(24):
            n = sum(self.count[h * per_hour:(h + 1) * per_hour])
            means.append(sum(self.usage[h * per_hour:(h + 1) * per_hour]) / n if n else None)
        return means


def local_days(samples: Iterable[tuple[float, float | None]], now: float, zone: tzinfo,
               lookback_days: int = LOOKBACK_DAYS) -> dict[date, DayBins]:
    """The complete local days before today (in `zone`) of the last `lookback_days`, binned."""
    today = _local_ordinal(now, zone)
    first = today - lookback_days
    offsets: dict[float, float] = {}
    days: dict[float, DayBins] = {}
    current = None  # the local day of the samples before: its lists stay at hand while the next ones are in it
    for t, usage in samples:  # 8,000 rollups a subject over four weeks: kept to the fewest steps a sample
        if usage is None or t > now:
            continue
        slot = t // OFFSET_SLOT
        offset = offsets.get(slot)
        if offset is None:
            offset = offsets[slot] = _slot_offset(int(slot), zone)
        wall = t + offset
        ordinal = wall // DAY
        if ordinal != current:
            if not first <= ordinal < today:
                continue
            bins = days.get(ordinal)
            if bins is None:
                bins = days[ordinal] = DayBins()
            current, count, usages, seconds, midnight = ordinal, bins.count, bins.usage, bins.seconds, ordinal * DAY
        second = wall - midnight
        b = int(second // BIN)
        count[b] += 1
        usages[b] += usage
        seconds[b] += second
    return {EPOCH_DAY + timedelta(days=int(o)): bins for o, bins in sorted(days.items()) if bins.complete()}


def daily_peaks(days: dict[date, DayBins]) -> list[DailyPeak]:
    return [DailyPeak(day, *bins.peak()) for day, bins in days.items()]


@dataclass(frozen=True)
class PeakModel:
    """The expected peak of any day: its kind's median time, at its kind's level on the growth line."""
    slope: float  # points per day
    kinds: dict[str, tuple[float, float]]  # kind -> (wall-clock seconds, level at day 0 of the epoch)

    def kind(self, day: date) -> str:
        if "all" in self.kinds:
            return "all"
        return "weekend" if day.weekday() >= 5 else "weekday"

    def expected(self, day: date) -> tuple[float, float]:
        """(wall-clock seconds, usage) of the day's expected peak."""
        seconds, level = self.kinds[self.kind(day)]
        return seconds, level + self.slope * (day - EPOCH_DAY).days


def fit(peaks: list[DailyPeak]) -> tuple[PeakModel, dict[str, list[DailyPeak]]]:
    """The model of these daily peaks, and the days of each kind it tells apart."""
    weekdays = [p for p in peaks if not p.weekend]
    weekends = [p for p in peaks if p.weekend]
    groups = {"all": peaks}
    if len(weekdays) >= 2 and len(weekends) >= 2:
        apart = {"weekday": weekdays, "weekend": weekends}
        (t1, u1), (t2, u2) = ((circular_median([p.seconds for p in g]), median(p.usage for p in g))
                              for g in apart.values())
        if abs(u1 - u2) >= DIFFER_POINTS or circular_distance(t1, t2) >= DIFFER_SECONDS:
            groups = apart
    slope = theil_sen([[((p.day - EPOCH_DAY).days, p.usage) for p in group] for group in groups.values()])
    kinds = {kind: (circular_median([p.seconds for p in group]),
                    median(p.usage - slope * (p.day - EPOCH_DAY).days for p in group))
             for kind, group in groups.items()}
    return PeakModel(slope, kinds), groups


def peak_forecast(samples: Iterable[tuple[float, float | None]], now: float, zone: tzinfo, critical: float,
                  lookback_days: int = LOOKBACK_DAYS) -> PeakForecast:
    """The peak forecast from (epoch seconds, usage %) samples (None: unreachable) before `now`, days in `zone`."""
    days = local_days(samples, now, zone, lookback_days)
    if len(days) < MIN_DAYS:
        return PeakForecast(len(days))
    peaks = daily_peaks(days)
    model, groups = fit(peaks)
    next_day = next(day for day in _days_from(now, zone) if _instant(day, model.expected(day)[0], zone) > now)
    next_at = datetime.fromtimestamp(_instant(next_day, model.expected(next_day)[0], zone), zone)
    critical_on = next((day for day in _days_from(now, zone) if day >= next_day and model.expected(day)[1] >= critical),
                       None)
    return PeakForecast(
        days_of_history=len(days),
        typical=_profile(peaks),
        profiles={} if "all" in groups else {kind: _profile(group) for kind, group in groups.items()},
        next_at=next_at,
        next_expected_usage=model.expected(next_day)[1],
        growth_points_per_week=model.slope * 7,
        critical_peak_on=critical_on,
        heatmap=_heatmap(days),
    )


def theil_sen(groups: list[list[tuple[float, float]]]) -> float:
    """The median slope over pairs of points within the same group (0: no such pair)."""
    slopes = [(y2 - y1) / (x2 - x1) for points in groups for i, (x1, y1) in enumerate(points)
              for x2, y2 in points[i + 1:] if x2 != x1]
    return median(slopes) if slopes else 0.0


def quantile(values: list[float], q: float) -> float:
    """The q-quantile, interpolating linearly between order statistics (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def circular_median(seconds: list[float]) -> float:
    """The time of day closest, summed around the clock, to all the others: 23:50 and 00:10 are 20 minutes apart."""
    return min(sorted(seconds), key=lambda s: sum(circular_distance(s, other) for other in seconds))


def circular_distance(a: float, b: float) -> float:
    """Seconds between two times of day, the short way around the clock."""
    difference = abs(a - b) % DAY
    return min(difference, DAY - difference)


def _profile(peaks: list[DailyPeak]) -> Profile:
    seconds = round(circular_median([p.seconds for p in peaks]) / 60) * 60 % DAY
    usages = [p.usage for p in peaks]
    return Profile(time(int(seconds // 3600), int(seconds % 3600 // 60)), quantile(usages, 0.5), quantile(usages, 0.9),
                   len(peaks))


def _heatmap(days: dict[date, DayBins]) -> tuple[tuple[float | None, ...], ...]:
    cells: list[list[list[float]]] = [[[] for _ in range(24)] for _ in range(7)]
    for day, bins in days.items():
        for hour, mean in enumerate(bins.hour_means()):
            if mean is not None:
                cells[day.weekday()][hour].append(mean)
    return tuple(tuple(median(cell) if cell else None for cell in row) for row in cells)


def _offset(t: float, zone: tzinfo) -> float:
    return datetime.fromtimestamp(t, zone).utcoffset().total_seconds()


@lru_cache(maxsize=(LOOKBACK_DAYS + 2) * DAY // OFFSET_SLOT)  # a window of them, and the next day's
def _slot_offset(slot: int, zone: tzinfo) -> float:
    """The zone's UTC offset during a quarter-hour of UTC: the subjects of a report share their ~2,800 look-ups
    (each 1-2 µs); a full cache holds ~0.6 MiB."""
    return _offset(slot * OFFSET_SLOT, zone)


def _local_ordinal(t: float, zone: tzinfo) -> int:
    return int((t + _offset(t, zone)) // DAY)


def _days_from(now: float, zone: tzinfo) -> Iterable[date]:
    today = EPOCH_DAY + timedelta(days=_local_ordinal(now, zone))
    return (today + timedelta(days=i) for i in range(HORIZON_DAYS + 1))


def _instant(day: date, seconds: float, zone: tzinfo) -> float:
    """The epoch seconds of a wall-clock time of a local day (a time a DST change skips: as the zone reads it)."""
    whole = int(seconds)
    wall = datetime.combine(day, time(whole // 3600, whole % 3600 // 60, whole % 60), tzinfo=zone)
    return wall.timestamp() + (seconds - whole)
