"""`guardian cleanup` and maintenance windows with `cleanup: false` (issue 16): their hosts are left alone."""

import json
import time

from guardian.adapters import audit

H = 3600 * 1000
WINDOW = {"name": "upgrade", "hosts": ["a"], "when": "00:00-24:00", "tz": "Asia/Tokyo", "cleanup": False}


def idle_sessions(gateway, count: int) -> set[str]:
    return {gateway.add_session(updated_at=int(time.time() * 1000) - 5 * H)["key"] for _ in range(count)}


def test_a_host_in_a_window_with_cleanup_false_is_skipped_with_its_reason_and_no_session_touched(
    fakes, write_config, cli, state_dir
):
    held, other = fakes(), fakes()
    kept, closable = idle_sessions(held, 3), idle_sessions(other, 2)
    config = write_config({"a": {"url": held.url, "token": "secret", "limit": 10},
                           "b": {"url": other.url, "token": "secret", "limit": 10}},
                          maintenance=[WINDOW, {"hosts": ["b"], "when": "00:00-24:00"}])  # b's window lets it run
    result = cli("cleanup", "--config", config, "--json")
    assert result.exit_code == 0, result.stderr
    hosts = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
    assert hosts["a"]["status"] == "held" and hosts["a"]["closed"] == 0 and hosts["a"]["error"] is None
    assert hosts["a"]["held_by"]["kind"] == "maintenance" and hosts["a"]["held_by"]["id"] == "upgrade"
    assert hosts["a"]["held_by"]["text"].startswith("in maintenance (upgrade) until ")
    assert set(held.sessions) == kept and not held.requests  # not even listed
    assert hosts["b"]["closed"] == 2 and not set(other.sessions) & closable
    (skipped,) = [r for r in audit.read(state_dir) if r["event"] == "host held"]
    assert (skipped["host"], skipped["held_by"], skipped["id"]) == ("a", "maintenance", "upgrade")
    assert skipped["why"].startswith("in maintenance (upgrade) until ")
    plain = cli("cleanup", "--config", config, "--format", "plain", "--dry-run").stdout
    assert "a: not cleaned: in maintenance (upgrade) until " in plain


def test_check_s_on_critical_leaves_such_a_host_alone_too(fake, write_config, cli):
    kept = idle_sessions(fake, 10)  # 100 %: critical
    config = write_config({"a": {"url": fake.url, "token": "secret", "limit": 10}},
                          cleanup={"on_critical": True}, maintenance=[WINDOW])
    result = cli("check", "--config", config, "--json")
    assert result.exit_code == 2 and set(fake.sessions) == kept
