#!/usr/bin/env bash
# Install what the Unleash flag provider's tests run for real, when missing:
#   PostgreSQL  from Debian (apt-get; needs root), Unleash's database
#   Unleash     the npm package unleash-server, pinned by package-lock.json (`npm ci`)
# Node.js >= 20 and npm must be on the machine already. Idempotent: a second run only checks.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && ! command -v initdb >/dev/null; then
  echo "install-unleash: installing postgresql from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

for program in node npm; do
  if ! command -v "$program" >/dev/null; then
    echo "install-unleash: $program is not installed (Unleash needs Node.js >= 20)" >&2
    exit 1
  fi
done
major="$(node -p 'process.versions.node.split(".")[0]')"
if ((major < 20)); then
  echo "install-unleash: Node.js $(node --version) is too old (Unleash needs >= 20)" >&2
  exit 1
fi

# Reinstall when the lock file changed since the last install (npm writes its own copy).
installed="$here/node_modules/.package-lock.json"
if [[ ! -f "$installed" || "$here/package-lock.json" -nt "$installed" ]]; then
  echo "install-unleash: npm ci (unleash-server, about 200 MB)" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
echo "$here"
