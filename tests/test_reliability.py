"""The reliability suite: gateway faults, crashes, overlapping runs, a broken state dir, clock jumps.

Each test states its fault, repeats it `trials(ci, soak)` times where chance plays a part
(GUARDIAN_SOAK=1 runs the soak's count), and asserts on what was kept: state that parses, an audit
log without a torn line, no session closed that the plan did not choose, no alert sent twice.
docs/reliability.md has the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import read_state, trials
from fake_gateway import _now_ms as fake_gateway_clock

from guardian.adapters.audit import AuditLog
from guardian.adapters.state import State
from guardian.commands import check as checking
from guardian.commands import cleanup as cleaning
from guardian.core.planner import clock_skew_refusal
from guardian.settings.load import load

H = 3600 * 1000  # an hour in ms


def seed(gateway, idle=0, fresh=0, protected=0):
    """Idle sessions (3 h), fresh ones, and idle ones under a protected label: (idle, keep) rows."""
    now = int(time.time() * 1000)
    idle_rows = [gateway.add_session(updated_at=now - 3 * H) for _ in range(idle)]
    keep = [gateway.add_session(updated_at=now) for _ in range(fresh)]
    keep += [gateway.add_session(updated_at=now - 5 * H, label="keep-me") for _ in range(protected)]
    return idle_rows, keep


def audit_lines(state_dir: Path) -> list[dict]:
    """Every line of the audit log, each required to be whole: no torn line, whatever was killed."""
    path = state_dir / "audit.jsonl"
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the audit log ends in a torn line"
    return [json.loads(line) for line in data.splitlines()]


def closed_keys(state_dir: Path, host: str | None = None) -> list[str]:
    return [r["key"] for r in audit_lines(state_dir)
            if r["event"] == "outcome" and r["result"] == "closed" and (host is None or r["host"] == host)]


def readable(gw) -> bool:
    """The real gateway answers a listing (it refuses reads for a while after bulk writes)."""
    from conftest import list_rows

    from guardian.adapters.gateway import GatewayError

    try:
        list_rows(gw)
    except GatewayError:
        return False
    return True


def guardian(*args) -> list[str]:
    return [sys.executable, "-m", "guardian", *map(str, args)]


# --- a gateway that misbehaves ------------------------------------------------------------------


def test_a_gateway_ten_times_slower_is_still_checked_and_cleaned(fakes, write_config, cli, state_dir):
    slow, usual = fakes(), fakes()
    slow.latency = 0.2  # the fake answers in ~2 ms, a real gateway in ~20: this is 10x a real one
    idle, keep = seed(slow, idle=4, fresh=3)
    seed(usual, fresh=5)
    config = write_config({"slow": {"url": slow.url, "token": "secret", "limit": 10},
                           "usual": {"url": usual.url, "token": "secret", "limit": 10}})
    report = json.loads(cli("check", "--config", config, "--json").stdout)
    assert [(h["name"], h["sessions"]) for h in report["hosts"]] == [("slow", 7), ("usual", 5)]
    result = cli("cleanup", "--config", config, "--json")
    assert result.exit_code == 0 and set(slow.sessions) == {r["key"] for r in keep}
    assert sorted(closed_keys(state_dir)) == sorted(r["key"] for r in idle)


@pytest.mark.parametrize("fault", ["close_after_challenge", "truncate_responses", "silent"])
def test_a_broken_gateway_costs_only_its_own_result(fault, fakes, write_config, cli, receiver, monkeypatch, state_dir):
    broken, good = fakes(), fakes()
    setattr(broken, fault, True)
    seed(broken, idle=2)
    good_idle, _ = seed(good, idle=3, fresh=6)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"broken": {"url": broken.url, "token": "secret", "limit": 10, "timeout": "1s"},
                           "good": {"url": good.url, "token": "secret", "limit": 10}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}], "unreachable_after": 1})
    checked = cli("check", "--config", config, "--json")
    hosts = {h["name"]: h for h in json.loads(checked.stdout)["hosts"]}
    assert hosts["good"]["sessions"] == 9 and hosts["good"]["level"] == "critical"
    assert hosts["broken"]["reachable"] is False and "Traceback" not in checked.stderr
    ((alerted),) = [b["alerts"] for b in receiver.bodies]
    assert {(a["subject"], a["reason"]) for a in alerted} == {
        ("host:good", "escalated"),
        ("host:broken", "unreachable"),
    }
    cleaned = cli("cleanup", "--config", config, "--json")
    assert cleaned.exit_code == 3 and len(broken.sessions) == 2
    assert sorted(closed_keys(state_dir)) == sorted(r["key"] for r in good_idle)


def test_a_restart_in_the_middle_of_a_cleanup(fakes, write_config, cli, state_dir):
    """The gateway restarts (shutdown event, close 1012) while a delete waits: the run ends, the other
    host is cleaned, the audit says what was closed, and the rerun closes the rest, nothing twice."""
    restarting, other = fakes(), fakes()
    idle, keep = seed(restarting, idle=6, fresh=2)
    seed(other, idle=3)
    deletes, stopping = [], []

    def restart_on_the_third_delete(method, params):
        if method == "sessions.delete":
            deletes.append(params["key"])
            if len(deletes) == 3:
                restarting.delete_latency = 30  # this delete is still waiting when the gateway stops
                stopping.append(threading.Thread(target=restarting.stop))
                stopping[0].start()

    restarting.on_request = restart_on_the_third_delete
    config = write_config({"restarting": {"url": restarting.url, "token": "secret", "limit": 100},
                           "other": {"url": other.url, "token": "secret", "limit": 100}})
    first = cli("cleanup", "--config", config, "--json")
    assert first.exit_code == 1
    report = {h["name"]: h for h in json.loads(first.stdout)["hosts"]}
    assert "code 1012" in report["restarting"]["error"] and report["other"]["closed"] == 3
    results = {
        r["key"]: r["result"] for r in audit_lines(state_dir) if r["event"] == "outcome" and r["host"] == "restarting"
    }
    assert list(results.values()) == ["closed", "closed", "unknown", "failed", "failed", "failed"]
    assert {k for k, v in results.items() if v == "closed"} == {r["key"] for r in idle} - set(restarting.sessions)

    restarting.on_request, restarting.delete_latency = None, 0.0
    stopping[0].join()
    restarting.start()  # same port, same sessions
    again = cli("cleanup", "--config", config, "--json")
    assert again.exit_code == 0 and set(restarting.sessions) == {r["key"] for r in keep}
    closed = closed_keys(state_dir)
    assert len(closed) == len(set(closed)) == 9


# --- SIGKILL at random points ---------------------------------------------------------------------


def kill_at_random_points(command: list[str], runs: int, rng: random.Random, between=None) -> list[float]:
    """Run `command` `runs` times, each killed (SIGKILL) after a random part of one whole run's time."""
    started = time.monotonic()
    subprocess.run(command, capture_output=True, timeout=120)  # one whole run: the span to kill within
    span = time.monotonic() - started
    delays = []
    for _ in range(runs):
        if between:
            between()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delays.append(rng.uniform(0, span))
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(delays[-1])
        process.send_signal(signal.SIGKILL)
        process.wait()
    return delays


def test_sigkill_of_check_never_leaves_corrupt_state(fake, write_config, state_dir, receiver, monkeypatch):
    seed(fake, fresh=85)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}],
                                  "cooldown": {"warning": "1ms"}})  # every run decides, delivers and writes
    rng = random.Random(8)

    def vary_the_count():  # 85 or 86 sessions: each run has something new to record
        if rng.random() < 0.5:
            fake.add_session() if len(fake.sessions) == 85 else fake.sessions.popitem()

    kill_at_random_points(guardian("check", "--config", config, "-q"), trials(12, 200), rng, vary_the_count)
    State.from_json((state_dir / "state.json").read_text())  # parses, every field known
    audit_lines(state_dir)
    assert not list(state_dir.glob("state.json.corrupt-*"))
    # and a run after all that is a normal run
    assert subprocess.run(guardian("check", "--config", config, "-q"), capture_output=True).returncode == 1
    assert read_state(state_dir)["subjects"]["host:a"]["count"] == len(fake.sessions)
    assert not list(state_dir.glob(".state.json.*.tmp"))  # what killed runs left half-written is cleared


def test_sigkill_of_cleanup_closes_only_what_the_plan_chose(fake, write_config, state_dir):
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 1000}},
                          cleanup={"protect": {"labels": ["keep-me"]}, "max_per_run": 10_000})
    fake.delete_latency = 0.005  # deletes spread over the run, as on a real gateway
    seeded_idle, keep = [], []

    def more_sessions():
        idle, kept = seed(fake, idle=8, fresh=2, protected=1)
        seeded_idle.extend(r["key"] for r in idle)
        keep.extend(r["key"] for r in kept)

    rng = random.Random(80)
    runs = trials(12, 200)
    kill_at_random_points(guardian("cleanup", "--config", config, "-q"), runs, rng, more_sessions)
    intents = {r["key"] for r in audit_lines(state_dir) if r["event"] == "intent"}
    gone = set(seeded_idle) - set(fake.sessions)
    assert set(keep) <= set(fake.sessions)  # never a fresh or protected session
    assert gone <= intents  # every session closed had its intent on record before the delete
    assert set(closed_keys(state_dir)) <= gone
    # a run to the end completes the cleanup, and nothing was ever closed twice
    assert subprocess.run(guardian("cleanup", "--config", config, "-q"), capture_output=True).returncode == 0
    assert set(fake.sessions) == set(keep)
    closed = closed_keys(state_dir)
    assert len(closed) == len(set(closed))


# --- many runs at once ------------------------------------------------------------------------------


def test_overlapping_checks_lose_nothing_and_send_each_alert_once(fake, write_config, state_dir, receiver, monkeypatch):
    """cron catching up after a suspend: all runs start together. Run i checks host i % hosts (all
    served by one fake gateway), so each host is checked by two runs at once.

    Every run either completes, or gives up at the lock timeout with one sentence, exit 3 and
    nothing sent (on 2 busy cores, 200 Python start-ups starve the runs holding the lock). What a
    completed run decided is all kept: its sample, its host's state, its alert, each exactly once.
    """
    runs = trials(40, 200)
    hosts = runs // 2
    seed(fake, fresh=85)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({f"h{i}": {"url": fake.url, "token": "secret", "limit": 100} for i in range(hosts)},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    processes = [subprocess.Popen(guardian("check", "--config", config, "--hosts", f"h{i % hosts}", "-q"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(runs)]
    finished = [(i % hosts, p.wait(), p.stderr.read()) for i, p in enumerate(processes)]
    completed = [(host, err) for host, code, err in finished if code == 1]
    gave_up = [err for _, code, err in finished if code == 3]
    assert len(completed) + len(gave_up) == runs, [err for _, code, err in finished if code not in (1, 3)][:2]
    assert [err for err in gave_up if not err.startswith("guardian: another guardian run has held")
            or err.count("\n") != 1] == []
    alerted = {host for host, _ in completed}
    subjects = read_state(state_dir)["subjects"]
    assert {s: (e["level"], e["count"]) for s, e in subjects.items()} == {
        f"host:h{i}": ("warning", 85) for i in alerted
    }
    delivered = [a["subject"] for body in receiver.bodies for a in body["alerts"]]
    assert sorted(delivered) == sorted(f"host:h{i}" for i in alerted)  # each once
    stderr_alerts = [line for _, err in completed for line in err.splitlines() if line.startswith("guardian alert:")]
    assert len(stderr_alerts) == len(alerted)
    recorded = [r for r in audit_lines(state_dir) if r["event"] == "alert" and r["channel"] == "webhook-1"]
    assert len(recorded) == len(alerted)
    with sqlite3.connect(state_dir / "history.db") as db:
        assert db.execute("select count(*) from samples").fetchone()[0] == len(completed)  # every sample kept
    print(f"overlapping checks: {runs} runs, {len(completed)} completed, {len(gave_up)} gave up at the lock timeout")


def test_a_run_that_cannot_get_the_lock_shows_what_it_saw_and_tells_no_one(fake, write_config, cli, state_dir, receiver,
                                                                            monkeypatch):
    import fcntl

    from guardian.adapters import state

    seed(fake, fresh=95)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    monkeypatch.setattr(state, "LOCK_TIMEOUT", 0.2)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    state_dir.mkdir()
    with open(state_dir / "state.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another run, busy deciding
        result = cli("check", "--config", config, "--format", "plain")
    assert result.exit_code == 2 and result.stdout.startswith("a 95% (95/100) critical")
    assert result.stderr == (f"guardian: another guardian run has held {state_dir}/state.lock for over 0.2s; "
                             f"giving up this run\n")
    assert not receiver.requests and not (state_dir / "state.json").exists()


# --- a state dir that cannot be written -------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """mount(options) -> a tmpfs mounted for this test (root only), unmounted after it."""
    mounted = []

    def mount(options: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    if os.geteuid() != 0:
        pytest.fail("the full-disk and read-only tests mount a tmpfs and need root (CI has it)")
    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def fill(point: Path) -> None:
    with contextlib.suppress(OSError), open(point / "filler", "wb") as handle:
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()


@pytest.mark.parametrize("broken", ["read-only", "full"])
def test_a_state_dir_that_cannot_be_written(
    broken, small_disk, fake, tmp_path, write_config, cli, receiver, monkeypatch
):
    seed(fake, idle=2, fresh=90)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    point = small_disk("size=2m,mode=0700")
    state_dir = point / "state"
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    config_text = Path(config).read_text().replace(str(tmp_path / "state"), str(state_dir))
    Path(config).write_text(config_text)
    if broken == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    else:
        state_dir.mkdir()
        fill(point)
    checked = cli("check", "--config", config, "--format", "plain")
    assert checked.exit_code == 2  # critical: the alert still counts
    assert "guardian alert: CRITICAL a 92% (92/100), up from ok" in checked.stderr  # alerting reaches stderr
    assert "a 92% (92/100) critical" in checked.stdout
    error = checked.stderr.strip().splitlines()[-1]
    assert error == {"read-only": f"guardian: cannot use the state dir {state_dir} (Read-only file system)",
                     "full": f"guardian: cannot use the state dir {state_dir}: only 0 KiB free (No space left on "
                             f"device, 1024 KiB needed); alerts go to stderr only until there is room"}[broken]
    assert "Traceback" not in checked.stderr
    cli("check", "--config", config, "-q")
    assert not receiver.bodies  # without a memory to keep, no channel is told the same thing every run
    cleaned = cli("cleanup", "--config", config)
    assert cleaned.exit_code == 3 and len(fake.sessions) == 92  # no delete without its record
    assert cleaned.stderr.startswith("guardian: cannot ") and "Traceback" not in cleaned.stderr


AUDIT_FAULTS = ["another owner", "a directory", "read-only", "full"]


def break_audit_log(fault: str, state_dir: Path, small_disk) -> list[str]:
    """Make state_dir/audit.jsonl unusable by `fault`; the command prefix that runs the guardian under it.

    "another owner": root's file after a `sudo guardian cleanup`, seen by a guardian without root's
    override of file modes (the tests run as root: setpriv drops it); "read-only" and "full": the log
    on a tmpfs mounted so, with the rest of the state dir writable.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "audit.jsonl"
    if fault == "another owner":
        path.write_text('{"event":"outcome"}\n')
        os.chown(path, 65534, 65534)
        path.chmod(0o600)
        return ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    if fault == "a directory":
        path.mkdir()
        return []
    disk = small_disk("size=64k,mode=0700")
    (disk / "audit.jsonl").touch()  # empty: no page of its own to append into when the disk is full
    path.symlink_to(disk / "audit.jsonl")
    if fault == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    else:
        fill(disk)
    return []


@pytest.mark.parametrize("fault", AUDIT_FAULTS)
def test_an_audit_log_that_cannot_be_used_costs_no_alert(fault, small_disk, fake, write_config, state_dir, receiver,
                                                         monkeypatch):
    """check still delivers, remembers and exits by its verdict, and says so in one line per run: no
    resend on the next run, no lost alert, no traceback. Its on_critical cleanup closes nothing (no
    delete without its record)."""
    seed(fake, idle=5, fresh=80)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]},
                          cleanup={"on_critical": True})
    prefix = break_audit_log(fault, state_dir, small_disk)

    def check() -> tuple[int, list[str]]:
        """Its exit code, and its stderr lines other than the alert lines: at most one."""
        done = subprocess.run(prefix + guardian("check", "--config", config, "-q"), capture_output=True, text=True)
        problems = [line for line in done.stderr.splitlines() if not line.startswith("guardian alert: ")]
        assert len(problems) <= 1 and "Traceback" not in done.stderr, done.stderr
        return done.returncode, problems

    code, (problem,) = check()  # 85 %: warning, told and remembered though the log cannot have it
    assert code == 1 and "audit.jsonl" in problem
    assert [a["level"] for b in receiver.bodies for a in b["alerts"]] == ["warning"]
    assert read_state(state_dir)["subjects"]["host:a"]["channels"]["webhook-1"]["level"] == "warning"
    assert check()[0] == 1 and len(receiver.bodies) == 1  # not sent again within the cooldown
    for _ in range(10):
        fake.add_session()
    code, (problem,) = check()  # 95 %: critical, told at once
    assert code == 2 and [a["level"] for b in receiver.bodies for a in b["alerts"]] == ["warning", "critical"]
    assert receiver.bodies[-1]["alerts"][0]["closed_now"] is None and len(fake.sessions) == 95
    assert "no cleanup closes a session" in problem


# --- clock jumps ------------------------------------------------------------------------------------


def test_clock_jumps_cause_no_alert_storm(fake, write_config):
    """Runs every 30 s at critical (cooldown 5 min) while the clock jumps back 3 h, then forward 6 h:
    a repeat every 5 min of the clock as the runs see it, never more, and none held back for hours."""
    seed(fake, fresh=95)
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}}))
    t0 = 1_800_000_000.0
    sent = []
    for phase, start in (("before", t0), ("back 3h", t0 + 600 - 3 * 3600), ("forward 6h", t0 + 6 * 3600)):
        for step in range(20):  # ten minutes of runs
            report = checking.run(config, None, now=start + 30 * step)
            sent += [(phase, step, line.reason) for d in report.deliveries for line in d.lines]
    assert sent == [("before", 0, "escalated"), ("before", 10, "repeat"),
                    ("back 3h", 10, "repeat"),  # within one cooldown of the jump, not 3 h later
                    ("forward 6h", 0, "repeat"), ("forward 6h", 10, "repeat")]


def test_cleanup_refuses_when_the_gateway_clock_is_far_from_ours(fake, write_config, cli, state_dir):
    idle, _ = seed(fake, idle=3)
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}}))
    rules = config.cleanup
    now = 1_800_000_000.0
    for jump in (-3 * 3600, 3 * 3600):  # our clock moved; the gateway's did not
        fake.clock = lambda: int((now - jump) * 1000)
        (report,) = cleaning.run(
            config, list(config.hosts.values()), rules, now, False, AuditLog(state_dir, "r", "cleanup")
        )
        assert len(fake.sessions) == 3 and report.closed == 0
        assert f"the gateway's clock is 3h {'behind' if jump > 0 else 'ahead of'} this machine's" in report.error
    assert [r["event"] for r in audit_lines(state_dir)] == ["host refused", "host refused"]
    fake.clock = fake_gateway_clock
    result = cli("cleanup", "--config", config.path, "--format", "plain")  # the clocks agree again
    assert result.exit_code == 0 and not fake.sessions


@pytest.mark.parametrize("gateway_ms, now, refused", [
    (1_800_000_000_000, 1_800_000_000.0, False),
    (1_800_000_000_000 + 299_000, 1_800_000_000.0, False),
    (1_800_000_000_000 + 301_000, 1_800_000_000.0, True),
    (1_800_000_000_000 - 301_000, 1_800_000_000.0, True),
    (None, 1_800_000_000.0, False),  # a gateway without `ts` is taken at its word
    ("soon", 1_800_000_000.0, False),
])
def test_clock_skew_bound(gateway_ms, now, refused):
    assert bool(clock_skew_refusal(gateway_ms, now)) is refused


@pytest.mark.real_gateway
def test_a_real_gateway_restarting_in_the_middle_of_a_cleanup(tmp_path, write_config, state_dir):
    """SIGTERM to a real gateway while a cleanup deletes: the run ends at once with an exact record,
    and after the restart (same port, same state) a rerun closes the rest, nothing twice."""
    import peer
    from conftest import create_sessions, list_rows, wait_until

    gw = peer.start("restarting", state_root=tmp_path / "gateway-state")
    try:
        keys = set(create_sessions(gw, 150))
        # After bulk writes the gateway refuses reads for a few seconds ("worker task capacity reached",
        # UNAVAILABLE without retryable): this test is about the restart, so it starts once reads work.
        wait_until(lambda: readable(gw), timeout=60, what="the gateway to take reads after 150 creates")
        config = write_config({"restarting": {"url": gw.url, "token": gw.token, "limit": 1000}},
                              cleanup={"max_per_run": 1000, "mode": "delete"})  # deletes take long enough
        command = guardian("cleanup", "--config", config, "--idle-after", "1ms", "--json")
        running = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: len(closed_keys(state_dir)) >= 3 or running.poll() is not None, timeout=60,
                   what="the first deletes")
        assert running.poll() is None, f"the cleanup ended before the restart: {running.communicate()}"
        gw.stop()  # SIGTERM: a shutdown event, then close 1012
        stdout, _ = running.communicate(timeout=60)
        assert running.returncode == 1
        (host,) = json.loads(stdout)["hosts"]
        assert host["error"] and 3 <= host["closed"] < len(keys)
        first = set(closed_keys(state_dir))

        gw = peer.start("restarting", port=gw.port, token=gw.token, state_root=tmp_path / "gateway-state")
        left = {r["key"] for r in list_rows(gw)}
        assert not first & left  # what the audit says was closed is gone
        again = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert not {r["key"] for r in list_rows(gw)} & keys
        closed = closed_keys(state_dir)
        assert len(closed) == len(set(closed)) and set(closed) <= keys
    finally:
        gw.stop()


# --- several device hosts on the first run -----------------------------------------------------------


def test_device_hosts_polled_at_once_on_a_fresh_state_dir_share_one_identity(fakes, tmp_path, monkeypatch):
    """Many gateways with `device: true`, a state dir without an identity, every host polled at once:
    every gateway is shown the same device, and every device token a gateway issued is kept."""
    gateways = [fakes() for _ in range(8)]
    for index in range(trials(6, 50)):
        state_dir = tmp_path / f"state{index}"
        monkeypatch.setenv("TOKEN", "secret")
        config_path = tmp_path / f"guardian{index}.yaml"
        config_path.write_text(json.dumps({
            "state_dir": str(state_dir),
            "hosts": {f"h{n}": {"url": g.url, "token_env": "TOKEN", "limit": 10, "device": True}
                      for n, g in enumerate(gateways)}}))
        report = checking.run(load(str(config_path)), None, now=time.time(), act=False)
        assert [s.error for s in report.subjects] == [None] * len(gateways)
        (device_id,) = {g.connects[-1]["params"]["device"]["id"] for g in gateways}
        assert json.loads((state_dir / "identity" / "device.json").read_text())["deviceId"] == device_id
        tokens = json.loads((state_dir / "identity" / "device-tokens.json").read_text())
        assert {host: entry["token"] for host, entry in tokens.items()} == {
            f"h{n}": g.paired_devices[device_id]["deviceToken"] for n, g in enumerate(gateways)}
        assert not list((state_dir / "identity").glob(".*.tmp"))


def test_threads_replacing_one_file_at_once_each_write_it_whole(tmp_path):
    """files.write_private from many threads at once: no thread fails, the file is one of theirs, whole."""
    from guardian.adapters import gateway
    from guardian.adapters.files import write_private

    path = tmp_path / "private" / "shared.json"
    texts = [json.dumps({"writer": n, "padding": "x" * 10_000}) for n in range(16)]
    for _ in range(trials(5, 50)):
        results = gateway.concurrently(lambda text: write_private(path, text), texts)
        assert results == [None] * len(texts)
        assert path.read_text() in texts and path.stat().st_mode & 0o777 == 0o600
        assert not list(path.parent.glob(".*.tmp"))


def test_runs_making_the_identity_at_once_agree_on_one(tmp_path):
    """A check and a cleanup (two stores on one state dir) on the first run: one identity, made once."""
    from guardian.adapters import gateway
    from guardian.adapters.identity import IdentityStore

    for index in range(trials(5, 50)):
        stores = [IdentityStore(tmp_path / f"state{index}") for _ in range(8)]
        identities = gateway.concurrently(lambda store: store.identity(), stores)
        assert len({identity.device_id for identity in identities}) == 1, identities
