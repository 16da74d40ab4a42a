"""The alert policy over time, with `now` passed in: no clock, no sleeps."""

from dataclasses import replace

import pytest

from guardian.core.policy import decide, decide_anomaly, level_for, observe
from guardian.core.records import ChannelMemory, Reading, SubjectState, exit_code
from guardian.settings.model import Alerts

ALERTS = Alerts()
MIN = 60.0


def replay(steps, alerts=ALERTS, delivered=lambda step: True, min_level="notice"):
    """Run (minute, usage% or None for a failed poll) steps through observe+decide; the notices sent
    to a channel with `min_level`."""
    subject, memory, sent = SubjectState(), ChannelMemory(), []
    for index, (minute, usage) in enumerate(steps):
        now = minute * MIN
        reading = None if usage is None else Reading(count=usage, limit=100)
        subject = observe(subject, reading, alerts, now)
        decision = decide(memory, subject, alerts, now, min_level)
        if not decision.notices:
            memory = decision.memory
        elif delivered(index):
            memory = decision.memory
            sent += [(minute, notice.reason, notice.level) for notice in decision.notices]
    return sent


@pytest.mark.parametrize("steps, expected", [
    ([(0, 65)], [(0, "escalated", "notice")]),
    ([(0, 65), (10, 66)], [(0, "escalated", "notice")]),
    ([(0, 65), (10, 66), (31, 66)], [(0, "escalated", "notice"), (31, "repeat", "notice")]),
    ([(0, 65), (10, 80)], [(0, "escalated", "notice"), (10, "escalated", "warning")]),
    ([(0, 85), (1, 89), (2, 91), (3, 89), (4, 91)], [(0, "escalated", "warning"), (2, "escalated", "critical")]),
    ([(0, 91), (1, 89), (2, 91), (3, 89), (4, 91)], [(0, "escalated", "critical")]),
    ([(0, 91), (1, 30)], [(0, "escalated", "critical"), (1, "resolved", "ok")]),
    ([(0, 91), (1, 30), (2, 30), (3, 20)], [(0, "escalated", "critical"), (1, "resolved", "ok")]),
    ([(0, 50), (1, None), (2, None)], [(2, "unreachable", "ok")]),
    ([(0, 50), (1, None)], []),
    ([(0, 50), (1, None), (2, None), (3, None), (18, None)], [(2, "unreachable", "ok"), (18, "unreachable", "ok")]),
    ([(0, 50), (1, None), (2, None), (3, 50)], [(2, "unreachable", "ok"), (3, "reachable", "ok")]),
    ([(0, 40), (1, 50), (2, 60)], []),
    # outages that come and go: one unreachable per its 15 min cooldown, one "reachable again" per outage told
    ([(0, 50), (1, None), (2, None), (3, 50), (4, None), (5, None), (6, 50), (16, None), (17, None), (18, 50)],
     [(2, "unreachable", "ok"), (3, "reachable", "ok"), (17, "unreachable", "ok"), (18, "reachable", "ok")]),
    # coming back at a lower level neither resolves the usage alert nor resets the unreachable cooldown
    ([(0, 95), (1, None), (2, None), (3, 85), (4, None), (5, None), (6, 85)],
     [(0, "escalated", "critical"), (2, "unreachable", "critical"), (3, "reachable", "warning")]),
    ([(0, 95), (1, None), (2, None), (3, 30)],
     [(0, "escalated", "critical"), (2, "unreachable", "critical"), (3, "reachable", "ok"), (3, "resolved", "ok")]),
    ([(0, 100)], [(0, "escalated", "critical")]),
])
def test_alert_policy_over_time(steps, expected):
    assert replay(steps) == expected


def test_critical_repeats_after_its_own_five_minute_cooldown():
    assert replay([(0, 95), (4, 95), (5, 95), (9, 95), (10, 95)]) == [
        (0, "escalated", "critical"), (5, "repeat", "critical"), (10, "repeat", "critical")]


def test_falling_to_a_lower_level_is_not_sent_and_starts_its_cooldown():
    # critical -> warning (below 85) is quiet; the warning repeats 15 min after the drop, not before
    sent = replay([(0, 95), (1, 82), (15, 82), (16, 82)])
    assert sent == [(0, "escalated", "critical"), (16, "repeat", "warning")]


def test_a_rise_back_to_the_level_told_is_a_repeat_within_its_cooldown():
    sent = replay([(0, 95), (1, 82), (2, 95), (5, 95)])
    assert sent == [(0, "escalated", "critical"), (5, "repeat", "critical")]


def test_a_rise_after_the_lower_level_was_told_is_sent_at_once():
    # critical, then warning held 15 min is told (a reminder "down from critical"), then critical is a rise again
    sent = replay([(0, 95), (1, 82), (16, 82), (17, 95)])
    assert sent == [(0, "escalated", "critical"), (16, "repeat", "warning"), (17, "escalated", "critical")]


def test_flapping_between_two_levels_tells_the_higher_once_per_its_cooldown_and_never_the_lower():
    steps = [(minute, 95 if minute % 2 == 0 else 80) for minute in range(60)]
    expected = [(minute, "escalated" if minute == 0 else "repeat", "critical") for minute in range(0, 60, 6)]
    assert replay(steps) == expected


def test_a_reminder_at_a_lower_level_waits_for_the_cooldown_of_the_level_told():
    # warning's cooldown shorter than critical's: the warning reminder (and so the next rise) waits for critical's
    alerts = replace(ALERTS, cooldown={**ALERTS.cooldown, "warning": 60.0, "critical": 600.0})
    sent = replay([(0, 95), (1, 82), (3, 82), (10, 82), (11, 95)], alerts)
    assert sent == [(0, "escalated", "critical"), (10, "repeat", "warning"), (11, "escalated", "critical")]


def test_failed_delivery_is_decided_again_next_run_not_swallowed_by_cooldown():
    sent = replay([(0, 91), (1, 91), (2, 91)], delivered=lambda index: index > 0)
    assert sent == [(1, "escalated", "critical")]


def test_resolved_can_be_switched_off():
    quiet = replace(ALERTS, resolved=False)
    assert replay([(0, 91), (1, 30), (40, 91)], quiet) == [(0, "escalated", "critical"), (40, "escalated", "critical")]


@pytest.mark.parametrize("steps, expected", [
    ([(0, 70), (1, 85), (2, 95)], [(2, "escalated", "critical")]),
    ([(0, 95), (1, 84), (2, 95)], [(0, "escalated", "critical")]),  # a drop to warning is not a resolved
    ([(0, 95), (1, 84), (2, 95), (5, 95)], [(0, "escalated", "critical"), (5, "repeat", "critical")]),
    # below min_level: no warning reminder, and the resolved only at ok
    ([(0, 95), (1, 84), (30, 84), (31, 40)], [(0, "escalated", "critical"), (31, "resolved", "ok")]),
    ([(0, 95), (1, 86), (7, 91)], [(0, "escalated", "critical"), (7, "repeat", "critical")]),  # 86: held by the margin
    ([(0, 80), (1, None), (2, None)], [(2, "unreachable", "warning")]),  # not a level: it reaches every channel
    ([(0, 70), (1, 40)], []),  # never told, so no resolved
])
def test_a_channel_with_min_level_critical_hears_critical_and_a_resolved_only_at_ok(steps, expected):
    assert replay(steps, min_level="critical") == expected


@pytest.mark.parametrize("usage, previous, expected", [
    (64.9, "ok", "ok"), (65, "ok", "notice"), (80, "ok", "warning"), (90, "ok", "critical"),
    (89, "critical", "critical"), (85.1, "critical", "critical"), (85, "critical", "warning"),
    (61, "notice", "notice"), (60, "notice", "ok"), (79, "notice", "notice"), (76, "warning", "warning"),
])
def test_level_holds_a_margin_before_falling(usage, previous, expected):
    assert level_for(usage, ALERTS, previous) == expected


@pytest.mark.parametrize("levels, unknown, code", [
    (["ok", "notice"], False, 0), (["warning", "ok"], False, 1), (["critical"], False, 2),
    (["ok"], True, 3), (["warning"], True, 3), (["critical"], True, 2), ([], False, 0),
])
def test_nagios_exit_code_worst_wins_and_critical_outranks_unknown(levels, unknown, code):
    assert exit_code(levels, unknown) == code


def replay_anomaly(steps, reason="growth", alerts=ALERTS, delivered=lambda minute: True):
    """(minute, found) steps through decide_anomaly, as check does: decided only while found."""
    memory, sent = ChannelMemory(), []
    for minute, found in steps:
        if not found:
            continue
        decision = decide_anomaly(memory, reason, alerts, minute * MIN)
        if not decision.notices:
            memory = decision.memory
        elif delivered(minute):
            memory = decision.memory
            sent += [(minute, notice.reason, notice.level, notice.previous) for notice in decision.notices]
    return sent


@pytest.mark.parametrize(
    "reason, steps, expected",
    [
        ("growth", [(0, True)], [(0, "growth", "notice", "ok")]),
        ("growth", [(0, True), (1, True), (29, True)], [(0, "growth", "notice", "ok")]),
        (
            "growth",
            [(0, True), (1, True), (30, True)],
            [(0, "growth", "notice", "ok"), (30, "growth", "notice", "notice")],
        ),
        (
            "growth",
            [(0, True), (5, False), (10, True)],
            [(0, "growth", "notice", "ok")],
        ),  # a new episode waits out the cooldown
        (
            "growth",
            [(0, True), (5, False), (35, True)],
            [(0, "growth", "notice", "ok"), (35, "growth", "notice", "notice")],
        ),
        ("growth", [(0, False), (1, False)], []),
        ("rebound", [(0, True), (0.5, True), (20, True)], [(0, "rebound", "notice", "ok")]),
        ("rebound", [(0, True), (31, True)], [(0, "rebound", "notice", "ok"), (31, "rebound", "notice", "notice")]),
    ],
)
def test_anomaly_notices_over_time(reason, steps, expected):
    assert replay_anomaly(steps, reason) == expected


def test_anomalies_have_their_own_cooldown():
    alerts = replace(ALERTS, cooldown={**ALERTS.cooldown, "growth": 10 * MIN, "rebound": 60 * MIN})
    steps = [(0, True), (10, True), (40, True), (60, True)]
    assert [m for m, *_ in replay_anomaly(steps, "growth", alerts)] == [0, 10, 40, 60]
    assert [m for m, *_ in replay_anomaly(steps, "rebound", alerts)] == [0, 60]


def test_failed_anomaly_delivery_is_decided_again_next_run():
    sent = replay_anomaly([(0, True), (1, True), (2, True)], delivered=lambda minute: minute > 0)
    assert sent == [(1, "growth", "notice", "ok")]
