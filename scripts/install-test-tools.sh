#!/usr/bin/env bash
# Installs the system tools the test suite talks to, when they are missing.
set -euo pipefail

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "${APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  echo "installing mosquitto" >&2
  apt_install mosquitto
fi
if ! command -v mosquitto_pub >/dev/null; then
  echo "installing mosquitto-clients (the README's command examples are tested)" >&2
  apt_install mosquitto-clients
fi
# The status page test drives Debian's Chromium with Playwright (which cannot download its own).
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium" >&2
  apt_install chromium
fi
