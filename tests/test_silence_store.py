"""silences.json and the commands that change it: `guardian silence add/list/remove`, `guardian ack` (issue 16)."""

import json
import os
import time

import pytest

from guardian.adapters import audit, state
from guardian.adapters.silences import KEEP, Book, SilenceFile
from guardian.adapters.state import StateBusy, StateFile
from guardian.core.quiet import Ack, Silence
from guardian.settings.model import Scope

HOSTS = {"t440": {"url": "ws://127.0.0.1:18789", "limit": 60}, "pc-a": {"url": "ws://127.0.0.1:18790", "limit": 40}}
POOLS = {"shared": {"hosts": ["t440", "pc-a"], "limit": 80}}
OPS = {"type": "command", "name": "ops", "command": ["/bin/true"]}


@pytest.fixture
def config(write_config, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("SUDO_USER", raising=False)
    path = write_config(HOSTS, pools=POOLS, alerts={"max_silence": "1d", "channels": [OPS]},
                        maintenance=[{"name": "sunday", "hosts": ["pc-a"], "when": "00:00-24:00", "tz": "Asia/Tokyo"}])
    monkeypatch.setenv("GUARDIAN_CONFIG", path)
    return path


def book_of(state_dir) -> dict:
    return json.loads((state_dir / "silences.json").read_text())


def records(state_dir, event) -> list[dict]:
    return [r for r in audit.read(state_dir) if r["event"] == event]


# --- the file --------------------------------------------------------------------------------------


def sample_book(now: float) -> Book:
    return Book([Silence("s1", Scope(hosts=("t440",), alerts=("usage",)), now, now + 60, "load test", "alice")],
                [Ack("a1", "host:t440", "critical", "on it", "bob", now, ends=None)])


def test_the_book_is_written_and_read_back_exactly(state_dir):
    now = time.time()
    store = SilenceFile(state_dir)
    store.write(sample_book(now), now)
    assert SilenceFile(state_dir).read() == sample_book(now)
    assert (state_dir / "silences.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 2, "silences": [], "acks": []}',
                                  '{"version": 1, "silences": [{"id": "x"}], "acks": []}',
                                  '{"version": 1, "silences": [], "acks": [], "extra": 1}',
                                  '{"version": 1, "silences": [], "acks": [{"id": "a", "subject": "host:t",'
                                  ' "level": "loud", "reason": "", "by": "b", "made": 1, "ends": null, "ended": null,'
                                  ' "ended_why": null}]}'])
def test_a_corrupt_file_is_moved_aside_with_a_warning_and_holds_nothing(state_dir, text):
    state_dir.mkdir()
    (state_dir / "silences.json").write_text(text)
    store = SilenceFile(state_dir)
    assert store.read() == Book()
    assert "was corrupt" in store.warnings[0] and "moved it to silences.json.corrupt-" in store.warnings[0]
    assert not (state_dir / "silences.json").exists()
    assert [p.read_text() for p in state_dir.glob("silences.json.corrupt-*")] == [text]


def test_a_silence_with_a_hand_edited_time_of_text_is_corrupt(state_dir):
    now = time.time()
    SilenceFile(state_dir).write(sample_book(now), now)
    data = book_of(state_dir)
    data["silences"][0]["ends"] = "tomorrow"
    (state_dir / "silences.json").write_text(json.dumps(data))
    store = SilenceFile(state_dir)
    assert store.read() == Book() and "Silence.ends is 'tomorrow'" in store.warnings[0]


def test_an_unreadable_file_holds_nothing_with_a_warning_and_never_raises(state_dir):
    (state_dir / "silences.json").mkdir(parents=True)  # reading it fails whoever we are, root included
    store = SilenceFile(state_dir)
    assert store.read() == Book()
    assert store.warnings == [f"cannot read {state_dir / 'silences.json'} (Is a directory); alerts go out unsilenced"]


def test_a_change_refuses_to_write_over_a_file_it_could_not_read(state_dir, config, cli):
    (state_dir / "silences.json").mkdir(parents=True)
    result = cli("silence", "add", "--hosts", "t440", "--for", "1h", "--reason", "x")
    assert result.exit_code == 3
    silences = state_dir / "silences.json"
    assert result.stderr == f"guardian: cannot read {silences} (Is a directory); nothing was changed\n"


def test_entries_that_ended_over_a_week_ago_are_dropped_on_write(state_dir):
    now = time.time()
    old, recent = now - KEEP - 60, now - KEEP + 60
    book = Book([Silence("old", Scope(hosts=("t440",)), old - 60, old, "x", "a"),
                 Silence("removed", Scope(hosts=("t440",)), old - 60, now + 60, "x", "a", removed=old),
                 Silence("recent", Scope(hosts=("t440",)), recent - 60, recent, "x", "a")],
                [Ack("ended", "host:t440", "warning", "", "a", old - 60, ended=old, ended_why="resolved"),
                 Ack("expired", "host:t440", "warning", "", "a", old - 60, ends=old),
                 Ack("sticky", "host:t440", "warning", "", "a", old - 60)])
    SilenceFile(state_dir).write(book, now)
    kept = SilenceFile(state_dir).read()
    assert [s.id for s in kept.silences] == ["recent"] and [a.id for a in kept.acks] == ["sticky"]


def test_a_change_waits_for_the_state_lock_and_gives_up_in_one_sentence(state_dir, config, cli, monkeypatch):
    monkeypatch.setattr(state, "LOCK_TIMEOUT", 0.2)
    with StateFile(state_dir).lock():
        with pytest.raises(StateBusy):
            with SilenceFile(state_dir).changing(time.time()):
                pass
        result = cli("silence", "add", "--hosts", "t440", "--for", "1h", "--reason", "x")
    assert result.exit_code == 3 and "another guardian run has held" in result.stderr
    assert not (state_dir / "silences.json").exists()


def test_state_locked_still_reads_and_writes_state_json_under_the_lock(state_dir, monkeypatch):
    monkeypatch.setattr(state, "LOCK_TIMEOUT", 0.2)
    with StateFile(state_dir).locked() as held:
        held.subjects["host:t440"] = state.SubjectState(level="warning")
        with pytest.raises(StateBusy):
            with StateFile(state_dir).lock():
                pass
    with StateFile(state_dir).locked() as read_back:
        assert read_back.subject("host:t440").level == "warning"


# --- the commands --------------------------------------------------------------------------------------


def test_silence_add_prints_the_id_stores_it_and_audits_who_when_why(state_dir, config, cli, monkeypatch):
    monkeypatch.setenv("SUDO_USER", "bob")
    result = cli("silence", "add", "--hosts", "t440,pc-a", "--alert", "usage", "--alert", "growth", "--for", "2h",
                 "--reason", "load test", "--channels", "")
    assert result.exit_code == 0, result.stderr
    silence_id = result.stdout.strip()
    (stored,) = book_of(state_dir)["silences"]
    assert stored["id"] == silence_id and stored["hosts"] == ["t440", "pc-a"]
    assert stored["alerts"] == ["usage", "growth"]
    assert stored["by"] == "bob" and stored["reason"] == "load test"
    assert stored["ends"] - stored["starts"] == 7200
    (record,) = records(state_dir, "silence")
    assert (record["action"], record["id"], record["by"], record["reason"]) == ("added", silence_id, "bob", "load test")


@pytest.mark.parametrize("args, problem", [
    (["--hosts", "t440", "--reason", "x"], "a silence needs an end"),
    (["--hosts", "t440", "--for", "2d", "--reason", "x"], r"longer than alerts.max_silence (1d)"),
    (["--hosts", "nope", "--for", "1h", "--reason", "x"], "--hosts names 'nope', which is not one of the hosts here"),
    (["--agents", "t440", "--for", "1h", "--reason", "x"], "--agents names 't440': write HOST/AGENT"),
    (["--agents", "nope/sales", "--for", "1h", "--reason", "x"],
     "--agents names 'nope/sales': write HOST/AGENT with a host of this config"),
    (["--for", "1h", "--reason", "x"], "names no hosts, pools or agents"),
    (["--hosts", "t440", "--until", "2020-01-01T00:00", "--reason", "x"], "which has passed"),
    (["--hosts", "t440", "--for", "1h", "--until", "2099-01-01", "--reason", "x"], "not both"),
])
def test_silence_add_refuses_in_one_sentence_and_exit_2(state_dir, config, cli, args, problem):
    result = cli("silence", "add", *args)
    assert result.exit_code == 2 and problem in result.stderr and len(result.stderr.splitlines()) == 1
    assert result.stdout == "" and not (state_dir / "silences.json").exists()


def test_silence_list_shows_active_ones_and_with_all_the_ended_ones_of_the_week(state_dir, config, cli):
    kept = cli("silence", "add", "--pools", "shared", "--for", "1h", "--reason", "migration").stdout.strip()
    gone = cli("silence", "add", "--agents", "t440/sales", "--for", "1h", "--reason", "import").stdout.strip()
    assert cli("silence", "remove", gone).stdout == f"silence {gone} removed\n"
    listed = json.loads(cli("silence", "list", "--json").stdout)["quiet"]
    assert [(r["id"], r["kind"], r["status"]) for r in listed] == [(kept, "silence", "active"),
                                                                   ("sunday", "maintenance", "active")]
    assert listed[0]["pools"] == ["shared"] and listed[0]["reason"] == "migration" and listed[0]["by"] == "alice"
    everything = json.loads(cli("silence", "list", "--json", "--all").stdout)["quiet"]
    assert {(r["id"], r["status"]) for r in everything} >= {(gone, "removed"), (kept, "active")}
    plain = cli("silence", "list").stdout
    assert kept in plain and "migration" in plain and gone not in plain
    assert [r["action"] for r in records(state_dir, "silence")] == ["added", "added", "removed"]


def test_an_agents_silence_holds_the_agent_subject_of_that_host_only(state_dir, config, cli):
    from guardian.core.quiet import Quiet, held_by
    from guardian.core.records import subject_id

    cli("silence", "add", "--agents", "t440/sales", "--for", "1h", "--reason", "import")
    quiet = Quiet(silences=tuple(SilenceFile(state_dir).read().silences))
    now = time.time()
    assert held_by(quiet, subject_id("agent", "t440/sales"), "growth", "ops", "notice", now).reason == "import"
    for other in (subject_id("agent", "pc-a/sales"), subject_id("agent", "t440/support"), subject_id("host", "t440")):
        assert held_by(quiet, other, "growth", "ops", "notice", now) is None


def test_silence_remove_of_an_unknown_id_says_so(state_dir, config, cli):
    result = cli("silence", "remove", "deadbeef")
    assert result.exit_code == 2
    assert result.stderr == ("guardian: no active silence or acknowledgement has the id 'deadbeef' "
                             "(guardian silence list)\n")


def seen(state_dir, subject: str, level: str, failures: int = 0) -> None:
    with StateFile(state_dir).locked() as held:
        held.subjects[subject] = state.SubjectState(level=level, failures=failures, count=50, checked_at=1.0)


def test_ack_acknowledges_the_level_state_json_holds_now(state_dir, config, cli):
    seen(state_dir, "host:t440", "critical")
    before = (state_dir / "state.json").read_text()
    result = cli("ack", "t440", "--reason", "on it")
    assert result.exit_code == 0, result.stderr
    ack_id = result.stdout.split(":")[0]
    assert result.stdout == f"{ack_id}: host:t440 acknowledged at critical\n"
    (stored,) = book_of(state_dir)["acks"]
    assert (stored["subject"], stored["level"], stored["reason"], stored["by"], stored["ends"]) == \
        ("host:t440", "critical", "on it", "alice", None)
    assert (state_dir / "state.json").read_text() == before  # read, never rewritten
    (record,) = records(state_dir, "ack")
    assert (record["action"], record["subject"], record["level"], record["by"]) == ("added", "host:t440", "critical",
                                                                                    "alice")


def test_ack_for_a_while_and_a_second_ack_replaces_the_first(state_dir, config, cli):
    seen(state_dir, "pool:shared", "warning")
    first = cli("ack", "shared").stdout.split(":")[0]
    second = cli("ack", "pool:shared", "--for", "4h").stdout.split(":")[0]
    acks = {a["id"]: a for a in book_of(state_dir)["acks"]}
    assert acks[first]["ended_why"] == f"replaced by {second}"
    assert acks[second]["ends"] - acks[second]["made"] == 4 * 3600 and acks[second]["ended"] is None


def test_ack_of_an_unreachable_host_acknowledges_that(state_dir, config, cli):
    seen(state_dir, "host:pc-a", "warning", failures=2)
    assert cli("ack", "pc-a").stdout.endswith("host:pc-a acknowledged at unreachable\n")


def test_ack_refuses_a_subject_at_ok_or_not_configured(state_dir, config, cli):
    result = cli("ack", "t440")
    assert (result.exit_code, result.stderr) == (2, "guardian: host:t440 is ok: there is nothing to acknowledge\n")
    result = cli("ack", "nope")
    assert result.exit_code == 2 and "'nope' is not a host, pool or HOST/AGENT of this config" in result.stderr


def test_ack_with_a_corrupt_state_json_says_so_and_leaves_it(state_dir, config, cli):
    state_dir.mkdir()
    (state_dir / "state.json").write_text("{")
    result = cli("ack", "t440")
    assert result.exit_code == 3 and "state.json is corrupt" in result.stderr
    assert (state_dir / "state.json").read_text() == "{"


def test_silence_list_says_in_one_line_each_what_holds_what_until_when_and_why(state_dir, config, cli):
    seen(state_dir, "host:t440", "critical")
    ack_id = cli("ack", "t440").stdout.split(":")[0]
    silence_id = cli("silence", "add", "--hosts", "pc-a", "--alert", "usage", "--channels", "ops", "--for", "1h",
                     "--reason", "upgrade").stdout.strip()
    silenced, acknowledged, window = cli("silence", "list").stdout.splitlines()
    assert silenced.startswith(f"{silence_id}  silence active  pc-a usage on ops  until 20")
    assert silenced.endswith("  by alice: upgrade")
    assert acknowledged == f"{ack_id}  ack active  host:t440 at critical  until the level changes  by alice: -"
    assert window.startswith("sunday  maintenance active  pc-a all alerts  until ")
    assert window.endswith("  00:00-24:00 Asia/Tokyo")


def test_an_ack_can_be_removed(state_dir, config, cli):
    seen(state_dir, "host:t440", "notice")
    ack_id = cli("ack", "t440").stdout.split(":")[0]
    assert cli("silence", "remove", ack_id).stdout == f"ack {ack_id} removed\n"
    (stored,) = book_of(state_dir)["acks"]
    assert stored["ended_why"] == "removed by alice"


def test_an_audit_log_that_cannot_take_the_record_is_a_warning_not_a_lost_silence(state_dir, config, cli):
    (state_dir / "audit.jsonl").mkdir(parents=True)
    result = cli("silence", "add", "--hosts", "t440", "--for", "1h", "--reason", "x")
    assert result.exit_code == 0 and "the silence is added, but the audit log did not record it" in result.stderr
    assert len(book_of(state_dir)["silences"]) == 1


def test_silence_and_ack_help_have_examples(cli):
    assert "guardian silence add --hosts t440 --for 2h" in cli("silence", "--help").stdout
    assert "guardian ack t440" in cli("ack", "--help").stdout


def test_the_state_dir_is_private(state_dir, config, cli):
    cli("silence", "add", "--hosts", "t440", "--for", "1h", "--reason", "x")
    assert os.stat(state_dir).st_mode & 0o777 == 0o700
