#!/usr/bin/env bash
# Install the peer programs the tests run for real, from Debian's packages, when missing:
#   haproxy  the router of the HAProxy actuator (Runtime API)
#   nginx    the router of the NGINX actuator (config + reload)
#   kcat     a third-party Kafka client producing telemetry and reading decisions
#   prometheus and promtool (package prometheus): the alert rules and their unit tests, the
#            worker's and actuators' /metrics checked, the dashboard's queries run for real
#   chromium a headless browser rendering the rollout report (console errors, screenshots)
# Java and Maven (for the local Kafka broker) come with the machine; `canarystream kafka up`
# says so clearly if they are missing. Idempotent; apt-get needs root.
set -euo pipefail
missing=()
for program in haproxy nginx kcat chromium; do
  command -v "$program" >/dev/null 2>&1 || missing+=("$program")
done
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
if ((${#missing[@]})); then
  echo "installing from Debian: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for program in java mvn; do
  command -v "$program" >/dev/null 2>&1 || echo "warning: $program not found (the local Kafka broker needs it)" >&2
done
