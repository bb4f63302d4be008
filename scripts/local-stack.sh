#!/usr/bin/env bash
# Runs the local stack in the foreground: Mosquitto, the processor and the gateway.
# Installs what is missing first (virtualenv, the package, mosquitto). Ctrl-C stops everything.
#
# The broker is always one of this script's own, configured here (a broker that happens to
# listen on 1883, such as Debian's default Mosquitto, has other settings and other users'
# retained messages): on MQTT_PORT (1883) when it is free, else on a free port, said on the
# terminal. Each process's output lines start with its name.
set -euo pipefail
# Job control: every process gets a process group of its own, so Ctrl-C reaches this script
# only and the stack stops in order (gateway, processor, then the broker they need).
set -m

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
MQTT_PORT=${MQTT_PORT:-1883}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
PROCESSOR_HTTP_PORT=${PROCESSOR_HTTP_PORT:-8000}  # the status page; 0: off
STATE_DIR=${STATE_DIR:-.run}  # the broker's config and persistence, readiness markers
READY_TIMEOUT=${READY_TIMEOUT:-30}

if [ -t 2 ]; then
  say() { printf '\033[1mlocal-stack:\033[0m %s\n' "$*" >&2; }
else
  say() { printf 'local-stack: %s\n' "$*" >&2; }
fi

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

free_port() {
  "$VENV/bin/python" -c '
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])'
}

gateway_ready() {
  "$VENV/bin/python" - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError:
    sys.exit(1)
PY
}

# Copies stdin to stdout with "name | " before each line, flushed line by line, and creates
# the file $STATE_DIR/<name>.ready at the first line matching the pattern (if one is given).
# It ignores Ctrl-C so that it outlives its process and shows that process's last words.
prefix() {
  trap '' INT
  exec awk -v name="$1" -v pattern="${2:-}" -v marker="$STATE_DIR/$1.ready" '
    { printf "%-9s| %s\n", name, $0; fflush() }
    pattern != "" && index($0, pattern) { printf "" > marker; close(marker); pattern = "" }'
}

# Starts "$@" in the background, its output (stdout and stderr) prefixed with its name.
# Usage: start NAME READY_PATTERN COMMAND...
names=()
pids=()
start() {
  local name=$1 pattern=$2
  shift 2
  rm -f "$STATE_DIR/$name.ready"
  "$@" > >(prefix "$name" "$pattern") 2>&1 &
  pids+=($!)
  names+=("$name")
}

# Waits for process $2 (named $3) to exit; past $1 seconds it is killed, and the stack says so.
STOP_SECONDS=20
stop_within() {
  local seconds=$1 pid=$2 name=$3 tenths=0
  while kill -0 "$pid" 2>/dev/null && [ "$tenths" -lt $((seconds * 10)) ]; do
    sleep 0.1
    tenths=$((tenths + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop within $seconds s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stopping=0
stop_all() {
  [ "$stopping" -eq 0 ] || return 0
  stopping=1
  trap - INT TERM HUP EXIT
  [ -t 2 ] && printf '\n' >&2  # after the terminal's ^C, so the next line starts cleanly
  say "stopping"
  # Newest first: the gateway closes its CPs while the broker is still there.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    if kill -TERM "${pids[i]}" 2>/dev/null; then
      stop_within "$STOP_SECONDS" "${pids[i]}" "${names[i]}"
    fi
  done
  wait 2>/dev/null || true  # the output prefixers, after their processes' last lines
  say "stopped"
}
# HUP: the terminal closed; the processes are in groups of their own and would not get it.
trap 'stop_all; exit 0' INT TERM HUP
trap stop_all EXIT

ensure_venv
ensure_mosquitto
mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd)

if port_in_use "$GATEWAY_PORT"; then
  say "port $GATEWAY_PORT is already in use (another gateway?): stop that program, or run e.g." \
    "GATEWAY_PORT=8090 make run and use ws://localhost:8090 in the commands below"
  exit 1
fi

# One stack per state directory: two brokers saving to one persistence file crash each other.
# A second stack in this checkout (GATEWAY_PORT=8090 make run) keeps its state apart. The lock is
# held by this script and the processes it starts, and goes with them.
if command -v flock >/dev/null; then
  exec {state_lock}>>"$STATE_DIR/stack.lock"
  if ! flock -n "$state_lock"; then
    shared=${STATE_DIR#"$PWD"/}
    STATE_DIR="$STATE_DIR/port-$GATEWAY_PORT"
    mkdir -p "$STATE_DIR"
    exec {state_lock}>>"$STATE_DIR/stack.lock"
    if ! flock -n "$state_lock"; then
      say "another local stack is using ${STATE_DIR#"$PWD"/}: stop it first"
      exit 1
    fi
    say "another local stack is using $shared; this one keeps its broker's state in ${STATE_DIR#"$PWD"/}"
  fi
fi

if port_in_use "$MQTT_PORT"; then
  taken=$MQTT_PORT
  MQTT_PORT=$(free_port)
  say "another MQTT broker already listens on 127.0.0.1:$taken; this stack runs its own on port $MQTT_PORT"
fi

if [ "$PROCESSOR_HTTP_PORT" != 0 ] && port_in_use "$PROCESSOR_HTTP_PORT"; then
  taken=$PROCESSOR_HTTP_PORT
  PROCESSOR_HTTP_PORT=$(free_port)
  say "port $taken is already in use; the status page is on port $PROCESSOR_HTTP_PORT"
fi

# The broker's settings, rewritten at each start (this is the file to read, not to edit).
cat > "$STATE_DIR/mosquitto.conf" <<CONF
# Written by scripts/local-stack.sh at each start.
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
# Sessions, their queued messages and retained messages (each CP's state) survive a restart,
# even a kill -9 up to the last second: the processor's queued calls are answered afterwards.
persistence true
persistence_location $STATE_DIR/
autosave_interval 1
log_dest stderr
log_type error
log_type warning
max_inflight_messages 0
max_queued_messages 100000
# Without this, Nagle's algorithm and delayed ACKs add up to 40 ms per message.
set_tcp_nodelay true
CONF
if [ "$(id -u)" -eq 0 ]; then
  # As root, Mosquitto switches to the user `mosquitto`, which cannot write $STATE_DIR.
  echo "user root" >> "$STATE_DIR/mosquitto.conf"
fi

say "starting mosquitto on 127.0.0.1:$MQTT_PORT (config ${STATE_DIR#"$PWD"/}/mosquitto.conf)"
start mosquitto "" "$(find_mosquitto)" -c "$STATE_DIR/mosquitto.conf"
for _ in $(seq 50); do port_in_use "$MQTT_PORT" && break; sleep 0.1; done

export PROCESSOR_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" PROCESSOR_HTTP_PORT
# One processor here: a plain subscription, which (unlike a shared one) Mosquitto keeps across
# its restarts, so calls published while the processor reconnects are still answered.
export PROCESSOR_SHARE_GROUP=${PROCESSOR_SHARE_GROUP-}
export GATEWAY_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT"
export GATEWAY_PORT
export GATEWAY_REGISTRY=${GATEWAY_REGISTRY:-file}
export GATEWAY_REGISTRY_FILE=${GATEWAY_REGISTRY_FILE:-config/things.txt}
if [ -t 2 ]; then
  # The output goes through a pipe now, but a person reads it.
  export GATEWAY_LOG_FORMAT=${GATEWAY_LOG_FORMAT:-console}
  export PROCESSOR_LOG_FORMAT=${PROCESSOR_LOG_FORMAT:-console}
fi

say "starting the processor"
# The processor says broker.connected once its subscription is acknowledged.
start processor broker.connected "$VENV/bin/ocpp-processor"
say "starting the gateway on ws://localhost:$GATEWAY_PORT (registry: $GATEWAY_REGISTRY_FILE)"
start gateway "" "$VENV/bin/ocpp-gateway"

deadline=$((SECONDS + READY_TIMEOUT))
# Ready: the processor subscribed, and the gateway answers /health with 200 (listening, broker
# reachable).
until [ -e "$STATE_DIR/processor.ready" ] && gateway_ready "$GATEWAY_PORT"; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      say "${names[i]} exited before the stack was ready (its output is above)"
      exit 1
    fi
  done
  if [ "$SECONDS" -ge "$deadline" ]; then
    say "the gateway was not ready within ${READY_TIMEOUT}s (http://127.0.0.1:$GATEWAY_PORT/health)"
    exit 1
  fi
  sleep 0.2
done

mqtt_port_option=""
[ "$MQTT_PORT" = 1883 ] || mqtt_port_option=" -p $MQTT_PORT"
if [ "$PROCESSOR_HTTP_PORT" != 0 ]; then
  say "ready: status page on http://localhost:$PROCESSOR_HTTP_PORT; in another terminal, from the repository root:"
else
  say "ready: in another terminal, from the repository root:"
fi
say "  .venv/bin/python simulator/simulate.py --url ws://localhost:$GATEWAY_PORT --cp-id CP1"
say "  mosquitto_sub$mqtt_port_option -t '+/in' -t '+/out' -t '+/state' -v"
# Exit (and stop the others) as soon as any of them stops.
wait -n "${pids[@]}"
