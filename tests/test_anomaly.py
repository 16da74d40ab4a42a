"""Anomalies that need a person, as pure functions of (samples, cleanups, settings, now)."""

from dataclasses import replace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from guardian.core.anomaly import find, growth, reads_samples, rebound
from guardian.core.records import CleanupRun, Sample
from guardian.settings.model import Alerts

MIN = 60.0
T0 = 1_800_000_000.0
PREDICT = replace(Alerts(), predict=30 * MIN)


def samples(points, limit=100, level="ok"):
    """(minute, sessions or None) -> Samples of host:a; `limit` and `level` a value or a function of the minute."""
    limit_at = limit if callable(limit) else lambda minute: limit
    level_at = level if callable(level) else lambda minute: level
    return [Sample(T0 + m * MIN, "host", "a", n, limit_at(m), None if n is None else 100 * n / limit_at(m),
                   level_at(m), None, n is not None) for m, n in points]


def growing(now_minute, eta_minutes, level="warning"):
    """A check every minute for an hour, +0.5 % a minute, reaching critical (90) `eta_minutes` after the last."""
    at_now = 90 - 0.5 * eta_minutes
    return samples([(m, at_now - 0.5 * (now_minute - m)) for m in range(now_minute - 60, now_minute + 1)], level=level)


def is_growth(series, alerts=PREDICT, now=None):
    return growth(series, alerts, 3600, series[-1].time if now is None else now) is not None


def flat_then(before, after, at_minute, limit=100):
    """A check every 30 s for an hour: `before` sessions, then `after` from `at_minute` on."""
    return samples([(m / 2, before if m / 2 < at_minute else after) for m in range(121)], limit=limit)


@pytest.mark.parametrize("name, series, alerts, expected", [
    ("critical in 20m, at this check and the one before", growing(60, 20), PREDICT, True),
    ("within predict at both checks (29m, 30m)", growing(60, 29), PREDICT, True),
    ("within predict only at this check (30m, 31m)", growing(60, 30), PREDICT, False),
    ("critical further off than predict", growing(60, 50), PREDICT, False),
    ("already critical: the usage alert says it", growing(60, -4, level="critical"), PREDICT, False),
    ("held at critical by the margin, usage just under it", growing(60, 2, level="critical"), PREDICT, False),
    ("predict is off", growing(60, 20), Alerts(), False),
    ("flat", samples([(m, 70) for m in range(61)]), PREDICT, False),
    ("not enough history", growing(60, 20)[-4:], PREDICT, False),
    ("one step half-way: flat 50 %, then flat 80 %", flat_then(50, 80, 30), PREDICT, False),
    ("one step late: flat 50 %, then flat 85 % for the last 20 minutes", flat_then(50, 85, 40), PREDICT, False),
    ("the limit lowered in the config: 40 of 80, then 40 of 50", flat_then(40, 40, 30, lambda m: 80 if m < 30 else 50),
     PREDICT, False),
    ("a step, then a steady climb: the climb is growth",
     samples([(m, 50 if m < 10 else 60 + (m - 10) / 2) for m in range(61)], level="warning"), PREDICT, True),
])
def test_growth_is_a_real_trend_two_checks_in_a_row(name, series, alerts, expected):
    assert is_growth(series, alerts) is expected


@given(before=st.integers(0, 200), after=st.integers(0, 200), step_at=st.integers(1, 119),
       limits=st.tuples(st.integers(1, 200), st.integers(1, 200)), limit_changes_at=st.integers(0, 120),
       unreachable=st.sets(st.integers(0, 119), max_size=10))
@example(before=50, after=80, step_at=60, limits=(100, 100), limit_changes_at=0, unreachable=set())  # growth on main
@example(before=40, after=40, step_at=60, limits=(80, 50), limit_changes_at=60, unreachable=set())  # the limit, on main
def test_no_step_is_ever_growth(before, after, step_at, limits, limit_changes_at, unreachable):
    # issue 12: a single step (two flat stretches, or a config change of the limit) is not growth
    counts = [None if i in unreachable else (before if i < step_at else after) for i in range(121)]
    series = samples([(i / 2, n) for i, n in enumerate(counts)], limit=lambda m: limits[m * 2 >= limit_changes_at])
    assert not is_growth(series, now=T0 + 60 * MIN)


@st.composite
def climbs(draw):
    """(limit, usage points per hour, minutes to critical at that rate, minutes between checks): at least five
    sessions of climb in the hour, below critical now, and critical well within predict (30m)."""
    limit = draw(st.integers(20, 500))
    return limit, draw(st.floats(max(5.0, 500 / limit), 70)), draw(st.floats(1, 15)), draw(st.sampled_from([0.5, 1, 2]))


@given(climbs())
@example(climb=(32, 17.0, 15.0, 0.5))  # five one-session rises: taking out a whole rise lost a fifth of the slope
def test_a_steady_climb_toward_critical_is_growth(climb):
    # a climb in whole sessions (a staircase of small steps), checked every `every` minutes for an hour
    limit, per_hour, eta, every = climb
    at_end = 90 - per_hour * eta / 60
    checks = int(60 / every)
    counts = [int((at_end - per_hour * (checks - i) / checks) / 100 * limit) for i in range(checks + 1)]
    series = samples([(i * every, n) for i, n in enumerate(counts)], limit=limit, level="warning")
    assert is_growth(series)


def cleanup(minute, closed):
    return CleanupRun(
        T0 + minute * MIN, "a", "r1", "cleanup", {"closed": closed} if closed else {"skipped: changed": 1}
    )


# a cleanup at minute 10.2 closed 12 of the 75 sessions seen at minute 10 (limit 100, notice 65)
BEFORE = [(0, 70), (5, 73), (10, 75), (10.5, 63), (15, 69)]
# the same at 12 %: normal churn, nowhere near a level
CHURN = [(0, 10), (5, 11), (10, 12), (10.5, 9), (15, 11)]


@pytest.mark.parametrize("name, points, cleanups, now_minute, expected", [
    ("back to 75 within 30 min", BEFORE + [(20, 75)], [cleanup(10.2, 12)], 20, (75, 75)),
    ("above where it was", BEFORE + [(20, 78)], [cleanup(10.2, 12)], 20, (75, 78)),
    ("not back yet", BEFORE + [(20, 74)], [cleanup(10.2, 12)], 20, None),
    ("back, but after the window", BEFORE + [(41, 75)], [cleanup(10.2, 12)], 41, None),
    ("the cleanup closed nothing", BEFORE + [(20, 75)], [cleanup(10.2, 0)], 20, None),
    ("no check since the cleanup", BEFORE[:3], [cleanup(10.2, 12)], 10.2, None),
    ("no check before the cleanup", [(10.5, 63), (20, 75)], [cleanup(10.2, 12)], 20, None),
    ("unreachable now: the latest reading is not back", BEFORE + [(20, None)], [cleanup(10.2, 12)], 20, None),
    ("the later of two cleanups counts", BEFORE + [(20, 66), (20.2, 55), (25, 67)],
     [cleanup(10.2, 12), cleanup(20.1, 10)], 25, (66, 67)),
    ("back where it was, but at 12 %: churn, not a rebound", CHURN + [(20, 12)], [cleanup(10.2, 3)], 20, None),
    ("back where it was, just under notice", [(10, 64), (10.5, 50), (20, 64)], [cleanup(10.2, 14)], 20, None),
    ("back where it was, at notice exactly", [(10, 65), (10.5, 50), (20, 65)], [cleanup(10.2, 15)], 20, (65, 65)),
])
def test_rebound_after_cleanup(name, points, cleanups, now_minute, expected):
    found = rebound(samples(points), cleanups, PREDICT, T0 + now_minute * MIN)
    assert (found and (found.before, found.now)) == (expected or None)


@given(counts=st.lists(st.integers(0, 100), min_size=2, max_size=20), cleaned_after=st.integers(0, 18),
       closed=st.integers(1, 50))
@example(counts=[12, 9, 12], cleaned_after=0, closed=3)  # main: a rebound at 12 %
def test_a_rebound_is_back_at_or_above_notice_and_where_it_was(counts, cleaned_after, closed):
    # issue 12: rebound only when it matters: back at or above notice within `rebound` of a cleanup
    series = samples(list(enumerate(counts)))
    cleaned_after = min(cleaned_after, len(counts) - 2)
    found = rebound(series, [cleanup(cleaned_after + 0.5, closed)], PREDICT, series[-1].time)
    before = counts[cleaned_after]
    assert bool(found) == (counts[-1] >= PREDICT.thresholds["notice"] and counts[-1] >= before)


def test_find_words_each_anomaly_for_the_alert_line():
    # 200 sessions of limit: +1 a minute (30 %/h) to 160 (80 %); a cleanup 30 s ago closed 5 of the 159 seen before it
    series = samples([(m, 100 + m) for m in range(61)], limit=200)
    now = T0 + 60 * MIN
    found = find(series, [cleanup(59.5, 5)], PREDICT, 3600, now)
    assert found == {
        "growth": "forecast to reach critical in 20m at +60.0 sessions/h (fit r² 1.00)",
        "rebound": "160 sessions, 159 before a cleanup closed 5 of them 30s ago: sessions leak faster than cleanup "
                   "reclaims them"}


# --- peak: a notice before a daily peak expected at critical (issue 15) -------------------------------------------

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def next_peak(at: float, expected: float) -> dict:
    from datetime import datetime, timezone

    return {"typical_time": "10:00", "typical_usage": expected - 2, "p90_usage": expected + 1,
            "next_at": datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="minutes"),
            "next_expected_usage": expected, "growth_points_per_week": 1.0, "critical_peak_on": None,
            "days_of_history": 7}


@given(st.integers(-3600, 20 * 3600), st.floats(50, 100), st.sampled_from([None, 3600.0, 8 * 3600.0]))
@example(ahead=8 * 3600, expected=90.0, lead=8 * 3600.0)  # the edges: exactly the lead ahead, exactly critical
@example(ahead=0, expected=95.0, lead=8 * 3600.0)  # the peak is now: too late to be a notice ahead of it
def test_peak_notice_within_its_lead_before_a_peak_expected_at_critical(ahead, expected, lead):
    alerts = Alerts(peak_notice=lead)
    peak_at = (T0 + ahead) // 60 * 60  # next_at is to the minute
    found = find([], [], alerts, 3600.0, T0, next_peak(peak_at, expected))
    due = lead is not None and 0 < peak_at - T0 <= lead and expected >= alerts.thresholds["critical"]
    assert ("peak" in found) == due
    if due:
        assert found["peak"].startswith("daily peak expected at ") and f"at {expected:.0f}%" in found["peak"]


@given(st.integers(1, 16), st.integers(1, 30))
def test_peak_notice_is_told_once_per_peak_with_its_own_memory(lead_hours, every_minutes):
    """Checks every few minutes over three days, a daily peak at critical: each peak told once, to each channel."""
    from guardian.core.policy import decide_anomaly
    from guardian.core.records import ChannelMemory

    alerts = Alerts(peak_notice=lead_hours * 3600.0)
    peaks = [T0 + 2 * 3600 + day * 86400 for day in range(3)]  # 10:00 UTC each day
    memory, told = ChannelMemory(), []
    for now in range(int(T0), int(peaks[-1]), every_minutes * 60):
        upcoming = next(p for p in peaks if p > now)
        found = find([], [], alerts, 3600.0, now, next_peak(upcoming, 93.0))
        if "peak" in found:
            decision = decide_anomaly(memory, "peak", alerts, now)
            memory = decision.memory
            told += [upcoming for _ in decision.notices]
    assert told == peaks  # each once, the first within the lead of it


# A check reads its subjects' Samples back from history.db only when `reads_samples` says the anomalies will look at
# them (else only the times and usages the forecast fits): so whenever it says no, what they find from no samples
# is what they would find from any.
@given(st.lists(st.tuples(st.integers(0, 120), st.none() | st.integers(0, 100)), max_size=60),
       st.lists(st.tuples(st.integers(0, 120), st.integers(0, 3)), max_size=3),
       st.sampled_from([None, 10 * MIN, 60 * MIN]), st.sampled_from([0.0, 30 * MIN]),
       st.sampled_from(["ok", "warning"]))
def test_the_anomalies_look_at_no_sample_unless_reads_samples_says_so(points, runs, predict, rebound_window, level):
    series = sorted(samples([(m / 2, n) for m, n in points], level=level), key=lambda s: s.time)
    cleanups = [cleanup(m / 2, closed) for m, closed in runs]
    alerts = replace(Alerts(), predict=predict, rebound=rebound_window)
    now = T0 + 60 * MIN
    if not reads_samples(alerts, cleanups):
        assert find(series, cleanups, alerts, 3600, now) == find([], cleanups, alerts, 3600, now) == {}


def test_reads_samples_when_growth_is_on_or_a_cleanup_in_question_closed_sessions():
    cleaned, idle_run = cleanup(0, 3), cleanup(0, 0)
    assert reads_samples(replace(Alerts(), predict=30 * MIN), [])
    assert reads_samples(Alerts(), [idle_run, cleaned])
    assert not reads_samples(Alerts(), [idle_run])
    assert not reads_samples(replace(Alerts(), rebound=0.0), [cleaned])
