#!/usr/bin/env bash
# Runs every test, the real-gateway end-to-end tests included; sets itself up first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python scripts/peer.py install --version 2026.4.29   # the older release the tests also cover
# Headless Chromium renders the HTML report in the tests (Debian's package, so root, as in CI;
# the demo does not need it).
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
# A real Alertmanager for the Alertmanager channel's end-to-end test (Debian's package, likewise).
command -v prometheus-alertmanager >/dev/null || { apt-get update -qq && apt-get install -y -qq prometheus-alertmanager >/dev/null; }
# promtool checks and unit-tests contrib/prometheus, systemd-analyze verifies contrib/systemd (Debian's
# prometheus and systemd packages). Debian starts and enables the Prometheus server it installs, where
# systemd runs: the tests need only promtool, so a server this script installed is stopped and disabled.
if ! command -v promtool >/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if [ -d /run/systemd/system ]; then systemctl disable --now prometheus.service
    else service prometheus stop >/dev/null 2>&1 || true; fi   # without systemd: the init script, if it ran
fi
command -v systemd-analyze >/dev/null || { apt-get update -qq && apt-get install -y -qq systemd >/dev/null; }
exec .venv/bin/python -m pytest "$@"
