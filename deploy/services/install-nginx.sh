#!/usr/bin/env bash
# Install NGINX from Debian's packages unless it is already there (the actuator tests
# reload a real one). Idempotent; needs root for apt-get. The package's own service is not
# needed: tests start NGINX in the foreground with their own configuration.
set -euo pipefail
command -v nginx >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nginx
}
nginx -v 2>&1 | head -n 1
