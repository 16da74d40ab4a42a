"""`guardian serve` scraped by a real Prometheus (Debian's 2.42) evaluating contrib/prometheus/guardian-rules.yml,
against a real OpenClaw gateway: the guardian's series carry the gateway's numbers, and the shipped rule's
critical alert fires once the gateway crosses critical. Everything started here is stopped here."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request

import pytest
import yaml
from conftest import create_sessions, list_rows, rpc, wait_until
from test_contrib import RULES
from test_serve import answers, free_port, serving

pytestmark = [pytest.mark.real_gateway,
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")]


def query(base: str, expr: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=10) as r:
        return json.load(r)["data"]["result"]


def firing(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v1/alerts", timeout=10) as r:
        return [a["labels"] for a in json.load(r)["data"]["alerts"] if a["state"] == "firing"]


def test_prometheus_scrapes_serve_and_the_shipped_rule_fires_at_critical(real_gateways, write_config, tmp_path):
    gw = real_gateways["pc-a"]
    before = len(list_rows(gw))
    limit = before + 10  # 10 more sessions: 100 %, critical
    serve_port, prometheus_port = free_port(), free_port()
    config = write_config({"pc-a": {"url": gw.url, "token": gw.token, "limit": limit}},
                          serve={"listen": f"127.0.0.1:{serve_port}", "check_every": "1s"})
    target = {"job_name": "guardian", "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}]}
    scrape = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(RULES)],
              "scrape_configs": [target]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    base, made = f"http://127.0.0.1:{prometheus_port}", []
    with serving(config, tmp_path / "serve.err"), open(tmp_path / "prometheus.log", "w") as log:
        prometheus = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{prometheus_port}"], stdout=log, stderr=log)
        try:
            wait_until(lambda: answers(f"{base}/-/ready"), what="Prometheus to be ready")
            sessions = wait_until(lambda: query(base, 'guardian_sessions{name="pc-a"}'), what="the first scrape")
            assert sessions[0]["metric"]["job"] == "guardian" and float(sessions[0]["value"][1]) == before
            assert float(query(base, 'guardian_limit{name="pc-a"}')[0]["value"][1]) == limit
            assert float(query(base, 'guardian_reachable{name="pc-a"}')[0]["value"][1]) == 1

            made += create_sessions(gw, 10)
            wait_until(lambda: query(base, 'guardian_usage_ratio{name="pc-a"} == 1'), what="the new sessions")
            assert float(query(base, 'guardian_level{name="pc-a"}')[0]["value"][1]) == 3
            critical = {"alertname": "SessionUsageCritical", "host": "pc-a", "severity": "critical"}
            wait_until(lambda: any(critical.items() <= labels.items() for labels in firing(base)), timeout=150,
                       what="SessionUsageCritical to fire (it waits its for: 1m)")
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
            with rpc(gw) as connection:  # the session-wide gateway as the other tests expect it
                connection.call_many([("sessions.delete", {"key": key}) for key in made])
