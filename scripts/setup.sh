#!/usr/bin/env bash
# Set up medinpaint in ./.venv (safe to run again). `--test` adds the test tools and, on Debian as root,
# the chromium browser the page tests drive.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# A .venv without pip (a venv module missing ensurepip, as Debian's python3 without python3-venv) is made anew.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  "$PYTHON" -m venv --clear .venv || { echo "error: could not make .venv (on Debian or Ubuntu: apt install python3-venv)" >&2; exit 1; }
fi
# The CPU build of torch: a local wheel where the machine has one, else the registry's.
.venv/bin/python -m pip install --quiet torch==2.13.0
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install --quiet -e ".[test]"
  if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will be skipped" >&2
  fi
else
  .venv/bin/python -m pip install --quiet -e .
fi
