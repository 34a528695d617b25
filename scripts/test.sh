#!/usr/bin/env bash
# The README's test command: installs the test and ray extras into .venv and runs lint and the test suite.
# Browser tests need Debian's chromium (/usr/bin/chromium); as root this script installs it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "== installing chromium from Debian's packages (browser tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e ".[test,ray]"  # ray: the sweep tests run a local two-worker Ray

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== pytest"
.venv/bin/python -m pytest "$@"
