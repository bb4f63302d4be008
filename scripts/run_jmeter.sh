#!/usr/bin/env bash
# Runs the JMeter plan jmeter/ocpp_charge_points.jmx non-GUI and summarises the results.
#
#   scripts/run_jmeter.sh -Jhost=127.0.0.1 -Jport=8080 -Jcps=1000 -Jrampup=60 -Jheartbeats=5
#
# Every -J parameter of the plan may be given (see docs/deploy.md). Writes into OUT_DIR
# (default build/jmeter/<date-time>): results.jtl, jmeter.log, summary.txt and, unless
# JMETER_HTML_REPORT=0, the HTML dashboard report/index.html. Exits 1 if any sample failed.
# JMeter comes from scripts/install_deploy_tools.sh (or JMETER_HOME); Java 17 from the system.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
JMETER_HOME=${JMETER_HOME:-$ROOT/.tools/jmeter}
PLAN=${JMETER_PLAN:-$ROOT/jmeter/ocpp_charge_points.jmx}
OUT_DIR=${OUT_DIR:-$ROOT/build/jmeter/$(date +%Y%m%d-%H%M%S)}
JVM_ARGS=${JVM_ARGS:--Xms512m -Xmx1g -XX:+UseG1GC}
PYTHON=${PYTHON:-python3}

if [ ! -f "$JMETER_HOME/bin/ApacheJMeter.jar" ]; then
  echo "run_jmeter: JMeter not found in $JMETER_HOME: run scripts/install_deploy_tools.sh or set JMETER_HOME" >&2
  exit 2
fi
if ! command -v java >/dev/null; then
  echo "run_jmeter: java not found: install Java 17 (apt-get install -y openjdk-17-jre-headless)" >&2
  exit 2
fi

mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR/results.jtl"
report_args=()
if [ "${JMETER_HTML_REPORT:-1}" != "0" ]; then
  rm -rf "$OUT_DIR/report"
  report_args=(-e -o "$OUT_DIR/report")
fi

echo "run_jmeter: $PLAN -> $OUT_DIR" >&2
status=0
# shellcheck disable=SC2086  # JVM_ARGS is a list of options
(cd "$OUT_DIR" && java $JVM_ARGS -jar "$JMETER_HOME/bin/ApacheJMeter.jar" -n \
  -t "$PLAN" \
  -Jscript_dir="$(dirname "$PLAN")" \
  -Jjmeter.save.saveservice.output_format=csv \
  -Jjmeter.save.saveservice.assertion_results_failure_message=true \
  -Jsummariser.interval=10 \
  -l "$OUT_DIR/results.jtl" -j "$OUT_DIR/jmeter.log" \
  "${report_args[@]}" "$@") || status=$?
if [ "$status" -ne 0 ]; then
  echo "run_jmeter: JMeter exited with $status (see $OUT_DIR/jmeter.log)" >&2
  exit "$status"
fi
"$PYTHON" "$ROOT/scripts/jtl_summary.py" "$OUT_DIR/results.jtl" | tee "$OUT_DIR/summary.txt"
