#!/usr/bin/env bash
# Runs every test, the real-gateway end-to-end tests included; sets itself up first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python scripts/peer.py install --version 2026.4.29   # the older release the tests also cover
# Real programs the tests start or run, from Debian's packages (so root, as in CI; the demo needs none):
# headless Chromium renders the HTML pages, a real Alertmanager takes the Alertmanager channel's posts,
# promtool checks and unit-tests contrib/prometheus (and the serve test runs a real Prometheus),
# systemd-analyze verifies contrib/systemd. One apt run installs whichever are missing.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v promtool >/dev/null || missing+=(prometheus)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # Debian starts the servers it installs where systemd runs; the tests start their own on loopback.
    for service in prometheus prometheus-alertmanager prometheus-node-exporter; do
        if [ -d /run/systemd/system ]; then systemctl disable --now "$service.service" >/dev/null 2>&1 || true
        else service "$service" stop >/dev/null 2>&1 || true; fi
    done
fi
exec .venv/bin/python -m pytest "$@"
