#!/usr/bin/env bash
# Install HAProxy from Debian's packages unless it is already there (the actuator tests
# drive a real one through its Runtime API). Idempotent; needs root for apt-get.
set -euo pipefail
command -v haproxy >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends haproxy
}
haproxy -v | head -n 1
