#!/usr/bin/env bash
# Runs the JMeter plan against a local stack of its own, started and stopped here:
# Mosquitto, processor and gateway on free ports, with a registry file that registers exactly
# the charge points the plan connects (-Jprefix, -Jcps); the unregistered ones stay refused.
#
#   scripts/jmeter_local.sh -Jcps=200 -Jheartbeats=3        (any run_jmeter.sh parameters)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-$VENV/bin/python}

cps=100
prefix=CP
for arg in "$@"; do
  case "$arg" in
    -Jcps=*) cps=${arg#-Jcps=} ;;
    -Jprefix=*) prefix=${arg#-Jprefix=} ;;
    -Jhost=* | -Jport=*) echo "jmeter_local: the local stack chooses host and port; drop $arg" >&2; exit 2 ;;
  esac
done
case "$cps" in '' | *[!0-9]*) echo "jmeter_local: -Jcps must be a number, got '$cps'" >&2; exit 2 ;; esac

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
registry="$work/things.txt"
for ((n = 1; n <= cps; n++)); do printf '%s%06d\n' "$prefix" "$n"; done >"$registry"

mqtt_port=$(free_port)
gateway_port=$(free_port)
# STATE_DIR: the broker's config and persistence of its own, not the repository's .run/, which a
# `make run` in another terminal is using (two brokers saving to one file crash each other).
MQTT_PORT=$mqtt_port GATEWAY_PORT=$gateway_port GATEWAY_REGISTRY=file \
  GATEWAY_REGISTRY_FILE=$registry GATEWAY_LOG_LEVEL=WARNING STATE_DIR="$work/run" \
  "$ROOT/scripts/local-stack.sh" >"$work/stack.log" 2>&1 &
stack=$!
stop_stack() {
  kill -TERM "$stack" 2>/dev/null || true
  wait "$stack" 2>/dev/null || true
  rm -rf "$work"
}
trap stop_stack EXIT

for _ in $(seq 150); do
  if "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$gateway_port/health', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$stack" 2>/dev/null; then
    echo "jmeter_local: the local stack stopped:" >&2
    cat "$work/stack.log" >&2
    exit 1
  fi
  sleep 0.2
done

echo "jmeter_local: stack on ws://127.0.0.1:$gateway_port with $cps registered ids (${prefix}000001...)" >&2
"$ROOT/scripts/run_jmeter.sh" -Jhost=127.0.0.1 -Jport="$gateway_port" "$@"
