"""contrib/: the Prometheus rules checked and unit-tested by promtool, the systemd units verified by systemd-analyze.

Both programs come from Debian's packages (prometheus, systemd); scripts/test.sh installs them when missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from guardian.commands import check as checking
from guardian.core.plan import SEVERITIES, UNREACHABLE_ALERTNAME, usage_alertname
from guardian.output import metrics
from guardian.settings.load import load

CONTRIB = Path(__file__).resolve().parents[1] / "contrib"
RULES = CONTRIB / "prometheus" / "guardian-rules.yml"
UNITS = CONTRIB / "systemd"
PROMTOOL = shutil.which("promtool")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
T0 = 1_800_000_000.0

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/test.sh installs it)")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze is not installed (scripts/test.sh installs it)")


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=cwd)


@needs_promtool
def test_rules_pass_promtool_check_rules():
    checked = run(PROMTOOL, "check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_rules_fire_exactly_as_their_unit_tests_expect():
    tests = sorted((CONTRIB / "prometheus" / "tests").glob("*.yml"))
    assert {t.stem for t in tests} >= {"usage", "unreachable", "stale", "forecast", "fleet"}
    tested = run(PROMTOOL, "test", "rules", *tests, cwd=tests[0].parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rules_name_each_level_as_the_alertmanager_channel_does():
    """One definition of the names (guardian.core.plan.usage_alertname): one alert a level, from the level the rules'
    policy records in `severity`, as the channel posts them."""
    alerts = {rule["alert"]: rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
              if "alert" in rule}
    usage = {name: rule["expr"].strip() for name, rule in alerts.items() if name.startswith("SessionUsage")}
    assert usage == {usage_alertname(level): f'subject:guardian_level:policy{{severity="{level}"}}'
                     for level in SEVERITIES}
    assert UNREACHABLE_ALERTNAME in alerts


@needs_promtool
def test_rules_fire_what_the_alertmanager_channel_posts(fakes, write_config, state_dir, tmp_path, receiver):
    """Issue 18: "labels that match the Alertmanager channel's, so a fleet can use either and get the same pages".
    A real check's textfile, replayed for 2 minutes, fires in the rules exactly the alerts the channel posted
    firing in that check (alertname, host or pool, severity), with the same description and dedup_key; the
    channel's summary goes on with what changed and the action."""
    full, warm, down = fakes(), fakes(), fakes()
    for gateway, count in ((full, 9), (warm, 8)):
        for _ in range(count):
            gateway.add_session()
    config = load(write_config({"full": {"url": full.url, "token": "secret", "limit": 10},
                                "warm": {"url": warm.url, "token": "secret", "limit": 10},
                                "down": {"url": down.url, "token": "secret", "limit": 10}},
                               alerts={"channels": [{"type": "alertmanager", "urls": [receiver.base]}]}))
    checking.run(config, None, now=T0)
    down.stop()
    checking.run(config, None, now=T0 + 30)
    metrics.write(str(tmp_path / "guardian.prom"), checking.run(config, None, now=T0 + 60), config.alerts, state_dir)
    posted = [alert for alert in receiver.bodies[-1] if "startsAt" in alert]  # the firing ones
    assert {a["labels"]["alertname"] for a in posted} == {"SessionUsageCritical", "SessionUsageWarning",
                                                          "SessionHostUnreachable"}
    families = text_string_to_metric_families((tmp_path / "guardian.prom").read_text())
    series = [{"series": sample.name + "{" + ",".join(f'{k}="{v}"' for k, v in sample.labels.items()) + "}",
               "values": f"{sample.value!r}x6"}
              for family in families for sample in family.samples]
    alert = 'ALERTS{{alertname="{alertname}",alertstate="firing",host="{host}",severity="{severity}"}}'
    firing = [{"labels": alert.format(**a["labels"]), "value": 1} for a in posted]
    summaries = {"SessionUsageCritical": "CRITICAL full 90% (9/10)", "SessionUsageWarning": "WARNING warm 80% (8/10)",
                 "SessionHostUnreachable": "UNREACHABLE down: no guardian could read it for 30 s"}
    assert all(a["annotations"]["summary"].startswith(summaries[a["labels"]["alertname"]])
               for a in posted if a["labels"]["alertname"] != "SessionHostUnreachable")
    test = {"rule_files": [str(RULES)], "evaluation_interval": "30s", "tests": [{
        "interval": "30s", "input_series": series,
        "promql_expr_test": [{"expr": 'ALERTS{alertname=~"Session.*",alertstate="firing"}', "eval_time": "2m",
                              "exp_samples": firing}],
        "alert_rule_test": [{"eval_time": "2m", "alertname": a["labels"]["alertname"], "exp_alerts": [
            {"exp_labels": {k: v for k, v in a["labels"].items() if k != "alertname"},
             "exp_annotations": {"summary": summaries[a["labels"]["alertname"]],
                                 **{k: a["annotations"][k] for k in ("description", "dedup_key")}}}]}
            for a in posted]}]}
    (tmp_path / "replay.yml").write_text(yaml.safe_dump(test))
    tested = run(PROMTOOL, "test", "rules", tmp_path / "replay.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def unit_root(tmp_path: Path) -> Path:
    """A root holding the units as shipped, systemd's own units, and a stand-in for each program they start.

    systemd-analyze verify checks that every Exec*= program exists; the stand-ins let it check the
    units without installing the guardian at /opt/guardian."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(UNITS, root / "etc/systemd/system")
    (root / "usr/bin").mkdir()
    (root / "bin").symlink_to("usr/bin")  # the usr-merged layout the host has
    for unit in UNITS.rglob("*.service"):
        for program in re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", unit.read_text(), re.M):
            stand_in = root / program.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
    return root


UNIT_NAMES = ["guardian-check.service", "guardian-check.timer", "guardian-cleanup.service", "guardian-cleanup.timer",
              "guardian-serve.service"]


@needs_systemd
def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    root = unit_root(tmp_path)
    assert sorted(p.name for p in UNITS.glob("guardian-*.*") if p.is_file()) == sorted(UNIT_NAMES)
    verified = run(SYSTEMD_ANALYZE, "verify", f"--root={root}", *UNIT_NAMES, cwd=root / "etc/systemd/system")
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


@needs_systemd
@pytest.mark.parametrize("service", [name for name in UNIT_NAMES if name.endswith(".service")])
def test_systemd_services_get_the_shared_sandbox(service, tmp_path):
    """The drop-in guardian-.service.d applies to each service: systemd's own exposure score stays "OK" (below 2)."""
    root = unit_root(tmp_path)
    scored = run(SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20", f"--root={root}", service,
                 cwd=root / "etc/systemd/system")
    assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr
    assert "Service runs under a static non-root user identity" in scored.stdout


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_file_creates_the_units_user(tmp_path):
    (tmp_path / "etc").mkdir()
    created = run("systemd-sysusers", f"--root={tmp_path}", "--dry-run", UNITS / "guardian.sysusers")
    assert created.returncode == 0 and "Creating user 'guardian'" in created.stdout + created.stderr, created.stderr
