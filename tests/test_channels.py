"""Alert channels against real servers on 127.0.0.1: the exact requests, escaping, limits, retries,
catching up after a failure, filters, and secrets kept out of every output."""

from __future__ import annotations

import json
import sys
import time

import pytest
from conftest import read_state
from hypothesis import given
from hypothesis import strategies as st

from guardian.adapters import audit
from guardian.alerts.transports import (
    DISCORD_CONTENT,
    SLACK_SECTION,
    TELEGRAM_TEXT,
    alertmanager_alerts,
    discord_payload,
    email_subject,
    fit,
    slack_payload,
    telegram_payload,
    utf16_len,
)
from guardian.commands import check as checking
from guardian.core.plan import Posted, change
from guardian.core.records import AlertLine
from guardian.output.message import envelope, line_text, message_text
from guardian.settings.channels import TelegramChannel
from guardian.settings.levels import RANK
from guardian.settings.load import load
from guardian.settings.secrets import Secret

T0 = 1_800_000_000.0
SLACK_SECRET = "/services/T000/B000/zq-slack-secret"
DISCORD_SECRET = "/api/webhooks/123/zq-discord-secret"
BOT_TOKEN = "123456:zq-bot-secret"
MAIL_PASSWORD = "zq-mail-secret"


def fill(gateway, count):
    now = int(time.time() * 1000)
    for _ in range(count):
        gateway.add_session(updated_at=now)


def set_sessions(gateway, count):
    gateway.sessions.clear()
    fill(gateway, count)


def line(name="t440", reason="escalated", level="critical", previous="warning", count=55, limit=60, error=None,
         kind="host") -> AlertLine:
    return AlertLine(subject=f"{kind}:{name}", kind=kind, name=name, reason=reason, level=level, previous=previous,
                     count=count, limit=limit, idle=3, error=error, action=f"guardian cleanup --hosts {name}")


HOSTILE = "<!channel> <@U123> @everyone @here <@&42> &amp; <b>bold</b> **x** [link](http://evil) #h `c`"


@pytest.fixture
def command_script(tmp_path):
    """A command channel's program: appends its stdin as one line to a file; exits with argv[2] (default 0)."""
    script = tmp_path / "record.py"
    script.write_text("import sys\n"
                      "data = sys.stdin.read()\n"
                      "open(sys.argv[1], 'a').write(data.replace('\\n', ' ') + '\\n')\n"
                      "print('told to fail', file=sys.stderr) if len(sys.argv) > 2 else None\n"
                      "sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)\n")
    output = tmp_path / "command.out"

    def argv(exit_code: int | None = None) -> list[str]:
        return [sys.executable, str(script), str(output)] + ([str(exit_code)] if exit_code is not None else [])

    def received() -> list[dict]:
        return [json.loads(text) for text in output.read_text().splitlines()] if output.exists() else []

    return argv, received


# --- payloads: formatting, escaping, limits --------------------------------------------------


def test_every_channel_type_the_config_accepts_has_its_transport():
    """One registry of channel types (settings.channels.READERS): each has its sender, and no sender is for a type
    the config refuses."""
    from guardian.alerts import transports
    from guardian.settings.channels import CHANNEL_TYPES

    assert all(callable(transports.sender(kind)) for kind in CHANNEL_TYPES)
    senders = {name.removeprefix("send_") for name in vars(transports) if name.startswith("send_")}
    assert senders == set(CHANNEL_TYPES)


def test_fit_keeps_whole_lines_and_says_how_many_were_left_out():
    lines = [f"line {i} " + "x" * 40 for i in range(10)]
    text = fit("head", lines, 200)
    assert utf16_len(text) <= 200 and text.startswith("head\nline 0 ")
    kept = text.splitlines()[1:-1]
    assert text.endswith(f"... and {10 - len(kept)} more") and all(k in lines for k in kept)
    assert fit("head", lines[:2], 1000) == "head\n" + "\n".join(lines[:2])


def test_slack_escapes_control_characters_and_mentions():
    payload = slack_payload([line(reason="unreachable", error=HOSTILE)])
    section = payload["blocks"][0]["text"]
    assert section["type"] == "mrkdwn"
    for text in (section["text"], payload["text"]):
        assert "<" not in text and ">" not in text and "&amp;amp;" in text and "&lt;!channel&gt;" in text
        assert "@everyone" not in text and "@here" not in text and "@\u200beveryone" in text
    assert section["text"].startswith("*Session Limit Guardian*: 1 subject needs telling\n❓ *UNREACHABLE* t440: ")


def test_discord_sends_no_mentions_and_escapes_markdown():
    payload = discord_payload([line(reason="unreachable", error=HOSTILE)])
    content = payload["content"]
    assert payload["allowed_mentions"] == {"parse": []}
    assert "@everyone" not in content and "<@" not in content and "**x**" not in content and "](" not in content
    assert r"\*\*x\*\*" in content and r"\<\@" in content
    assert content.startswith("**Session Limit Guardian**: 1 subject needs telling\n❓ **UNREACHABLE** t440\\: ")


def test_telegram_escapes_html_and_mentions():
    channel = TelegramChannel(name="tg", type="telegram", token=Secret("x", "test"), chat_id="-100")
    payload = telegram_payload(channel, [line(reason="unreachable", error=HOSTILE)])
    text = payload["text"]
    assert (payload["chat_id"], payload["parse_mode"]) == ("-100", "HTML")
    assert "&lt;b&gt;bold&lt;/b&gt;" in text and "<b>bold</b>" not in text and "@\u200beveryone" in text
    assert text.startswith("<b>Session Limit Guardian</b>: 1 subject needs telling\n❓ <b>UNREACHABLE</b> t440: ")


@pytest.mark.parametrize("render, limit", [
    (lambda lines: slack_payload(lines)["blocks"][0]["text"]["text"], SLACK_SECTION),
    (lambda lines: discord_payload(lines)["content"], DISCORD_CONTENT),
    (lambda lines: telegram_payload(TelegramChannel(name="tg", type="telegram", token=Secret("x", "t"), chat_id="1"),
                                    lines)["text"], TELEGRAM_TEXT),
])
def test_each_service_limit_is_kept_with_and_n_more(render, limit):
    lines = [line(name=f"host-{i:03d}", reason="unreachable", error="&" * 400) for i in range(60)]
    text = render(lines)
    assert utf16_len(text) <= limit
    shown = sum(1 for row in text.splitlines() if "UNREACHABLE" in row)
    assert 0 < shown < 60 and text.endswith(f"... and {60 - shown} more")


def test_line_texts():
    assert line_text(line()) == ("CRITICAL t440 92% (55/60), up from warning; 3 idle sessions. "
                             "guardian cleanup --hosts t440")
    assert line_text(line(reason="resolved", level="ok", previous="critical")) == (
        "RESOLVED t440 92% (55/60), back below notice (was critical)")
    # the unreachable alert resolved while the usage alert stands: it says so, and resolves only .../unreachable
    back = line(reason="reachable", level="warning", previous="warning")
    assert line_text(back) == "RESOLVED t440 reachable again, still at warning, 92% (55/60)"
    assert (back.status, back.alert, back.dedup_key) == ("resolved", "unreachable", "guardian/host/t440/unreachable")
    assert line_text(line(reason="reachable", level="ok", previous="ok")) == (
        "RESOLVED t440 reachable again, below notice, 92% (55/60)")
    # a reminder at a lower level that held for its cooldown
    reminder = line(reason="repeat", level="warning", previous="critical")
    assert line_text(reminder).startswith("WARNING t440 92% (55/60), down from critical")
    assert line_text(line(reason="unreachable", error="refused\nforged line")) == (
        "UNREACHABLE t440: refused?forged line. guardian cleanup --hosts t440")


def test_every_format_says_what_a_reachable_again_resolves():
    """Back from an outage at warning: every format resolves the unreachable alert, never the usage one."""
    back = line(reason="reachable", level="warning", previous="warning")
    (entry,) = envelope([back], T0)["alerts"]
    assert (entry["status"], entry["alert"]) == ("resolved", "unreachable")
    assert entry["dedup_key"] == "guardian/host/t440/unreachable"
    telegram = TelegramChannel(name="tg", type="telegram", token=Secret("x", "t"), chat_id="1")
    for text in (slack_payload([back])["text"], slack_payload([back])["blocks"][0]["text"]["text"],
                 discord_payload([back])["content"], telegram_payload(telegram, [back])["text"], message_text([back])):
        assert "reachable again, still at warning" in text and "back below notice" not in text, text
    assert email_subject([back]) == "[guardian] RESOLVED t440 reachable again 92%"
    posted = {(a["labels"]["alertname"], a["labels"]["severity"]): "startsAt" in a
              for a in alertmanager_alerts([back], T0, valid_for=120)}  # Alertmanager: the state as it is
    assert posted[("SessionHostUnreachable", "warning")] is False and posted[("SessionUsageWarning", "warning")] is True


USAGE_ALERTS = {"notice": "SessionUsageNotice", "warning": "SessionUsageWarning", "critical": "SessionUsageCritical"}


def test_alertmanager_alerts_state_everything_about_each_subject():
    """Issue 18's names: one alert a level (SessionUsageNotice/Warning/Critical, the level in severity too)."""
    firing = alertmanager_alerts([line(level="warning", previous="notice")], T0, valid_for=120)
    by_severity = {a["labels"]["severity"]: a for a in firing if a["labels"]["alertname"].startswith("SessionUsage")}
    assert {level: a["labels"]["alertname"] for level, a in by_severity.items()} == USAGE_ALERTS
    warning = by_severity["warning"]
    assert warning["labels"] == {"alertname": "SessionUsageWarning", "host": "t440", "severity": "warning"}
    assert warning["startsAt"] == "2027-01-15T08:00:00+00:00" and warning["endsAt"] == "2027-01-15T08:02:00+00:00"
    assert warning["annotations"]["summary"].startswith("WARNING t440 92% (55/60)")
    assert (
        warning["annotations"]["usage"] == "91.7" and warning["annotations"]["dedup_key"] == "guardian/host/t440/usage"
    )
    assert all(by_severity[s]["endsAt"] == "2027-01-15T08:00:00+00:00" and "startsAt" not in by_severity[s]
               for s in ("notice", "critical"))  # the other levels are resolved, so nothing stale lingers
    unreachable = [a for a in firing if a["labels"]["alertname"] == "SessionHostUnreachable"]
    assert len(unreachable) == 1 and unreachable[0]["endsAt"] == "2027-01-15T08:00:00+00:00"

    # dark at warning: the unreachable alert fires and the last level known goes on firing
    down = alertmanager_alerts([line(reason="unreachable", level="warning", error="refused")], T0, valid_for=120)
    assert sorted((a["labels"]["alertname"], a["labels"]["severity"]) for a in down
                  if a["endsAt"] == "2027-01-15T08:02:00+00:00") == [
        ("SessionHostUnreachable", "warning"), ("SessionUsageWarning", "warning")]
    pool = alertmanager_alerts([line(name="shared", kind="pool", reason="resolved", level="ok")], T0, valid_for=120)
    assert {a["labels"]["pool"] for a in pool} == {"shared"} and all(
        a["endsAt"] == "2027-01-15T08:00:00+00:00" for a in pool
    )
    assert len(pool) == 3  # a pool is never unreachable


# --- each channel through `guardian check`, against real servers on loopback -----------------


def test_slack_request(fake, write_config, cli, receiver, monkeypatch):
    fill(fake, 55)
    monkeypatch.setenv("SLACK_URL", receiver.base + SLACK_SECRET)
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "slack", "url_env": "SLACK_URL"}]})
    assert cli("check", "--config", config, "-q").exit_code == 2
    (request,) = receiver.requests
    assert request["path"] == SLACK_SECRET and request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"].startswith("session-limit-guardian/")
    body = json.loads(request["body"])
    assert set(body) == {"text", "blocks"}
    assert body["blocks"][0]["text"]["text"] == (
        "*Session Limit Guardian*: 1 subject needs telling\n"
        "🔴 *CRITICAL* t440 92% (55/60), up from ok. Act now, new sessions will soon be refused: "
        "guardian cleanup --hosts t440")


def test_discord_request(fake, write_config, cli, receiver, monkeypatch):
    fill(fake, 40)
    monkeypatch.setenv("DISCORD_URL", receiver.base + DISCORD_SECRET)
    receiver.status = 204
    config = write_config({"pc-a": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "discord", "url_env": "DISCORD_URL", "name": "ops-discord"}]})
    cli("check", "--config", config, "-q")
    (request,) = receiver.requests
    assert request["path"] == DISCORD_SECRET
    assert json.loads(request["body"]) == {
        "content": "**Session Limit Guardian**: 1 subject needs telling\n"
                   "🟡 **NOTICE** pc\\-a 67% \\(40/60\\), up from ok. Nothing urgent; see what could go\\: "
                   "guardian cleanup \\-\\-dry\\-run \\-\\-hosts pc\\-a",
        "allowed_mentions": {"parse": []}}


def test_telegram_request(fake, write_config, cli, receiver, monkeypatch):
    fill(fake, 50)
    monkeypatch.setenv("BOT_TOKEN", BOT_TOKEN)
    receiver.script = [(200, {"Content-Type": "application/json"}, b'{"ok": true, "result": {"message_id": 7}}')]
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "telegram", "token_env": "BOT_TOKEN", "chat_id": -1001234,
                                                "api_url": receiver.base}]})
    cli("check", "--config", config, "-q")
    (request,) = receiver.requests
    assert request["path"] == f"/bot{BOT_TOKEN}/sendMessage"
    assert json.loads(request["body"]) == {
        "chat_id": "-1001234", "parse_mode": "HTML", "link_preview_options": {"is_disabled": True},
        "text": "<b>Session Limit Guardian</b>: 1 subject needs telling\n"
                "🟠 <b>WARNING</b> t440 83% (50/60), up from ok. Close idle sessions now: guardian cleanup --hosts "
                "t440; if usage keeps climbing, look for an agent leaking sessions"}


def test_alertmanager_requests_to_every_replica_then_resolved(fake, write_config, receivers):
    first, second = receivers(), receivers()
    fill(fake, 55)
    config = load(
        write_config(
            {"t440": {"url": fake.url, "token": "secret", "limit": 60}},
            alerts={"channels": [{"type": "alertmanager", "urls": [first.base, second.base + "/"]}]},
        )
    )
    checking.run(config, None, now=T0)
    for am in (first, second):
        (request,) = am.requests
        assert request["path"] == "/api/v2/alerts" and request["headers"]["Content-Type"] == "application/json"
        firing = [a for a in json.loads(request["body"]) if "startsAt" in a]
        assert [(a["labels"], a["endsAt"]) for a in firing] == [
            ({"alertname": "SessionUsageCritical", "host": "t440", "severity": "critical"},
             "2027-01-15T08:02:00+00:00")]
    set_sessions(fake, 10)
    checking.run(config, None, now=T0 + 60)
    resolved = json.loads(first.requests[-1]["body"])
    assert len(first.requests) == len(second.requests) == 2
    assert {(a["labels"]["alertname"], a["labels"]["severity"]) for a in resolved} == {
        ("SessionUsageNotice", "notice"), ("SessionUsageWarning", "warning"), ("SessionUsageCritical", "critical"),
        ("SessionHostUnreachable", "warning")}
    assert all(a["endsAt"] == "2027-01-15T08:01:00+00:00" and "startsAt" not in a for a in resolved)


def test_alertmanager_replica_down_is_the_channel_failing(fake, write_config, receivers, cli):
    up, down = receivers(), receivers()
    down.status = 503
    fill(fake, 55)
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "alertmanager", "urls": [up.base, down.base]}]})
    result = cli("check", "--config", config, "-q")
    assert f"Alertmanager {down.base} answered HTTP 503 (3 attempts)" in result.stderr and len(up.requests) == 1
    down.status = 200
    cli("check", "--config", config, "-q")
    assert len(down.bodies) == 1 and len(up.requests) == 2  # sent again to both: Alertmanager deduplicates


def alertmanager_state(body: list[dict], now: float) -> dict:
    """What one POST to Alertmanager says: {(alertname, severity): firing?}; firing means endsAt after now."""
    return {(a["labels"]["alertname"], a["labels"]["severity"]): iso_seconds(a["endsAt"]) > now for a in body}


def iso_seconds(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def alertmanager_records(state_dir, channel="alertmanager-1") -> list[tuple[str, str, str]]:
    return [(r["result"], line["reason"], line["level"]) for r in audit.read(state_dir)
            if r["event"] == "alert" and r["channel"] == channel for line in r["alerts"]]


@given(st.lists(st.tuples(st.sampled_from(("ok", "notice", "warning", "critical")), st.booleans()), max_size=30))
def test_alertmanager_records_exactly_what_changed_there(walk):
    """Whatever the walk of levels and outages, a post is recorded (has a reason) exactly when what the
    channel must hold differs from what it holds, and the reason names the change."""
    held = Posted()
    for level, unreachable in walk:
        now = Posted(level, unreachable)
        reason = change(held, now)
        assert (reason is None) == (now == held)
        if reason == "unreachable":
            assert now.unreachable and not held.unreachable
        elif reason == "resolved":
            assert now.level == "ok" or (held.unreachable and not now.unreachable)
        elif reason in ("escalated", "lowered"):
            assert (RANK[now.level] > RANK[held.level]) == (reason == "escalated") and now.level != "ok"
        held = now


def test_alertmanager_is_posted_the_current_state_every_run(fake, write_config, receiver, state_dir):
    """Alertmanager's client contract: every run restates what fires (endsAt a few check intervals
    ahead) and resolves the rest, and Alertmanager repeats and groups. A drop from critical leaves
    warning firing at once; the audit log counts only what changed."""
    config = load(write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                               alerts={"channels": [{"type": "alertmanager", "urls": [receiver.base]}]}))
    usage = [(name, level) for level, name in USAGE_ALERTS.items()]
    fill(fake, 55)  # 92 %: critical
    checking.run(config, None, now=T0)
    set_sessions(fake, 50)  # 83 %: warning
    for step in (1, 2, 3):
        checking.run(config, None, now=T0 + 30 * step)
    assert len(receiver.bodies) == 4
    for step, body in enumerate(receiver.bodies):
        now = T0 + 30 * step
        state = alertmanager_state(body, now)
        assert [key for key in usage if state[key]] == [usage[2] if step == 0 else usage[1]]
        assert state[("SessionHostUnreachable", "warning")] is False
        firing = [a for a in body if iso_seconds(a["endsAt"]) > now]
        assert [iso_seconds(a["endsAt"]) - now for a in firing] == [120.0]  # 4 checks of 30 s ahead
    assert alertmanager_records(state_dir) == [("delivered", "escalated", "critical"),
                                               ("delivered", "lowered", "warning")]

    set_sessions(fake, 10)
    checking.run(config, None, now=T0 + 120)
    assert not any(alertmanager_state(receiver.bodies[-1], T0 + 120).values())
    checking.run(config, None, now=T0 + 150)  # nothing fires, nothing is left to resolve: nothing posted
    assert len(receiver.bodies) == 5
    assert alertmanager_records(state_dir)[2:] == [("delivered", "resolved", "ok")]


def test_alertmanager_hears_an_outage_every_run_and_a_failed_post_is_retried(fakes, write_config, receiver,
                                                                             state_dir):
    gateway = fakes()
    fill(gateway, 50)  # warning
    config = load(write_config({"t440": {"url": gateway.url, "token": "secret", "limit": 60}},
                               alerts={"channels": [{"type": "alertmanager", "urls": [receiver.base]}]}))
    checking.run(config, None, now=T0)
    gateway.stop()
    for step in (1, 2, 3, 4):
        checking.run(config, None, now=T0 + 30 * step)
    states = [alertmanager_state(body, T0 + 30 * step) for step, body in enumerate(receiver.bodies)]
    assert len(states) == 5
    assert [s[("SessionHostUnreachable", "warning")] for s in states] == [False, False, True, True, True]
    assert all(s[("SessionUsageWarning", "warning")] for s in states)  # dark is not resolved
    assert alertmanager_records(state_dir) == [("delivered", "escalated", "warning"),
                                               ("delivered", "unreachable", "warning")]

    receiver.status = 503
    checking.run(config, None, now=T0 + 150)
    receiver.status = 200
    gateway.start()
    checking.run(config, None, now=T0 + 180)  # back: the unreachable alert resolved, warning still firing
    assert len(receiver.requests) == 5 + 3 + 1
    back = alertmanager_state(receiver.bodies[-1], T0 + 180)
    assert back[("SessionHostUnreachable", "warning")] is False and back[("SessionUsageWarning", "warning")] is True
    assert alertmanager_records(state_dir)[2:] == [("delivered", "reachable", "warning")]  # resolves the unreachable
    failed = [r for r in audit.read(state_dir) if r["event"] == "alert" and r["result"] == "failed"]
    assert [r["alerts"] for r in failed] == [[]]  # the failed post restated the outage: nothing had changed


def test_email_over_starttls_with_login(fake, write_config, cli, mail_servers, certificate, monkeypatch):
    server = mail_servers("starttls")
    fill(fake, 55)
    monkeypatch.setenv("MAIL_PASSWORD", "pw")
    config = write_config(
        {"t440": {"url": fake.url, "token": "secret", "limit": 60}},
        alerts={
            "channels": [
                {
                    "type": "email",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": server.port,
                    "username": "guardian",
                    "password_env": "MAIL_PASSWORD",
                    "from": "guardian@ops.example",
                    "to": ["oncall@ops.example", "b@ops.example"],
                    "ca_file": str(certificate[0]),
                }
            ]
        },
    )
    result = cli("check", "--config", config, "-q")
    assert "failed" not in result.stderr
    (mail,) = server.messages
    assert server.logins == [("guardian", "pw")]
    assert mail["from"] == "guardian@ops.example" and mail["to"] == ["oncall@ops.example", "b@ops.example"]
    message = mail["message"]
    assert message["Subject"] == "[guardian] CRITICAL t440 92%" and message["Auto-Submitted"] == "auto-generated"
    assert message["To"] == "oncall@ops.example, b@ops.example" and message["Message-ID"].endswith("@ops.example>")
    assert message.get_content() == (
        "Session Limit Guardian: 1 subject needs telling\n- CRITICAL t440 92% (55/60), "
        "up from ok. Act now, new sessions will soon be refused: guardian cleanup --hosts t440\n"
    )


def test_email_over_implicit_tls_retries_a_temporary_refusal(fake, write_config, cli, mail_servers, certificate, waits):
    server = mail_servers("tls")
    server.refusals = ["451 4.3.0 busy, try later"]
    fill(fake, 55)
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "email", "smtp_host": "127.0.0.1", "smtp_port": server.port,
                                                "security": "tls", "from": "g@x.example", "to": "o@x.example",
                                                "ca_file": str(certificate[0])}]})
    result = cli("check", "--config", config, "-q")
    assert "failed" not in result.stderr and len(server.messages) == 1 and waits == [1.0]


def test_email_permanent_refusal_and_an_untrusted_certificate_are_sentences(fake, write_config, cli, mail_servers,
                                                                            certificate, monkeypatch, waits):
    server = mail_servers("starttls")
    fill(fake, 55)
    monkeypatch.setenv("MAIL_PASSWORD", "wrong")
    channel = {"type": "email", "smtp_host": "127.0.0.1", "smtp_port": server.port, "username": "guardian",
               "password_env": "MAIL_PASSWORD", "from": "g@x.example", "to": "o@x.example"}
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{**channel, "ca_file": str(certificate[0])}]})
    result = cli("check", "--config", config, "-q")
    assert (
        f"the mail server 127.0.0.1:{server.port} answered 535 5.7.8 Authentication credentials invalid"
        in result.stderr
    )
    assert waits == []  # a 5xx is final: not retried within the run
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}}, alerts={"channels": [channel]})
    result = cli("check", "--config", config, "-q")
    assert (
        "has a certificate this machine does not trust" in result.stderr and "give its CA with ca_file" in result.stderr
    )


def test_command_gets_the_envelope_on_stdin(fake, write_config, cli, command_script):
    argv, received = command_script
    fill(fake, 55)
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "command", "command": argv()}]})
    cli("check", "--config", config, "-q")
    (envelope,) = received()
    assert envelope["version"] == "1" and envelope["alerts"][0]["dedup_key"] == "guardian/host/t440/usage"


@pytest.mark.parametrize("exit_code, runs, message", [
    (1, 1, "the command {program} exited with code 1: told to fail"),
    (75, 3, "the command {program} exited with code 75: told to fail (3 attempts)"),  # EX_TEMPFAIL: retried
])
def test_command_exit_code_is_checked(fake, write_config, cli, command_script, exit_code, runs, message):
    argv, received = command_script
    fill(fake, 55)
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "command", "command": argv(exit_code)}]})
    result = cli("check", "--config", config, "-q")
    assert message.format(program=sys.executable) in result.stderr and len(received()) == runs


def test_command_that_hangs_is_killed_at_its_timeout(fake, write_config, cli, tmp_path):
    fill(fake, 55)
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "command", "timeout": "300ms",
                                                "command": [sys.executable, "-c", "import time; time.sleep(60)"]}]})
    result = cli("check", "--config", config, "-q")
    assert f"the command {sys.executable} did not finish within 0.3s and was killed" in result.stderr


def test_apprise_url(fake, write_config, cli, receiver, monkeypatch):
    pytest.importorskip("apprise")
    fill(fake, 55)
    monkeypatch.setenv("APPRISE_URL", f"json://127.0.0.1:{receiver.base.rsplit(':', 1)[1]}/notify")
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "apprise", "url_env": "APPRISE_URL"}]})
    assert "failed" not in cli("check", "--config", config, "-q").stderr
    (body,) = receiver.bodies
    assert receiver.requests[0]["path"] == "/notify"
    assert (body["title"], body["type"]) == ("Session Limit Guardian: 1 subject needs telling", "failure")
    assert body["message"].startswith("CRITICAL t440 92% (55/60), up from ok.")
    receiver.status = 500
    set_sessions(fake, 10)
    result = cli("check", "--config", config, "-q")
    assert "alert channel apprise-1 failed (apprise could not deliver to the URL from env APPRISE_URL" in result.stderr


# --- delivery: retries, catching up, one broken channel ---------------------------------------


@pytest.mark.parametrize("script, waited", [
    ([(429, {"Retry-After": "2"}, b"")], [2.0]),
    ([(503, {}, b""), (502, {}, b"")], [1.0, 2.0]),
    ([(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"")], [0.0]),  # an HTTP date already past
    ([(429, {"Content-Type": "application/json"}, b'{"ok": false, "error_code": 429, '
                                                 b'"description": "Too Many Requests: retry after 3", '
                                                 b'"parameters": {"retry_after": 3}}')], [3.0]),
])
def test_429_and_5xx_are_retried_honouring_retry_after(
    fake, write_config, cli, receiver, monkeypatch, waits, script, waited
):
    fill(fake, 55)
    monkeypatch.setenv("BOT_TOKEN", BOT_TOKEN)
    receiver.script = list(script)
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "telegram", "token_env": "BOT_TOKEN", "chat_id": 1,
                                                "api_url": receiver.base}]})
    result = cli("check", "--config", config, "-q")
    assert "failed" not in result.stderr and waits == waited
    assert len(receiver.requests) == len(script) + 1 and len(receiver.bodies) == 1


def test_a_wait_past_the_cap_is_left_to_the_next_run(fake, write_config, cli, receiver, monkeypatch, waits):
    fill(fake, 55)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    receiver.script = [(429, {"Retry-After": "60"}, b"")]
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL"}]})
    first = cli("check", "--config", config, "-q")
    assert ("the webhook (env HOOK_URL) answered HTTP 429; a retry would wait 60s, past the 10s a run allows "
            "a channel") in first.stderr
    assert waits == [] and len(receiver.requests) == 1
    cli("check", "--config", config, "-q")
    assert [b["alerts"][0]["reason"] for b in receiver.bodies] == ["escalated"]


def test_a_channel_down_catches_up_and_the_others_are_told_once(
    fake, write_config, cli, receivers, monkeypatch, state_dir
):
    up, down = receivers(), receivers()
    down.stop()  # nothing listens: connection refused
    fill(fake, 55)
    monkeypatch.setenv("UP_URL", up.url)
    monkeypatch.setenv("DOWN_URL", down.url)
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 60}},
                          alerts={"channels": [{"type": "webhook", "url_env": "DOWN_URL", "name": "down"},
                                               {"type": "slack", "url_env": "UP_URL", "name": "up"}]})
    first = cli("check", "--config", config, "-q")
    assert "alert channel down failed (could not connect to the webhook (env DOWN_URL) (3 attempts))" in first.stderr
    assert len(up.bodies) == 1
    records = [r for r in audit.read(state_dir) if r["event"] == "alert" and r["channel"] != "log"]
    assert sorted((r["channel"], r["result"]) for r in records) == [("down", "failed"), ("up", "delivered")]

    revived = receivers()
    monkeypatch.setenv("DOWN_URL", revived.url)
    second = cli("check", "--config", config, "-q")
    assert "failed" not in second.stderr and len(up.bodies) == 1
    assert [b["alerts"][0]["reason"] for b in revived.bodies] == ["escalated"]
    assert read_state(state_dir)["subjects"]["host:t440"]["channels"]["down"]["level"] == "critical"


def test_no_secret_in_stderr_json_output_or_the_audit_log(fake, write_config, cli, receivers, mail_servers, certificate,
                                                          monkeypatch, state_dir):
    """Every channel fails, and the servers even echo their secret back: it appears nowhere."""
    slack, telegram = receivers(), receivers()
    slack.script = [(400, {}, f"invalid_token at {SLACK_SECRET}".encode())]
    telegram.script = [(401, {"Content-Type": "application/json"},
                        json.dumps({"ok": False, "description": f"Unauthorized: {BOT_TOKEN}"}).encode())]
    server = mail_servers("starttls")
    monkeypatch.setenv("SLACK_URL", slack.base + SLACK_SECRET)
    monkeypatch.setenv("BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("MAIL_PASSWORD", MAIL_PASSWORD)
    fill(fake, 55)
    config = write_config(
        {"t440": {"url": fake.url, "token": "secret", "limit": 60}},
        alerts={
            "channels": [
                {"type": "slack", "url_env": "SLACK_URL"},
                {"type": "telegram", "token_env": "BOT_TOKEN", "chat_id": 1, "api_url": telegram.base},
                {
                    "type": "email",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": server.port,
                    "username": "guardian",
                    "password_env": "MAIL_PASSWORD",
                    "from": "g@x.example",
                    "to": "o@x.example",
                    "ca_file": str(certificate[0]),
                },
            ]
        },
    )
    result = cli("check", "--config", config, "--json")
    report = json.loads(result.stdout)
    errors = {a["channel"]: a["error"] for a in report["alerts"]}
    assert errors["slack-1"] == "Slack (env SLACK_URL) answered HTTP 400: invalid_token at <redacted>"
    assert errors["telegram-2"] == "Telegram (bot token from env BOT_TOKEN) answered HTTP 401: Unauthorized: <redacted>"
    assert "answered 535" in errors["email-3"]
    everything = result.stdout + result.stderr + (state_dir / "audit.jsonl").read_text()
    for secret in (SLACK_SECRET, BOT_TOKEN, "zq-bot-secret", MAIL_PASSWORD, "zq-slack-secret"):
        assert secret not in everything


# --- filters: min_level, hosts, resolved -----------------------------------------------------


def two_webhooks(fake, write_config, receivers, monkeypatch, **options):
    """Host `a` (limit 100) and two webhook channels: a plain one, and one with `options`; their receivers."""
    plain, filtered = receivers(), receivers()
    monkeypatch.setenv("PLAIN_URL", plain.url)
    monkeypatch.setenv("FILTERED_URL", filtered.url)
    config = load(write_config({"a": {"url": fake.url, "token": "secret", "limit": 100}},
                               alerts={"channels": [{"type": "webhook", "url_env": "PLAIN_URL"},
                                                    {"type": "webhook", "url_env": "FILTERED_URL", **options}]}))
    return config, plain, filtered


def run_minutes(fake, config, sessions):
    """One check a minute, with this many sessions at each."""
    for minute, count in enumerate(sessions):
        set_sessions(fake, count)
        checking.run(config, None, now=T0 + minute * 60)


def test_min_level_channel_hears_its_levels_and_a_resolved_only_at_ok(fake, write_config, receivers, monkeypatch):
    config, everything, pager = two_webhooks(fake, write_config, receivers, monkeypatch, min_level="critical")
    run_minutes(fake, config, (70, 85, 95, 84, 40))  # notice, warning, critical, warning, ok
    pager_told = [
        (b["alerts"][0]["reason"], b["alerts"][0]["level"], b["alerts"][0]["previous_level"]) for b in pager.bodies
    ]
    assert pager_told == [("escalated", "critical", "ok"), ("resolved", "ok", "critical")]
    assert [b["alerts"][0]["reason"] for b in everything.bodies] == ["escalated", "escalated", "escalated", "resolved"]


def test_hosts_filter_keeps_a_channel_to_its_hosts_and_their_pools(fakes, write_config, receiver, monkeypatch):
    a, b = fakes(), fakes()
    fill(a, 95)
    fill(b, 95)
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = load(
        write_config(
            {
                "a": {"url": a.url, "token": "secret", "limit": 100},
                "b": {"url": b.url, "token": "secret", "limit": 100},
            },
            pools={"shared": {"hosts": ["a", "b"], "limit": 250}, "b-only": {"hosts": ["b"], "limit": 100}},
            alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL", "hosts": ["a"]}]},
        )
    )
    report = checking.run(config, None, now=T0)
    (body,) = receiver.bodies
    assert [alert["subject"] for alert in body["alerts"]] == ["host:a", "pool:shared"]
    log = next(d for d in report.deliveries if d.channel == "log")
    assert [ln.subject for ln in log.lines] == ["host:a", "host:b", "pool:shared", "pool:b-only"]


def test_resolved_can_be_switched_off_per_channel(fake, write_config, receivers, monkeypatch):
    config, chat, mail = two_webhooks(fake, write_config, receivers, monkeypatch, resolved=False)
    run_minutes(fake, config, (95, 10))
    assert [b["status"] for b in chat.bodies] == ["firing", "resolved"]
    assert [b["status"] for b in mail.bodies] == ["firing"]


# --- the whole: every channel at once ----------------------------------------------------------


def test_every_channel_once_per_escalation_once_per_resolved_and_catching_up(
        fake, write_config, receivers, mail_servers, certificate, command_script, monkeypatch, state_dir):
    pytest.importorskip("apprise")
    http = {name: receivers() for name in ("webhook", "slack", "discord", "telegram", "alertmanager", "apprise")}
    http["discord"].status = 204
    mail = mail_servers("starttls")
    argv, commanded = command_script
    monkeypatch.setenv("WEBHOOK_URL", http["webhook"].url)
    monkeypatch.setenv("SLACK_URL", http["slack"].base + SLACK_SECRET)
    monkeypatch.setenv("DISCORD_URL", http["discord"].base + DISCORD_SECRET)
    monkeypatch.setenv("BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("MAIL_PASSWORD", "pw")
    monkeypatch.setenv("APPRISE_URL", f"json://127.0.0.1:{http['apprise'].base.rsplit(':', 1)[1]}/a")
    config = load(
        write_config(
            {"t440": {"url": fake.url, "token": "secret", "limit": 60}},
            alerts={
                "channels": [
                    {"type": "webhook", "url_env": "WEBHOOK_URL", "name": "webhook"},
                    {"type": "slack", "url_env": "SLACK_URL", "name": "slack"},
                    {"type": "discord", "url_env": "DISCORD_URL", "name": "discord"},
                    {
                        "type": "telegram",
                        "token_env": "BOT_TOKEN",
                        "chat_id": 42,
                        "api_url": http["telegram"].base,
                        "name": "telegram",
                    },
                    {"type": "alertmanager", "urls": [http["alertmanager"].base], "name": "alertmanager"},
                    {
                        "type": "email",
                        "smtp_host": "127.0.0.1",
                        "smtp_port": mail.port,
                        "username": "guardian",
                        "password_env": "MAIL_PASSWORD",
                        "from": "g@x.example",
                        "to": "o@x.example",
                        "ca_file": str(certificate[0]),
                        "name": "email",
                    },
                    {"type": "command", "command": argv(), "name": "command"},
                    {"type": "apprise", "url_env": "APPRISE_URL", "name": "apprise"},
                ]
            },
        )
    )

    def counts():
        return {
            **{name: len(r.requests) for name, r in http.items()},
            "email": len(mail.messages),
            "command": len(commanded()),
        }

    fill(fake, 55)
    report = checking.run(config, None, now=T0)
    assert [d.error for d in report.deliveries] == [None] * 9  # the log line and 8 channels
    assert counts() == dict.fromkeys(counts(), 1)
    checking.run(config, None, now=T0 + 30)  # within the cooldown: nobody is told again; Alertmanager is posted
    assert counts() == {**dict.fromkeys(counts(), 1), "alertmanager": 2}  # the state, on every run

    set_sessions(fake, 10)
    http["slack"].status = 500  # Slack is down when the resolved comes
    report = checking.run(config, None, now=T0 + 60)
    failed = {d.channel for d in report.deliveries if d.error}
    assert failed == {"slack"}
    assert counts() == {**dict.fromkeys(counts(), 2), "slack": 4, "alertmanager": 3}  # 1 + 3 attempts
    assert mail.messages[-1]["message"]["Subject"] == "[guardian] RESOLVED t440 17%"
    assert json.loads(http["telegram"].requests[-1]["body"])["text"].endswith(
        "✅ <b>RESOLVED</b> t440 17% (10/60), back below notice (was critical)")

    http["slack"].status = 200
    checking.run(config, None, now=T0 + 90)  # Slack catches up; the others are not told again
    assert counts() == {**dict.fromkeys(counts(), 2), "slack": 5, "alertmanager": 3}
    assert "RESOLVED" in http["slack"].bodies[-1]["text"]
    alerts_recorded = [(r["channel"], r["result"]) for r in audit.read(state_dir) if r["event"] == "alert"]
    assert alerts_recorded.count(("slack", "failed")) == 1 and alerts_recorded.count(("slack", "delivered")) == 2


# --- guardian notify-test --------------------------------------------------------------------


def test_notify_test_reports_each_channel_and_fails_when_one_does(write_config, cli, receivers, monkeypatch, state_dir):
    good, bad = receivers(), receivers()
    bad.status = 404
    monkeypatch.setenv("GOOD_URL", good.url)
    monkeypatch.setenv("BAD_URL", bad.base + SLACK_SECRET)
    config = write_config(
        {"t440": {"url": "ws://127.0.0.1:1", "limit": 60}},
        alerts={
            "channels": [
                {"type": "webhook", "url_env": "GOOD_URL", "name": "hook", "min_level": "critical", "hosts": ["t440"]},
                {"type": "slack", "url_env": "BAD_URL", "name": "chat"},
            ]
        },
    )
    result = cli("notify-test", "--config", config)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["hook: delivered", "chat: failed: Slack (env BAD_URL) answered HTTP 404"]
    (body,) = good.bodies
    assert body["alerts"][0]["alert"] == "test" and body["alerts"][0]["dedup_key"] == "guardian/host/t440/test"
    assert body["text"].endswith("- TEST t440: a sample alert from guardian notify-test; if you can read this, "
                                 "the channel works")
    records = [r for r in audit.read(state_dir) if r["command"] == "notify-test"]
    assert [(r["channel"], r["result"]) for r in records] == [("hook", "delivered"), ("chat", "failed")]
    assert SLACK_SECRET not in result.stdout + result.stderr + (state_dir / "audit.jsonl").read_text()

    only = cli("notify-test", "--config", config, "--channels", "hook", "--json")
    assert only.exit_code == 0 and json.loads(only.stdout) == {
        "channels": [{"channel": "hook", "delivered": True, "error": None}]}
    unknown = cli("notify-test", "--config", config, "--channels", "pager")
    assert (
        unknown.exit_code == 2
        and "--channels names pager, which the config does not define (known: hook, chat)" in unknown.stderr
    )


def test_notify_test_without_channels_says_so(write_config, cli):
    result = cli("notify-test", "--config", write_config({"a": {"url": "ws://127.0.0.1:1", "limit": 5}}))
    assert result.exit_code == 1 and "no alert channels are configured" in result.stderr


def test_notify_test_with_an_audit_log_it_cannot_append_to_still_says_what_each_channel_did(write_config, cli, receiver,
                                                                                         monkeypatch, state_dir):
    monkeypatch.setenv("HOOK_URL", receiver.url)
    config = write_config({"a": {"url": "ws://127.0.0.1:1", "limit": 5}},
                          alerts={"channels": [{"type": "webhook", "url_env": "HOOK_URL", "name": "hook"}]})
    (state_dir / "audit.jsonl").mkdir(parents=True)
    result = cli("notify-test", "--config", config)
    assert result.exit_code == 0 and result.stdout == "hook: delivered\n" and len(receiver.bodies) == 1
    assert result.stderr == (f"guardian: warning: cannot append to {state_dir / 'audit.jsonl'} (Is a directory); "
                             f"the test is not in the audit log\n")
