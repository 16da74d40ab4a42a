"""The peak forecast (issue 15): the typical daily peak, the next one and the growth of peaks, in the operator's
zone."""

import ast
import math
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from guardian.core import peaks
from guardian.core.peaks import BIN, DAY, WEEK, daily_peaks, local_days, peak_forecast

CRITICAL = 90.0
# with and without DST, whole, half- and quarter-hour offsets, both hemispheres
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham",
         "America/St_Johns", "Australia/Sydney"]
FIXED_ZONES = ["UTC", "Asia/Kolkata", "Asia/Tokyo", "Pacific/Honolulu"]  # no DST: a week is always 7 x 24 h
ONE_BIN = timedelta(seconds=BIN)  # the resolution of a peak's time with samples at least that often
START = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()  # early March 2026: the northern DST start is near


def series(usage_at, zone, start, days, step=60.0):
    """Samples every `step` seconds for `days` days from `start`; usage_at(local datetime) gives each usage."""
    return [(t, usage_at(datetime.fromtimestamp(t, zone)))
            for t in (start + i * step for i in range(int(days * DAY / step) + 1))]


def wall_hours(local):
    return local.hour + local.minute / 60 + local.second / 3600


def daily_sine(peak_hour, low=30.0, high=70.0):
    """A pure daily sine in wall-clock time, highest at `peak_hour`."""
    return lambda local: low + (high - low) * (1 + math.cos(2 * math.pi * (wall_hours(local) - peak_hour) / 24)) / 2


def bump(local, hour, height, base=20.0, width=1.5):
    return base + (height - base) * math.exp(-((wall_hours(local) - hour) / width) ** 2 / 2)


def clock_distance(a: time, b: time):
    """Minutes between two times of day, around the clock."""
    difference = abs((a.hour * 60 + a.minute) - (b.hour * 60 + b.minute)) % 1440
    return min(difference, 1440 - difference)


def test_fewer_than_three_complete_days_is_not_enough_history_not_an_error():
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 2, tzinfo=zone).timestamp()
    samples = series(daily_sine(10), zone, start, 2.9)  # two days and most of a third, which is today
    now = samples[-1][0]
    result = peak_forecast(samples, now, zone, CRITICAL)
    assert not result.enough and result.days_of_history == 2
    assert result.reason == "not enough history for a peak forecast: 2 complete days of the 3 needed"
    assert result.as_json() == {"typical_time": None, "typical_usage": None, "p90_usage": None, "next_at": None,
                                "next_expected_usage": None, "growth_points_per_week": None,
                                "critical_peak_on": None, "days_of_history": 2}
    assert peak_forecast([], START, zone, CRITICAL).days_of_history == 0
    assert peak_forecast([(t, None) for t, _ in samples], now, zone, CRITICAL).days_of_history == 0  # unreachable


def test_a_day_with_hours_missing_does_not_count():
    zone = ZoneInfo("UTC")
    samples = series(daily_sine(10), zone, START, 5)
    # day 2 loses 7 hours: a day needs samples in 18 of its hours
    gappy = [(t, u) for t, u in samples if not START + DAY + 3600 <= t < START + DAY + 8 * 3600]
    assert peak_forecast(samples, samples[-1][0], zone, CRITICAL).days_of_history == 5
    assert peak_forecast(gappy, samples[-1][0], zone, CRITICAL).days_of_history == 4


def binned_one_by_one(samples, now, zone, lookback_days=peaks.LOOKBACK_DAYS):
    """The rule local_days keeps, spelled out: each sample at its own local wall-clock time (its own UTC offset),
    in the bin of its local day it falls in; a bin's count, usage and seconds added up in the samples' order."""
    today = int((now + datetime.fromtimestamp(now, zone).utcoffset().total_seconds()) // DAY)
    days = {}
    for t, usage in samples:
        if usage is None or t > now:
            continue
        wall = t + datetime.fromtimestamp(t, zone).utcoffset().total_seconds()
        ordinal = int(wall // DAY)
        if today - lookback_days <= ordinal < today:
            count, usages, seconds = days.setdefault(ordinal, ([0] * peaks.BINS, [0.0] * peaks.BINS,
                                                               [0.0] * peaks.BINS))
            second = wall - ordinal * DAY
            count[int(second // BIN)] += 1
            usages[int(second // BIN)] += usage
            seconds[int(second // BIN)] += second
    return days


@given(zone=st.sampled_from(ZONES), start=st.floats(0, 365 * DAY), days=st.integers(1, 6),
       step=st.sampled_from([30.0, 61.7, 300.0, 900.0]), seed=st.integers(0, 2 ** 16), shuffled=st.booleans())
@example(zone="America/New_York", start=5 * DAY, days=6, step=61.7, seed=1, shuffled=False)  # 2026-03-08: 23 h
@example(zone="America/New_York", start=240 * DAY, days=6, step=300.0, seed=2, shuffled=True)  # 2026-11-01: 25 h
@example(zone="Australia/Lord_Howe", start=213 * DAY, days=6, step=30.0, seed=3, shuffled=False)  # half an hour
def test_samples_fall_in_the_bin_of_their_own_local_time_and_add_up_in_their_order(zone, start, days, step, seed,
                                                                                   shuffled):
    """Offsets are looked up once a quarter-hour of UTC and shared between calls, and a day's lists are held while
    its samples last: the bins are still exactly those of each sample's own local time, sums in the given order."""
    import random

    tz, rng = ZoneInfo(zone), random.Random(seed)
    samples = [(t, None if rng.random() < 0.05 else rng.uniform(0, 100))
               for t, _ in series(lambda local: 0, tz, START + start, days, step)]
    if shuffled:  # the samples of a day need not come together
        rng.shuffle(samples)
    now = START + start + days * DAY * rng.uniform(0.5, 1.0)  # some samples after now: left out
    expected = binned_one_by_one(samples, now, tz, lookback_days=days)
    got = local_days(samples, now, tz, lookback_days=days)
    assert set(got) <= {peaks.EPOCH_DAY + timedelta(days=o) for o in expected}
    for day, bins in got.items():
        assert (bins.count, bins.usage, bins.seconds) == expected[(day - peaks.EPOCH_DAY).days]
    complete = {o for o, (count, _, _) in expected.items()
                if sum(any(count[h * 12:(h + 1) * 12]) for h in range(24)) >= peaks.MIN_HOURS}
    assert {(day - peaks.EPOCH_DAY).days for day in got} == complete


@given(level=st.floats(0, CRITICAL - 0.1), zone=st.sampled_from(ZONES), days=st.integers(4, 9),
       step=st.sampled_from([60.0, 300.0, 900.0, 3600.0]))
def test_a_flat_series_has_no_growth_and_no_critical_peak(level, zone, days, step):
    tz = ZoneInfo(zone)
    samples = series(lambda local: level, tz, START, days, step)
    result = peak_forecast(samples, samples[-1][0], tz, CRITICAL)
    assert result.enough
    assert result.growth_points_per_week == 0
    assert result.critical_peak_on is None
    assert result.typical.typical_usage == pytest.approx(level) == result.next_expected_usage
    assert result.profiles == {}


@given(zone=st.sampled_from(ZONES), peak_minute=st.integers(0, 1439), days=st.integers(4, 9),
       step=st.sampled_from([60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0]),
       start=st.floats(0, 300 * DAY))
@example(zone="UTC", peak_minute=1439, days=4, step=3600.0, start=0.0)  # a peak at midnight: around the clock
@example(zone="Asia/Kolkata", peak_minute=0, days=4, step=3600.0, start=0.0)  # checks at :30, half a step off
@example(zone="Australia/Sydney", peak_minute=120, days=9, step=60.0, start=17771820.0)  # next: 02:00 skipped
@example(zone="America/New_York", peak_minute=150, days=4, step=60.0, start=5 * DAY)  # 02:30 on the day it is skipped
def test_a_daily_sine_peak_is_found_within_the_sampling_resolution_in_any_zone(zone, peak_minute, days, step, start):
    tz = ZoneInfo(zone)
    samples = series(daily_sine(peak_minute / 60), tz, START + start, days, step)
    now = samples[-1][0]
    result = peak_forecast(samples, now, tz, CRITICAL)
    expected = time(peak_minute // 60, peak_minute % 60)
    resolution = max(step, BIN) / 60 + 1  # minutes, +1 for showing the time to the minute
    assert clock_distance(result.typical.typical_time, expected) <= resolution
    # the instant of the expected time on next_at's day (or the day beside it, for a peak at midnight); on the day a
    # DST change skips it, the zone's reading (02:00 skipped: 03:00), so compare instants, not clock times
    intended = min((datetime.combine(result.next_at.date() + timedelta(days=d), expected, tzinfo=tz).timestamp()
                    for d in (-1, 0, 1)), key=lambda i: abs(result.next_at.timestamp() - i))
    assert abs(result.next_at.timestamp() - intended) <= resolution * 60
    assert now < result.next_at.timestamp() <= now + DAY + 3600  # the next one: today's or tomorrow's
    assert result.next_at.tzinfo == tz
    lowest_within_resolution = daily_sine(0)(datetime(2026, 1, 1) + timedelta(minutes=resolution))
    assert lowest_within_resolution <= result.typical.typical_usage <= 70


@given(zone=st.sampled_from(FIXED_ZONES), weeks=st.integers(-20, 20), peak_hour=st.floats(0, 23.9),
       growth=st.floats(-0.5, 0.5), seed=st.integers(0, 2 ** 16), now_in_day=st.floats(0, DAY))
def test_shifting_every_sample_by_whole_weeks_shifts_the_forecast_by_as_much(zone, weeks, peak_hour, growth, seed,
                                                                            now_in_day):
    tz = ZoneInfo(zone)
    wobble = lambda t: math.sin(t * 7.3e-5 + seed)  # a deterministic irregularity so days differ  # noqa: E731
    samples = [(t, u + growth * (t - START) / DAY + 3 * wobble(t))
               for t, u in series(daily_sine(peak_hour), tz, START, 10, 600.0)]
    now = START + 9 * DAY + now_in_day
    shifted = [(t + weeks * WEEK, u) for t, u in samples]
    before, after = peak_forecast(samples, now, tz, CRITICAL), peak_forecast(shifted, now + weeks * WEEK, tz, CRITICAL)
    assert after.next_at == before.next_at + timedelta(weeks=weeks)
    assert (after.critical_peak_on is None) == (before.critical_peak_on is None)
    if before.critical_peak_on:
        assert after.critical_peak_on == before.critical_peak_on + timedelta(weeks=weeks)
    assert after.next_expected_usage == pytest.approx(before.next_expected_usage)
    assert after.growth_points_per_week == pytest.approx(before.growth_points_per_week)
    assert (after.typical, after.profiles, after.heatmap) == (before.typical, before.profiles, before.heatmap)


@given(zone=st.sampled_from(ZONES), per_week=st.floats(0.3, 10).flatmap(lambda g: st.sampled_from([g, -g])),
       peak_hour=st.floats(6, 20), days=st.integers(5, 20))
def test_the_growth_of_peaks_follows_the_trend(zone, per_week, peak_hour, days):
    tz = ZoneInfo(zone)
    samples = [(t, u + per_week * (t - START) / WEEK) for t, u in series(daily_sine(peak_hour), tz, START, days, 900.0)]
    result = peak_forecast(samples, samples[-1][0], tz, CRITICAL)
    assert math.copysign(1, result.growth_points_per_week) == math.copysign(1, per_week)
    assert result.growth_points_per_week == pytest.approx(per_week, rel=0.1)


def test_growing_peaks_give_the_first_day_a_peak_is_expected_at_critical():
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 11, 2, tzinfo=zone).timestamp()  # a Monday
    # peaks at 10:00 of 70 % on 2 November, +2 points a week: 90 % ten weeks later, on 11 January 2027
    samples = [(t, bump(local, 10, 70) + 2 * (t - start) / WEEK) for t, local in
               ((t, datetime.fromtimestamp(t, zone)) for t in (start + i * 120.0 for i in range(14 * 720)))]
    result = peak_forecast(samples, samples[-1][0], zone, CRITICAL)
    assert result.growth_points_per_week == pytest.approx(2, abs=0.05)
    assert result.critical_peak_on in (date(2027, 1, 10), date(2027, 1, 11), date(2027, 1, 12))
    assert abs(result.next_at - datetime(2026, 11, 16, 10, tzinfo=zone)) <= ONE_BIN
    assert result.next_expected_usage == pytest.approx(74, abs=0.3)
    falling = peak_forecast([(t, u - 4 * (t - start) / WEEK) for t, u in samples], samples[-1][0], zone, CRITICAL)
    assert falling.critical_peak_on is None and falling.growth_points_per_week < 0


def test_peaks_already_at_critical_make_the_next_one_the_critical_one():
    zone = ZoneInfo("UTC")
    samples = series(lambda local: bump(local, 15, 95), zone, START, 5, 300.0)
    result = peak_forecast(samples, samples[-1][0], zone, CRITICAL)
    assert result.critical_peak_on == result.next_at.date() == date(2026, 3, 7)


def test_weekday_and_weekend_profiles_when_they_differ():
    zone = ZoneInfo("America/New_York")
    start = datetime(2026, 6, 1, tzinfo=zone).timestamp()  # a Monday

    def week(local):
        return bump(local, 14, 40) if local.weekday() >= 5 else bump(local, 10, 80)

    samples = series(week, zone, start, 14, 300.0)
    friday_evening = datetime(2026, 6, 12, 18, tzinfo=zone).timestamp()
    result = peak_forecast(samples, friday_evening, zone, CRITICAL)
    weekday, weekend = result.profiles["weekday"], result.profiles["weekend"]
    assert (weekday.typical_time, weekday.typical_usage, weekday.days) == (time(10), pytest.approx(80, abs=0.5), 9)
    assert (weekend.typical_time, weekend.typical_usage, weekend.days) == (time(14), pytest.approx(40, abs=0.5), 2)
    assert result.next_at == datetime(2026, 6, 13, 14, tzinfo=zone)  # Saturday's peak: the weekend's
    assert result.next_expected_usage == pytest.approx(40, abs=0.5)
    assert result.typical.days == 11 and result.typical.p90_usage == pytest.approx(80, abs=0.5)
    assert max(range(24), key=lambda h: result.heatmap[0][h]) == 10  # Mondays' busiest hour
    assert max(range(24), key=lambda h: result.heatmap[6][h]) == 14  # Sundays'

    same = peak_forecast(series(lambda local: bump(local, 10, 80), zone, start, 14, 300.0), friday_evening, zone,
                         CRITICAL)
    assert same.profiles == {} and same.next_at == datetime(2026, 6, 13, 10, tzinfo=zone)


def test_a_holiday_moves_neither_the_weekday_peak_nor_the_growth():
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 11, 30, tzinfo=zone).timestamp()  # a Monday
    holiday = date(2026, 12, 9)  # a Wednesday as quiet as a Sunday

    def week(local):
        quiet = local.weekday() >= 5 or local.date() == holiday
        return bump(local, 14, 35) if quiet else bump(local, 10, 80)

    samples = series(week, zone, start, 21, 300.0)
    result = peak_forecast(samples, samples[-1][0], zone, CRITICAL)
    assert result.growth_points_per_week == pytest.approx(0, abs=0.01)
    assert result.profiles["weekday"].typical_usage == pytest.approx(80, abs=0.5)
    assert clock_distance(result.profiles["weekday"].typical_time, time(10)) <= BIN / 60
    assert result.next_expected_usage == pytest.approx(80, abs=0.5)  # Monday's


@pytest.mark.parametrize("first, short_or_long, offset_after", [
    (datetime(2026, 3, 4), date(2026, 3, 8), timedelta(hours=-4)),  # 23 hours: clocks go forward
    (datetime(2026, 10, 28), date(2026, 11, 1), timedelta(hours=-5)),  # 25 hours: clocks go back
])
def test_dst_days_are_whole_days_and_peaks_stay_at_their_wall_clock_time(first, short_or_long, offset_after):
    zone = ZoneInfo("America/New_York")
    start = first.replace(tzinfo=zone).timestamp()
    samples = series(lambda local: bump(local, 10, 80), zone, start, 8.1, 60.0)  # now: just after midnight
    now = samples[-1][0]
    days = local_days(samples, now, zone)
    assert short_or_long in days and len(days) == 8
    by_day = {p.day: p for p in daily_peaks(days)}
    assert abs(by_day[short_or_long].seconds - 10 * 3600) <= BIN  # 10:00 on the clock, not 09:00 or 11:00
    result = peak_forecast(samples, now, zone, CRITICAL)
    assert clock_distance(result.typical.typical_time, time(10)) <= BIN / 60
    assert abs(result.next_at - datetime.combine(first.date() + timedelta(days=8), time(10), tzinfo=zone)) <= ONE_BIN
    assert result.next_at.utcoffset() == offset_after
    assert result.days_of_history == 8


def test_the_json_fields_are_the_issues():
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 11, 2, tzinfo=zone).timestamp()
    samples = series(lambda local: bump(local, 10.5, 84, width=3), zone, start, 7, 300.0)
    result = peak_forecast(samples, datetime(2026, 11, 9, 12, tzinfo=zone).timestamp(), zone, CRITICAL)
    assert result.as_json() == {"typical_time": "10:30", "typical_usage": 84.0, "p90_usage": 84.0,
                                "next_at": "2026-11-10T10:30+01:00", "next_expected_usage": 84.0,
                                "growth_points_per_week": 0.0, "critical_peak_on": None, "days_of_history": 7}
    assert len(result.heatmap) == 7 and all(len(row) == 24 for row in result.heatmap)


def test_the_module_imports_only_the_standard_library():
    tree = ast.parse(Path(peaks.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


@given(st.sampled_from(ZONES), st.integers(0, 364), st.integers(2, 20), st.floats(0, 23.9), st.floats(-2, 2))
def test_a_stored_forecast_comes_back_equal(zone_name, day, days, peak_hour, growth):
    """peaks.json keeps whole forecasts for report: JSON and back gives the very forecast, in its zone."""
    import json

    zone = ZoneInfo(zone_name)
    start = START + day * DAY
    samples = series(lambda local: daily_sine(peak_hour)(local) + growth * (local.timestamp() - start) / DAY, zone,
                     start, days, 900.0)
    result = peak_forecast(samples, samples[-1][0] + 3600, zone, CRITICAL)
    again = peaks.PeakForecast.restored(json.loads(json.dumps(result.stored())), zone)
    assert again == result and again.as_json() == result.as_json()
