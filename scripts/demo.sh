#!/usr/bin/env bash
# The main job, for someone with no gateway: two real OpenClaw gateways on loopback (pc-a, t440),
# filled with sessions, watched by `guardian check`. Sets itself up first; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
