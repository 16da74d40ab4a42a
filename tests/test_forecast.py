"""The forecast on synthetic series with known slopes: the right ETA, or no upward trend."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from guardian.core.forecast import MIN_SAMPLES, forecast

NOW = 1_800_000_000.0
HOUR = 3600.0


def series(usage_at_minute, minutes=60, every=0.5):
    """(time, usage) samples every `every` minutes over the last `minutes`, ending at NOW."""
    steps = int(minutes / every)
    return [(NOW - (steps - i) * every * 60, usage_at_minute((i - steps) * every)) for i in range(steps + 1)]


def rising(minute):  # 80 % now, +0.5 points a minute: critical (90) in 20 min, full in 40
    return 80 + 0.5 * minute


def with_burst(minute):  # the same rise, with a burst of +25 points for one sample 30 minutes ago
    return rising(minute) + (25 if minute == -30 else 0)


def burst_now(minute):  # the same rise, with a burst of +5 points in the latest check
    return rising(minute) + (5 if minute == 0 else 0)


def cleaned_now(minute):  # the same rise, and a cleanup just freed 20 points before the latest check
    return rising(minute) - (20 if minute == 0 else 0)


@pytest.mark.parametrize("name, samples, critical_in, full_in", [
    ("linear rise", series(rising), 1200, 2400),
    ("one outlier burst", series(with_burst), 1200, 2400),
    ("a burst in the latest check does not bring it forward", series(burst_now), 1200, 2400),
    ("a cleanup in the latest check counts at once", series(cleaned_now), 3600, 4800),
    ("rise, one unreachable poll", [(t, None if i == 7 else u) for i, (t, u) in enumerate(series(rising))], 1200, 2400),
    ("rise sampled every 5 min", series(rising, every=5), 1200, 2400),
    ("flat", series(lambda m: 70), None, None),
    ("falling", series(lambda m: 60 - 0.2 * m), None, None),
    ("already critical and rising", series(lambda m: 95 + 0.1 * m), 0, 3000),
    ("already critical and falling", series(lambda m: 95 - 0.1 * m), None, None),
    ("too few samples", series(rising, minutes=2), None, None),
    ("six samples over four minutes", series(rising, minutes=4, every=0.8), None, None),
])
def test_eta_or_no_upward_trend(name, samples, critical_in, full_in):
    result = forecast(samples, critical=90, now=NOW, window=HOUR)
    assert result.critical_in == pytest.approx(critical_in) if critical_in is not None else result.critical_in is None
    assert result.full_in == pytest.approx(full_in) if full_in is not None else result.full_in is None
    assert result.rising == (critical_in is not None)


def test_guards_at_least_six_samples_spanning_five_minutes():
    five_over_an_hour = forecast(series(rising, every=12)[1:], 90, NOW, HOUR)
    six_over_four_minutes = forecast(series(rising, minutes=4, every=0.8), 90, NOW, HOUR)
    six_over_five_minutes = forecast(series(rising, minutes=5, every=1), 90, NOW, HOUR)
    assert (five_over_an_hour.samples, five_over_an_hour.enough) == (5, False)
    assert (six_over_four_minutes.samples, six_over_four_minutes.enough) == (6, False)
    assert (six_over_five_minutes.samples, six_over_five_minutes.enough, six_over_five_minutes.critical_in) == (
        6,
        True,
        pytest.approx(1200),
    )


def test_fit_quality_and_slope():
    clean = forecast(series(rising), 90, NOW, HOUR)
    burst = forecast(series(with_burst), 90, NOW, HOUR)
    assert clean.slope * 60 == pytest.approx(0.5) and clean.r2 == pytest.approx(1.0)
    assert (
        burst.slope * 60 == pytest.approx(0.5) and 0.5 < burst.r2 < 1.0
    )  # the robust line ignores the burst; r² shows it
    assert forecast(series(lambda m: 70), 90, NOW, HOUR).r2 is None  # flat: nothing to explain


def test_only_the_window_before_now_counts():
    # a steep climb until an hour ago, flat since: no upward trend now, a rising one back then
    samples = series(lambda m: 70 + 0.5 * (m + 60) if m < -60 else 70, minutes=180)
    assert not forecast(samples, 90, NOW, HOUR).rising
    assert forecast(samples, 90, NOW - 1.5 * HOUR, HOUR).critical_in == pytest.approx(
        70 * 60
    )  # 55 % then, +0.5 a minute
    later = [(t, u) for t, u in series(rising)] + [(NOW + 60, 99.0)]  # a sample after `now` is ignored
    assert forecast(later, 90, NOW, HOUR).critical_in == pytest.approx(1200)


# The slope is the median over pairs of samples as far from either end (issue 15: every pair, Theil-Sen's, cost 50
# hosts' checks 15 %): the exact slope of a straight line however its samples are spaced, and as robust to a burst.

@given(st.lists(st.floats(1.0, 60.0), min_size=MIN_SAMPLES, max_size=400), st.floats(-2.0, 2.0), st.floats(0, 100))
def test_a_straight_line_gives_its_slope_however_many_samples(gaps, per_minute, at_now):
    points = line(gaps, per_minute, at_now)
    assume(points[-1][0] - points[0][0] >= 300)
    assert forecast(points, 90, NOW, 10 * HOUR).slope * 60 == pytest.approx(per_minute, rel=1e-6, abs=1e-9)


@given(st.lists(st.floats(1.0, 60.0), min_size=MIN_SAMPLES, max_size=400), st.floats(-2.0, 2.0), st.floats(0, 100),
       st.data())
def test_a_burst_of_a_tenth_of_the_samples_moves_no_slope(gaps, per_minute, at_now, data):
    points = line(gaps, per_minute, at_now)
    assume(points[-1][0] - points[0][0] >= 300)
    length = data.draw(st.integers(0, len(points) // 10))
    first = data.draw(st.integers(0, len(points) - length))
    heights = data.draw(st.lists(st.floats(-1000, 1000), min_size=length, max_size=length))
    for index, height in zip(range(first, first + length), heights):
        points[index] = (points[index][0], height)
    assert forecast(points, 90, NOW, 10 * HOUR).slope * 60 == pytest.approx(per_minute, rel=1e-6, abs=1e-9)


def line(gaps, per_minute, at_now):
    """Samples of a straight line ending at NOW, `gaps` seconds apart."""
    times = [NOW]
    for gap in reversed(gaps[1:]):
        times.insert(0, times[0] - gap)
    return [(t, at_now + per_minute * (t - NOW) / 60) for t in times]


# r² is the fit's quality against its own robust line: 1 - (squared residuals) / (squared deviations from the mean),
# at least 0; None for a flat series. Floating error aside: the sums of squares are products, which `** 2` (pow)
# rounds differently by an ulp at times, so the two agree within 1e-9, not to the bit.
@given(st.lists(st.tuples(st.floats(0, HOUR), st.floats(0, 100) | st.sampled_from([0.0, 50.0, 100.0])),
                min_size=MIN_SAMPLES, max_size=300))
def test_r2_is_one_less_the_residuals_share_of_the_variance(points):
    samples = [(NOW - HOUR + at, usage) for at, usage in points]
    fit = forecast(samples, 90, NOW, HOUR)
    assume(fit.enough)
    usages = [usage for _, usage in samples]
    mean = sum(usages) / len(usages)
    total = sum((usage - mean) ** 2 for usage in usages)
    if total == 0:
        assert fit.r2 is None
        return
    level = sorted(u - fit.slope * (t - NOW) for t, u in samples)
    middle = len(level) // 2
    at_now = level[middle] if len(level) % 2 else (level[middle - 1] + level[middle]) / 2
    residual = sum((u - (at_now + fit.slope * (t - NOW))) ** 2 for t, u in samples)
    assert fit.r2 == pytest.approx(max(0.0, 1 - residual / total), abs=1e-9)
