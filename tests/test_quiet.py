"""Silences, acknowledgements and maintenance windows (issue 16): what holds an alert, as pure functions of now."""

import textwrap
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from guardian.core.quiet import (
    Ack,
    Quiet,
    QuietError,
    Silence,
    acknowledged,
    cleanup_held,
    end_time,
    ended_acks,
    ending,
    finish,
    held_by,
    listed,
    named_subject,
    new_ack,
    new_silence,
    occurrences,
    of_period,
    quiet_level,
    removal,
    window_end,
)
from guardian.settings.levels import LEVELS
from guardian.settings.load import parse
from guardian.settings.model import ConfigError, Maintenance, Scope
from guardian.settings.units import parse_when


def at(text: str, tz: str = "UTC") -> float:
    """An instant from a local wall time in `tz` (unambiguous ones only)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def window(when: str, tz: str = "UTC", cleanup: bool = True, **scope) -> Maintenance:
    days, start, end = parse_when(when)
    return Maintenance(name="w", scope=Scope(**(scope or {"hosts": ("t440",)})), when=when, days=days, start=start,
                       end=end, tz=tz, cleanup=cleanup)


def holds(w: Maintenance, t: float) -> bool:
    return held_by(Quiet(windows=(w,)), "host:t440", "usage", "ops", "critical", t) is not None


# --- maintenance windows --------------------------------------------------------------------------


def test_a_window_crossing_midnight_runs_into_the_next_day_of_each_listed_day():
    w = window("mon-fri 22:00-06:00")  # 2026-12-04 is a Friday
    assert holds(w, at("2026-12-04T22:00")) and holds(w, at("2026-12-05T05:59"))  # Friday night into Saturday
    assert window_end(w, at("2026-12-04T23:30")) == at("2026-12-05T06:00")
    assert not holds(w, at("2026-12-05T06:00"))
    assert not holds(w, at("2026-12-05T22:00"))  # Saturday is not listed
    assert not holds(w, at("2026-12-07T03:00"))  # nor Sunday, so Monday morning is free
    assert not holds(w, at("2026-12-07T21:59")) and holds(w, at("2026-12-07T22:00"))


def test_a_window_holds_its_text_and_end_in_its_own_zone():
    w = window("sun 02:00-04:00", tz="Asia/Tokyo")
    hold = held_by(Quiet(windows=(w,)), "host:t440", "usage", "ops", "critical", at("2026-12-06T03:00", "Asia/Tokyo"))
    assert hold.kind == "maintenance" and hold.until == at("2026-12-06T04:00", "Asia/Tokyo")
    assert hold.text == "in maintenance (w) until 2026-12-06 04:00 JST"
    assert not holds(w, at("2026-12-06T03:00"))  # 03:00 UTC is noon in Tokyo


def test_daylight_saving_starts_inside_a_window_it_begins_at_the_jump():
    # Europe/Berlin, 2026-03-29: the clock jumps from 02:00 to 03:00 (01:00 UTC)
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc).timestamp()
    w = window("sun 02:00-04:00", tz="Europe/Berlin")
    assert not holds(w, jump - 1) and holds(w, jump)
    assert window_end(w, jump) == at("2026-03-29T04:00", "Europe/Berlin") == jump + 3600  # one real hour
    later_start = window("sun 02:30-05:00", tz="Europe/Berlin")  # 02:30 never shows: it starts at the jump
    assert not holds(later_start, jump - 1) and holds(later_start, jump)
    ends_skipped = window("sun 01:00-02:30", tz="Europe/Berlin")  # 02:30 never shows: it ends at the jump
    assert holds(ends_skipped, jump - 1) and window_end(ends_skipped, jump - 1) == jump
    assert not holds(ends_skipped, jump)


def test_daylight_saving_ends_inside_a_window_it_lasts_the_hour_the_clock_repeats():
    # Europe/Berlin, 2026-10-25: 03:00 CEST (01:00 UTC) goes back to 02:00 CET; 02:00-03:00 is read twice
    w = window("sun 02:00-04:00", tz="Europe/Berlin")
    first_two = datetime(2026, 10, 25, 0, 0, tzinfo=timezone.utc).timestamp()  # 02:00 CEST
    assert not holds(w, first_two - 1) and holds(w, first_two)
    assert window_end(w, first_two) == datetime(2026, 10, 25, 3, 0, tzinfo=timezone.utc).timestamp()  # 04:00 CET
    short = window("sun 00:00-02:30", tz="Europe/Berlin")  # ends at the first 02:30, not again at the second
    assert window_end(short, first_two) == first_two + 1800
    assert not holds(short, first_two + 3600 + 600)  # 02:10 CET, read the second time


def test_a_window_every_day_all_day_runs_on_from_day_to_day():
    w = window("00:00-24:00")
    assert holds(w, at("2026-12-01T00:00")) and holds(w, at("2026-12-01T23:59"))
    assert window_end(w, at("2026-12-01T12:00")) == at("2026-12-02T00:00")


def wall_rule(w: Maintenance, local: datetime) -> bool:
    """The window as the operator reads it on a clock: a listed day's range, or the night after one."""
    minute = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    if w.start < w.end:
        return today in w.days and w.start <= minute < w.end
    return (today in w.days and minute >= w.start) or (yesterday in w.days and minute < w.end)


days_text = st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun", "fri-mon", "mon-fri"]),
                     min_size=1, max_size=3, unique=True).map(",".join)
clock = st.integers(0, 23 * 60 + 59).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")


@given(days=days_text, start=clock, end=clock, minute=st.integers(0, 3 * 366 * 1440),
       tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Tokyo"]))
@example(days="sun", start="23:00", end="01:00", minute=0, tz="UTC")
def test_away_from_a_clock_change_a_window_holds_exactly_when_the_clock_reads_inside_it(days, start, end, minute, tz):
    if start == end:
        return
    w = window(f"{days} {start}-{end}", tz=tz)
    t = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() + minute * 60
    zone = ZoneInfo(tz)
    offsets = {datetime.fromtimestamp(t + shift * 3600, zone).utcoffset() for shift in (-26, 0, 26)}
    if len(offsets) > 1:
        return  # within a day of a change the edges are instants; the DST tests above pin them
    end_at = window_end(w, t)
    assert (end_at is not None) == wall_rule(w, datetime.fromtimestamp(t, zone))
    if end_at is not None:
        assert t < end_at <= t + 86400


@given(days=days_text, start=clock, end=clock, hours=st.integers(0, 400 * 24), length=st.integers(0, 10 * 24),
       tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]))
@example(days="sun", start="23:00", end="01:00", hours=0, length=0, tz="UTC")
def test_a_windows_occurrences_over_a_period_are_exactly_the_instants_it_holds(days, start, end, hours, length, tz):
    if start == end:
        return
    w = window(f"{days} {start}-{end}", tz=tz)
    since = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() + hours * 3600
    until = since + length * 3600
    found = occurrences(w, since, until)
    assert all(a < b <= c for (a, b), (c, _) in zip(found, found[1:])) and all(s < e for s, e in found)
    for t in (since, until, *(e - 1 for _, e in found), *(s for s, _ in found)):
        if since <= t <= until:
            assert (window_end(w, t) is not None) == any(s <= t < e for s, e in found)


@pytest.mark.parametrize("text, problem", [
    ("sun 2-4", "is not a window"), ("sun 02:00-02:00", "starts where it ends"), ("sun 25:00-02:00", "not on a clock"),
    ("sun 02:60-03:00", "not on a clock"), ("sunday 02:00-04:00", "names a day"), ("24:00-01:00", "not on a clock"),
])
def test_a_when_that_is_not_a_window_is_refused_in_one_sentence(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_when(text)


def test_when_days_ranges_wrap_and_a_range_may_end_at_midnight():
    assert parse_when("fri-mon 22:00-24:00") == (frozenset({4, 5, 6, 0}), 22 * 60, 24 * 60)
    assert parse_when("02:00-04:00")[0] == frozenset(range(7))


def config(text: str = ""):
    return parse(textwrap.dedent("""
        hosts:
          t440: {url: "ws://127.0.0.1:18789", limit: 60}
          pc-a: {url: "ws://127.0.0.1:18790", limit: 40}
        pools:
          shared: {hosts: [t440, pc-a], limit: 80}
        alerts:
          channels: [{type: command, name: ops, command: [/bin/true]}]
    """) + textwrap.dedent(text), "g.yaml")


def test_the_config_reads_maintenance_windows():
    loaded = config("""
        maintenance:
          - {hosts: [t440], when: "sun 02:00-04:00", tz: Asia/Tokyo, cleanup: false}
          - {name: nightly, pools: [shared], agents: [pc-a/sales], alerts: [usage], channels: [ops],
             when: "22:00-06:00"}
    """)
    first, nightly = loaded.maintenance
    assert (first.name, first.days, first.start, first.end, first.tz, first.cleanup) == \
        ("maintenance-1", frozenset({6}), 120, 240, "Asia/Tokyo", False)
    assert nightly.scope == Scope(pools=("shared",), agents=("pc-a/sales",), alerts=("usage",), channels=("ops",))
    assert nightly.tz == "UTC" and nightly.cleanup
    assert loaded.alerts.max_silence == 7 * 86400


@pytest.mark.parametrize("entry, expected", [
    ('{hosts: [t440], when: "sun 2-4"}', "g.yaml:10: maintenance[0].when: text 'sun 2-4' is not a window"),
    ('{hosts: [t440], when: "sun 02:00-04:00", tz: Mars/Olympus}', "maintenance[0].tz: 'Mars/Olympus' is not an IANA"),
    ('{hosts: [t440], when: "sun 02:00-04:00", tz: ../../etc/passwd}', "maintenance[0].tz: '../../etc/passwd' is not"),
    ('{hosts: [t440], when: "sun 02:00-04:00", tz: zone.tab}', "maintenance[0].tz: 'zone.tab' is not an IANA"),
    ('{hosts: [nope], when: "sun 02:00-04:00"}', "maintenance[0].hosts: names 'nope', which is not one of the hosts"),
    ('{agents: [sales], when: "sun 02:00-04:00"}', "maintenance[0].agents: names 'sales': write HOST/AGENT"),
    ('{when: "sun 02:00-04:00"}', "maintenance[0].hosts: names no hosts, pools or agents"),
    ('{hosts: [t440], alerts: [noise], when: "02:00-04:00"}', "maintenance[0].alerts: names 'noise'"),
    ('{hosts: [t440], channels: [pager], when: "02:00-04:00"}', "maintenance[0].channels: names 'pager'"),
    ('{hosts: [t440], when: "02:00-04:00", cleanup: no-thanks}', "maintenance[0].cleanup: must be true or false"),
    ('{hosts: [t440], when: "02:00-04:00", every: week}', "maintenance[0].every: is not a known setting"),
])
def test_a_bad_window_names_its_key_and_line(entry, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        config(f"maintenance:\n  - {entry}\n")


def test_max_silence_is_a_duration():
    assert parse('hosts: {t440: {url: "ws://127.0.0.1:18789", limit: 60}}\nalerts: {max_silence: 2d}\n',
                 "g.yaml").alerts.max_silence == 2 * 86400
    with pytest.raises(ConfigError, match="alerts.max_silence: 3 has no unit"):
        parse(textwrap.dedent("""
            hosts: {t440: {url: "ws://127.0.0.1:18789", limit: 60}}
            alerts: {max_silence: 3}
        """), "g.yaml")


def test_cleanup_false_keeps_cleanup_off_the_windows_hosts_while_it_holds():
    held = window("sun 02:00-04:00", cleanup=False)
    quiet = Quiet(windows=(held, window("sun 02:00-04:00", hosts=("pc-a",))))
    hold = cleanup_held(quiet, "t440", at("2026-12-06T03:00"))
    assert (hold.kind, hold.id, hold.until) == ("maintenance", held.name, at("2026-12-06T04:00"))
    assert hold.text == "in maintenance (w) until 2026-12-06 04:00 UTC, which keeps cleanup off"
    assert cleanup_held(quiet, "pc-a", at("2026-12-06T03:00")) is None  # its window lets cleanup run
    assert cleanup_held(quiet, "t440", at("2026-12-06T04:00")) is None


# --- silences ---------------------------------------------------------------------------------------

NOW = at("2026-12-01T12:00")


def silence(**scope) -> Silence:
    return Silence("3f9a1c2e", Scope(**scope), NOW, NOW + 7200, "load test", "alice")


def test_a_silence_that_ends_while_the_subject_is_still_critical_holds_no_longer():
    quiet = Quiet(silences=(silence(hosts=("t440",)),))
    hold = held_by(quiet, "host:t440", "usage", "ops", "critical", NOW + 7199)
    assert hold.text == "silenced by 3f9a1c2e until 2026-12-01 14:00 UTC" and hold.reason == "load test"
    assert held_by(quiet, "host:t440", "usage", "ops", "critical", NOW + 7200) is None
    assert held_by(quiet, "host:t440", "usage", "ops", "critical", NOW - 1) is None  # not before it starts


def test_a_removed_silence_holds_nothing():
    from dataclasses import replace

    quiet = Quiet(silences=(replace(silence(hosts=("t440",)), removed=NOW + 60),))
    assert held_by(quiet, "host:t440", "usage", "ops", "critical", NOW + 61) is None


@pytest.mark.parametrize("scope, subject, alert, channel, held", [
    ({"hosts": ("t440",)}, "host:t440", "unreachable", "ops", True),
    ({"hosts": ("t440",)}, "agent:t440/sales", "usage", "ops", True),  # a host's agents with it
    ({"hosts": ("t440",)}, "pool:shared", "usage", "ops", False),  # a pool only when named
    ({"hosts": ("t440",)}, "host:pc-a", "usage", "ops", False),
    ({"pools": ("shared",)}, "pool:shared", "usage", "ops", True),
    ({"agents": ("t440/sales",)}, "agent:t440/sales", "growth", "ops", True),
    ({"agents": ("t440/sales",)}, "agent:t440/support", "growth", "ops", False),
    ({"agents": ("t440/sales",)}, "host:t440", "usage", "ops", False),
    ({"hosts": ("t440",), "alerts": ("growth",)}, "host:t440", "usage", "ops", False),
    ({"hosts": ("t440",), "alerts": ("growth",)}, "host:t440", "growth", "ops", True),
    ({"hosts": ("t440",), "channels": ("slack",)}, "host:t440", "usage", "ops", False),
    ({"hosts": ("t440",), "channels": ("slack",)}, "host:t440", "usage", "slack", True),
])
def test_a_silence_holds_its_scope_only(scope, subject, alert, channel, held):
    assert (held_by(Quiet(silences=(silence(**scope),)), subject, alert, channel, "warning", NOW) is not None) == held


def test_a_silence_outranks_a_window_and_a_window_an_ack():
    ack = Ack("ack1", "host:t440", "critical", "on it", "bob", NOW)
    w = window("00:00-24:00")
    everything = Quiet(silences=(silence(hosts=("t440",)),), acks=(ack,), windows=(w,))
    assert held_by(everything, "host:t440", "usage", "ops", "critical", NOW).kind == "silence"
    assert held_by(Quiet(acks=(ack,), windows=(w,)), "host:t440", "usage", "ops", "critical", NOW).kind == "maintenance"
    assert held_by(Quiet(acks=(ack,)), "host:t440", "usage", "ops", "critical", NOW).kind == "ack"


def test_of_two_silences_the_one_that_holds_longer_is_named():
    from dataclasses import replace

    short, long = silence(hosts=("t440",)), replace(silence(hosts=("t440",)), id="long", ends=NOW + 86400)
    assert held_by(Quiet(silences=(short, long)), "host:t440", "usage", "ops", "critical", NOW).id == "long"


# --- acknowledgements ---------------------------------------------------------------------------------


def test_an_ack_holds_its_level_then_a_rise_is_told_and_ends_it():
    ack = new_ack("host:t440", "warning", "on it", "bob", "ack1", NOW)
    quiet = Quiet(acks=(ack,))
    hold = held_by(quiet, "host:t440", "usage", "ops", "warning", NOW + 600)
    assert hold.kind == "ack" and hold.until is None and hold.text == "acknowledged at warning by bob"
    assert held_by(quiet, "host:t440", "usage", "ops", "critical", NOW + 700) is None  # the rise goes out at once
    assert ending(ack, "critical", NOW + 700) == "rose to critical"
    ended = Quiet(acks=(finish(ack, "rose to critical", NOW + 700),))
    assert held_by(ended, "host:t440", "usage", "ops", "warning", NOW + 800) is None  # back at warning: told again


@given(acked=st.sampled_from(["notice", "warning", "critical"]),
       walk=st.lists(st.sampled_from(["ok", "notice", "warning", "critical", "unreachable"]), max_size=12))
@example(acked="warning", walk=["notice", "warning", "critical", "warning"])
def test_an_ack_holds_its_level_only_until_the_first_rise_or_return_to_ok(acked, walk):
    """The check records each ending (`finish`); whatever the walk, the ack holds exactly the acknowledged
    level's usage alerts, and nothing once the subject rose above it or was ok."""
    ack, over = new_ack("host:t440", acked, "", "bob", "ack1", NOW), False
    for step, level in enumerate(walk):
        now = NOW + 60 * (step + 1)
        over = over or level == "ok" or (level != "unreachable" and LEVELS.index(level) > LEVELS.index(acked))
        held = held_by(Quiet(acks=(ack,)), "host:t440", "usage", "ops", level, now) is not None
        assert held == (not over and level == acked)
        why = ending(ack, level, now)
        assert (why is not None) == over
        if why and ack.ended is None:
            ack = finish(ack, why, now)


@given(starts=st.integers(0, 10_000), length=st.integers(1, 10_000), now=st.integers(-10, 20_020),
       level=st.sampled_from(["ok", "notice", "warning", "critical", "unreachable"]))
def test_a_silence_holds_from_its_start_to_its_end_whatever_the_level(starts, length, now, level):
    s = Silence("s", Scope(hosts=("t440",)), float(starts), float(starts + length), "x", "alice")
    held = held_by(Quiet(silences=(s,)), "host:t440", "usage", "ops", level, float(now))
    assert (held is not None) == (starts <= now < starts + length)


def test_an_ack_ends_with_a_return_to_ok_and_the_resolved_is_not_held():
    ack = new_ack("host:t440", "critical", "", "bob", "ack1", NOW)
    assert ending(ack, "ok", NOW + 60) == "resolved"
    assert held_by(Quiet(acks=(ack,)), "host:t440", "usage", "ops", "ok", NOW + 60) is None


def test_an_ack_holds_on_through_a_lower_level_and_its_own_time_ends_it():
    ack = new_ack("host:t440", "critical", "", "bob", "ack1", NOW, duration=3600)
    assert ending(ack, "warning", NOW + 60) is None
    assert held_by(Quiet(acks=(ack,)), "host:t440", "usage", "ops", "critical", NOW + 120).until == NOW + 3600
    assert ending(ack, "critical", NOW + 3600) == "expired"
    assert held_by(Quiet(acks=(ack,)), "host:t440", "usage", "ops", "critical", NOW + 3600) is None


def test_an_ack_holds_only_usage_alerts_of_its_own_subject():
    quiet = Quiet(acks=(new_ack("host:t440", "critical", "", "bob", "ack1", NOW),))
    assert held_by(quiet, "host:t440", "unreachable", "ops", "unreachable", NOW) is None
    assert held_by(quiet, "host:t440", "growth", "ops", "critical", NOW) is None
    assert held_by(quiet, "pool:shared", "usage", "ops", "critical", NOW) is None
    assert held_by(quiet, "host:t440", "usage", "any-channel", "critical", NOW) is not None


def test_an_unreachable_ack_holds_until_the_host_answers_again():
    ack = new_ack("host:t440", "unreachable", "", "bob", "ack1", NOW)
    assert held_by(Quiet(acks=(ack,)), "host:t440", "unreachable", "ops", "unreachable", NOW).kind == "ack"
    assert ending(ack, "warning", NOW) == "reachable again"
    assert held_by(Quiet(acks=(ack,)), "host:t440", "unreachable", "ops", "warning", NOW) is None


def test_there_is_nothing_to_acknowledge_at_ok():
    with pytest.raises(QuietError, match="host:t440 is ok: there is nothing to acknowledge"):
        new_ack("host:t440", "ok", "", "bob", "ack1", NOW)


# --- making a silence -----------------------------------------------------------------------------------


def test_a_silence_needs_an_end_and_one_end_only():
    assert end_time(7200, None, NOW) == NOW + 7200
    assert end_time(None, "2026-12-02T09:00", NOW) == at("2026-12-02T09:00")
    assert end_time(None, "2026-12-02T09:00+09:00", NOW) == at("2026-12-02T09:00", "Asia/Tokyo")
    for duration, until, problem in [(None, None, "needs an end"), (60, "2026-12-02T09:00", "not both"),
                                     (None, "tomorrow", "not an ISO date")]:
        with pytest.raises(QuietError, match=problem):
            end_time(duration, until, NOW)


@pytest.mark.parametrize("scope, ends, reason, problem", [
    (Scope(hosts=("t440",)), NOW + 8 * 86400, "x", r"longer than alerts.max_silence \(7d\)"),
    (Scope(hosts=("t440",)), NOW - 1, "x", "which has passed"),
    (Scope(hosts=("nope",)), NOW + 60, "x", "--hosts names 'nope', which is not one of the hosts here"),
    (Scope(pools=("t440",)), NOW + 60, "x", "--pools names 't440'"),
    (Scope(agents=("nope/sales",)), NOW + 60, "x", "--agents names 'nope/sales': write HOST/AGENT"),
    (Scope(hosts=("t440",), channels=("pager",)), NOW + 60, "x", "--channels names 'pager'"),
    (Scope(), NOW + 60, "x", "names no hosts, pools or agents"),
    (Scope(hosts=("t440",)), NOW + 60, "  ", "--reason must say why"),
])
def test_a_silence_is_refused_without_an_end_too_long_or_matching_nothing_configured(scope, ends, reason, problem):
    with pytest.raises(QuietError, match=problem):
        new_silence(config(), scope, ends, reason, "alice", "id", NOW)


def test_a_silence_up_to_max_silence_is_made():
    made = new_silence(config(), Scope(hosts=("t440",)), NOW + 7 * 86400, " load test ", "alice", "id", NOW)
    assert (made.starts, made.ends, made.reason, made.by) == (NOW, NOW + 7 * 86400, "load test", "alice")


@pytest.mark.parametrize("name, expected", [("t440", "host:t440"), ("shared", "pool:shared"),
                                            ("host:t440", "host:t440"), ("t440/sales", "agent:t440/sales"),
                                            ("agent:pc-a/x", "agent:pc-a/x")])
def test_a_subject_is_named_as_the_operator_writes_it(name, expected):
    assert named_subject(name, config()) == expected


@pytest.mark.parametrize("name", ["nope", "host:shared", "pool:t440", "nope/sales", "disk:t440"])
def test_a_subject_not_in_the_config_is_refused(name):
    with pytest.raises(QuietError, match="is not a host, pool or HOST/AGENT of this config"):
        named_subject(name, config())


# --- the commands' decisions --------------------------------------------------------------------------------------


def test_the_level_compared_is_unreachable_once_the_polls_keep_failing():
    assert [quiet_level("warning", failures, 2) for failures in (0, 1, 2, 5)] == ["warning"] * 2 + ["unreachable"] * 2


def test_a_new_ack_replaces_the_running_ack_of_its_subject_only():
    old = new_ack("host:t440", "warning", "", "bob", "a1", NOW)
    other = new_ack("pool:shared", "notice", "", "bob", "a2", NOW)
    done = finish(new_ack("host:t440", "notice", "", "bob", "a0", NOW - 60), "resolved", NOW - 30)
    new = new_ack("host:t440", "critical", "on it", "alice", "a3", NOW + 10)
    after = acknowledged([done, old, other], new, NOW + 10)
    assert [(a.id, a.ended_why) for a in after] == [("a0", "resolved"), ("a1", "replaced by a3"), ("a2", None),
                                                  ("a3", None)]


def test_removal_ends_the_active_silence_or_ack_with_that_id_and_refuses_any_other():
    s = silence(hosts=("t440",))
    a = new_ack("host:t440", "warning", "", "bob", "a1", NOW)
    kind, after = removal(Quiet((s,), (a,)), s.id, "alice", NOW + 60)
    assert kind == "silence" and (after.silences[0].removed, after.silences[0].removed_by) == (NOW + 60, "alice")
    assert after.acks == (a,)
    kind, after = removal(after, "a1", "alice", NOW + 61)
    assert kind == "ack" and after.acks[0].ended_why == "removed by alice"
    for gone in (s.id, "a1", "nope"):  # removed already, or never there
        with pytest.raises(QuietError, match="no active silence or acknowledgement has the id"):
            removal(after, gone, "alice", NOW + 62)
    with pytest.raises(QuietError):  # an expired one is not active
        removal(Quiet((s,)), s.id, "alice", s.ends)


@given(acked=st.sampled_from(["notice", "warning", "critical", "unreachable"]),
       level=st.sampled_from([*LEVELS, "unreachable"]))
@example(acked="warning", level="critical")
def test_a_check_ends_exactly_the_acks_ending_says_and_only_those(acked, level):
    running = new_ack("host:t440", acked, "", "bob", "a1", NOW)
    finished = finish(new_ack("host:t440", acked, "", "bob", "a0", NOW - 90), "resolved", NOW - 60)
    after, ended = ended_acks([finished, running], {"host:t440": level}, NOW)
    why = ending(running, level, NOW)
    assert after[0] == finished
    assert ended == ([after[1]] if why else []) and after[1].ended_why == why


def test_the_list_has_what_holds_now_and_with_everything_what_ended_too():
    active, gone = silence(hosts=("t440",)), silence(pools=("shared",))
    from dataclasses import replace

    gone = replace(gone, id="00000000", removed=NOW + 5)
    ack = new_ack("host:t440", "warning", "", "bob", "a1", NOW)
    resolved = finish(new_ack("pool:shared", "notice", "", "bob", "a2", NOW), "resolved", NOW + 5)
    quiet = Quiet((active, gone), (ack, resolved), (window("00:00-24:00"), window("sun 02:00-04:00")))
    now = NOW + 10  # a Tuesday
    assert [(r.kind, r.id, r.status, r.ends) for r in listed(quiet, now, False)] == [
        ("silence", active.id, "active", active.ends), ("ack", "a1", "active", None),
        ("maintenance", "w", "active", at("2026-12-02T00:00"))]
    assert [(r.id, r.status) for r in listed(quiet, now, True)] == [
        (active.id, "active"), ("00000000", "removed"), ("a1", "active"), ("a2", "resolved"), ("w", "active")]


def test_a_period_has_what_held_at_some_moment_of_it_and_a_window_that_ended_in_it():
    from dataclasses import replace

    before = replace(silence(hosts=("t440",)), id="before", starts=NOW - 7200, ends=NOW - 3600)  # ends at `since`
    inside = replace(silence(hosts=("t440",)), id="inside", starts=NOW - 3000, ends=NOW - 2000)
    later = replace(silence(hosts=("t440",)), id="later", starts=NOW + 60)  # made ahead, starts after `now`
    ack = finish(new_ack("host:t440", "warning", "", "bob", "a1", NOW - 7200), "resolved", NOW - 1800)
    morning, evening = window("11:00-11:30"), replace(window("20:00-21:00"), name="evening")  # NOW is 12:00 UTC
    rows = of_period(Quiet((before, inside, later), (ack,), (morning, evening)), NOW - 3600, NOW)
    assert [(r.id, r.status, r.ends) for r in rows] == [
        ("inside", "expired", NOW - 2000), ("a1", "resolved", NOW - 1800), ("w", "ended", at("2026-12-01T11:30"))]
