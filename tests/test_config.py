"""Config loading: every error names the file, the line and the key."""

import os
import textwrap

import pytest

from guardian.config import ConfigError, load, parse, parse_duration


def cfg(text: str):
    return parse(textwrap.dedent(text), "g.yaml")


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        cfg(text)
    return str(info.value)


@pytest.fixture(autouse=True)
def token_env(monkeypatch):
    monkeypatch.setenv("PCA_TOKEN", "s3cret")


def test_full_example_loads_into_frozen_dataclasses(tmp_path):
    token_file = tmp_path / "t440.token"
    token_file.write_text("zq-file-secret\n")
    token_file.chmod(0o600)
    config = cfg(f"""
        hosts:
          pc-a:  {{url: "wss://pc-a.lan:18789", token_env: PCA_TOKEN, limit: 40}}
          t440:  {{url: "ws://127.0.0.1:18790", token_file: {token_file}, limit: 60}}
        pools:
          shared-key: {{hosts: [pc-a, t440], limit: 80}}
        alerts:
          thresholds: {{notice: 60, warning: 75, critical: 95}}
          cooldown: {{notice: 1h, warning: 10m, critical: 90s}}
        cleanup:
          idle_after: 3h
          protect: {{agents: [ops], keys: ["agent:*:telegram:*"]}}
          agents: {{batch: {{idle_after: 30m}}}}
        state_dir: {tmp_path}/state
        """)
    assert list(config.hosts) == ["pc-a", "t440"]
    pc_a, t440 = config.hosts.values()
    assert pc_a.token.reveal() == "s3cret" and pc_a.device and not pc_a.loopback
    assert t440.token.reveal() == "zq-file-secret" and not t440.device and t440.limit == 60
    assert "s3cret" not in repr(pc_a) and "zq-file-secret" not in repr(t440)
    assert config.pools["shared-key"].hosts == ("pc-a", "t440")
    assert config.alerts.thresholds == {"notice": 60, "warning": 75, "critical": 95}
    assert config.alerts.cooldown["critical"] == 90 and config.alerts.cooldown["unreachable"] == 900
    assert config.cleanup.idle_after == 3 * 3600 and config.cleanup.agent_idle_after == {"batch": 1800}
    assert config.cleanup.protect.keys == ("agent:*:telegram:*",)
    assert config.warnings == ()
    with pytest.raises(Exception):
        pc_a.limit = 1  # frozen


@pytest.mark.parametrize("text, expected", [
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1, colour: red}\n", "g.yaml:2: hosts.a.colour: is not a known setting"),
    ("hosts:\n  a:\n    url: ws://127.0.0.1:1\n    limit: ten\n", "g.yaml:4: hosts.a.limit: must be a whole number, got text 'ten'"),
    ("hosts:\n  a:\n    url: ws://127.0.0.1:1\n    limit: 0\n", "g.yaml:4: hosts.a.limit: must be a positive number of sessions"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1}\n", "hosts.a.limit: is required"),
    ("hosts:\n  a: {url: http://x, limit: 1}\n", "hosts.a.url: must be a ws:// or wss:// address"),
    ("hosts:\n  a: {url: ws://10.0.0.5:1, limit: 1}\n", "plain ws:// to a non-loopback address"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1, token: abc}\n", "tokens do not go in the config file"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1, token_env: NOPE_UNSET}\n",
     "g.yaml:2: hosts.a.token_env: the environment variable NOPE_UNSET is not set"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1, token_file: /nonexistent/t}\n", "hosts.a.token_file: cannot read /nonexistent/t"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\npools:\n  p: {hosts: [a, b], limit: 3}\n",
     "g.yaml:4: pools.p.hosts: names 'b', which is not a host"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\nalerts:\n  thresholds: {notice: 80, warning: 70}\n",
     "g.yaml:4: alerts.thresholds: must increase"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\nalerts:\n  thresholds: {critical: 120}\n", "percentage above 0 and at most 100"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\nalerts:\n  cooldown: {notice: soon}\n",
     "g.yaml:4: alerts.cooldown.notice: 'soon' is not a duration"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\nalerts:\n  channels: [{type: pager}]\n", "alerts.channels[0].type: must be one of webhook"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\nalerts:\n  channels: [{type: webhook, url: 'http://x'}]\n", "URLs are secrets"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\ncleanup:\n  max_per_run: 0\n", "g.yaml:4: cleanup.max_per_run: must be at least 1"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\nhistory:\n  retention: 0\n", "g.yaml:4: history.retention: must be more than 0"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\nhistory:\n  forecast_window: 2m\n",
     "g.yaml:4: history.forecast_window: must be at least 300s"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\nhistory:\n  keep: 30d\n", "g.yaml:4: history.keep: is not a known setting"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\nalerts:\n  predict: soon\n", "g.yaml:4: alerts.predict: 'soon' is not a duration"),
    ("hosts: {}\n", "hosts: is required"),
    ("nothosts: 1\n", "hosts: is required"),
    ("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\n  a: {url: ws://127.0.0.1:2, limit: 1}\n", "line 3: key 'a' appears twice"),
    ("hosts: [\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a mapping, got a list"),
])
def test_each_error_names_the_key_and_line(text, expected):
    assert expected in error_of(text)


def test_history_and_anomaly_settings():
    defaults = cfg("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\n")
    assert (defaults.history.retention, defaults.history.forecast_window) == (30 * 86400, 3600)
    assert (defaults.alerts.predict, defaults.alerts.rebound) == (None, 1800)
    assert defaults.alerts.cooldown["growth"] == defaults.alerts.cooldown["rebound"] == 1800
    config = cfg("""
        hosts:
          a: {url: ws://127.0.0.1:1, limit: 1}
        history: {retention: 7d, forecast_window: 30m}
        alerts: {predict: 30m, rebound: 0, cooldown: {growth: 1h}}
        """)
    assert (config.history.retention, config.history.forecast_window) == (7 * 86400, 1800)
    assert (config.alerts.predict, config.alerts.rebound, config.alerts.cooldown["growth"]) == (1800, 0, 3600)


def test_loose_token_file_draws_a_warning(tmp_path):
    token_file = tmp_path / "t"
    token_file.write_text("tok")
    token_file.chmod(0o644)
    config = cfg(f"hosts:\n  a: {{url: ws://127.0.0.1:1, limit: 1, token_file: {token_file}}}\n")
    assert len(config.warnings) == 1 and "readable by other users" in config.warnings[0] and "chmod 600" in config.warnings[0]


def test_no_config_file_watches_the_local_gateway(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GUARDIAN_CONFIG", raising=False)
    monkeypatch.delenv("OPENCLAW_GATEWAY_TOKEN", raising=False)
    monkeypatch.delenv("OPENCLAW_GATEWAY_URL", raising=False)
    monkeypatch.delenv("GUARDIAN_LIMIT", raising=False)
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", str(tmp_path / "openclaw.json"))
    (tmp_path / "openclaw.json").write_text('{"gateway": {"auth": {"token": "from-openclaw"}}}')
    with pytest.raises(ConfigError, match="pass --limit N or set GUARDIAN_LIMIT"):
        load(None, None)
    config = load(None, 25)
    host = config.hosts["local"]
    assert host.url == "ws://127.0.0.1:18789" and host.limit == 25 and host.token.reveal() == "from-openclaw"
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", "from-env")
    monkeypatch.setenv("GUARDIAN_LIMIT", "7")
    config = load(None, None)
    assert config.hosts["local"].token.reveal() == "from-env" and config.hosts["local"].limit == 7


def test_explicit_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("text, seconds", [("45s", 45), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (90, 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "5 minutes", True])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_state_dir_from_env_when_config_is_silent(tmp_path, monkeypatch):
    path = tmp_path / "g.yaml"
    path.write_text("hosts:\n  a: {url: ws://127.0.0.1:1, limit: 1}\n")
    monkeypatch.setenv("GUARDIAN_STATE_DIR", str(tmp_path / "st"))
    assert load(str(path)).state_dir == tmp_path / "st"
    assert os.fspath(load(str(path)).state_dir).endswith("st")
