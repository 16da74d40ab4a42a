#!/usr/bin/env bash
# Makes .venv with the guardian, its optional apprise channel and its test tools installed, and the real OpenClaw peer (cached).
# Idempotent and quick on a second run: the venv is rebuilt only when pyproject.toml changes, and the
# peer lives in ~/.cache/session-limit-guardian (GUARDIAN_PEER_CACHE) once installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: Python 3.11 or newer is needed (found $("$python" --version 2>&1))" >&2; exit 1; }
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf .venv
  "$python" -m venv .venv
  # compat mode: a plain path entry instead of an import hook, ~10 ms less on every start
  # the apprise extra too, so its channel is tested; the guardian itself never needs it
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test,apprise]' --config-settings editable_mode=compat
  touch "$stamp"
fi
.venv/bin/python scripts/peer.py install
# Byte-compile the package as a regular `pip install` does: an editable install leaves that to the
# first import, which never writes it when PYTHONDONTWRITEBYTECODE is set, so every cron run would
# compile every module again (~25 ms). Stale files are recompiled in memory, so this is always safe.
.venv/bin/python -m compileall -q guardian
