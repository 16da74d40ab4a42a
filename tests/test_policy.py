"""The alert policy over time, with `now` passed in: no clock, no sleeps."""

from dataclasses import replace

import pytest

from guardian.config import Alerts
from guardian.policy import (ChannelMemory, Reading, SubjectState, as_seen, decide, decide_anomaly, exit_code,
                             level_for, observe)

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
        decision = decide(memory, as_seen(subject, min_level), alerts, now)
        if decision.notice is None:
            memory = decision.memory
        elif delivered(index):
            memory = decision.memory
            sent.append((minute, decision.notice.reason, decision.notice.level))
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
    ([(0, 50), (1, None), (2, None), (3, 50)], [(2, "unreachable", "ok"), (3, "resolved", "ok")]),
    ([(0, 40), (1, 50), (2, 60)], []),
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


def test_a_rise_after_a_drop_is_sent_at_once():
    sent = replay([(0, 95), (1, 82), (2, 95)])
    assert sent == [(0, "escalated", "critical"), (2, "escalated", "critical")]


def test_failed_delivery_is_decided_again_next_run_not_swallowed_by_cooldown():
    sent = replay([(0, 91), (1, 91), (2, 91)], delivered=lambda index: index > 0)
    assert sent == [(1, "escalated", "critical")]


def test_resolved_can_be_switched_off():
    quiet = replace(ALERTS, resolved=False)
    assert replay([(0, 91), (1, 30), (40, 91)], quiet) == [(0, "escalated", "critical"), (40, "escalated", "critical")]


@pytest.mark.parametrize("steps, expected", [
    ([(0, 70), (1, 85), (2, 95)], [(2, "escalated", "critical")]),
    ([(0, 95), (1, 84), (2, 95)], [(0, "escalated", "critical"), (1, "resolved", "ok"), (2, "escalated", "critical")]),
    ([(0, 95), (1, 86), (7, 91)], [(0, "escalated", "critical"), (7, "repeat", "critical")]),  # 86: held by the margin
    ([(0, 80), (1, None), (2, None)], [(2, "unreachable", "ok")]),  # unreachable is not a level: it reaches every channel
])
def test_a_channel_with_min_level_critical_sees_lower_levels_as_ok(steps, expected):
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
        if decision.notice is None:
            memory = decision.memory
        elif delivered(minute):
            memory = decision.memory
            sent.append((minute, decision.notice.reason, decision.notice.level, decision.notice.previous))
    return sent


@pytest.mark.parametrize("reason, steps, expected", [
    ("growth", [(0, True)], [(0, "growth", "notice", "ok")]),
    ("growth", [(0, True), (1, True), (29, True)], [(0, "growth", "notice", "ok")]),
    ("growth", [(0, True), (1, True), (30, True)], [(0, "growth", "notice", "ok"), (30, "growth", "notice", "notice")]),
    ("growth", [(0, True), (5, False), (10, True)], [(0, "growth", "notice", "ok")]),  # a new episode waits out the cooldown
    ("growth", [(0, True), (5, False), (35, True)], [(0, "growth", "notice", "ok"), (35, "growth", "notice", "notice")]),
    ("growth", [(0, False), (1, False)], []),
    ("rebound", [(0, True), (0.5, True), (20, True)], [(0, "rebound", "notice", "ok")]),
    ("rebound", [(0, True), (31, True)], [(0, "rebound", "notice", "ok"), (31, "rebound", "notice", "notice")]),
])
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
