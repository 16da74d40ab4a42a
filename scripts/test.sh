#!/usr/bin/env bash
# Runs every test, the real-gateway end-to-end tests included; sets itself up first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
