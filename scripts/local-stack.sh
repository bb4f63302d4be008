#!/usr/bin/env bash
# Runs the local stack in the foreground: Mosquitto, the processor and the gateway.
# Installs what is missing first (virtualenv, the package, mosquitto). Ctrl-C stops everything.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
MQTT_PORT=${MQTT_PORT:-1883}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
STATE_DIR=.run

say() { printf '\033[1mlocal-stack:\033[0m %s\n' "$*" >&2; }

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c "import gateway.cli, processor.cli" 2>/dev/null; then
    say "installing the project into $VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -e ".[fast]"
  fi
}

find_mosquitto() {
  command -v mosquitto 2>/dev/null || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true
}

ensure_mosquitto() {
  if [ -z "$(find_mosquitto)" ]; then
    say "installing mosquitto from the Debian packages"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mosquitto >/dev/null
  fi
}

port_in_use() {
  "$VENV/bin/python" - "$1" <<'PY'
import socket, sys
with socket.socket() as s:
    s.settimeout(0.5)
    sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

pids=()
stop_all() {
  trap - INT TERM EXIT
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

ensure_venv
mkdir -p "$STATE_DIR"

if port_in_use "$MQTT_PORT"; then
  say "using the MQTT broker already listening on 127.0.0.1:$MQTT_PORT"
else
  ensure_mosquitto
  cat > "$STATE_DIR/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
max_inflight_messages 0
max_queued_messages 100000
# Without this, Nagle and delayed ACKs add up to 40 ms per message.
set_tcp_nodelay true
CONF
  say "starting mosquitto on 127.0.0.1:$MQTT_PORT"
  "$(find_mosquitto)" -c "$STATE_DIR/mosquitto.conf" &
  pids+=($!)
  for _ in $(seq 50); do port_in_use "$MQTT_PORT" && break; sleep 0.1; done
fi

export PROCESSOR_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" PROCESSOR_HTTP_PORT=${PROCESSOR_HTTP_PORT:-8000}
export GATEWAY_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT"
export GATEWAY_PORT
export GATEWAY_REGISTRY=${GATEWAY_REGISTRY:-file}
export GATEWAY_REGISTRY_FILE=${GATEWAY_REGISTRY_FILE:-config/things.txt}

say "starting the processor"
"$VENV/bin/ocpp-processor" &
pids+=($!)
say "starting the gateway on ws://localhost:$GATEWAY_PORT (registry: $GATEWAY_REGISTRY_FILE)"
"$VENV/bin/ocpp-gateway" &
pids+=($!)

say "ready: cd simulator && python simulate.py --url ws://localhost:$GATEWAY_PORT --cp-id CP1"
# Exit (and stop the others) as soon as any of them stops.
wait -n "${pids[@]}"
