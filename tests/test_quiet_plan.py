"""What silences and acknowledgements do to the per-channel plan (issue 16), run after run with `now` passed in.

A held alert is decided as usual and held: not sent, its memory not advanced, so when the quiet ends the
channel hears what is still true once, never the repeats it missed. The log line is never held, only marked.
"""

import os
import re
import textwrap
from dataclasses import replace

from hypothesis import example, given
from hypothesis import strategies as st

from guardian.adapters.state import State
from guardian.core import policy
from guardian.core.plan import NO_QUIET, alertmanager_silences, log_channel, plan, remember
from guardian.core.quiet import UNREACHABLE, Quiet, Silence, ending, held_by, new_ack
from guardian.core.records import Reading, Subject
from guardian.settings.load import parse
from guardian.settings.model import Scope

os.environ.setdefault("GUARDIAN_TEST_QUIET_HOOK", "http://127.0.0.1:9/hook")  # the URL is a secret: never sent
CONFIG = parse(textwrap.dedent("""
    hosts: {t440: {url: "ws://127.0.0.1:18789", limit: 100}}
    alerts:
      channels: [{name: ops, type: webhook, url_env: GUARDIAN_TEST_QUIET_HOOK}]
"""), "g.yaml")
OPS = CONFIG.alerts.channels[0]
T0 = 1_800_000_000.0
HOUR = 3600.0


def check(state: State, count: int, now: float, quiet: Quiet = NO_QUIET):
    """One check of t440 at `count` of 100: (what ops was sent, what ops held, the log's lines); memories kept."""
    reading = Reading(count=count, limit=100, idle=0)
    current = policy.observe(state.subject("host:t440"), reading, CONFIG.alerts, now)
    state.subjects["host:t440"] = current
    subject = Subject("host", "t440", 100, reading, None, current.level, None)
    plans = plan(state, [subject], [log_channel(CONFIG), OPS], CONFIG, now, quiet)
    remember(plans, [None, None])
    log, ops = plans
    return ([(line.reason, line.level) for line in ops.message], [(line.reason, hold.id) for line, hold in ops.held],
            log.message)


def silence(ends: float) -> Quiet:
    return Quiet(silences=(Silence("s1", Scope(hosts=("t440",)), T0, ends, "load test", "ana"),))


def test_a_silence_holds_every_run_and_tells_critical_once_when_it_ends_still_critical():
    state, quiet = State(), silence(T0 + 5 * HOUR)
    for hour in range(5):  # critical all along: each repeat is held, none is replayed later
        sent, held, log = check(state, 95, T0 + hour * HOUR, quiet)
        assert sent == [] and held and held[0][1] == "s1"
        assert log and log[0].held.startswith("silenced by s1 until ")  # the log line is there, marked
    sent, held, _ = check(state, 95, T0 + 5 * HOUR, quiet)
    assert sent == [("escalated", "critical")] and held == []
    assert check(state, 95, T0 + 5 * HOUR + 60, quiet)[0] == []  # told once: the cooldown holds the next


def test_a_silence_that_ends_after_the_subject_resolved_tells_nothing():
    state, quiet = State(), silence(T0 + 2 * HOUR)
    check(state, 95, T0, quiet)
    assert check(state, 10, T0 + HOUR, quiet)[:2] == ([], [])  # never told critical: nothing to resolve
    assert check(state, 10, T0 + 2 * HOUR, quiet)[:2] == ([], [])


def test_an_alert_told_before_the_silence_resolves_once_after_it():
    state = State()
    assert check(state, 95, T0)[0] == [("escalated", "critical")]
    quiet = silence(T0 + 2 * HOUR)
    assert check(state, 10, T0 + HOUR, quiet)[:2] == ([], [("resolved", "s1")])
    assert check(state, 10, T0 + 2 * HOUR, quiet)[0] == [("resolved", "ok")]


def test_an_acknowledged_warning_is_quiet_until_it_rises_which_is_told_at_once_and_ends_it():
    state = State()
    assert check(state, 85, T0)[0] == [("escalated", "warning")]
    ack = new_ack("host:t440", "warning", "on it", "ana", "a1", T0 + 60)
    quiet = Quiet(acks=(ack,))
    for hour in range(1, 6):  # the warning's repeats stop
        sent, held, _ = check(state, 85, T0 + hour * HOUR, quiet)
        assert sent == []
    assert ending(ack, "critical", T0 + 6 * HOUR) == "rose to critical"
    assert check(state, 95, T0 + 6 * HOUR, quiet)[:2] == ([("escalated", "critical")], [])


def test_alertmanager_gets_a_silence_per_guardian_silence_or_ack_it_holds_there_and_none_for_another_channel():
    am = replace(OPS, name="am", type="alertmanager")
    subject = Subject("host", "t440", 100, Reading(95, 100, 0), None, "critical", None)
    elsewhere = Silence("s2", Scope(hosts=("t440",), channels=("ops",)), T0, T0 + HOUR, "only ops", "ana")
    ack = new_ack("host:t440", "critical", "", "ana", "a1", T0)
    (wanted,) = alertmanager_silences(Quiet(silences=(elsewhere,), acks=(ack,)), [subject], am, "guardian@box",
                                      T0 + 7 * 86400, T0 + 60)
    assert wanted["matchers"] == [  # an ack holds its level only: a rise pages at once
        {"name": "alertname", "value": "SessionUsageCritical", "isRegex": False, "isEqual": True},
        {"name": "host", "value": "t440", "isRegex": False, "isEqual": True}]
    assert (wanted["comment"], wanted["createdBy"]) == ("acknowledged at critical", "guardian@box")
    assert wanted["endsAt"] == "2027-01-22T08:00:00+00:00"  # a sticky ack: alerts.max_silence ahead, expired at its end


def silences_alert(silence: dict, labels: dict) -> bool:
    """Whether an Alertmanager silence mutes an alert with these labels (its regex matchers anchored, as there)."""
    return all(bool(re.fullmatch(m["value"], labels.get(m["name"], ""))) if m["isRegex"]
               else labels.get(m["name"], "") == m["value"] for m in silence["matchers"])


HOLDS = st.one_of(
    st.builds(lambda kinds, channels: Silence("s1", Scope(hosts=("t440",), alerts=kinds, channels=channels), T0,
                                              T0 + HOUR, "load test", "ana"),
              st.sampled_from([(), ("usage",), ("unreachable",), ("growth",)]),
              st.sampled_from([(), ("am",), ("ops",)])),
    st.builds(lambda level: new_ack("host:t440", level, "", "ana", "a1", T0),
              st.sampled_from(["notice", "warning", "critical", UNREACHABLE])))
# what the channel posts firing: a usage alert at a level, or the unreachable one
POSTED = st.sampled_from([("usage", "notice"), ("usage", "warning"), ("usage", "critical"),
                          ("unreachable", UNREACHABLE)])


@given(HOLDS, POSTED)
@example(new_ack("host:t440", "warning", "", "ana", "a1", T0), ("usage", "critical"))  # a rise is not muted
def test_alertmanager_mutes_exactly_the_alerts_the_guardian_holds(hold, posted):
    """Each alert the Alertmanager channel posts (issue 18's names, one a level) is muted there by the guardian's
    silences and acks exactly when the guardian holds it on its other channels (quiet.held_by): a silence holds
    every level of the kinds it names, an ack its own level only."""
    alert, level = posted
    quiet = Quiet(silences=(hold,)) if isinstance(hold, Silence) else Quiet(acks=(hold,))
    am = replace(OPS, name="am", type="alertmanager")
    subject = Subject("host", "t440", 100, Reading(95, 100, 0), None, "critical", None)
    wanted = alertmanager_silences(quiet, [subject], am, "guardian@box", T0 + 7 * 86400, T0 + 60)
    labels = ({"alertname": "SessionHostUnreachable", "host": "t440", "severity": "warning"} if alert == "unreachable"
              else {"alertname": f"SessionUsage{level.capitalize()}", "host": "t440", "severity": level})
    muted = any(silences_alert(silence, labels) for silence in wanted)
    assert muted == (held_by(quiet, "host:t440", alert, "am", level, T0 + 60) is not None)


def test_a_line_a_silence_does_not_name_is_told_once_even_when_one_beside_it_is_held():
    """A host back from an outage at critical under a usage-only silence: "reachable again" is told once and
    not replayed on every run, while the critical stays held until the silence ends (then told once)."""
    state, now = State(), T0
    check(state, 50, now)
    for _ in range(CONFIG.alerts.unreachable_after):  # down long enough to be told
        now += 60
        state.subjects["host:t440"] = policy.observe(state.subject("host:t440"), None, CONFIG.alerts, now)
        plans = plan(state, [Subject("host", "t440", 100, None, "refused", "ok", None)],
                     [log_channel(CONFIG), OPS], CONFIG, now)
        remember(plans, [None, None])
    assert state.memory("host:t440", OPS.name).unreachable
    usage_only = Quiet(silences=(Silence("s2", Scope(hosts=("t440",), alerts=("usage",)), T0, T0 + HOUR,
                                         "load test", "ana"),))
    sent, held, _ = check(state, 95, now + 60, usage_only)
    assert sent == [("reachable", "critical")] and held == [("escalated", "s2")]
    for minute in range(2, 6):  # neither replayed nor lost
        sent, held, _ = check(state, 95, now + minute * 60, usage_only)
        assert sent == [] and held == [("escalated", "s2")]
    assert check(state, 95, T0 + HOUR, usage_only)[0] == [("escalated", "critical")]


def test_a_silence_of_an_agent_holds_that_agent_subject_by_its_id_and_nothing_else():
    """`--agents t440/sales` holds the subject agent:t440/sales (records.subject_id), once agents are subjects."""
    from guardian.core.records import subject_id

    reading = Reading(count=95, limit=100, idle=0)
    subjects = [Subject(kind, name, 100, reading, None, "critical", None)
                for kind, name in (("host", "t440"), ("agent", "t440/sales"), ("agent", "t440/support"))]
    assert subjects[1].id == subject_id("agent", "t440/sales")

    def held(scope: Scope) -> tuple[list[str], list[str]]:
        quiet = Quiet(silences=(Silence("s1", scope, T0, T0 + HOUR, "import", "ana"),))
        state = State()
        for subject in subjects:
            state.subjects[subject.id] = policy.observe(state.subject(subject.id), reading, CONFIG.alerts, T0)
        (ops,) = plan(state, subjects, [OPS], CONFIG, T0, quiet)
        return [line.subject for line in ops.message], [line.subject for line, _ in ops.held]

    assert held(Scope(agents=("t440/sales",))) == (["host:t440", "agent:t440/support"], ["agent:t440/sales"])
    assert held(Scope(hosts=("t440",))) == ([], ["host:t440", "agent:t440/sales", "agent:t440/support"])
    assert held(Scope(agents=("t440/sales",), alerts=("growth",))) == ([s.id for s in subjects], [])
