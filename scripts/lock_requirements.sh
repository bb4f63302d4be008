#!/usr/bin/env bash
# Regenerates requirements.lock: the exact versions the container image installs.
# Resolves `.[aws,fast]` in a clean virtualenv of the image's Python (3.11) and freezes it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" install --quiet ".[aws,fast]"
{
  echo "# Pinned dependencies of the container image (ocpp-mqtt-gateway[aws,fast], Python 3.11, Linux)."
  echo "# Regenerate with scripts/lock_requirements.sh after changing dependencies in pyproject.toml."
  "$work/venv/bin/pip" freeze --exclude ocpp-mqtt-gateway
} >requirements.lock
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages" >&2
